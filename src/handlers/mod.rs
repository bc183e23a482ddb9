//! Built-in endpoints under the `builtin` route (by default `/_postern/`): login, logout, me,
//! token, the account lifecycle and the admin API. The file API lives on routes of kind
//! `uploads` (see `files`); without one, `files/…` here answers 501 `not_implemented`, so that
//! clients get a clear answer instead of a request passed to the app.

mod account;
pub mod admin;
pub mod admin_files;
pub mod console;
pub mod files;
mod pages;
mod return_to;
mod same_site;
mod stormpath;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode, header};
use pingora::proxy::Session;
use rand::RngCore;
use serde_json::json;

use crate::accounts::{Lifecycle, Origin};
use crate::auth::{Admission, Lockout, Passwords, Sessions, Tokens};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::policy::Principal;
use crate::proxy::{body, headers, respond};
use crate::services::StoreHandle;
use crate::store::{NewEvent, Store, User, UserStatus};

pub use return_to::safe_return_to;

/// Endpoints that take HTML form posts (with the CSRF field) as well as JSON.
const FORM_ENDPOINTS: &[&str] = &[
    "login", "register", "verify", "forgot", "reset", "change", "expired",
];

/// What a session whose password has expired may still reach (below the prefix).
const OPEN_WHILE_EXPIRED: &[&str] = &[
    "expired",
    "change",
    "logout",
    "me",
    "password-policy",
    "login",
    // mailed links, and the way to ask for one
    "reset",
    "verify",
    "forgot",
];

/// Whether a restricted session (expired password) may use built-in endpoint `rest`.
pub fn open_while_expired(rest: &str) -> bool {
    let endpoint = rest.trim_start_matches('/');
    OPEN_WHILE_EXPIRED.contains(&endpoint)
}

const MAX_FORM_BODY: usize = 16 * 1024;

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
    /// The session (id hash) a bearer token was issued from: logout ends it.
    pub bearer_session: Option<String>,
}

impl Caller {
    fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }

    fn origin(&self, session: &Session) -> Origin {
        Origin {
            ip: self.ip,
            user_agent: Builtin::user_agent(session),
            actor: None,
        }
    }
}

/// The fields of a JSON object or an HTML form (whose CSRF field was checked).
struct Input {
    fields: HashMap<String, String>,
    from_form: bool,
}

impl Input {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").to_string()
    }

    fn required(&self, name: &'static str) -> Result<&str, GatewayError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or(GatewayError::Validation {
                field: name,
                message: "required".into(),
            })
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
    /// `server.trusted_proxies`: whose `X-Forwarded-Proto: https` makes a request secure.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub admin: admin::Admin,
    pub lifecycle: Arc<Lifecycle>,
    pub console: console::Console,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sends an HTML page that must not be cached, framed or sniffed, under `csp`.
async fn send_html(
    session: &mut Session,
    status: StatusCode,
    page: String,
    set_cookies: Vec<String>,
    csp: &str,
) -> Result<(), GatewayError> {
    let mut extra = vec![
        (header::CACHE_CONTROL, "no-store".to_string()),
        (
            header::HeaderName::from_static("x-frame-options"),
            "DENY".to_string(),
        ),
        (header::REFERRER_POLICY, "same-origin".to_string()),
        (header::CONTENT_SECURITY_POLICY, csp.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    extra.extend(set_cookies.into_iter().map(|c| (header::SET_COOKIE, c)));
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

/// Whether the request's `Content-Type` is `media_type` (any parameters aside, any case).
fn has_media_type(req: &pingora::http::RequestHeader, media_type: &str) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with(media_type))
}

fn is_form(req: &pingora::http::RequestHeader) -> bool {
    has_media_type(req, "application/x-www-form-urlencoded")
}

fn is_json(req: &pingora::http::RequestHeader) -> bool {
    has_media_type(req, "application/json")
}

/// The string values of a JSON object body (other values are left out).
fn json_string_fields(body: &[u8]) -> Result<HashMap<String, String>, GatewayError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| GatewayError::BadRequest("the body is not valid JSON"))?;
    let object = value
        .as_object()
        .ok_or(GatewayError::BadRequest("the body must be a JSON object"))?;
    Ok(object
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect())
}

fn query_param(session: &Session, name: &str) -> Option<String> {
    session.req_header().uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A login attempt, from JSON or a form.
struct Credentials {
    login: String,
    password: String,
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
        self.link("login")
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
            let req = session.req_header();
            let console_form = (endpoint == "console" || endpoint.starts_with("console/"))
                && (is_form(req) || has_media_type(req, "multipart/form-data"));
            if (FORM_ENDPOINTS.contains(&endpoint) && is_form(req)) || console_form {
                // The form's CSRF field is checked against the cookie when the body is read.
                same_site::check_origin(req, caller.origin_allowed)?;
            } else {
                same_site::check(req, self.csrf_cookie_name(session), caller.origin_allowed)?;
            }
        }
        match (endpoint, method) {
            ("login", Method::GET | Method::HEAD) => {
                self.login_page(session, None, "", StatusCode::OK).await
            }
            ("login", Method::POST) => self.login(session, caller).await,
            ("logout", Method::POST) => self.logout(session, caller).await,
            ("me", Method::GET | Method::HEAD) => self.me(session, caller).await,
            ("token", Method::POST) => self.token(session, caller).await,
            ("password-policy", Method::GET | Method::HEAD) => self.password_policy(session).await,
            ("register", Method::GET | Method::HEAD) => self.register_page(session).await,
            ("register", Method::POST) => self.register(session, caller).await,
            ("verify", Method::GET | Method::HEAD) => self.verify_link(session).await,
            ("verify", Method::POST) => self.verify(session, caller).await,
            ("forgot", Method::GET | Method::HEAD) => self.forgot_page(session).await,
            ("forgot", Method::POST) => self.forgot(session, caller).await,
            ("reset", Method::GET | Method::HEAD) => self.reset_page(session).await,
            ("reset", Method::POST) => self.reset(session, caller).await,
            ("change" | "expired", Method::GET | Method::HEAD) => {
                self.change_page(session, caller, endpoint == "expired")
                    .await
            }
            ("change" | "expired", Method::POST) => {
                self.change(session, caller, endpoint == "expired").await
            }
            (path, _) if path == "console" || path.starts_with("console/") => {
                self.console(session, &path["console".len()..], caller)
                    .await
            }
            (path, _) if path == "admin" || path.starts_with("admin/") => {
                self.admin
                    .handle(session, &path["admin".len()..], caller)
                    .await
            }
            (
                "login" | "logout" | "me" | "token" | "password-policy" | "register" | "verify"
                | "forgot" | "reset" | "change" | "expired",
                _,
            ) => Err(GatewayError::MethodNotAllowed),
            (path, _) if path == "files" || path.starts_with("files/") => Err(
                GatewayError::NotImplemented("the file API without a route of kind \"uploads\""),
            ),
            _ => Err(GatewayError::UnknownEndpoint),
        }
    }

    /// postern's cookie names for this request (they follow the scheme with `"auto"`).
    fn cookies(&self, session: &Session) -> crate::config::CookieNames<'_> {
        self.sessions
            .settings()
            .cookies(crate::proxy::secure_request(session, &self.trusted_proxies))
    }

    fn csrf_cookie_name(&self, session: &Session) -> &str {
        self.cookies(session).csrf
    }

    /// The double-submit cookie: `__Host-` prefixed (so Path=/, Secure, no Domain) when cookies
    /// are secure, so that a sibling subdomain cannot plant one.
    fn csrf_cookie(&self, session: &Session, value: &str) -> String {
        let names = self.cookies(session);
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict{}",
            names.csrf,
            if names.secure { "; Secure" } else { "" }
        )
    }

    /// The page's CSRF token: the cookie's when the browser has one, else a new one to set.
    fn page_csrf(&self, session: &Session) -> (String, Option<String>) {
        let existing = headers::cookie_value(session.req_header(), self.csrf_cookie_name(session))
            .filter(|v| v.len() == 43)
            .map(str::to_owned);
        match existing {
            Some(token) => (token, None),
            None => {
                let token = random_token();
                let cookie = self.csrf_cookie(session, &token);
                (token, Some(cookie))
            }
        }
    }

    /// Sends a built-in HTML page with the headers every page carries.
    async fn send_page(
        &self,
        session: &mut Session,
        status: StatusCode,
        page: String,
        set_cookies: Vec<String>,
    ) -> Result<(), GatewayError> {
        const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";
        send_html(session, status, page, set_cookies, PAGE_CSP).await
    }

    /// A form page with a CSRF token (and its cookie when the browser has none yet).
    async fn send_form(
        &self,
        session: &mut Session,
        status: StatusCode,
        form: impl FnOnce(&str) -> String,
    ) -> Result<(), GatewayError> {
        let (csrf, set_cookie) = self.page_csrf(session);
        let page = form(&csrf);
        self.send_page(session, status, page, set_cookie.into_iter().collect())
            .await
    }

    /// `return_to` from the query, if it is safe to send a browser to.
    fn query_return_to(&self, session: &Session) -> Option<String> {
        query_param(session, "return_to")
            .and_then(|v| safe_return_to(&v, &self.sessions.settings().return_to_hosts))
    }

    /// The path of built-in endpoint `endpoint`, e.g. `/_postern/forgot`.
    fn link(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.prefix.trim_end_matches('/'))
    }

    async fn login_page(
        &self,
        session: &mut Session,
        error: Option<&str>,
        username: &str,
        status: StatusCode,
    ) -> Result<(), GatewayError> {
        let return_to = self
            .query_return_to(session)
            .unwrap_or_else(|| "/".to_string());
        let action = self.login_path();
        let mut links = Vec::new();
        if self.lifecycle.mail_on() {
            links.push((self.link("forgot"), "Forgot your password?"));
        }
        if self.lifecycle.settings.registration_open {
            links.push((self.link("register"), "Create an account"));
        }
        self.send_form(session, status, |csrf| {
            pages::Form {
                title: "Sign in",
                intro: None,
                error,
                action: &action,
                csrf,
                hidden: vec![("return_to", &return_to)],
                fields: vec![
                    pages::Field::new("username", "Username or email", "text", "username")
                        .value(username),
                    pages::Field::new("password", "Password", "password", "current-password"),
                ],
                submit: "Sign in",
                links,
            }
            .render()
        })
        .await
    }

    /// The body as fields: a JSON object's string values, or a form whose `csrf` field matches
    /// the CSRF cookie.
    async fn read_input(&self, session: &mut Session) -> Result<Input, GatewayError> {
        let form = is_form(session.req_header());
        let json = is_json(session.req_header());
        if !form && !json {
            return Err(GatewayError::UnsupportedMediaType);
        }
        let body = body::read_small_body(session, MAX_FORM_BODY, self.body_timeout).await?;
        if json {
            return Ok(Input {
                fields: json_string_fields(&body)?,
                from_form: false,
            });
        }
        let fields: HashMap<String, String> = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let cookie = headers::cookie_value(session.req_header(), self.csrf_cookie_name(session))
            .unwrap_or("");
        let sent = fields.get("csrf").map(String::as_str).unwrap_or("");
        if cookie.is_empty() || !constant_time_eq(cookie.as_bytes(), sent.as_bytes()) {
            return Err(GatewayError::CsrfFailed);
        }
        Ok(Input {
            fields,
            from_form: true,
        })
    }

    async fn read_credentials(&self, session: &mut Session) -> Result<Credentials, GatewayError> {
        let input = self.read_input(session).await?;
        let login = input
            .get("username")
            .or_else(|| input.get("email"))
            .or_else(|| input.get("login"));
        if !input.from_form && (login.is_none() || input.get("password").is_none()) {
            return Err(GatewayError::BadRequest(
                "send \"username\" or \"email\" and \"password\"",
            ));
        }
        Ok(Credentials {
            login: login.unwrap_or("").to_string(),
            password: input.text("password"),
            return_to: input.get("return_to").map(str::to_owned),
            from_form: input.from_form,
        })
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
            self.count_wrong_password(&store, user.as_ref(), caller, user_agent, now)
                .await;
            return Err(GatewayError::InvalidCredentials);
        };
        if let (Some(new_hash), Some(old_hash)) = (verified.rehash, stored_hash)
            && let Err(e) = store
                .upgrade_password_hash(&user.id, &old_hash, &new_hash)
                .await
        {
            tracing::warn!(error = %e, "could not upgrade a password hash");
        }
        self.lockout.succeeded(&user.id).await;
        self.count_attempt("success");
        Ok(user.clone())
    }

    /// A signed-in user's wrong current password (change, profile): counted as a failed login.
    async fn wrong_current_password(
        &self,
        session: &Session,
        store: &Store,
        user: &User,
        caller: &Caller,
    ) {
        let now = self.sessions.now();
        self.count_wrong_password(store, Some(user), caller, Self::user_agent(session), now)
            .await;
    }

    /// Counts a wrong password against the user and the client's address; at the limit the user
    /// is locked (in the database, so on every instance) and the lock is an event.
    async fn count_wrong_password(
        &self,
        store: &Store,
        user: Option<&User>,
        caller: &Caller,
        user_agent: Option<String>,
        now: i64,
    ) {
        if let Some(locked) = self
            .lockout
            .failed(user.map(|u| u.id.as_str()), caller.ip, now)
            .await
            && let Some(u) = user
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
    }

    async fn rate_limit(&self, caller: &Caller) -> Result<(), GatewayError> {
        match self.lockout.admit(caller.ip, self.sessions.now()).await {
            Admission::Allowed => Ok(()),
            Admission::Limited { retry_after } => {
                self.count_attempt("rate_limited");
                Err(GatewayError::TooManyRequests { retry_after })
            }
        }
    }

    async fn login(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        self.rate_limit(&caller).await?;
        let creds = self.read_credentials(session).await?;
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
        let cookie = self.start_session(session, &user, &caller).await?;
        self.record_login(&user, &caller, session, user_agent).await;
        let expired = self.password_expired(&user);
        if creds.from_form {
            let mut target = creds
                .return_to
                .as_deref()
                .and_then(|r| safe_return_to(r, &self.sessions.settings().return_to_hosts))
                .unwrap_or_else(|| "/".to_string());
            if expired {
                target = self.expired_page_for(&target);
            }
            return self.see_other(session, target, vec![cookie]).await;
        }
        respond::json(
            session,
            StatusCode::OK,
            &self.user_json(&user),
            &[(header::SET_COOKIE, cookie)],
        )
        .await
        .map_err(|_| GatewayError::Internal)
    }

    /// Replaces the caller's session (if any) with a new one for `user`; the `Set-Cookie` value.
    async fn start_session(
        &self,
        session: &Session,
        user: &User,
        caller: &Caller,
    ) -> Result<String, GatewayError> {
        let user_agent = Self::user_agent(session);
        if let Some(old) = caller.session_token.as_deref() {
            let _ = self.sessions.destroy(old).await;
        }
        let created = self
            .sessions
            .create(user, caller.ip_text(), user_agent)
            .await
            .map_err(|_| GatewayError::Unavailable("the user database"))?;
        Ok(self
            .sessions
            .cookie(&created.token, self.cookies(session).secure))
    }

    /// `303 See Other` to `target`, setting cookies.
    async fn see_other(
        &self,
        session: &mut Session,
        target: String,
        set_cookies: Vec<String>,
    ) -> Result<(), GatewayError> {
        let mut extra = vec![
            (header::LOCATION, target),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ];
        extra.extend(set_cookies.into_iter().map(|c| (header::SET_COOKIE, c)));
        respond::send(
            session,
            StatusCode::SEE_OTHER,
            "text/plain; charset=utf-8",
            bytes::Bytes::new(),
            &extra,
        )
        .await
        .map_err(|_| GatewayError::Internal)
    }

    fn password_expired(&self, user: &User) -> bool {
        self.lifecycle
            .password_expired(user.password_changed_at, self.sessions.now())
    }

    /// The expired-password page, then `return_to`.
    pub fn expired_page_for(&self, return_to: &str) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", return_to)
            .finish();
        format!("{}?{query}", self.link("expired"))
    }

    /// The user as `/me` and login show it, with whether the password must be changed first.
    fn user_json(&self, user: &User) -> serde_json::Value {
        let mut json = user.public_json();
        json["password_expired"] = json!(self.password_expired(user));
        json
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
            self.rate_limit(&caller).await?;
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
            let user = self.signed_in_user(&principal.user_id).await?;
            (user, Some(from_session))
        };
        if self.password_expired(&user) {
            return Err(GatewayError::PasswordExpired(self.link("expired")));
        }
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

    /// Drops what this instance cached about a user whose password or status changed.
    fn forget_user(&self, user_id: &str) {
        self.tokens.forget_user(user_id);
        self.sessions.forget_user(user_id);
    }

    /// The events of a successful login (and of one with an expired password).
    async fn record_login(
        &self,
        user: &User,
        caller: &Caller,
        session: &Session,
        user_agent: Option<String>,
    ) {
        if let Ok(store) = self.store() {
            let success = Self::event("login.success", Some(user), caller, user_agent, json!({}));
            let _ = store.record_event(&success, self.sessions.now()).await;
        }
        if self.password_expired(user) {
            self.lifecycle
                .expired_login(user, &caller.origin(session))
                .await;
        }
    }

    /// Ends the caller's session, if any (logout): the cookie's, or the one a bearer token was
    /// issued from (which ends the token too).
    async fn end_session(&self, caller: &Caller) -> Result<(), GatewayError> {
        let ended = match (&caller.bearer_session, caller.session_token.as_deref()) {
            (Some(id_hash), _) if caller.via_bearer => {
                Some(self.sessions.destroy_id(id_hash).await)
            }
            (_, Some(token)) if !caller.via_bearer => Some(self.sessions.destroy(token).await),
            _ => None,
        };
        if let Some(ended) = ended {
            let ended = ended.map_err(|_| GatewayError::Unavailable("the user database"))?;
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
        Ok(())
    }

    async fn logout(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        self.end_session(&caller).await?;
        let clear = (
            header::SET_COOKIE,
            self.sessions.clearing_cookie(self.cookies(session).secure),
        );
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

    /// A signed-in user as the database has it now; one that is gone is `401`.
    async fn signed_in_user(&self, user_id: &str) -> Result<User, GatewayError> {
        self.store()?
            .user_by_id(user_id)
            .await
            .map_err(|_| GatewayError::Unavailable("the user database"))?
            .ok_or(GatewayError::Unauthenticated)
    }

    /// The caller's user; without a login, `401`.
    async fn current_user(&self, caller: &Caller) -> Result<User, GatewayError> {
        let principal = caller
            .principal
            .as_ref()
            .ok_or(GatewayError::Unauthenticated)?;
        self.signed_in_user(&principal.user_id).await
    }

    async fn me(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        let user = self.current_user(&caller).await?;
        respond::json(session, StatusCode::OK, &self.user_json(&user), &[])
            .await
            .map_err(|_| GatewayError::Internal)
    }
}
