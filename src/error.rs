//! The errors postern answers with itself, each with its HTTP status and a stable error code.

use http::StatusCode;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches this request")]
    NoRoute,
    #[error("the request path is not allowed: {0}")]
    BadPath(&'static str),
    #[error("the request path contains {0}, which servers read in different ways")]
    AmbiguousPath(&'static str),
    #[error("the request is malformed: {0}")]
    BadRequest(&'static str),
    #[error("authentication is required")]
    Unauthenticated,
    #[error("you are not allowed to access this resource")]
    Forbidden,
    #[error("requests from this origin or referring page are not allowed here")]
    RefererDenied,
    #[error("this origin may not make cross-origin requests here")]
    CorsDenied,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("{0} is not available in this version of postern")]
    NotImplemented(&'static str),
    #[error("no such built-in endpoint")]
    UnknownEndpoint,
    #[error("the upstream application could not be reached")]
    UpstreamUnavailable,
    #[error("the upstream application did not answer in time")]
    UpstreamTimeout,
    #[error("the upstream application sent an invalid response")]
    UpstreamProtocol,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("the bearer token is not valid (expired, revoked, or not issued by this gateway)")]
    InvalidToken,
    #[error("the form has expired or did not come from this site; reload the page and try again")]
    CsrfFailed,
    #[error(
        "a request authenticated by cookie must come from this site and send JSON or an X-CSRF-Token header"
    )]
    CrossSite,
    #[error("a new token needs a session or credentials; a bearer token cannot renew itself")]
    SessionRequired,
    #[error("send JSON (Content-Type: application/json) or a form")]
    UnsupportedMediaType,
    #[error("too many attempts; try again in {retry_after} seconds")]
    TooManyRequests { retry_after: i64 },
    #[error("{0} is temporarily unavailable")]
    Unavailable(&'static str),
    #[error("{field}: {message}")]
    Validation {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("no such {0}")]
    Missing(&'static str),
    #[error("no such object")]
    ObjectNotFound,
    #[error("the object store refused access to this object")]
    StoreDenied,
    #[error("the object store could not be reached or failed")]
    StoreUnavailable,
    #[error("the store's filesystem is full")]
    InsufficientStorage,
    #[error("the object store did not answer in time")]
    StoreTimeout,
    #[error("the object store rejected the request")]
    StoreRejected,
    #[error("the link's signature does not match")]
    BadSignature,
    #[error("the link has expired")]
    LinkExpired,
    #[error("a precondition (If-Match, If-Unmodified-Since) failed")]
    PreconditionFailed,
    #[error("the requested range is outside the object")]
    RangeNotSatisfiable,
    #[error("{param}: {message}")]
    ImageParam {
        param: &'static str,
        message: String,
    },
    #[error("the object is not an image this gateway transforms (JPEG, PNG, GIF, WebP)")]
    UnsupportedImage,
    #[error("the image could not be decoded")]
    CorruptImage,
    #[error("{0}")]
    ImageTooLarge(String),
    #[error("the image workers are busy; try again shortly")]
    ImageBusy,
    #[error("{rule}: {message}")]
    PasswordPolicy { rule: &'static str, message: String },
    #[error("the link is not valid (already used, replaced by a newer one, or mistyped)")]
    AccountTokenInvalid,
    #[error("the link has expired; ask for a new one")]
    AccountTokenExpired,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("your password has expired: change it at {0}")]
    PasswordExpired(String),
    #[error("self-registration is not open")]
    RegistrationClosed,
    #[error("mail is not configured on this gateway (mail.transport)")]
    MailDisabled,
    #[error("the file is larger than the limit of {limit} bytes")]
    FileTooLarge { limit: u64 },
    #[error("at most {limit} files may be sent at once")]
    TooManyFiles { limit: usize },
    #[error("files of type {0} are not accepted here")]
    FileTypeRefused(&'static str),
    #[error("{0}")]
    AclRefused(String),
    #[error("the upload did not arrive whole: {0}")]
    UploadIncomplete(String),
    #[error("the upload did not arrive in time")]
    UploadTimeout,
    #[error("{0}")]
    SyncUnavailable(&'static str),
    #[error("internal error")]
    Internal,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute | Self::UnknownEndpoint => StatusCode::NOT_FOUND,
            Self::BadPath(_) | Self::AmbiguousPath(_) | Self::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::RefererDenied | Self::CorsDenied => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::UpstreamUnavailable | Self::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::InvalidCredentials | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::CsrfFailed | Self::CrossSite => StatusCode::FORBIDDEN,
            Self::SessionRequired => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Missing(_) => StatusCode::NOT_FOUND,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ObjectNotFound => StatusCode::NOT_FOUND,
            Self::StoreDenied | Self::BadSignature => StatusCode::FORBIDDEN,
            Self::StoreUnavailable | Self::StoreRejected => StatusCode::BAD_GATEWAY,
            Self::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Self::StoreTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::LinkExpired => StatusCode::GONE,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::ImageParam { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedImage => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::CorruptImage | Self::ImageTooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ImageBusy => StatusCode::SERVICE_UNAVAILABLE,
            Self::PasswordPolicy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::AccountTokenInvalid => StatusCode::BAD_REQUEST,
            Self::AccountTokenExpired => StatusCode::GONE,
            Self::WrongPassword | Self::PasswordExpired(_) => StatusCode::FORBIDDEN,
            Self::RegistrationClosed => StatusCode::FORBIDDEN,
            Self::MailDisabled => StatusCode::NOT_IMPLEMENTED,
            Self::FileTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyFiles { .. } | Self::UploadIncomplete(_) => StatusCode::BAD_REQUEST,
            Self::FileTypeRefused(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::AclRefused(_) => StatusCode::FORBIDDEN,
            Self::UploadTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::SyncUnavailable(_) => StatusCode::CONFLICT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable snake_case code that clients and scripts may match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute | Self::UnknownEndpoint => "not_found",
            Self::BadPath(_) | Self::AmbiguousPath(_) => "bad_path",
            Self::BadRequest(_) => "bad_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RefererDenied => "referer_denied",
            Self::CorsDenied => "cors_denied",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::NotImplemented(_) => "not_implemented",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamProtocol => "upstream_protocol_error",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidToken => "invalid_token",
            Self::CsrfFailed => "csrf_failed",
            Self::CrossSite => "cross_site_request",
            Self::SessionRequired => "session_required",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unavailable(_) => "unavailable",
            Self::Validation { .. } => "validation_failed",
            Self::Conflict(_) => "conflict",
            Self::Missing(_) => "not_found",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::ObjectNotFound => "not_found",
            Self::StoreDenied => "forbidden",
            Self::StoreUnavailable => "store_unavailable",
            Self::InsufficientStorage => "insufficient_storage",
            Self::StoreTimeout => "store_timeout",
            Self::StoreRejected => "store_error",
            Self::BadSignature => "bad_signature",
            Self::LinkExpired => "link_expired",
            Self::PreconditionFailed => "precondition_failed",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
            Self::ImageParam { .. } => "bad_image_param",
            Self::UnsupportedImage => "unsupported_image",
            Self::CorruptImage => "corrupt_image",
            Self::ImageTooLarge(_) => "image_too_large",
            Self::ImageBusy => "image_busy",
            Self::PasswordPolicy { .. } => "password_policy",
            Self::AccountTokenInvalid => "invalid_account_token",
            Self::AccountTokenExpired => "account_token_expired",
            Self::WrongPassword => "wrong_password",
            Self::PasswordExpired(_) => "password_expired",
            Self::RegistrationClosed => "registration_closed",
            Self::MailDisabled => "mail_disabled",
            Self::FileTooLarge { .. } => "file_too_large",
            Self::TooManyFiles { .. } => "too_many_files",
            Self::FileTypeRefused(_) => "file_type_not_allowed",
            Self::AclRefused(_) => "acl_not_allowed",
            Self::UploadIncomplete(_) => "upload_incomplete",
            Self::UploadTimeout => "upload_timeout",
            Self::SyncUnavailable(_) => "sync_unavailable",
            Self::Internal => "internal_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_statuses_are_errors() {
        let all = [
            GatewayError::NoRoute,
            GatewayError::BadPath("x"),
            GatewayError::BadRequest("x"),
            GatewayError::Unauthenticated,
            GatewayError::Forbidden,
            GatewayError::RefererDenied,
            GatewayError::CorsDenied,
            GatewayError::MethodNotAllowed,
            GatewayError::PayloadTooLarge { limit: 1 },
            GatewayError::NotImplemented("x"),
            GatewayError::UnknownEndpoint,
            GatewayError::UpstreamUnavailable,
            GatewayError::UpstreamTimeout,
            GatewayError::UpstreamProtocol,
            GatewayError::InvalidCredentials,
            GatewayError::InvalidToken,
            GatewayError::CsrfFailed,
            GatewayError::CrossSite,
            GatewayError::SessionRequired,
            GatewayError::AmbiguousPath("x"),
            GatewayError::UnsupportedMediaType,
            GatewayError::Unavailable("x"),
            GatewayError::Validation {
                field: "x",
                message: "y".into(),
            },
            GatewayError::Conflict("x".into()),
            GatewayError::Missing("x"),
            GatewayError::TooManyRequests { retry_after: 1 },
            GatewayError::ObjectNotFound,
            GatewayError::StoreDenied,
            GatewayError::StoreUnavailable,
            GatewayError::InsufficientStorage,
            GatewayError::StoreTimeout,
            GatewayError::StoreRejected,
            GatewayError::BadSignature,
            GatewayError::LinkExpired,
            GatewayError::PreconditionFailed,
            GatewayError::RangeNotSatisfiable,
            GatewayError::ImageParam {
                param: "w",
                message: "x".into(),
            },
            GatewayError::UnsupportedImage,
            GatewayError::CorruptImage,
            GatewayError::ImageTooLarge("x".into()),
            GatewayError::ImageBusy,
            GatewayError::PasswordPolicy {
                rule: "min_length",
                message: "x".into(),
            },
            GatewayError::AccountTokenInvalid,
            GatewayError::AccountTokenExpired,
            GatewayError::WrongPassword,
            GatewayError::PasswordExpired("x".into()),
            GatewayError::RegistrationClosed,
            GatewayError::MailDisabled,
            GatewayError::FileTooLarge { limit: 1 },
            GatewayError::TooManyFiles { limit: 1 },
            GatewayError::FileTypeRefused("x"),
            GatewayError::AclRefused("x".into()),
            GatewayError::UploadIncomplete("x".into()),
            GatewayError::UploadTimeout,
            GatewayError::SyncUnavailable("x"),
            GatewayError::Internal,
        ];
        for e in all {
            assert!(e.status().as_u16() >= 400, "{e:?}");
            assert!(
                e.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                e.code()
            );
        }
    }
}
