//! Built-in endpoints under the `builtin` route (by default `/_postern/`): login, logout, me.
//! Endpoints the contract names that later parts provide answer 501 `not_implemented`, so that
//! clients get a clear answer instead of a request passed to the app.

pub mod admin;
mod login_page;
mod return_to;
mod same_site;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode, header};
use pingora::proxy::Session;
use rand::RngCore;
use serde_json::json;

use crate::auth::{Admission, Lockout, Passwords, Sessions, Tokens};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::policy::Principal;
use crate::proxy::{body, headers, respond};
use crate::services::StoreHandle;
use crate::store::{NewEvent, Store, User, UserStatus};

pub use return_to::safe_return_to;

/// Endpoints the contract names that are not served yet.
const PLANNED: &[(&str, &str)] = &[
    ("verify", "account verification"),
    ("forgot", "password reset"),
    ("change", "password change"),
    ("expired", "expired-password change"),
    ("password-policy", "the password policy endpoint"),
    ("files", "the file API"),
];

const MAX_LOGIN_BODY: usize = 16 * 1024;

/// Who is asking, as the proxy established it.
pub struct Caller {
    pub principal: Option<Arc<Principal>>,
    pub session_token: Option<String>,
    /// The principal came from a bearer token (not the session cookie).
    pub via_bearer: bool,
    /// The client's address (through trusted proxies).
    pub ip: Option<std::net::IpAddr>,
    /// The route's CORS rule admits the request's `Origin`.
    pub origin_allowed: bool,
}

impl Caller {
    fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }
}

/// The built-in endpoints and what they work with.
pub struct Builtin {
    /// The builtin route's path prefix, e.g. `/_postern/`.
    pub prefix: String,
    pub sessions: Arc<Sessions>,
    pub passwords: Passwords,
    pub tokens: Arc<Tokens>,
    pub lockout: Lockout,
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    /// How long reading a request body may take.
    pub body_timeout: Duration,
    pub admin: admin::Admin,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A login attempt, from JSON or a form.
struct Credentials {
    login: String,
    password: String,
    csrf: Option<String>,
    return_to: Option<String>,
    from_form: bool,
}

impl Builtin {
    fn count_attempt(&self, result: &str) {
        self.metrics
            .auth_attempts
            .with_label_values(&[result])
            .inc();
    }

    /// The login page's path, e.g. `/_postern/login`.
    pub fn login_path(&self) -> String {
        format!("{}/login", self.prefix.trim_end_matches('/'))
    }

    fn store(&self) -> Result<Arc<Store>, GatewayError> {
        self.store
            .load_full()
            .ok_or(GatewayError::Unavailable("the user database"))
    }

    /// Serves `rest` (the path below the prefix). Errors are answered by the caller.
    pub async fn handle(
        &self,
        session: &mut Session,
        rest: &str,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        let endpoint = rest.trim_start_matches('/');
        let method = session.req_header().method.clone();
        let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changes_state
            && !caller.via_bearer
            && caller.session_token.is_some()
            && endpoint != "login"
        {
            same_site::check(
                session.req_header(),
                self.csrf_cookie_name(),
                caller.origin_allowed,
            )?;
        }
        match (endpoint, method) {
            ("login", Method::GET | Method::HEAD) => {
                self.login_page(session, None, "", StatusCode::OK).await
            }
            ("login", Method::POST) => self.login(session, caller).await,
            ("logout", Method::POST) => self.logout(session, caller).await,
            ("me", Method::GET | Method::HEAD) => self.me(session, caller).await,
            ("token", Method::POST) => self.token(session, caller).await,
            (path, _) if path == "admin" || path.starts_with("admin/") => {
                self.admin
                    .handle(session, &path["admin".len()..], caller)
                    .await
            }
            ("login" | "logout" | "me" | "token", _) => Err(GatewayError::MethodNotAllowed),
            _ => {
                let first = endpoint.split('/').next().unwrap_or("");
                match PLANNED.iter().find(|(segment, _)| *segment == first) {
                    Some((_, what)) => Err(GatewayError::NotImplemented(what)),
                    None => Err(GatewayError::UnknownEndpoint),
                }
            }
        }
    }

    fn csrf_cookie_name(&self) -> &str {
        &self.sessions.settings().csrf_cookie_name
    }

    /// The double-submit cookie: `__Host-` prefixed (so Path=/, Secure, no Domain) when cookies
    /// are secure, so that a sibling subdomain cannot plant one.
    fn csrf_cookie(&self, value: &str) -> String {
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict{}",
            self.csrf_cookie_name(),
            if self.sessions.settings().secure_cookies {
                "; Secure"
            } else {
                ""
            }
        )
    }

    async fn login_page(
        &self,
        session: &mut Session,
        error: Option<&str>,
        username: &str,
        status: StatusCode,
    ) -> Result<(), GatewayError> {
        let req = session.req_header();
        let existing = headers::cookie_value(req, self.csrf_cookie_name())
            .filter(|v| v.len() == 43)
            .map(str::to_owned);
        let return_to = req
            .uri
            .query()
            .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "return_to"))
            .and_then(|(_, v)| safe_return_to(&v, &self.sessions.settings().return_to_hosts))
            .unwrap_or_else(|| "/".to_string());
        let (csrf, set_cookie) = match existing {
            Some(token) => (token, None),
            None => {
                let token = random_token();
                let cookie = self.csrf_cookie(&token);
                (token, Some(cookie))
            }
        };
        let page = login_page::render(&self.login_path(), &csrf, &return_to, username, error);
        let mut extra = vec![
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::HeaderName::from_static("x-frame-options"), "DENY".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'".to_string(),
            ),
        ];
        if let Some(cookie) = set_cookie {
            extra.push((header::SET_COOKIE, cookie));
        }
        respond::send(
            session,
            status,
            "text/html; charset=utf-8",
            page.into(),
            &extra,
        )
        .await
        .map_err(|_| GatewayError::Internal)
    }

    async fn read_credentials(&self, session: &mut Session) -> Result<Credentials, GatewayError> {
        let content_type = session
            .req_header()
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = body::read_small_body(session, MAX_LOGIN_BODY, self.body_timeout).await?;
        if content_type.starts_with("application/json") {
            let value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| GatewayError::BadRequest("the body is not valid JSON"))?;
            let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
            let login =
                text("username")
                    .or_else(|| text("email"))
                    .ok_or(GatewayError::BadRequest(
                        "send \"username\" or \"email\" and \"password\"",
                    ))?;
            let password = text("password").ok_or(GatewayError::BadRequest("send \"password\""))?;
            Ok(Credentials {
                login,
                password,
                csrf: None,
                return_to: None,
                from_form: false,
            })
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let mut creds = Credentials {
                login: String::new(),
                password: String::new(),
                csrf: None,
                return_to: None,
                from_form: true,
            };
            for (key, value) in form_urlencoded::parse(&body) {
                match key.as_ref() {
                    "username" | "email" => creds.login = value.into_owned(),
                    "password" => creds.password = value.into_owned(),
                    "csrf" => creds.csrf = Some(value.into_owned()),
                    "return_to" => creds.return_to = Some(value.into_owned()),
                    _ => {}
                }
            }
            Ok(creds)
        } else {
            Err(GatewayError::UnsupportedMediaType)
        }
    }

    fn user_agent(session: &Session) -> Option<String> {
        session
            .req_header()
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect())
    }

    fn event(
        kind: &str,
        user: Option<&User>,
        caller: &Caller,
        user_agent: Option<String>,
        detail: serde_json::Value,
    ) -> NewEvent {
        NewEvent {
            kind: kind.to_string(),
            user_id: user.map(|u| u.id.clone()),
            actor: None,
            ip: caller.ip_text(),
            user_agent,
            detail,
        }
    }

    /// Rate limit, then credentials: the user when they are right; otherwise the failure is
    /// counted (and may lock the account) and the answer is the same whatever went wrong.
    async fn check_credentials(
        &self,
        creds: &Credentials,
        caller: &Caller,
        user_agent: Option<String>,
    ) -> Result<User, GatewayError> {
        let store = self.store()?;
        let user = if creds.login.is_empty() || creds.password.is_empty() {
            None
        } else {
            store
                .user_by_login(&creds.login)
                .await
                .map_err(|_| GatewayError::Unavailable("the user database"))?
        };
        let now = self.sessions.now();
        let usable = user
            .as_ref()
            .filter(|u| u.status == UserStatus::Enabled && u.locked_until.is_none_or(|t| t <= now));
        let stored_hash = usable.and_then(|u| u.password_hash.clone());
        let verified = self
            .passwords
            .verify(creds.password.clone(), stored_hash.clone())
            .await
            .map_err(|_| GatewayError::Internal)?;
        let Some(user) = usable.filter(|_| verified.ok) else {
            let reason = match (&user, usable) {
                (None, _) => "unknown_user",
                (Some(u), None) if u.locked_until.is_some_and(|t| t > now) => "locked",
                (Some(_), None) => "not_allowed",
                (Some(_), Some(_)) => "wrong_password",
            };
            self.count_attempt(if reason == "locked" {
                "locked"
            } else {
                "failure"
            });
            let detail = json!({"login": creds.login, "reason": reason});
            let failure = Self::event(
                "login.failure",
                user.as_ref(),
                caller,
                user_agent.clone(),
                detail,
            );
            let _ = store.record_event(&failure, now).await;
            if let Some(locked) =
                self.lockout
                    .failed(user.as_ref().map(|u| u.id.as_str()), caller.ip, now)
                && let Some(u) = &user
            {
                if let Err(e) = store.set_locked_until(&u.id, Some(locked)).await {
                    tracing::error!(error = %e, "could not lock a user");
                }
                let lockout = Self::event(
                    "login.lockout",
                    Some(u),
                    caller,
                    user_agent,
                    json!({"until": locked}),
                );
                let _ = store.record_event(&lockout, now).await;
            }
            return Err(GatewayError::InvalidCredentials);
        };
        if let (Some(new_hash), Some(old_hash)) = (verified.rehash, stored_hash)
            && let Err(e) = store
                .upgrade_password_hash(&user.id, &old_hash, &new_hash)
                .await
        {
            tracing::warn!(error = %e, "could not upgrade a password hash");
        }
        self.lockout.succeeded(&user.id);
        self.count_attempt("success");
        Ok(user.clone())
    }

    fn rate_limit(&self, caller: &Caller) -> Result<(), GatewayError> {
        match self.lockout.admit(caller.ip, self.sessions.now()) {
            Admission::Allowed => Ok(()),
            Admission::Limited { retry_after } => {
                self.count_attempt("rate_limited");
                Err(GatewayError::TooManyRequests { retry_after })
            }
        }
    }

    async fn login(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        self.rate_limit(&caller)?;
        let creds = self.read_credentials(session).await?;
        if creds.from_form {
            let cookie =
                headers::cookie_value(session.req_header(), self.csrf_cookie_name()).unwrap_or("");
            let sent = creds.csrf.as_deref().unwrap_or("");
            if cookie.is_empty() || !constant_time_eq(cookie.as_bytes(), sent.as_bytes()) {
                return Err(GatewayError::CsrfFailed);
            }
        }
        let user_agent = Self::user_agent(session);
        let user = match self
            .check_credentials(&creds, &caller, user_agent.clone())
            .await
        {
            Ok(user) => user,
            Err(GatewayError::InvalidCredentials)
                if creds.from_form && respond::accepts_html(session) =>
            {
                return self
                    .login_page(
                        session,
                        Some("Wrong username or password."),
                        &creds.login,
                        StatusCode::UNAUTHORIZED,
                    )
                    .await;
            }
            Err(err) => return Err(err),
        };
        if let Some(old) = caller.session_token.as_deref() {
            let _ = self.sessions.destroy(old).await;
        }
        let created = self
            .sessions
            .create(&user, caller.ip_text(), user_agent.clone())
            .await
            .map_err(|_| GatewayError::Unavailable("the user database"))?;
        let store = self.store()?;
        let success = Self::event("login.success", Some(&user), &caller, user_agent, json!({}));
        let _ = store.record_event(&success, self.sessions.now()).await;
        let cookie = (header::SET_COOKIE, self.sessions.cookie(&created.token));
        if creds.from_form {
            let target = creds
                .return_to
                .as_deref()
                .and_then(|r| safe_return_to(r, &self.sessions.settings().return_to_hosts))
                .unwrap_or_else(|| "/".to_string());
            return respond::send(
                session,
                StatusCode::SEE_OTHER,
                "text/plain; charset=utf-8",
                bytes::Bytes::new(),
                &[
                    cookie,
                    (header::LOCATION, target),
                    (header::CACHE_CONTROL, "no-store".into()),
                ],
            )
            .await
            .map_err(|_| GatewayError::Internal);
        }
        respond::json(session, StatusCode::OK, &user.public_json(), &[cookie])
            .await
            .map_err(|_| GatewayError::Internal)
    }

    /// `POST /token`: credentials in JSON, or the caller's session → a bearer access token.
    async fn token(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        let has_body = session
            .req_header()
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
            || session
                .req_header()
                .headers
                .contains_key(header::TRANSFER_ENCODING);
        let user_agent = Self::user_agent(session);
        let (user, from_session) = if has_body {
            self.rate_limit(&caller)?;
            let creds = self.read_credentials(session).await?;
            if creds.from_form {
                return Err(GatewayError::UnsupportedMediaType);
            }
            let user = self
                .check_credentials(&creds, &caller, user_agent.clone())
                .await?;
            (user, None)
        } else {
            // Renewal needs the session: a bearer token alone could otherwise renew itself
            // forever, and a token must end with the session it came from.
            if caller.via_bearer {
                return Err(GatewayError::SessionRequired);
            }
            let principal = caller
                .principal
                .as_ref()
                .ok_or(GatewayError::Unauthenticated)?;
            let from_session = caller
                .session_token
                .as_deref()
                .and_then(|t| self.sessions.id_of(t))
                .ok_or(GatewayError::Unauthenticated)?;
            let user = self
                .store()?
                .user_by_id(&principal.user_id)
                .await
                .map_err(|_| GatewayError::Unavailable("the user database"))?
                .ok_or(GatewayError::Unauthenticated)?;
            (user, Some(from_session))
        };
        let issued = self.tokens.issue(&user, from_session).map_err(|e| {
            tracing::error!(error = %e, "could not sign a token");
            GatewayError::Internal
        })?;
        let store = self.store()?;
        let event = Self::event(
            "token.issued",
            Some(&user),
            &caller,
            user_agent,
            json!({"expires_in": issued.expires_in}),
        );
        let _ = store.record_event(&event, self.sessions.now()).await;
        let body = json!({
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        });
        respond::json(session, StatusCode::OK, &body, &[])
            .await
            .map_err(|_| GatewayError::Internal)
    }

    async fn logout(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        if let Some(token) = caller.session_token.as_deref() {
            let ended = self
                .sessions
                .destroy(token)
                .await
                .map_err(|_| GatewayError::Unavailable("the user database"))?;
            if ended && let (Some(p), Ok(store)) = (&caller.principal, self.store()) {
                let event = NewEvent {
                    kind: "logout".into(),
                    user_id: Some(p.user_id.clone()),
                    ip: caller.ip_text(),
                    ..NewEvent::default()
                };
                let _ = store.record_event(&event, self.sessions.now()).await;
            }
        }
        let clear = (header::SET_COOKIE, self.sessions.clearing_cookie());
        respond::send(
            session,
            StatusCode::NO_CONTENT,
            "text/plain",
            bytes::Bytes::new(),
            &[clear, (header::CACHE_CONTROL, "no-store".into())],
        )
        .await
        .map_err(|_| GatewayError::Internal)
    }

    async fn me(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        let principal = caller.principal.ok_or(GatewayError::Unauthenticated)?;
        let user = self
            .store()?
            .user_by_id(&principal.user_id)
            .await
            .map_err(|_| GatewayError::Unavailable("the user database"))?
            .ok_or(GatewayError::Unauthenticated)?;
        respond::json(session, StatusCode::OK, &user.public_json(), &[])
            .await
            .map_err(|_| GatewayError::Internal)
    }
}
