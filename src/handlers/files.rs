//! The file API of an upload route (JSON): `POST` multipart uploads, listing, one file with a
//! fresh link, its content, `PATCH`, `DELETE`, listing by entity, and sync. Each user sees only
//! their own files here; administrators manage everyone's through the admin API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use pingora::proxy::Session;
use serde_json::{Value, json};

use super::same_site;
use crate::error::GatewayError;
use crate::files::{
    ChunkSource, FileError, Files, Meta, Owner, Upload, UploadError, UploadRoute, check_alt,
    check_entity,
};
use crate::policy::Principal;
use crate::proxy::assets::Assets;
use crate::proxy::{body, respond};
use crate::store::{FileFilter, FileRecord, FileUpdate};

/// Field names that carry files.
const FILE_FIELDS: &[&str] = &["file", "files", "files[]"];
/// Text fields an upload may send (before its files).
const TEXT_FIELDS: &[(&str, u64)] = &[
    ("folder", 256),
    ("alt", 4096),
    ("entity_type", 256),
    ("entity_id", 256),
    ("acl", 256),
];
/// Framing the parser may hold at once: a preamble, plus per part its boundary and headers, on top
/// of what it buffers of a file between reads.
const MAX_FRAMING: u64 = 256 << 10;
const MAX_PART_FRAMING: u64 = 4 << 10;
/// After a refused upload, how much of the rest of the body is read (and dropped) so that the
/// client sees the answer instead of a reset connection; a longer body closes the connection.
const DRAIN_LIMIT: u64 = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);
const DEFAULT_LINK_TTL: Duration = Duration::from_secs(3600);
const MAX_PAGE: i64 = 200;
const MAX_PATCH_BODY: usize = 16 * 1024;

/// What the proxy does after the handler: nothing more, or stream an object.
pub enum FileOutcome {
    Done,
    Serve { store: usize, key: String },
}

/// One upload route's file API, as the proxy calls it.
pub struct FileRequest<'a> {
    pub route_name: &'a str,
    /// The route's path prefix (`/_postern/files`), for the links in records.
    pub prefix: &'a str,
    pub route: &'a UploadRoute,
    pub principal: &'a Principal,
    /// Authenticated by the session cookie (so CSRF rules apply to writes).
    pub by_cookie: bool,
    pub origin_allowed: bool,
    pub csrf_cookie: &'a str,
    pub ip: Option<String>,
    pub body_timeout: Duration,
}

/// The record as clients see it.
pub fn record_json(record: &FileRecord, prefix: &str) -> Value {
    let href = format!("{}/{}", prefix.trim_end_matches('/'), record.id);
    json!({
        "id": record.id,
        "owner": record.owner_id,
        "route": record.route,
        "store": record.store,
        "key": record.key,
        "original_key": record.original_key,
        "name": record.name,
        "content_type": record.content_type,
        "size": record.size,
        "sha256": record.sha256,
        "etag": record.etag,
        "width": record.width,
        "height": record.height,
        "acl": record.acl,
        "folder": record.folder,
        "alt": record.alt,
        "entity_type": record.entity_type,
        "entity_id": record.entity_id,
        "state": record.state,
        "created_at": record.created_at,
        "content": format!("{href}/content"),
        "href": href,
    })
}

pub fn file_error(e: FileError) -> GatewayError {
    match e {
        FileError::NotFound => GatewayError::Missing("file"),
        FileError::Invalid {
            field: "acl",
            message,
        } => GatewayError::AclRefused(message),
        FileError::Invalid { field, message } => GatewayError::Validation { field, message },
        FileError::Store(message) => {
            tracing::warn!(error = %message, "object store failed for a file request");
            GatewayError::StoreUnavailable
        }
        FileError::Database(e) => {
            tracing::warn!(error = %e, "database failed for a file request");
            GatewayError::Unavailable("the user database")
        }
        FileError::Unavailable => GatewayError::Unavailable("the user database"),
        FileError::SyncUnavailable(message) => GatewayError::SyncUnavailable(message),
    }
}

fn upload_error(e: UploadError) -> GatewayError {
    match e {
        UploadError::TooLarge { limit } => GatewayError::FileTooLarge { limit },
        UploadError::TooMany { limit } => GatewayError::TooManyFiles { limit },
        UploadError::TypeRefused { found } => GatewayError::FileTypeRefused(found),
        UploadError::Invalid(e) => file_error(e),
        UploadError::Incomplete(message) => GatewayError::UploadIncomplete(message),
        UploadError::Timeout => GatewayError::UploadTimeout,
        UploadError::Taken => GatewayError::Conflict("a file with this name already exists".into()),
        UploadError::Store(message) => {
            tracing::warn!(error = %message, "object store failed during an upload");
            GatewayError::StoreUnavailable
        }
        UploadError::StorageFull => {
            tracing::warn!("an upload failed: the store's filesystem is full");
            GatewayError::InsufficientStorage
        }
        UploadError::Database(e) => {
            tracing::warn!(error = %e, "database failed during an upload");
            GatewayError::Unavailable("the user database")
        }
        UploadError::Unavailable => GatewayError::Unavailable("the user database"),
        UploadError::Image(e) => match e {
            crate::images::RenderError::Pool(_) => GatewayError::ImageBusy,
            crate::images::RenderError::Image(e) => match e {
                crate::images::pipeline::ImageError::TooLarge { .. }
                | crate::images::pipeline::ImageError::OutputTooLarge { .. } => {
                    GatewayError::ImageTooLarge(e.to_string())
                }
                _ => GatewayError::CorruptImage,
            },
        },
    }
}

/// The result label of `postern_uploads_total`.
fn result_label(err: &GatewayError) -> &'static str {
    match err {
        GatewayError::FileTooLarge { .. } | GatewayError::PayloadTooLarge { .. } => "too_large",
        GatewayError::TooManyFiles { .. } => "too_many",
        GatewayError::FileTypeRefused(_) => "type_refused",
        GatewayError::UploadIncomplete(_) | GatewayError::UploadTimeout => "aborted",
        GatewayError::StoreUnavailable
        | GatewayError::InsufficientStorage
        | GatewayError::Unavailable(_)
        | GatewayError::ImageBusy
        | GatewayError::Internal => "failed",
        _ => "refused",
    }
}

/// What the body stream and the parser share: bytes read from the client, bytes handed out as
/// field data, and why reading stopped. The difference is framing (preamble, boundaries, part
/// headers) plus what the parser holds; it is bounded, because the parser keeps unparsed framing
/// in one buffer that it scans again on every read.
#[derive(Default)]
struct BodyMeter {
    fed: AtomicU64,
    delivered: AtomicU64,
    timed_out: AtomicBool,
    framing_exceeded: AtomicBool,
}

impl BodyMeter {
    fn deliver(&self, len: usize) {
        self.delivered.fetch_add(len as u64, Ordering::Relaxed);
    }

    fn held(&self) -> u64 {
        self.fed
            .load(Ordering::Relaxed)
            .saturating_sub(self.delivered.load(Ordering::Relaxed))
    }
}

/// Hands the parser one chunk per poll. The parser otherwise takes every chunk that is ready
/// before it parses any (a fast client would fill its buffer up to the whole body); paced, it
/// holds one chunk beyond what it has parsed, and reading follows the upload's own pace.
struct Paced<S> {
    inner: std::pin::Pin<Box<S>>,
    just_yielded: bool,
}

impl<S> Paced<S> {
    fn new(inner: S) -> Self {
        Self {
            inner: Box::pin(inner),
            just_yielded: false,
        }
    }
}

impl<S: futures_util::Stream> futures_util::Stream for Paced<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.just_yielded {
            self.just_yielded = false;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let item = self.inner.as_mut().poll_next(cx);
        if matches!(item, std::task::Poll::Ready(Some(_))) {
            self.just_yielded = true;
        }
        item
    }
}

/// A multipart field as the upload pipeline reads it.
struct FieldSource<'r> {
    field: multer::Field<'r>,
    file_limit: u64,
    meter: Arc<BodyMeter>,
}

#[async_trait::async_trait]
impl ChunkSource for FieldSource<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, UploadError> {
        let chunk = self
            .field
            .chunk()
            .await
            .map_err(|e| multipart_error(e, self.file_limit, &self.meter))?;
        if let Some(chunk) = &chunk {
            self.meter.deliver(chunk.len());
        }
        Ok(chunk)
    }
}

fn multipart_error(e: multer::Error, file_limit: u64, meter: &BodyMeter) -> UploadError {
    if meter.timed_out.load(Ordering::Relaxed) {
        return UploadError::Timeout;
    }
    if meter.framing_exceeded.load(Ordering::Relaxed) {
        return UploadError::Incomplete(
            "the multipart framing (preamble, boundaries, part headers) is larger than allowed"
                .into(),
        );
    }
    match e {
        multer::Error::FieldSizeExceeded {
            field_name: Some(name),
            ..
        } if TEXT_FIELDS.iter().any(|(n, _)| *n == name) => {
            let limit = TEXT_FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, l)| *l);
            UploadError::Invalid(FileError::Invalid {
                field: "body",
                message: format!("the {name} field is longer than {limit} bytes"),
            })
        }
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            UploadError::TooLarge { limit: file_limit }
        }
        multer::Error::UnknownField { field_name } => UploadError::Invalid(FileError::Invalid {
            field: "body",
            message: format!(
                "unknown field {:?}: send file or files[], and before them folder, alt, acl, entity_type, entity_id",
                field_name.unwrap_or_default()
            ),
        }),
        other => UploadError::Incomplete(other.to_string()),
    }
}

fn query_map(session: &Session) -> HashMap<String, String> {
    session
        .req_header()
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// `limit` (1 to 200, default 50) and `offset` from the query.
pub fn paging(query: &HashMap<String, String>) -> Result<(i64, i64), GatewayError> {
    let number = |name: &'static str, default: i64, max: i64| match query.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=max).contains(n))
            .ok_or(GatewayError::Validation {
                field: name,
                message: format!("must be a whole number from 0 to {max}"),
            }),
    };
    let limit = number("limit", 50, MAX_PAGE)?.max(1);
    let offset = number("offset", 0, i64::MAX)?;
    Ok((limit, offset))
}

/// The listing filters a query may set (besides owner and route).
pub fn list_filter(query: &HashMap<String, String>) -> Result<FileFilter, GatewayError> {
    let (limit, offset) = paging(query)?;
    let entity = check_entity(
        query.get("entity_type").map(String::as_str),
        query.get("entity_id").map(String::as_str),
    )
    .or_else(
        |e| match (query.get("entity_type"), query.get("entity_id")) {
            // Listing every file attached to any entity of one type is fine.
            (Some(t), None) if crate::files::valid_entity_part(t) => Ok(None),
            _ => Err(e),
        },
    )
    .map_err(file_error)?;
    let content_type = query.get("content_type").cloned();
    if let Some(t) = &content_type
        && (t.len() > 100 || !t.contains('/'))
    {
        return Err(GatewayError::Validation {
            field: "content_type",
            message: "a type (image/png) or a family (image/)".into(),
        });
    }
    Ok(FileFilter {
        entity_type: entity
            .as_ref()
            .map(|(t, _)| t.clone())
            .or_else(|| query.get("entity_type").cloned()),
        entity_id: entity.map(|(_, id)| id),
        folder: query.get("folder").cloned(),
        content_type,
        limit,
        offset,
        ..FileFilter::default()
    })
}

/// What a `PATCH` body asks: `alt` (string or null), `entity_type` + `entity_id` (strings, or
/// both null to detach).
pub fn parse_update(body: &[u8]) -> Result<FileUpdate, GatewayError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| GatewayError::BadRequest("the body is not valid JSON"))?;
    let object = value
        .as_object()
        .ok_or(GatewayError::BadRequest("the body must be a JSON object"))?;
    let mut update = FileUpdate::default();
    for key in object.keys() {
        if !matches!(key.as_str(), "alt" | "entity_type" | "entity_id") {
            return Err(GatewayError::Validation {
                field: "body",
                message: format!("{key:?} cannot be changed (alt, entity_type, entity_id can)"),
            });
        }
    }
    let text = |name: &'static str| -> Result<Option<Option<String>>, GatewayError> {
        match object.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(GatewayError::Validation {
                field: name,
                message: "must be a string or null".into(),
            }),
        }
    };
    if let Some(alt) = text("alt")? {
        if let Some(alt) = &alt {
            check_alt(alt).map_err(file_error)?;
        }
        update.alt = Some(alt.filter(|a| !a.is_empty()));
    }
    match (text("entity_type")?, text("entity_id")?) {
        (None, None) => {}
        (Some(None), Some(None)) => update.entity = Some(None),
        (Some(Some(t)), Some(Some(id))) => {
            update.entity = Some(check_entity(Some(&t), Some(&id)).map_err(file_error)?);
        }
        _ => {
            return Err(GatewayError::Validation {
                field: "entity_type",
                message: "send entity_type and entity_id together (both null to detach)".into(),
            });
        }
    }
    Ok(update)
}

/// `?expiresIn=` capped by the route; an hour (or the cap, if shorter) when not asked.
pub fn link_ttl(session: &Session, cap: Duration) -> Result<Duration, GatewayError> {
    let query = session.req_header().uri.query();
    let asked =
        query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "expiresIn"));
    if asked {
        Assets::expires_in(query, cap)
    } else {
        Ok(DEFAULT_LINK_TTL.min(cap))
    }
}

/// The record with a fresh link to its object.
pub fn record_with_link(
    assets: &Assets,
    files: &Files,
    record: &FileRecord,
    prefix: &str,
    ttl: Duration,
) -> Result<Value, GatewayError> {
    let store = files
        .objects()
        .index_of(&record.store)
        .ok_or(GatewayError::StoreUnavailable)?;
    let (url, expires_at) = assets.link(store, &record.key, ttl)?;
    let mut value = record_json(record, prefix);
    if let Some(object) = value.as_object_mut() {
        object.insert("url".into(), json!(url));
        object.insert("expires_at".into(), json!(expires_at));
        object.insert("expires_in".into(), json!(ttl.as_secs()));
    }
    Ok(value)
}

pub struct FileApi {
    pub files: Arc<Files>,
}

impl FileApi {
    /// Serves `rest` (the path below the route's prefix).
    pub async fn handle(
        &self,
        session: &mut Session,
        rest: &str,
        req: FileRequest<'_>,
        assets: &Assets,
    ) -> Result<FileOutcome, GatewayError> {
        let method = session.req_header().method.clone();
        let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changes_state && req.by_cookie {
            same_site::check_script(session.req_header(), req.csrf_cookie, req.origin_allowed)?;
        }
        let segments: Vec<&str> = rest
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let owner = req.principal.user_id.as_str();
        match (segments.as_slice(), &method) {
            ([], &Method::POST) => self.upload(session, &req).await,
            ([], &Method::GET | &Method::HEAD) => {
                let mut filter = list_filter(&query_map(session))?;
                filter.owner_id = Some(owner.to_string());
                filter.route = Some(req.route_name.to_string());
                self.send_list(session, &filter, req.prefix).await
            }
            (["sync"], &Method::POST) => {
                let report = self
                    .files
                    .sync_user(
                        req.route_name,
                        req.route,
                        &Owner {
                            user_id: owner.to_string(),
                            username: req.principal.username.clone(),
                        },
                    )
                    .await
                    .map_err(file_error)?;
                send_json(session, StatusCode::OK, &json!(report)).await
            }
            (["entity", kind, id], &Method::GET | &Method::HEAD) => {
                let mut filter = list_filter(&query_map(session))?;
                let entity = check_entity(Some(kind), Some(id)).map_err(file_error)?;
                filter.entity_type = entity.as_ref().map(|(t, _)| t.clone());
                filter.entity_id = entity.map(|(_, id)| id);
                filter.owner_id = Some(owner.to_string());
                filter.route = Some(req.route_name.to_string());
                self.send_list(session, &filter, req.prefix).await
            }
            ([] | ["sync"] | ["entity", _, _], _) => Err(GatewayError::MethodNotAllowed),
            ([id], _) | ([id, "content"], _) => {
                let record = self.own_record(id, owner, req.route_name).await?;
                let content = segments.len() == 2;
                match (content, &method) {
                    (false, &Method::GET | &Method::HEAD) => {
                        let ttl = link_ttl(session, req.route.link_ttl)?;
                        let value =
                            record_with_link(assets, &self.files, &record, req.prefix, ttl)?;
                        send_json(session, StatusCode::OK, &value).await
                    }
                    (false, &Method::PATCH) => {
                        let body = body::read_small_body(session, MAX_PATCH_BODY, req.body_timeout)
                            .await?;
                        let update = parse_update(&body)?;
                        let updated = self
                            .files
                            .update(&record, &update)
                            .await
                            .map_err(file_error)?;
                        send_json(session, StatusCode::OK, &record_json(&updated, req.prefix)).await
                    }
                    (false, &Method::DELETE) => {
                        self.files
                            .delete(&record, None, req.ip.clone())
                            .await
                            .map_err(file_error)?;
                        respond::send(session, StatusCode::NO_CONTENT, "", Bytes::new(), &[])
                            .await
                            .map_err(|_| GatewayError::Internal)?;
                        Ok(FileOutcome::Done)
                    }
                    (true, &Method::GET | &Method::HEAD) => {
                        let store = self
                            .files
                            .objects()
                            .index_of(&record.store)
                            .ok_or(GatewayError::StoreUnavailable)?;
                        Ok(FileOutcome::Serve {
                            store,
                            key: record.key,
                        })
                    }
                    _ => Err(GatewayError::MethodNotAllowed),
                }
            }
            _ => Err(GatewayError::Missing("file")),
        }
    }

    /// The caller's record `id` uploaded through this route; anyone else's is "not found".
    async fn own_record(
        &self,
        id: &str,
        owner: &str,
        route_name: &str,
    ) -> Result<FileRecord, GatewayError> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(GatewayError::Missing("file"));
        }
        let record = self.files.get(id, Some(owner)).await.map_err(file_error)?;
        if record.route != route_name {
            return Err(GatewayError::Missing("file"));
        }
        Ok(record)
    }

    async fn send_list(
        &self,
        session: &mut Session,
        filter: &FileFilter,
        prefix: &str,
    ) -> Result<FileOutcome, GatewayError> {
        let (records, total) = self.files.list(filter).await.map_err(file_error)?;
        let body = json!({
            "files": records.iter().map(|r| record_json(r, prefix)).collect::<Vec<_>>(),
            "total": total,
            "limit": filter.limit,
            "offset": filter.offset,
        });
        send_json(session, StatusCode::OK, &body).await
    }

    async fn upload(
        &self,
        session: &mut Session,
        req: &FileRequest<'_>,
    ) -> Result<FileOutcome, GatewayError> {
        let route_label = req.route_name;
        let result = self.receive(session, req).await;
        let (status, body, label) = match result {
            Ok(records) => {
                let files: Vec<Value> =
                    records.iter().map(|r| record_json(r, req.prefix)).collect();
                (StatusCode::CREATED, json!({ "files": files }), "stored")
            }
            Err(err) => {
                let label = result_label(&err);
                self.files.count_upload(route_label, label);
                drain_rest(session).await;
                return Err(err);
            }
        };
        self.files.count_upload(route_label, label);
        send_json(session, status, &body).await
    }

    /// Reads the multipart body and stores its files; on any error nothing is kept.
    async fn receive(
        &self,
        session: &mut Session,
        req: &FileRequest<'_>,
    ) -> Result<Vec<FileRecord>, GatewayError> {
        let route = req.route;
        let content_type = session
            .req_header()
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let boundary =
            multer::parse_boundary(&content_type).map_err(|_| GatewayError::Validation {
                field: "content-type",
                message: "send multipart/form-data with a boundary".into(),
            })?;
        let user_agent = session
            .req_header()
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect::<String>());
        let file_limit = route.max_file_size;
        let mut limits = multer::SizeLimit::new()
            .whole_stream(route.max_request_body())
            .per_field(file_limit.saturating_add(64 << 10));
        for (name, limit) in TEXT_FIELDS {
            limits = limits.for_field(*name, *limit);
        }
        let allowed: Vec<&str> = FILE_FIELDS
            .iter()
            .copied()
            .chain(TEXT_FIELDS.iter().map(|(n, _)| *n))
            .collect();
        let constraints = multer::Constraints::new()
            .allowed_fields(allowed)
            .size_limit(limits);

        let meter = Arc::new(BodyMeter::default());
        let framing_limit = MAX_FRAMING
            + route.max_files as u64 * MAX_PART_FRAMING
            + TEXT_FIELDS.iter().map(|(_, limit)| limit).sum::<u64>();
        let deadline = tokio::time::Instant::now() + route.timeout;
        let stream = {
            let meter = meter.clone();
            futures_util::stream::unfold(Some(&mut *session), move |state| {
                let meter = meter.clone();
                async move {
                    let session = state?;
                    if meter.held() > framing_limit {
                        meter.framing_exceeded.store(true, Ordering::Relaxed);
                        return Some((Err(std::io::Error::other("framing too large")), None));
                    }
                    match tokio::time::timeout_at(deadline, session.read_request_body()).await {
                        Ok(Ok(Some(chunk))) => {
                            meter.fed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            Some((Ok(chunk), Some(session)))
                        }
                        Ok(Ok(None)) => None,
                        Ok(Err(e)) => Some((Err(std::io::Error::other(e.to_string())), None)),
                        Err(_) => {
                            meter.timed_out.store(true, Ordering::Relaxed);
                            Some((Err(std::io::Error::other("timed out")), None))
                        }
                    }
                }
            })
        };
        let mut multipart =
            multer::Multipart::with_constraints(Paced::new(stream), boundary, constraints);
        let owner = Owner {
            user_id: req.principal.user_id.clone(),
            username: req.principal.username.clone(),
        };
        let mut upload =
            Upload::new(&self.files, route, req.route_name, owner).map_err(upload_error)?;
        let received: Result<(), UploadError> = async {
            let mut fields: HashMap<String, String> = HashMap::new();
            let mut meta: Option<Meta> = None;
            while let Some(field) = multipart
                .next_field()
                .await
                .map_err(|e| multipart_error(e, file_limit, &meter))?
            {
                let name = field.name().unwrap_or("").to_string();
                if FILE_FIELDS.contains(&name.as_str()) {
                    if meta.is_none() {
                        meta = Some(
                            Meta::parse(route, |k| fields.get(k).cloned())
                                .map_err(UploadError::Invalid)?,
                        );
                    }
                    let Some(meta) = &meta else {
                        continue;
                    };
                    let file_name = field.file_name().map(str::to_owned);
                    let mut source = FieldSource {
                        field,
                        file_limit,
                        meter: meter.clone(),
                    };
                    upload
                        .add_file(meta, file_name.as_deref(), &mut source)
                        .await?;
                } else {
                    if meta.is_some() {
                        return Err(UploadError::Invalid(FileError::Invalid {
                            field: "body",
                            message: format!(
                                "{name:?} came after a file: send folder, alt, acl, entity_type and entity_id before the files"
                            ),
                        }));
                    }
                    if fields.contains_key(&name) {
                        return Err(UploadError::Invalid(FileError::Invalid {
                            field: "body",
                            message: format!("{name:?} was sent twice"),
                        }));
                    }
                    let text = field
                        .text()
                        .await
                        .map_err(|e| multipart_error(e, file_limit, &meter))?;
                    meter.deliver(text.len());
                    fields.insert(name, text);
                }
            }
            if upload.count() == 0 {
                return Err(UploadError::Invalid(FileError::Invalid {
                    field: "file",
                    message: "send at least one file (field \"file\" or \"files[]\")".into(),
                }));
            }
            Ok(())
        }
        .await;
        drop(multipart);
        match received {
            Ok(()) => upload
                .commit(req.ip.clone(), user_agent)
                .await
                .map_err(upload_error),
            Err(e) => {
                upload.abandon().await;
                Err(upload_error(e))
            }
        }
    }
}

async fn send_json(
    session: &mut Session,
    status: StatusCode,
    body: &Value,
) -> Result<FileOutcome, GatewayError> {
    respond::json(session, status, body, &[])
        .await
        .map_err(|_| GatewayError::Internal)?;
    Ok(FileOutcome::Done)
}

/// Reads and drops what is left of a refused upload's body (up to a bound), so that the client,
/// still sending, reads the answer; past the bound the connection is closed after the answer.
async fn drain_rest(session: &mut Session) {
    let mut drained: u64 = 0;
    let drain = async {
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    drained += chunk.len() as u64;
                    if drained > DRAIN_LIMIT {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    };
    let complete = tokio::time::timeout(DRAIN_TIME, drain)
        .await
        .unwrap_or(false);
    if !complete {
        session.set_keepalive(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn paging_is_bounded() {
        assert_eq!(paging(&query(&[])).unwrap(), (50, 0));
        assert_eq!(
            paging(&query(&[("limit", "200"), ("offset", "10")])).unwrap(),
            (200, 10)
        );
        assert!(paging(&query(&[("limit", "201")])).is_err());
        assert!(paging(&query(&[("offset", "-1")])).is_err());
        assert!(paging(&query(&[("limit", "x")])).is_err());
    }

    #[test]
    fn updates_are_checked() {
        let u = parse_update(br#"{"alt":"a cat"}"#).unwrap();
        assert_eq!(u.alt, Some(Some("a cat".into())));
        let u = parse_update(br#"{"entity_type":null,"entity_id":null}"#).unwrap();
        assert_eq!(u.entity, Some(None));
        let u = parse_update(br#"{"entity_type":"post","entity_id":"7"}"#).unwrap();
        assert_eq!(u.entity, Some(Some(("post".into(), "7".into()))));
        assert!(parse_update(br#"{"entity_type":"post"}"#).is_err());
        assert!(parse_update(br#"{"owner_id":"someone"}"#).is_err());
        assert!(parse_update(br#"{"key":"users/x"}"#).is_err());
        assert!(parse_update(br#"{"alt":5}"#).is_err());
        assert!(parse_update(b"[]").is_err());
    }

    #[test]
    fn list_filters() {
        let f = list_filter(&query(&[("entity_type", "post"), ("entity_id", "7")])).unwrap();
        assert_eq!(f.entity_type.as_deref(), Some("post"));
        assert_eq!(f.entity_id.as_deref(), Some("7"));
        let f = list_filter(&query(&[("entity_type", "post")])).unwrap();
        assert_eq!(f.entity_type.as_deref(), Some("post"));
        assert!(list_filter(&query(&[("entity_id", "7")])).is_err());
        assert!(list_filter(&query(&[("content_type", "image")])).is_err());
    }
}
