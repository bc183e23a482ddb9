//! `/_postern/console/`: the admin console in the browser. Same gate as the admin API (the
//! `admin` role and `admin.allow_from`), the same account service behind every action, plain
//! HTML forms with the CSRF field (no script at all), a CSP that lets pages load only the
//! console's stylesheet and same-origin thumbnails. Rendering is `crate::console`.

use std::collections::HashMap;
use std::sync::Arc;

use http::{StatusCode, header};
use pingora::proxy::Session;
use serde_json::Value;

use super::admin::{account_error, import_error};
use super::files::file_error;
use super::{Builtin, Caller, constant_time_eq, is_form, query_param};
use crate::accounts::import::{self, ImportOptions, ImportRow};
use crate::accounts::{Accounts, Actor, Origin, UserDraft};
use crate::auth::ADMIN_ROLE;
use crate::console::html::{Flash, Frame, Section};
use crate::console::pages::{self, EventQuery, FileQuery, FileRow, NewUserForm, UserQuery};
use crate::console::{IMPORT_EXAMPLE, STYLESHEET, history::MetricsHistory};
use crate::error::GatewayError;
use crate::files::{NamedRoute, Owner};
use crate::images::params;
use crate::objects::LinkSigner;
use crate::proxy::{body, headers, respond};
use crate::store::{
    EventFilter, FileFilter, FileRecord, FileUpdate, ProfileUpdate, Store, User, UserFilter,
    UserSort, UserStatus,
};

const PAGE_SIZE: i64 = 50;
const MAX_FORM: usize = 128 * 1024;
/// An import's checked file comes back as a form field: percent-encoding may triple it.
const MAX_IMPORT_FORM: usize = 3 * import::MAX_IMPORT_BYTES + 64 * 1024;
const MAX_CUSTOM_DATA: usize = 64 * 1024;
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The transform the files page asks for.
const THUMBNAIL_QUERY: &str = "w=128&h=128&fit=cover&fmt=auto&q=80";

/// An asset route with image transforms over a store that uploads go to: the files page shows
/// thumbnails through it.
#[derive(Debug, Clone)]
pub struct ThumbnailRoute {
    pub store: String,
    pub prefix: String,
    pub signed: bool,
}

/// Checked imports waiting for the admin's confirmation. The rows (passwords included) stay
/// here, never in the page: the page carries a random id, usable once, by the admin who
/// checked the file, within [`PENDING_IMPORT_TTL`].
struct PendingImport {
    admin_id: String,
    rows: Vec<ImportRow>,
    options: ImportOptions,
}

const PENDING_IMPORT_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
const PENDING_IMPORTS_KEPT: u64 = 32;

pub struct Console {
    history: Arc<MetricsHistory>,
    thumbnails: Vec<ThumbnailRoute>,
    /// The canonical form of [`THUMBNAIL_QUERY`], what a signed route's signature covers.
    thumbnail_canonical: Option<String>,
    signer: LinkSigner,
    pending: moka::sync::Cache<String, Arc<PendingImport>>,
}

impl Console {
    pub fn new(
        history: Arc<MetricsHistory>,
        thumbnails: Vec<ThumbnailRoute>,
        signer: LinkSigner,
    ) -> Self {
        let bounds = params::Bounds {
            max_width: 128,
            max_height: 128,
            default_quality: 80,
        };
        let thumbnail_canonical = params::parse(
            Some(THUMBNAIL_QUERY),
            params::Policy::Open,
            &bounds,
            &Default::default(),
        )
        .ok()
        .flatten()
        .map(|(transform, _)| transform.canonical());
        Self {
            history,
            thumbnails,
            thumbnail_canonical,
            signer,
            pending: moka::sync::Cache::builder()
                .max_capacity(PENDING_IMPORTS_KEPT)
                .time_to_live(PENDING_IMPORT_TTL)
                .build(),
        }
    }

    /// A same-origin thumbnail URL for an image record, when a transform route covers its store.
    fn thumbnail(&self, record: &FileRecord) -> Option<String> {
        if !record.content_type.starts_with("image/") {
            return None;
        }
        let route = self.thumbnails.iter().find(|t| t.store == record.store)?;
        let plain_key = record
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
        if !plain_key {
            return None;
        }
        let path = format!("{}/{}", route.prefix.trim_end_matches('/'), record.key);
        if !route.signed {
            return Some(format!("{path}?{THUMBNAIL_QUERY}"));
        }
        let canonical = self.thumbnail_canonical.as_deref()?;
        let signature = self.signer.sign_transform(&path, canonical);
        Some(format!("{path}?{THUMBNAIL_QUERY}&sig={signature}"))
    }
}

/// A console form's fields (the CSRF field checked), or an import's file.
struct Posted {
    fields: HashMap<String, String>,
    /// Repeated fields (checkbox groups), in order.
    lists: HashMap<String, Vec<String>>,
    file: Option<bytes::Bytes>,
}

impl Posted {
    fn text(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        self.text(name) == "true"
    }
}

/// What a console action led to.
enum Outcome {
    /// 303 to a console path with a notice.
    Redirect(String, &'static str),
    /// A page to send as it is.
    Page(StatusCode, String),
}

/// Fixed notices, so that a link cannot make the console say anything else.
const NOTICES: &[(&str, &str)] = &[
    ("profile", "Profile saved."),
    ("custom_data", "Custom data saved."),
    ("enabled", "User enabled."),
    ("disabled", "User disabled; their sessions have ended."),
    ("unlocked", "User unlocked."),
    ("reset_mail", "A password-reset link is on its way."),
    ("password", "Password set; their sessions have ended."),
    (
        "role_added",
        "Role granted; their sessions pick it up at once.",
    ),
    ("role_removed", "Role taken away."),
    ("session_revoked", "Session ended."),
    ("sessions_revoked", "All sessions ended."),
    ("user_created", "User created."),
    ("user_deleted", "User deleted."),
    ("role_created", "Role created."),
    ("role_deleted", "Role deleted."),
    ("file_deleted", "File deleted."),
    ("file_updated", "File saved."),
    ("synced", "Files synced with the stores."),
];

fn notice(session: &Session) -> Option<Flash> {
    let key = query_param(session, "notice")?;
    NOTICES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, text)| Flash::Notice((*text).to_string()))
}

fn int_query(session: &Session, name: &str) -> i64 {
    query_param(session, name)
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| (0..=1_000_000_000).contains(v))
        .unwrap_or(0)
}

/// A `datetime-local` value (UTC) or an RFC 3339 time as Unix seconds.
fn parse_time(field: &'static str, value: &str) -> Result<Option<i64>, GatewayError> {
    if value.is_empty() {
        return Ok(None);
    }
    let mut text = value.replace('T', " ");
    if text.len() == 16 {
        text.push_str(":00");
    }
    humantime::parse_rfc3339_weak(&text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Some(d.as_secs() as i64))
        .ok_or_else(|| GatewayError::Validation {
            field,
            message: "must be a date and time like 2026-01-31T09:30".into(),
        })
}

impl Builtin {
    fn console_path(&self) -> String {
        self.link("console")
    }

    fn frame<'a>(&'a self, console: &'a str, admin: &'a str) -> Frame<'a> {
        Frame {
            console,
            admin,
            files: self.admin.files.is_some(),
            refresh: None,
        }
    }

    async fn send_console(
        &self,
        session: &mut Session,
        status: StatusCode,
        page: String,
        set_cookie: Option<String>,
    ) -> Result<(), GatewayError> {
        super::send_html(session, status, page, set_cookie.into_iter().collect(), CSP).await
    }

    async fn send_asset(
        &self,
        session: &mut Session,
        content_type: &str,
        body: bytes::Bytes,
        cache: &str,
    ) -> Result<(), GatewayError> {
        let extra = [
            (header::CACHE_CONTROL, cache.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ];
        respond::send(session, StatusCode::OK, content_type, body, &extra)
            .await
            .map_err(|_| GatewayError::Internal)
    }

    /// Serves `rest` (the path below `console`).
    pub(super) async fn console(
        &self,
        session: &mut Session,
        rest: &str,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        let path = rest.trim_matches('/');
        let method = session.req_header().method.clone();
        let reading = matches!(method, http::Method::GET | http::Method::HEAD);
        match (path, reading) {
            ("console.css", true) => {
                return self
                    .send_asset(
                        session,
                        "text/css; charset=utf-8",
                        bytes::Bytes::from_static(STYLESHEET.as_bytes()),
                        "public, max-age=3600",
                    )
                    .await;
            }
            ("import-example.xlsx", true) => {
                let rows: Vec<Vec<&str>> = IMPORT_EXAMPLE
                    .lines()
                    .map(|line| line.split(',').collect())
                    .collect();
                let rows: Vec<&[&str]> = rows.iter().map(Vec::as_slice).collect();
                let book = import::xlsx_from_rows(&rows);
                return self
                    .send_asset(
                        session,
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        book.into(),
                        "public, max-age=3600",
                    )
                    .await;
            }
            ("import-example.csv", true) => {
                return self
                    .send_asset(
                        session,
                        "text/csv; charset=utf-8",
                        bytes::Bytes::from_static(IMPORT_EXAMPLE.as_bytes()),
                        "public, max-age=3600",
                    )
                    .await;
            }
            _ => {}
        }
        if rest.is_empty() && reading {
            // `/_postern/console` → the trailing-slash address, so relative pieces resolve.
            return self
                .see_other(session, format!("{}/", self.console_path()), Vec::new())
                .await;
        }
        let console = self.console_path();
        let allowed_from = self.admin.allow_from.is_empty()
            || caller
                .ip
                .is_some_and(|ip| self.admin.allow_from.iter().any(|net| net.contains(&ip)));
        let Some(principal) = caller.principal.clone() else {
            if !allowed_from {
                return Err(GatewayError::Forbidden);
            }
            if reading && respond::accepts_html(session) {
                let target = session
                    .req_header()
                    .uri
                    .path_and_query()
                    .map_or_else(|| format!("{console}/"), |p| p.as_str().to_string());
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", &target)
                    .finish();
                return self
                    .see_other(
                        session,
                        format!("{}?{query}", self.login_path()),
                        Vec::new(),
                    )
                    .await;
            }
            return Err(GatewayError::Unauthenticated);
        };
        let (csrf, set_cookie) = self.page_csrf(session);
        let frame = self.frame(&console, &principal.username);
        if !allowed_from || !principal.roles.iter().any(|r| r == ADMIN_ROLE) {
            let text = if allowed_from {
                "The console is for users with the admin role."
            } else {
                "The console cannot be used from this network."
            };
            let page = frame.page(
                "Not allowed",
                Section::Overview,
                None,
                &pages::problem(text),
            );
            return self
                .send_console(session, StatusCode::FORBIDDEN, page, set_cookie)
                .await;
        }
        let store = self
            .admin
            .store
            .load_full()
            .ok_or(GatewayError::Unavailable("the user database"))?;
        let outcome = if reading {
            self.console_read(session, &frame, &csrf, &store, path)
                .await
        } else if method == http::Method::POST {
            match self.read_posted(session, &caller, path).await {
                Ok(posted) => {
                    let accounts = Accounts {
                        store: &store,
                        passwords: &self.passwords,
                        policy: &self.lifecycle.policy,
                        actor: Actor {
                            name: principal.username.clone(),
                            ip: caller.ip_text(),
                        },
                        now: self.sessions.now(),
                    };
                    self.console_write(&frame, &csrf, &store, &accounts, path, posted)
                        .await
                }
                Err(e) => Err(e),
            }
        } else {
            Err(GatewayError::MethodNotAllowed)
        };
        match outcome {
            Ok(Outcome::Page(status, page)) => {
                self.send_console(session, status, page, set_cookie).await
            }
            Ok(Outcome::Redirect(to, notice)) => {
                let target = format!("{}?notice={notice}", frame.href(&to));
                self.see_other(session, target, set_cookie.into_iter().collect())
                    .await
            }
            Err(err) => {
                let status = err.status();
                let title = if status == StatusCode::NOT_FOUND {
                    "Not found"
                } else {
                    "Something went wrong"
                };
                let page = frame.page(
                    title,
                    Section::Overview,
                    None,
                    &pages::problem(&err.to_string()),
                );
                self.send_console(session, status, page, set_cookie).await
            }
        }
    }

    /// A POST body: URL-encoded, or multipart for an import's file; the CSRF field must match
    /// the cookie (bearer callers carry no ambient credential and need none).
    async fn read_posted(
        &self,
        session: &mut Session,
        caller: &Caller,
        path: &str,
    ) -> Result<Posted, GatewayError> {
        let req = session.req_header();
        let multipart = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| multer::parse_boundary(v).ok());
        let posted = if let Some(boundary) = multipart.filter(|_| path == "import") {
            let bytes = body::read_small_body(
                session,
                import::MAX_IMPORT_BYTES + 64 * 1024,
                self.body_timeout,
            )
            .await?;
            let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
            let mut parts = multer::Multipart::new(stream, boundary);
            let mut fields = HashMap::new();
            let mut file = None;
            let bad = |_| GatewayError::BadRequest("the form could not be read");
            while let Some(field) = parts.next_field().await.map_err(bad)? {
                let name = field.name().unwrap_or("").to_string();
                let value = field.bytes().await.map_err(bad)?;
                if name == "file" {
                    file = Some(value);
                } else {
                    fields.insert(name, String::from_utf8_lossy(&value).into_owned());
                }
            }
            Posted {
                fields,
                lists: HashMap::new(),
                file,
            }
        } else if is_form(req) {
            let limit = if path == "import" {
                MAX_IMPORT_FORM
            } else {
                MAX_FORM
            };
            let bytes = body::read_small_body(session, limit, self.body_timeout).await?;
            let mut fields = HashMap::new();
            let mut lists: HashMap<String, Vec<String>> = HashMap::new();
            for (k, v) in form_urlencoded::parse(&bytes) {
                lists.entry(k.to_string()).or_default().push(v.to_string());
                fields.insert(k.into_owned(), v.into_owned());
            }
            Posted {
                fields,
                lists,
                file: None,
            }
        } else {
            return Err(GatewayError::UnsupportedMediaType);
        };
        if !caller.via_bearer {
            let cookie =
                headers::cookie_value(session.req_header(), self.csrf_cookie_name(session))
                    .unwrap_or("");
            let sent = posted.text("csrf");
            if cookie.is_empty() || !constant_time_eq(cookie.as_bytes(), sent.as_bytes()) {
                return Err(GatewayError::CsrfFailed);
            }
        }
        Ok(posted)
    }

    async fn console_read(
        &self,
        session: &Session,
        frame: &Frame<'_>,
        csrf: &str,
        store: &Store,
        path: &str,
    ) -> Result<Outcome, GatewayError> {
        let flash = notice(session);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let page = match segments.as_slice() {
            [] => {
                let (_, users) = store
                    .search_users(&UserFilter {
                        limit: 1,
                        ..UserFilter::default()
                    })
                    .await
                    .map_err(|_| GatewayError::Unavailable("the user database"))?;
                let totals = pages::Totals {
                    users,
                    sessions_active: store
                        .count_active_sessions(self.sessions.now())
                        .await
                        .map_err(|_| GatewayError::Unavailable("the user database"))?,
                    mail_queue: self.metrics.mail_queue_depth.get(),
                    image_queue: self.metrics.image_queue_depth.get(),
                };
                let points = self.console.history.points();
                // Reloading keeps the admin's session from idling out: only on request.
                let live = query_param(session, "live").is_some_and(|v| v == "1");
                let frame = Frame {
                    refresh: live.then_some(15),
                    ..*frame
                };
                frame.page(
                    "Overview",
                    Section::Overview,
                    flash.as_ref(),
                    &pages::overview(&frame, &totals, &points, live),
                )
            }
            ["users"] => {
                let filter = UserQuery {
                    q: query_param(session, "q").unwrap_or_default(),
                    status: query_param(session, "status")
                        .filter(|s| UserStatus::parse(s).is_some())
                        .unwrap_or_default(),
                    role: query_param(session, "role").unwrap_or_default(),
                    sort: query_param(session, "sort")
                        .and_then(|s| UserSort::parse(&s))
                        .unwrap_or_default(),
                    offset: int_query(session, "offset"),
                    limit: PAGE_SIZE,
                };
                let (users, total) = store
                    .search_users(&UserFilter {
                        status: UserStatus::parse(&filter.status),
                        role: Some(filter.role.clone()).filter(|r| !r.is_empty()),
                        text: Some(filter.q.clone()).filter(|q| !q.is_empty()),
                        sort: filter.sort,
                        limit: filter.limit,
                        offset: filter.offset,
                    })
                    .await
                    .map_err(|_| GatewayError::Unavailable("the user database"))?;
                let roles = self.roles(store).await?;
                frame.page(
                    "Users",
                    Section::Users,
                    flash.as_ref(),
                    &pages::users(frame, &filter, &users, total, &roles),
                )
            }
            ["users", "new"] => {
                let roles = self.roles(store).await?;
                frame.page(
                    "Create a user",
                    Section::Users,
                    flash.as_ref(),
                    &pages::new_user(
                        frame,
                        csrf,
                        &NewUserForm::default(),
                        &roles,
                        self.lifecycle.mail_on(),
                    ),
                )
            }
            ["users", id] => {
                let user = self.admin.user(store, id).await?;
                let custom = pretty_custom_data(&user.custom_data);
                self.user_page(frame, csrf, store, &user, flash, &custom)
                    .await?
            }
            ["roles"] => {
                let roles = self.roles(store).await?;
                frame.page(
                    "Roles",
                    Section::Roles,
                    flash.as_ref(),
                    &pages::roles(frame, csrf, &roles),
                )
            }
            ["events"] => {
                let filter = EventQuery {
                    user: query_param(session, "user").unwrap_or_default(),
                    kind: query_param(session, "kind").unwrap_or_default(),
                    since: query_param(session, "since").unwrap_or_default(),
                    until: query_param(session, "until").unwrap_or_default(),
                    offset: int_query(session, "offset"),
                    limit: PAGE_SIZE,
                };
                let (events, error) = match self.events_for(store, &filter).await {
                    Ok(events) => (events, None),
                    Err(e @ GatewayError::Validation { .. }) => {
                        (Vec::new(), Some(Flash::Error(e.to_string())))
                    }
                    Err(e) => return Err(e),
                };
                let status = if error.is_some() {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::OK
                };
                let flash = error.or(flash);
                let page = frame.page(
                    "Events",
                    Section::Events,
                    flash.as_ref(),
                    &pages::events(frame, &filter, &events),
                );
                return Ok(Outcome::Page(status, page));
            }
            ["files"] => {
                let filter = FileQuery {
                    user: query_param(session, "user").unwrap_or_default(),
                    entity_type: query_param(session, "entity_type").unwrap_or_default(),
                    entity_id: query_param(session, "entity_id").unwrap_or_default(),
                    offset: int_query(session, "offset"),
                    limit: PAGE_SIZE,
                };
                self.files_page(frame, csrf, store, &filter, flash).await?
            }
            ["files", id] => {
                let api = self
                    .admin
                    .files
                    .as_ref()
                    .ok_or(GatewayError::UnknownEndpoint)?;
                let record = api.files.get(id, None).await.map_err(file_error)?;
                let owner = store.user_by_id(&record.owner_id).await.ok().flatten();
                let link = api
                    .files
                    .objects()
                    .index_of(&record.store)
                    .and_then(|s| {
                        api.links
                            .link(s, &record.key, std::time::Duration::from_secs(3600))
                            .ok()
                    })
                    .map(|(url, _)| url);
                let row = FileRow {
                    record: &record,
                    owner: owner.as_ref().map(|u| u.username.as_str()),
                    thumbnail: self.console.thumbnail(&record),
                };
                frame.page(
                    &record.name,
                    Section::Files,
                    flash.as_ref(),
                    &pages::file(frame, csrf, &row, link.as_deref()),
                )
            }
            ["import"] => frame.page(
                "Import users",
                Section::Import,
                flash.as_ref(),
                &pages::import_form(
                    frame,
                    csrf,
                    &ImportOptions::default(),
                    self.lifecycle.mail_on(),
                ),
            ),
            _ => return Err(GatewayError::UnknownEndpoint),
        };
        Ok(Outcome::Page(StatusCode::OK, page))
    }

    async fn roles(&self, store: &Store) -> Result<Vec<crate::store::RoleInfo>, GatewayError> {
        store
            .roles()
            .await
            .map_err(|_| GatewayError::Unavailable("the user database"))
    }

    async fn user_page(
        &self,
        frame: &Frame<'_>,
        csrf: &str,
        store: &Store,
        user: &User,
        flash: Option<Flash>,
        custom_data: &str,
    ) -> Result<String, GatewayError> {
        let unavailable = |_| GatewayError::Unavailable("the user database");
        let sessions = store.sessions_of(&user.id).await.map_err(unavailable)?;
        let events = store
            .events(&EventFilter {
                user_id: Some(user.id.clone()),
                limit: 10,
                ..EventFilter::default()
            })
            .await
            .map_err(unavailable)?;
        let roles = self.roles(store).await?;
        let detail = pages::UserDetail {
            user,
            sessions: &sessions,
            events: &events,
            roles: &roles,
            mail_on: self.lifecycle.mail_on(),
            now: self.sessions.now(),
            custom_data,
        };
        Ok(frame.page(
            &user.username,
            Section::Users,
            flash.as_ref(),
            &pages::user(frame, csrf, &detail),
        ))
    }

    /// A user named by username, email or id.
    async fn user_named(&self, store: &Store, name: &str) -> Result<Option<User>, GatewayError> {
        let unavailable = |_| GatewayError::Unavailable("the user database");
        if let Some(user) = store.user_by_login(name).await.map_err(unavailable)? {
            return Ok(Some(user));
        }
        store.user_by_id(name).await.map_err(unavailable)
    }

    async fn events_for(
        &self,
        store: &Store,
        filter: &EventQuery,
    ) -> Result<Vec<crate::store::Event>, GatewayError> {
        let user_id = if filter.user.is_empty() {
            None
        } else {
            // An unknown name still filters (to nothing), rather than showing everyone's.
            Some(
                self.user_named(store, &filter.user)
                    .await?
                    .map_or_else(|| filter.user.clone(), |u| u.id),
            )
        };
        let events = EventFilter {
            user_id,
            kind: Some(filter.kind.clone()).filter(|k| !k.is_empty()),
            since: parse_time("since", &filter.since)?,
            until: parse_time("until", &filter.until)?,
            limit: filter.limit,
            offset: filter.offset,
        };
        store
            .events(&events)
            .await
            .map_err(|_| GatewayError::Unavailable("the user database"))
    }

    async fn files_page(
        &self,
        frame: &Frame<'_>,
        csrf: &str,
        store: &Store,
        filter: &FileQuery,
        flash: Option<Flash>,
    ) -> Result<String, GatewayError> {
        let api = self
            .admin
            .files
            .as_ref()
            .ok_or(GatewayError::UnknownEndpoint)?;
        let owner_id = if filter.user.is_empty() {
            None
        } else {
            Some(
                self.user_named(store, &filter.user)
                    .await?
                    .map_or_else(|| filter.user.clone(), |u| u.id),
            )
        };
        let files_filter = FileFilter {
            owner_id,
            entity_type: Some(filter.entity_type.clone()).filter(|t| !t.is_empty()),
            entity_id: Some(filter.entity_id.clone()).filter(|t| !t.is_empty()),
            limit: filter.limit,
            offset: filter.offset,
            ..FileFilter::default()
        };
        let (records, total) = api.files.list(&files_filter).await.map_err(file_error)?;
        let mut owners: HashMap<String, String> = HashMap::new();
        for record in &records {
            if !owners.contains_key(&record.owner_id)
                && let Ok(Some(user)) = store.user_by_id(&record.owner_id).await
            {
                owners.insert(record.owner_id.clone(), user.username);
            }
        }
        let rows: Vec<FileRow> = records
            .iter()
            .map(|record| FileRow {
                record,
                owner: owners.get(&record.owner_id).map(String::as_str),
                thumbnail: self.console.thumbnail(record),
            })
            .collect();
        Ok(frame.page(
            "Files",
            Section::Files,
            flash.as_ref(),
            &pages::files(frame, csrf, filter, &rows, total),
        ))
    }

    async fn console_write(
        &self,
        frame: &Frame<'_>,
        csrf: &str,
        store: &Store,
        accounts: &Accounts<'_>,
        path: &str,
        posted: Posted,
    ) -> Result<Outcome, GatewayError> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["users", "new"] => self.create_user(frame, csrf, store, accounts, posted).await,
            ["users", id] => {
                let user = self.admin.user(store, id).await?;
                match self.user_action(accounts, &user, &posted).await {
                    Ok(outcome) => Ok(outcome),
                    Err(
                        err @ (GatewayError::Validation { .. }
                        | GatewayError::PasswordPolicy { .. }
                        | GatewayError::Conflict(_)
                        | GatewayError::Missing(_)
                        | GatewayError::MailDisabled),
                    ) => {
                        // The page again, with the problem and (for custom data) what was sent.
                        let user = self.admin.user(store, id).await?;
                        let custom = if posted.text("action") == "custom_data" {
                            posted.text("custom_data").to_string()
                        } else {
                            pretty_custom_data(&user.custom_data)
                        };
                        let flash = Some(Flash::Error(err.to_string()));
                        let page = self
                            .user_page(frame, csrf, store, &user, flash, &custom)
                            .await?;
                        Ok(Outcome::Page(err.status(), page))
                    }
                    Err(err) => Err(err),
                }
            }
            ["roles"] => match self.role_action(store, accounts, &posted).await {
                Ok(outcome) => Ok(outcome),
                Err(
                    err @ (GatewayError::Validation { .. }
                    | GatewayError::Conflict(_)
                    | GatewayError::Missing(_)),
                ) => {
                    let roles = self.roles(store).await?;
                    let flash = Flash::Error(err.to_string());
                    let page = frame.page(
                        "Roles",
                        Section::Roles,
                        Some(&flash),
                        &pages::roles(frame, csrf, &roles),
                    );
                    Ok(Outcome::Page(err.status(), page))
                }
                Err(err) => Err(err),
            },
            ["files"] | ["files", _] => self.file_action(accounts, &segments, &posted).await,
            ["import"] => self.import(frame, csrf, accounts, posted).await,
            _ => Err(GatewayError::UnknownEndpoint),
        }
    }

    async fn user_action(
        &self,
        accounts: &Accounts<'_>,
        user: &User,
        posted: &Posted,
    ) -> Result<Outcome, GatewayError> {
        let id = user.id.as_str();
        let back = format!("users/{}", crate::console::html::segment(id));
        let notice = match posted.text("action") {
            "profile" => {
                let update = ProfileUpdate {
                    email: Some(posted.text("email").trim().to_string()),
                    given_name: Some(posted.text("given_name").trim().to_string()),
                    surname: Some(posted.text("surname").trim().to_string()),
                    custom_data: None,
                };
                accounts
                    .update_profile(id, &update)
                    .await
                    .map_err(account_error)?;
                "profile"
            }
            "custom_data" => {
                let text = posted.text("custom_data");
                if text.len() > MAX_CUSTOM_DATA {
                    return Err(GatewayError::Validation {
                        field: "custom_data",
                        message: "must be at most 64 KiB".into(),
                    });
                }
                let value: Value =
                    serde_json::from_str(text).map_err(|e| GatewayError::Validation {
                        field: "custom_data",
                        message: format!("is not valid JSON: {e}"),
                    })?;
                if !value.is_object() {
                    return Err(GatewayError::Validation {
                        field: "custom_data",
                        message: "must be a JSON object".into(),
                    });
                }
                let update = ProfileUpdate {
                    custom_data: Some(value),
                    ..ProfileUpdate::default()
                };
                accounts
                    .update_profile(id, &update)
                    .await
                    .map_err(account_error)?;
                "custom_data"
            }
            "enable" | "disable" => {
                let enable = posted.text("action") == "enable";
                let status = if enable {
                    UserStatus::Enabled
                } else {
                    UserStatus::Disabled
                };
                accounts
                    .set_status(id, status)
                    .await
                    .map_err(account_error)?;
                self.forget_user(id);
                if enable { "enabled" } else { "disabled" }
            }
            "unlock" => {
                accounts.unlock(id).await.map_err(account_error)?;
                "unlocked"
            }
            "reset_mail" => {
                let origin = Origin {
                    ip: None,
                    user_agent: None,
                    actor: Some(accounts.actor.name.clone()),
                };
                self.lifecycle
                    .admin_reset(user, &origin)
                    .await
                    .map_err(GatewayError::from)?;
                "reset_mail"
            }
            "set_password" => {
                accounts
                    .set_password(user, posted.text("password").to_string())
                    .await
                    .map_err(account_error)?;
                self.forget_user(id);
                "password"
            }
            "add_role" => {
                let role = posted.text("role");
                if accounts.add_role(id, role).await.map_err(account_error)? {
                    self.forget_user(id);
                }
                "role_added"
            }
            "remove_role" => {
                if !accounts
                    .remove_role(id, posted.text("role"))
                    .await
                    .map_err(account_error)?
                {
                    return Err(GatewayError::Missing("role assignment"));
                }
                self.forget_user(id);
                "role_removed"
            }
            "revoke_session" => {
                if !accounts
                    .revoke_session(id, posted.text("session"))
                    .await
                    .map_err(account_error)?
                {
                    return Err(GatewayError::Missing("session"));
                }
                self.forget_user(id);
                "session_revoked"
            }
            "revoke_all" => {
                accounts.revoke_sessions(id).await.map_err(account_error)?;
                self.forget_user(id);
                "sessions_revoked"
            }
            "delete" => {
                if posted.text("confirm") != user.username {
                    return Err(GatewayError::Validation {
                        field: "confirm",
                        message: "type the username exactly to delete the user".into(),
                    });
                }
                accounts.delete_user(user).await.map_err(account_error)?;
                self.forget_user(id);
                return Ok(Outcome::Redirect("users".into(), "user_deleted"));
            }
            _ => return Err(GatewayError::BadRequest("unknown action")),
        };
        Ok(Outcome::Redirect(back, notice))
    }

    async fn create_user(
        &self,
        frame: &Frame<'_>,
        csrf: &str,
        store: &Store,
        accounts: &Accounts<'_>,
        posted: Posted,
    ) -> Result<Outcome, GatewayError> {
        let form = NewUserForm {
            username: posted.text("username").trim().to_string(),
            email: posted.text("email").trim().to_string(),
            given_name: posted.text("given_name").trim().to_string(),
            surname: posted.text("surname").trim().to_string(),
            roles: posted.lists.get("roles").cloned().unwrap_or_default(),
            send_verification: posted.flag("send_verification"),
            send_welcome: posted.flag("send_welcome"),
        };
        let created = async {
            let mail = form.send_verification || form.send_welcome;
            if mail && !self.lifecycle.mail_on() {
                return Err(GatewayError::MailDisabled);
            }
            if mail {
                self.lifecycle
                    .check_mailable(&form.email)
                    .map_err(GatewayError::from)?;
            }
            let draft = UserDraft {
                username: form.username.clone(),
                email: form.email.clone(),
                given_name: form.given_name.clone(),
                surname: form.surname.clone(),
                status: form.send_verification.then_some(UserStatus::Unverified),
                password: Some(posted.text("password").to_string()).filter(|p| !p.is_empty()),
                roles: form.roles.clone(),
            };
            let user = accounts.create_user(draft).await.map_err(account_error)?;
            if form.send_verification {
                self.lifecycle
                    .send_verification(store, &user)
                    .await
                    .map_err(GatewayError::from)?;
            }
            if form.send_welcome {
                self.lifecycle.send_welcome(store, &user).await;
            }
            Ok(user)
        }
        .await;
        match created {
            Ok(user) => Ok(Outcome::Redirect(
                format!("users/{}", crate::console::html::segment(&user.id)),
                "user_created",
            )),
            Err(
                err @ (GatewayError::Validation { .. }
                | GatewayError::PasswordPolicy { .. }
                | GatewayError::Conflict(_)
                | GatewayError::MailDisabled),
            ) => {
                let roles = self.roles(store).await?;
                let flash = Flash::Error(err.to_string());
                let content = pages::new_user(frame, csrf, &form, &roles, self.lifecycle.mail_on());
                let page = frame.page("Create a user", Section::Users, Some(&flash), &content);
                Ok(Outcome::Page(err.status(), page))
            }
            Err(err) => Err(err),
        }
    }

    async fn role_action(
        &self,
        store: &Store,
        accounts: &Accounts<'_>,
        posted: &Posted,
    ) -> Result<Outcome, GatewayError> {
        match posted.text("action") {
            "create" => {
                let name = posted.text("name").trim();
                accounts
                    .create_role(name, posted.text("description").trim())
                    .await
                    .map_err(account_error)?;
                Ok(Outcome::Redirect("roles".into(), "role_created"))
            }
            "delete" => {
                let role = posted.text("role");
                let holders = store
                    .search_users(&UserFilter {
                        role: Some(role.to_string()),
                        limit: i64::MAX,
                        ..UserFilter::default()
                    })
                    .await
                    .map_err(|_| GatewayError::Unavailable("the user database"))?
                    .0;
                accounts
                    .delete_role(role, posted.flag("force"))
                    .await
                    .map_err(account_error)?;
                for user in &holders {
                    self.forget_user(&user.id);
                }
                Ok(Outcome::Redirect("roles".into(), "role_deleted"))
            }
            _ => Err(GatewayError::BadRequest("unknown action")),
        }
    }

    async fn file_action(
        &self,
        accounts: &Accounts<'_>,
        segments: &[&str],
        posted: &Posted,
    ) -> Result<Outcome, GatewayError> {
        let api = self
            .admin
            .files
            .as_ref()
            .ok_or(GatewayError::UnknownEndpoint)?;
        match (posted.text("action"), segments) {
            ("delete", ["files"]) => {
                let record = api
                    .files
                    .get(posted.text("id"), None)
                    .await
                    .map_err(file_error)?;
                api.files
                    .delete(
                        &record,
                        Some(&accounts.actor.name),
                        accounts.actor.ip.clone(),
                    )
                    .await
                    .map_err(file_error)?;
                Ok(Outcome::Redirect("files".into(), "file_deleted"))
            }
            ("sync", ["files"]) => {
                let routes: Vec<NamedRoute> = api
                    .routes
                    .iter()
                    .map(|(name, _, route)| NamedRoute { name, route })
                    .collect();
                api.files
                    .sync_users(&routes, None::<&Owner>)
                    .await
                    .map_err(file_error)?;
                Ok(Outcome::Redirect("files".into(), "synced"))
            }
            ("update", ["files", id]) => {
                let record = api.files.get(id, None).await.map_err(file_error)?;
                let alt = posted.text("alt").trim();
                let (entity_type, entity_id) = (
                    posted.text("entity_type").trim(),
                    posted.text("entity_id").trim(),
                );
                let optional = |text: &str| {
                    if text.is_empty() {
                        Value::Null
                    } else {
                        Value::from(text)
                    }
                };
                let body = serde_json::json!({
                    "alt": optional(alt),
                    "entity_type": optional(entity_type),
                    "entity_id": optional(entity_id),
                });
                let update: FileUpdate = super::files::parse_update(body.to_string().as_bytes())?;
                api.files
                    .update(&record, &update)
                    .await
                    .map_err(file_error)?;
                Ok(Outcome::Redirect(
                    format!("files/{}", crate::console::html::segment(id)),
                    "file_updated",
                ))
            }
            _ => Err(GatewayError::BadRequest("unknown action")),
        }
    }

    async fn import(
        &self,
        frame: &Frame<'_>,
        csrf: &str,
        accounts: &Accounts<'_>,
        posted: Posted,
    ) -> Result<Outcome, GatewayError> {
        let admin = accounts.actor.name.clone();
        let refused = |err: GatewayError, options: &ImportOptions| {
            let flash = Flash::Error(err.to_string());
            let content = pages::import_form(frame, csrf, options, self.lifecycle.mail_on());
            let page = frame.page("Import users", Section::Import, Some(&flash), &content);
            Ok(Outcome::Page(err.status(), page))
        };
        if posted.text("action") == "import" {
            let pending = self
                .console
                .pending
                .remove(posted.text("import"))
                .filter(|p| p.admin_id == admin);
            let Some(pending) = pending else {
                let expired = GatewayError::Validation {
                    field: "import",
                    message: "this check has expired or was imported already: check the file again"
                        .into(),
                };
                return refused(expired, &ImportOptions::default());
            };
            let options = ImportOptions {
                dry_run: false,
                ..pending.options
            };
            let report = accounts
                .import_users(pending.rows.clone(), options, Some(&self.lifecycle))
                .await
                .map_err(import_error)?;
            let page = frame.page(
                "Import finished",
                Section::Import,
                None,
                &pages::import_done(frame, &report),
            );
            return Ok(Outcome::Page(StatusCode::OK, page));
        }
        let options = ImportOptions {
            dry_run: true,
            all_or_nothing: posted.flag("all_or_nothing"),
            create_roles: posted.flag("create_roles"),
        };
        let Some(file) = posted.file else {
            return Err(GatewayError::BadRequest("send a file to check"));
        };
        let rows = match parse_off_the_proxy(file).await {
            Ok(rows) => rows,
            Err(err) => return refused(err, &options),
        };
        let report = accounts
            .import_users(rows.clone(), options, Some(&self.lifecycle))
            .await
            .map_err(import_error)?;
        let id = super::random_token();
        let pending = PendingImport {
            admin_id: admin,
            rows,
            options,
        };
        self.console.pending.insert(id.clone(), Arc::new(pending));
        let content = pages::import_preview(frame, csrf, &report, &id);
        Ok(Outcome::Page(
            StatusCode::OK,
            frame.page("Check the import", Section::Import, None, &content),
        ))
    }
}

/// Reads a spreadsheet on the blocking pool: unpacking and parsing a 5 MiB file is CPU work
/// that does not belong on a proxy thread.
pub(super) async fn parse_off_the_proxy(
    bytes: bytes::Bytes,
) -> Result<Vec<ImportRow>, GatewayError> {
    tokio::task::spawn_blocking(move || import::parse_sheet(&bytes))
        .await
        .map_err(|_| GatewayError::Internal)?
        .map_err(import_error)
}

/// Custom data as the form shows it: pretty JSON.
fn pretty_custom_data(stored: &str) -> String {
    serde_json::from_str::<Value>(stored)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| stored.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_the_form_or_rfc3339() {
        assert_eq!(parse_time("since", "").unwrap(), None);
        assert_eq!(parse_time("since", "1970-01-01T00:01").unwrap(), Some(60));
        assert_eq!(
            parse_time("since", "1970-01-01T00:00:30Z").unwrap(),
            Some(30)
        );
        assert!(parse_time("since", "yesterday").is_err());
    }

    #[test]
    fn notices_are_a_fixed_set() {
        assert!(
            NOTICES
                .iter()
                .all(|(k, v)| !k.is_empty() && v.ends_with('.'))
        );
    }
}
