//! Asset routes: request path → object key → the object, streamed from the filesystem here or
//! from S3 through Pingora's upstream phases, or a 302 to an expiring link. Also postern-signed
//! links (`/_postern/signed/…`) and the link endpoint (`/_postern/assets/url`).

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, header};
use pingora::ErrorType;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::respond;
use crate::auth::Clock;
use crate::config::{AssetRoute, DeniedAs};
use crate::error::GatewayError;
use crate::metrics::{Metrics, status_class};
use crate::objects::conditional::{self, Conditions, Precondition, RangeRequest};
use crate::objects::disposition::{self, InlineTypes, SANDBOX_POLICY};
use crate::objects::fs::{FsError, FsObject};
use crate::objects::{
    KeyError, KeyTemplate, LinkSigner, ObjectStore, ObjectStores, decode_object_path, encode_key,
};
use crate::policy::Principal;

/// Bytes read from a file per write to the client: enough for throughput, small enough that
/// memory stays flat whatever the object's size.
const CHUNK: usize = 128 * 1024;
/// How much of an S3 error body is kept to log its `<Code>`.
const ERROR_SAMPLE: usize = 2048;
/// Request headers S3 needs; nothing else the client sent reaches it.
const FORWARDED_TO_S3: [header::HeaderName; 6] = [
    header::RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];
/// Response headers passed back from S3; `x-amz-*`, `Server` and the rest are dropped.
const PASSED_FROM_S3: [header::HeaderName; 11] = [
    header::TRANSFER_ENCODING,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::CONTENT_ENCODING,
    header::CONTENT_DISPOSITION,
    header::CONTENT_LANGUAGE,
    header::ETAG,
    header::LAST_MODIFIED,
    header::ACCEPT_RANGES,
    header::DATE,
];

/// One object read, carried across the proxy phases.
#[derive(Debug)]
pub struct AssetRequest {
    pub store: usize,
    pub key: String,
    pub cache_control: String,
    /// Types shown inline; others are sent as attachments.
    pub inline_types: Arc<InlineTypes>,
    pub head: bool,
    /// postern's own error body replacing what S3 sent.
    pub replacement: Option<Bytes>,
    pub error_sample: Vec<u8>,
    pub upstream_status: u16,
    pub bytes: u64,
    /// Set when the login the request came in on has ended (`cut_on_revoke`).
    pub cut: Option<super::cut::CutSignal>,
}

impl AssetRequest {
    fn op(&self) -> &'static str {
        if self.head { "head" } else { "get" }
    }
}

pub struct Assets {
    stores: Arc<ObjectStores>,
    links: LinkSigner,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Where signed links live, e.g. `/_postern/signed/`; `None` without a builtin route.
    signed_prefix: Option<String>,
}

fn key_error(e: KeyError) -> GatewayError {
    match e {
        KeyError::Empty => GatewayError::ObjectNotFound,
        KeyError::UnsafeUser => GatewayError::Forbidden,
        KeyError::DotSegment => GatewayError::BadPath("'.' and '..' segments are not allowed"),
        KeyError::NotUtf8 => GatewayError::BadPath("the object path is not valid UTF-8"),
        KeyError::Forbidden => GatewayError::BadPath(
            "encoded slashes, backslashes and control characters are not allowed",
        ),
    }
}

/// What a `403` from S3 becomes, as the store is configured.
pub fn store_denied(denied_as: DeniedAs) -> GatewayError {
    match denied_as {
        DeniedAs::Forbidden => GatewayError::StoreDenied,
        DeniedAs::NotFound => GatewayError::ObjectNotFound,
    }
}

fn io_error(e: std::io::Error) -> Box<pingora::Error> {
    pingora::Error::because(ErrorType::ReadError, "reading an object file", e)
}

/// Headers that keep an object from running as active content on the gateway's origin: the
/// sandbox policy always, and `attachment` for a type that is not shown inline (replacing any
/// disposition the store recorded).
fn protect(
    resp: &mut ResponseHeader,
    asset: &AssetRequest,
    content_type: &str,
) -> pingora::Result<()> {
    resp.insert_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
    resp.insert_header(header::CONTENT_SECURITY_POLICY, SANDBOX_POLICY)?;
    if let Some(value) = disposition::attachment(&asset.key, content_type, &asset.inline_types) {
        resp.insert_header(header::CONTENT_DISPOSITION, value)?;
    }
    Ok(())
}

fn header_text<'a>(req: &'a RequestHeader, name: &header::HeaderName) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

impl Assets {
    pub fn new(
        stores: Arc<ObjectStores>,
        links: LinkSigner,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        builtin_prefix: Option<&str>,
    ) -> Self {
        Self {
            stores,
            links,
            clock,
            metrics,
            signed_prefix: builtin_prefix.map(|p| format!("{}/signed/", p.trim_end_matches('/'))),
        }
    }

    /// The object key for the rest of an asset route's path and the caller.
    pub fn key_for(
        route: &AssetRoute,
        rest: &str,
        principal: Option<&Principal>,
    ) -> Result<String, GatewayError> {
        let path = decode_object_path(rest).map_err(key_error)?;
        KeyTemplate::render(&route.key_template, &path, principal).map_err(key_error)
    }

    /// `?expiresIn=SECONDS`, capped by `max`; `max` when absent.
    pub fn expires_in(query: Option<&str>, max: Duration) -> Result<Duration, GatewayError> {
        let asked = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "expiresIn")
            .map(|(_, v)| v.into_owned());
        match asked {
            None => Ok(max),
            Some(text) => match text.parse::<u64>() {
                Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs).min(max)),
                _ => Err(GatewayError::Validation {
                    field: "expiresIn",
                    message: "must be a positive whole number of seconds".into(),
                }),
            },
        }
    }

    /// An expiring URL for `key`: presigned for S3, postern-signed otherwise. Returns the URL
    /// and its expiry (unix seconds).
    pub fn link(
        &self,
        store: usize,
        key: &str,
        ttl: Duration,
    ) -> Result<(String, i64), GatewayError> {
        let object_store = self.stores.get(store).ok_or(GatewayError::Internal)?;
        let now = self.clock.system_time();
        let expires_at = self.clock.now() + ttl.as_secs() as i64;
        let url = match object_store {
            ObjectStore::S3(s3) => s3.presign(key, ttl, now).map_err(|e| {
                tracing::warn!(store = s3.name(), error = %e, "cannot presign");
                GatewayError::Unavailable("the object store's credentials")
            })?,
            ObjectStore::Fs(fs) => {
                let prefix = self
                    .signed_prefix
                    .as_deref()
                    .ok_or(GatewayError::NotImplemented(
                        "signed links without a builtin route",
                    ))?;
                let path = format!("{prefix}{}/{}", fs.name, encode_key(key));
                let query = self.links.sign("GET", &path, expires_at);
                format!("{path}?{query}")
            }
        };
        self.metrics
            .presigned
            .with_label_values(&[object_store.name()])
            .inc();
        Ok((url, expires_at))
    }

    /// `rest` below the builtin prefix, `/signed/STORE/KEY`, checked against its signature.
    pub fn verify_signed(
        &self,
        method: &Method,
        rest: &str,
        query: Option<&str>,
    ) -> Result<(usize, String), GatewayError> {
        let prefix = self
            .signed_prefix
            .as_deref()
            .ok_or(GatewayError::UnknownEndpoint)?;
        let below = rest
            .strip_prefix("/signed/")
            .ok_or(GatewayError::UnknownEndpoint)?;
        let (store_name, encoded_key) =
            below.split_once('/').ok_or(GatewayError::ObjectNotFound)?;
        let store = self
            .stores
            .index_of(store_name)
            .ok_or(GatewayError::BadSignature)?;
        let key = decode_object_path(encoded_key).map_err(key_error)?;
        let canonical = format!("{prefix}{store_name}/{}", encode_key(&key));
        self.links
            .verify(method.as_str(), &canonical, query, self.clock.now())?;
        Ok((store, key))
    }

    /// Checks the `sig` of an image parameter set (see [`LinkSigner::sign_transform`]).
    pub fn verify_transform(&self, path: &str, canonical: &str, signature: &str) -> bool {
        self.links.verify_transform(path, canonical, signature)
    }

    pub fn store(&self, index: usize) -> Option<&ObjectStore> {
        self.stores.get(index)
    }

    /// Counts a finished object read.
    pub fn record(&self, asset: &AssetRequest, status: u16) {
        let Some(store) = self.stores.get(asset.store) else {
            return;
        };
        let name = store.name();
        self.metrics
            .store_requests
            .with_label_values(&[name, asset.op(), status_class(status)])
            .inc();
        if asset.bytes > 0 {
            self.metrics
                .store_bytes
                .with_label_values(&[name])
                .inc_by(asset.bytes);
        }
    }

    /// Opens `key` in the filesystem store `store`; a key resolving outside the root is logged
    /// and reads as missing.
    pub async fn open_file(&self, store: usize, key: &str) -> Result<FsObject, GatewayError> {
        let Some(ObjectStore::Fs(fs)) = self.stores.get(store) else {
            return Err(GatewayError::Internal);
        };
        fs.open(key).await.map_err(|e| match e {
            FsError::NotFound => GatewayError::ObjectNotFound,
            FsError::Escapes => {
                tracing::warn!(store = %fs.name, %key, "object resolves outside the store's root");
                GatewayError::ObjectNotFound
            }
            FsError::Io(e) => {
                tracing::error!(store = %fs.name, error = %e, "cannot open an object");
                GatewayError::StoreUnavailable
            }
            // Only writes report it.
            FsError::Exists => GatewayError::StoreUnavailable,
        })
    }

    /// Serves `asset` from a filesystem store. Inner `Err`: an error still answerable; outer
    /// `Err`: the response was under way and the connection must end.
    pub async fn serve_file(
        &self,
        session: &mut Session,
        asset: &mut AssetRequest,
        extra_headers: &[(&'static str, String)],
    ) -> pingora::Result<Result<u16, GatewayError>> {
        let object = match self.open_file(asset.store, &asset.key).await {
            Ok(object) => object,
            Err(err) => return Ok(Err(err)),
        };
        let req = session.req_header();
        let conditions = Conditions {
            if_match: header_text(req, &header::IF_MATCH),
            if_none_match: header_text(req, &header::IF_NONE_MATCH),
            if_modified_since: header_text(req, &header::IF_MODIFIED_SINCE),
            if_unmodified_since: header_text(req, &header::IF_UNMODIFIED_SINCE),
            if_range: header_text(req, &header::IF_RANGE),
        };
        let mut resp = ResponseHeader::build(StatusCode::OK, Some(10))?;
        resp.insert_header(header::ETAG, object.etag.as_str())?;
        resp.insert_header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(object.modified),
        )?;
        resp.insert_header(header::CACHE_CONTROL, asset.cache_control.as_str())?;
        resp.insert_header(header::ACCEPT_RANGES, "bytes")?;
        protect(&mut resp, asset, &object.content_type)?;
        for (name, value) in extra_headers {
            resp.append_header(*name, value.as_str())?;
        }
        match conditional::evaluate(&conditions, &object.etag, object.modified) {
            Precondition::Failed => return Ok(Err(GatewayError::PreconditionFailed)),
            Precondition::NotModified => {
                resp.set_status(StatusCode::NOT_MODIFIED)?;
                crate::services::drain::close_if_leaving(session);
                session.write_response_header(Box::new(resp), true).await?;
                return Ok(Ok(304));
            }
            Precondition::Proceed => {}
        }
        let range = conditional::ranges(
            header_text(req, &header::RANGE),
            &conditions,
            &object.etag,
            object.modified,
            object.size,
        );
        let status = match range {
            RangeRequest::Unsatisfiable => {
                resp.set_status(StatusCode::RANGE_NOT_SATISFIABLE)?;
                resp.insert_header(header::CONTENT_RANGE, format!("bytes */{}", object.size))?;
                resp.insert_header(header::CONTENT_LENGTH, "0")?;
                crate::services::drain::close_if_leaving(session);
                session.write_response_header(Box::new(resp), true).await?;
                return Ok(Ok(416));
            }
            RangeRequest::Full => {
                resp.insert_header(header::CONTENT_TYPE, object.content_type.as_str())?;
                resp.insert_header(header::CONTENT_LENGTH, object.size.to_string())?;
                self.write_parts(session, resp, object, &[], asset).await?;
                200
            }
            RangeRequest::Partial(ranges) => {
                resp.set_status(StatusCode::PARTIAL_CONTENT)?;
                self.write_parts(session, resp, object, &ranges, asset)
                    .await?;
                206
            }
        };
        Ok(Ok(status))
    }

    /// Writes the whole object (`ranges` empty), one range, or `multipart/byteranges`.
    async fn write_parts(
        &self,
        session: &mut Session,
        mut resp: ResponseHeader,
        mut object: FsObject,
        ranges: &[(u64, u64)],
        asset: &mut AssetRequest,
    ) -> pingora::Result<()> {
        let size = object.size;
        let content_range = |(start, end): (u64, u64)| format!("bytes {start}-{end}/{size}");
        let mut pieces: Vec<(Option<Bytes>, u64, u64)> = Vec::new();
        let mut closing = None;
        match ranges {
            [] => pieces.push((None, 0, size)),
            [single] => {
                resp.insert_header(header::CONTENT_TYPE, object.content_type.as_str())?;
                resp.insert_header(header::CONTENT_RANGE, content_range(*single))?;
                resp.insert_header(
                    header::CONTENT_LENGTH,
                    (single.1 - single.0 + 1).to_string(),
                )?;
                pieces.push((None, single.0, single.1 - single.0 + 1));
            }
            many => {
                let boundary = format!("postern-{:016x}", rand::random::<u64>());
                let mut total = 0u64;
                for &(start, end) in many {
                    let part_head = format!(
                        "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Range: {}\r\n\r\n",
                        object.content_type,
                        content_range((start, end))
                    );
                    total += part_head.len() as u64 + (end - start + 1);
                    pieces.push((Some(Bytes::from(part_head)), start, end - start + 1));
                }
                let end = Bytes::from(format!("\r\n--{boundary}--\r\n"));
                total += end.len() as u64;
                closing = Some(end);
                resp.insert_header(
                    header::CONTENT_TYPE,
                    format!("multipart/byteranges; boundary={boundary}"),
                )?;
                resp.insert_header(header::CONTENT_LENGTH, total.to_string())?;
            }
        }
        let nothing_to_send = asset.head || pieces.iter().all(|p| p.0.is_none() && p.2 == 0);
        crate::services::drain::close_if_leaving(session);
        session
            .write_response_header(Box::new(resp), nothing_to_send)
            .await?;
        if nothing_to_send {
            return Ok(());
        }
        let last_piece = pieces.len() - 1;
        for (i, (part_head, start, len)) in pieces.into_iter().enumerate() {
            if let Some(part_head) = part_head {
                session.write_response_body(Some(part_head), false).await?;
            }
            let ends_stream = i == last_piece && closing.is_none();
            self.copy_file(session, &mut object.file, start, len, ends_stream, asset)
                .await?;
        }
        if let Some(closing) = closing {
            session.write_response_body(Some(closing), true).await?;
        }
        Ok(())
    }

    async fn copy_file(
        &self,
        session: &mut Session,
        file: &mut tokio::fs::File,
        start: u64,
        len: u64,
        ends_stream: bool,
        asset: &mut AssetRequest,
    ) -> pingora::Result<()> {
        file.seek(SeekFrom::Start(start)).await.map_err(io_error)?;
        let mut left = len;
        while left > 0 {
            if asset
                .cut
                .as_ref()
                .is_some_and(super::cut::CutSignal::is_cut)
            {
                return Err(pingora::Error::explain(
                    pingora::ErrorType::ConnectionClosed,
                    "the login this download started under has ended",
                ));
            }
            let n = left.min(CHUNK as u64) as usize;
            let mut buf = BytesMut::zeroed(n);
            file.read_exact(&mut buf).await.map_err(io_error)?;
            left -= n as u64;
            asset.bytes += n as u64;
            session
                .write_response_body(Some(buf.freeze()), ends_stream && left == 0)
                .await?;
        }
        Ok(())
    }

    /// The request postern sends to S3 for `asset`: only what S3 needs, signed.
    pub fn s3_request(
        &self,
        asset: &AssetRequest,
        client: &RequestHeader,
    ) -> pingora::Result<RequestHeader> {
        let Some(ObjectStore::S3(s3)) = self.stores.get(asset.store) else {
            return Err(pingora::Error::explain(
                ErrorType::InternalError,
                "not an S3 store",
            ));
        };
        let method = if asset.head {
            Method::HEAD
        } else {
            Method::GET
        };
        let path = s3.object_path(&asset.key);
        let mut req = RequestHeader::build(method.clone(), path.as_bytes(), Some(12))?;
        req.insert_header(header::HOST, s3.authority())?;
        for name in &FORWARDED_TO_S3 {
            if let Some(value) = client.headers.get(name) {
                let multi_range = *name == header::RANGE
                    && value.to_str().map_or(true, conditional::is_multi_range);
                if !multi_range {
                    req.insert_header(name.clone(), value.clone())?;
                }
            }
        }
        let signed = s3
            .sign_headers(method.as_str(), &path, self.clock.system_time())
            .map_err(|e| pingora::Error::because(ErrorType::InternalError, "signing", e))?;
        for (name, value) in signed {
            req.insert_header(name, value)?;
        }
        Ok(req)
    }

    /// Rewrites S3's response: its own headers dropped, errors turned into postern's.
    pub fn s3_response(
        &self,
        asset: &mut AssetRequest,
        resp: &mut ResponseHeader,
        wants_html: bool,
        extra_headers: &[(&'static str, String)],
    ) -> pingora::Result<()> {
        let status = resp.status.as_u16();
        asset.upstream_status = status;
        let error = match status {
            200 | 206 | 304 => None,
            404 => Some(GatewayError::ObjectNotFound),
            403 => Some(match self.stores.get(asset.store) {
                Some(ObjectStore::S3(s3)) => store_denied(s3.settings.access_denied),
                _ => GatewayError::StoreDenied,
            }),
            412 => Some(GatewayError::PreconditionFailed),
            416 => Some(GatewayError::RangeNotSatisfiable),
            500..=599 => Some(GatewayError::StoreUnavailable),
            _ => Some(GatewayError::StoreRejected),
        };
        let mut out = ResponseHeader::build(
            error.as_ref().map_or(resp.status, GatewayError::status),
            Some(12),
        )?;
        if let Some(err) = error {
            let (content_type, body) = respond::error_body(wants_html, &err);
            out.insert_header(header::CONTENT_TYPE, content_type)?;
            out.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
            out.insert_header(header::CACHE_CONTROL, "no-store")?;
            if status == 416
                && let Some(range) = resp.headers.get(header::CONTENT_RANGE)
            {
                out.insert_header(header::CONTENT_RANGE, range.clone())?;
            }
            asset.replacement = Some(Bytes::from(body));
        } else {
            for name in &PASSED_FROM_S3 {
                if let Some(value) = resp.headers.get(name) {
                    out.insert_header(name.clone(), value.clone())?;
                }
            }
            out.insert_header(header::CACHE_CONTROL, asset.cache_control.as_str())?;
            let content_type = resp
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream");
            protect(&mut out, asset, content_type)?;
        }
        for (name, value) in extra_headers {
            out.append_header(*name, value.as_str())?;
        }
        *resp = out;
        Ok(())
    }

    /// S3's body: counted and passed on, or (for errors) sampled for the log and replaced.
    pub fn s3_body(&self, asset: &mut AssetRequest, body: &mut Option<Bytes>, end: bool) {
        if asset.replacement.is_none() {
            if let Some(chunk) = body {
                asset.bytes += chunk.len() as u64;
            }
            return;
        }
        if let Some(chunk) = body.take() {
            let room = ERROR_SAMPLE.saturating_sub(asset.error_sample.len());
            asset
                .error_sample
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if end {
            let code = s3_error_code(&asset.error_sample).unwrap_or("-");
            let store = self.stores.get(asset.store).map_or("", ObjectStore::name);
            tracing::warn!(store, status = asset.upstream_status, s3_code = code, key = %asset.key, "object store answered with an error");
            let replacement = asset.replacement.take();
            if !asset.head {
                *body = replacement;
            }
        }
    }
}

/// `<Code>NoSuchKey</Code>` from an S3 error document.
fn s3_error_code(xml: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(xml).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_is_capped_and_checked() {
        let max = Duration::from_secs(3600);
        assert_eq!(Assets::expires_in(None, max).unwrap(), max);
        assert_eq!(
            Assets::expires_in(Some("expiresIn=60"), max).unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            Assets::expires_in(Some("a=1&expiresIn=999999"), max).unwrap(),
            max
        );
        assert!(Assets::expires_in(Some("expiresIn=0"), max).is_err());
        assert!(Assets::expires_in(Some("expiresIn=-5"), max).is_err());
        assert!(Assets::expires_in(Some("expiresIn=soon"), max).is_err());
    }

    #[test]
    fn error_codes_from_s3_documents() {
        let xml = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>";
        assert_eq!(s3_error_code(xml), Some("SignatureDoesNotMatch"));
        assert_eq!(s3_error_code(b"nope"), None);
    }
}
