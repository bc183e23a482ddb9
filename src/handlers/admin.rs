//! The admin API under `/_postern/admin/`: users, roles, sessions and events over JSON, for the
//! role `admin`. Every change is an event naming the acting admin. The route table below is also
//! what `openapi.json` is generated from, so the document cannot drift from what is served.

use std::sync::Arc;

use http::StatusCode;
use pingora::proxy::Session;
use serde_json::{Value, json};

use super::{Caller, query_param};
use crate::accounts::{AccountError, Accounts, Actor, Lifecycle, Origin, UserDraft, import};
use crate::auth::{ADMIN_ROLE, Passwords, Sessions, Tokens};
use crate::error::GatewayError;
use crate::proxy::{body, respond};
use crate::services::StoreHandle;
use crate::store::{
    EventFilter, ProfileUpdate, Store, StoreError, User, UserFilter, UserSort, UserStatus,
};

/// Every admin endpoint: method, path below `/admin`, success status, summary.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "GET",
        "/users",
        "200",
        "List users (filters: status, role, q; sort: username, email, status, newest, oldest; paging: limit, offset)",
    ),
    (
        "POST",
        "/users",
        "201",
        "Create a user (send_verification, send_welcome: queue that mail)",
    ),
    (
        "POST",
        "/users/import",
        "200",
        "Import users from CSV or XLSX (First Name, Last Name, Email, Role, Password; ?dry_run, all_or_nothing, create_roles)",
    ),
    ("GET", "/users/{id}", "200", "Get a user"),
    (
        "PATCH",
        "/users/{id}",
        "200",
        "Update email, names, status or custom data",
    ),
    ("DELETE", "/users/{id}", "204", "Delete a user"),
    (
        "PUT",
        "/users/{id}/password",
        "204",
        "Set a user's password (ends their sessions)",
    ),
    (
        "POST",
        "/users/{id}/reset-password",
        "202",
        "Mail the user a password-reset link",
    ),
    (
        "POST",
        "/users/{id}/unlock",
        "204",
        "Lift a brute-force lockout",
    ),
    ("GET", "/users/{id}/roles", "200", "A user's roles"),
    ("POST", "/users/{id}/roles", "204", "Grant a role"),
    (
        "DELETE",
        "/users/{id}/roles/{role}",
        "204",
        "Take a role away",
    ),
    (
        "GET",
        "/users/{id}/sessions",
        "200",
        "A user's sessions (never their ids)",
    ),
    (
        "DELETE",
        "/users/{id}/sessions",
        "200",
        "End all of a user's sessions",
    ),
    (
        "DELETE",
        "/users/{id}/sessions/{session}",
        "204",
        "End one session",
    ),
    ("GET", "/roles", "200", "List roles"),
    ("POST", "/roles", "201", "Create a role"),
    (
        "DELETE",
        "/roles/{role}",
        "204",
        "Delete a role (?force=true when users hold it)",
    ),
    (
        "GET",
        "/events",
        "200",
        "Audit events, newest first (user_id, kind, since, until, limit, offset)",
    ),
    (
        "GET",
        "/files",
        "200",
        "Everyone's files (filters: user_id, route, entity_type, entity_id, folder, content_type; paging: limit, offset)",
    ),
    ("GET", "/files/{id}", "200", "One file record"),
    (
        "PATCH",
        "/files/{id}",
        "200",
        "Change a file's alt text or entity (entity_type and entity_id, or both null)",
    ),
    (
        "DELETE",
        "/files/{id}",
        "204",
        "Delete a file: its object, then its record",
    ),
    (
        "POST",
        "/files/sync",
        "200",
        "Read objects back into records, for one user (user_id) or all",
    ),
    ("GET", "/openapi.json", "200", "This document"),
];

const MAX_BODY: usize = 64 * 1024;
const MAX_PAGE: i64 = 200;

pub struct Admin {
    pub store: StoreHandle,
    pub sessions: Arc<Sessions>,
    pub tokens: Arc<Tokens>,
    pub passwords: Passwords,
    pub lifecycle: Arc<Lifecycle>,
    pub body_timeout: std::time::Duration,
    /// Client networks allowed to use the API; empty = any.
    pub allow_from: Vec<ipnet::IpNet>,
    /// Files, when an upload route exists.
    pub files: Option<super::admin_files::AdminFiles>,
}

/// Mail an admin asks for when creating a user.
struct MailOnCreate {
    verification: bool,
    welcome: bool,
}

fn store_error(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict(what) => GatewayError::Conflict(format!("{what} already exists")),
        StoreError::InUse(message) => GatewayError::Conflict(message),
        StoreError::NotFound(what) => GatewayError::Missing(what),
        StoreError::Invalid(message) => {
            let field = if message.starts_with("username") {
                "username"
            } else if message.contains("email") {
                "email"
            } else if message.starts_with("role") {
                "role"
            } else {
                "body"
            };
            GatewayError::Validation { field, message }
        }
        other => {
            tracing::error!(error = %other, "admin API database error");
            GatewayError::Unavailable("the user database")
        }
    }
}

pub(super) fn account_error(e: AccountError) -> GatewayError {
    match e {
        AccountError::Store(e) => store_error(e),
        AccountError::Policy(v) => GatewayError::PasswordPolicy {
            rule: v.rule,
            message: v.message,
        },
        AccountError::Password(e) => {
            tracing::error!(error = %e, "password hashing failed");
            GatewayError::Internal
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::Validation {
        field,
        message: message.into(),
    }
}

fn int_param(
    session: &Session,
    name: &'static str,
    default: i64,
    max: i64,
) -> Result<i64, GatewayError> {
    match query_param(session, name) {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=max).contains(n))
            .ok_or_else(|| invalid(name, format!("must be a whole number from 0 to {max}"))),
    }
}

/// The media types an import's file may be sent as.
const SHEET_TYPES: &[&str] = &[
    "text/csv",
    "application/csv",
    "text/plain",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/octet-stream",
];

fn flag_param(session: &Session, name: &'static str) -> Result<bool, GatewayError> {
    match query_param(session, name).as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(_) => Err(invalid(name, "must be true or false")),
    }
}

fn import_options(session: &Session) -> Result<import::ImportOptions, GatewayError> {
    Ok(import::ImportOptions {
        dry_run: flag_param(session, "dry_run")?,
        all_or_nothing: flag_param(session, "all_or_nothing")?,
        create_roles: flag_param(session, "create_roles")?,
    })
}

/// An import that could not be read or run.
pub(super) fn import_error(e: import::ImportError) -> GatewayError {
    match e {
        import::ImportError::Account(e) => account_error(e),
        import::ImportError::TooLarge => GatewayError::PayloadTooLarge {
            limit: import::MAX_IMPORT_BYTES as u64,
        },
        other => invalid("file", other.to_string()),
    }
}

fn text_field(body: &Value, name: &'static str) -> Result<Option<String>, GatewayError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

fn status_field(body: &Value) -> Result<Option<UserStatus>, GatewayError> {
    text_field(body, "status")?
        .map(|s| {
            UserStatus::parse(&s)
                .ok_or_else(|| invalid("status", "must be enabled, disabled or unverified"))
        })
        .transpose()
}

impl Admin {
    fn store(&self) -> Result<Arc<Store>, GatewayError> {
        self.store
            .load_full()
            .ok_or(GatewayError::Unavailable("the user database"))
    }

    pub(super) async fn user(&self, store: &Store, id: &str) -> Result<User, GatewayError> {
        store
            .user_by_id(id)
            .await
            .map_err(store_error)?
            .ok_or(GatewayError::Missing("user"))
    }

    pub(super) async fn json_body(&self, session: &mut Session) -> Result<Value, GatewayError> {
        let bytes = body::read_small_body(session, MAX_BODY, self.body_timeout).await?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|_| invalid("body", "must be a JSON object"))?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(invalid("body", "must be a JSON object"))
        }
    }

    fn accounts<'a>(&'a self, store: &'a Store, caller: &Caller) -> Accounts<'a> {
        Accounts {
            store,
            passwords: &self.passwords,
            policy: &self.lifecycle.policy,
            actor: Actor {
                name: caller
                    .principal
                    .as_ref()
                    .map_or_else(|| "unknown".to_string(), |p| p.username.clone()),
                ip: caller.ip_text(),
            },
            now: self.sessions.now(),
        }
    }

    /// Applies a change that must end the user's sessions everywhere, at once on this instance.
    fn forget(&self, user_id: &str) {
        self.tokens.forget_user(user_id);
        self.sessions.forget_user(user_id);
    }

    pub(super) async fn reply(
        &self,
        session: &mut Session,
        status: StatusCode,
        value: Option<Value>,
    ) -> Result<(), GatewayError> {
        let sent = match value {
            Some(value) => respond::json(session, status, &value, &[]).await,
            None => {
                respond::send(
                    session,
                    status,
                    "application/json",
                    bytes::Bytes::new(),
                    &[],
                )
                .await
            }
        };
        sent.map_err(|_| GatewayError::Internal)
    }

    /// Serves `rest` (the path below `/admin`) for an authenticated caller.
    pub async fn handle(
        &self,
        session: &mut Session,
        rest: &str,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        if !self.allow_from.is_empty()
            && !caller
                .ip
                .is_some_and(|ip| self.allow_from.iter().any(|net| net.contains(&ip)))
        {
            return Err(GatewayError::Forbidden);
        }
        let principal = caller
            .principal
            .as_ref()
            .ok_or(GatewayError::Unauthenticated)?;
        if !principal.roles.iter().any(|r| r == ADMIN_ROLE) {
            return Err(GatewayError::Forbidden);
        }
        let method = session.req_header().method.clone();
        let segments: Vec<&str> = rest
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        if let ("GET", ["openapi.json"]) = (method.as_str(), segments.as_slice()) {
            return self.reply(session, StatusCode::OK, Some(openapi())).await;
        }
        let store = self.store()?;
        let accounts = self.accounts(&store, &caller);
        if segments.first() == Some(&"files") {
            let actor = accounts.actor.name.clone();
            return self
                .files(
                    session,
                    &store,
                    method.as_str(),
                    &segments,
                    &actor,
                    caller.ip_text(),
                )
                .await;
        }
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["users"]) => self.list_users(session, &store).await,
            ("POST", ["users"]) => {
                let (mut draft, mail) = self.user_draft(session).await?;
                if (mail.verification || mail.welcome) && !self.lifecycle.mail_on() {
                    return Err(GatewayError::MailDisabled);
                }
                if mail.verification || mail.welcome {
                    self.lifecycle
                        .check_mailable(&draft.email)
                        .map_err(GatewayError::from)?;
                }
                if mail.verification && draft.status.is_none() {
                    draft.status = Some(UserStatus::Unverified);
                }
                let user = accounts.create_user(draft).await.map_err(account_error)?;
                if mail.verification {
                    self.lifecycle
                        .send_verification(&store, &user)
                        .await
                        .map_err(GatewayError::from)?;
                }
                if mail.welcome {
                    self.lifecycle.send_welcome(&store, &user).await;
                }
                self.reply(session, StatusCode::CREATED, Some(user.public_json()))
                    .await
            }
            ("POST", ["users", "import"]) => {
                let options = import_options(session)?;
                let bytes = self.sheet_body(session).await?;
                let rows = super::console::parse_off_the_proxy(bytes).await?;
                let report = accounts
                    .import_users(rows, options, Some(&self.lifecycle))
                    .await
                    .map_err(import_error)?;
                self.reply(session, StatusCode::OK, Some(report.to_json()))
                    .await
            }
            ("POST", ["users", id, "reset-password"]) => {
                let user = self.user(&store, id).await?;
                let origin = Origin {
                    ip: caller.ip,
                    user_agent: None,
                    actor: Some(accounts.actor.name.clone()),
                };
                self.lifecycle
                    .admin_reset(&user, &origin)
                    .await
                    .map_err(GatewayError::from)?;
                self.reply(
                    session,
                    StatusCode::ACCEPTED,
                    Some(json!({"status": "queued"})),
                )
                .await
            }
            ("GET", ["users", id]) => {
                let user = self.user(&store, id).await?;
                self.reply(session, StatusCode::OK, Some(user.public_json()))
                    .await
            }
            ("PATCH", ["users", id]) => self.update_user(session, &store, &accounts, id).await,
            ("DELETE", ["users", id]) => {
                let user = self.user(&store, id).await?;
                accounts.delete_user(&user).await.map_err(account_error)?;
                self.forget(id);
                self.reply(session, StatusCode::NO_CONTENT, None).await
            }
            ("PUT", ["users", id, "password"]) => {
                let body = self.json_body(session).await?;
                let password = text_field(&body, "password")?
                    .ok_or_else(|| invalid("password", "required"))?;
                let user = self.user(&store, id).await?;
                accounts
                    .set_password(&user, password)
                    .await
                    .map_err(account_error)?;
                self.forget(id);
                self.reply(session, StatusCode::NO_CONTENT, None).await
            }
            ("POST", ["users", id, "unlock"]) => {
                self.user(&store, id).await?;
                accounts.unlock(id).await.map_err(account_error)?;
                self.reply(session, StatusCode::NO_CONTENT, None).await
            }
            ("GET", ["users", id, "roles"]) => {
                let user = self.user(&store, id).await?;
                self.reply(session, StatusCode::OK, Some(json!({"roles": user.roles})))
                    .await
            }
            ("POST", ["users", id, "roles"]) => {
                let body = self.json_body(session).await?;
                let role = text_field(&body, "role")?.ok_or_else(|| invalid("role", "required"))?;
                self.user(&store, id).await?;
                if accounts.add_role(id, &role).await.map_err(account_error)? {
                    self.forget(id);
                }
                self.reply(session, StatusCode::NO_CONTENT, None).await
            }
            ("DELETE", ["users", id, "roles", role]) => {
                self.user(&store, id).await?;
                if !accounts
                    .remove_role(id, role)
                    .await
                    .map_err(account_error)?
                {
                    return Err(GatewayError::Missing("role assignment"));
                }
                self.forget(id);
                self.reply(session, StatusCode::NO_CONTENT, None).await
            }
            ("GET", ["users", id, "sessions"]) => {
                self.user(&store, id).await?;
                let list: Vec<Value> = store
                    .sessions_of(id)
                    .await
                    .map_err(store_error)?
                    .iter()
                    .map(|s| {
                        json!({
                            "id": &s.id_hash[..16],
                            "created_at": s.created_at,
                            "last_seen_at": s.last_seen_at,
                            "expires_at": s.idle_expires_at.min(s.absolute_expires_at),
                            "ip": s.ip,
                            "user_agent": s.user_agent,
                        })
                    })
                    .collect();
                self.reply(session, StatusCode::OK, Some(json!({"sessions": list})))
                    .await
            }
            ("DELETE", ["users", id, "sessions"]) => {
                self.user(&store, id).await?;
                let ended = accounts.revoke_sessions(id).await.map_err(account_error)?;
                self.forget(id);
                self.reply(session, StatusCode::OK, Some(json!({"revoked": ended})))
                    .await
            }
            ("DELETE", ["users", id, "sessions", handle]) => {
                if !accounts
                    .revoke_session(id, handle)
                    .await
                    .map_err(account_error)?
                {
                    return Err(GatewayError::Missing("session"));
                }
                self.forget(id);
                self.reply(session, StatusCode::NO_CONTENT, None).await
            }
            ("GET", ["roles"]) => {
                let roles: Vec<Value> = store
                    .roles()
                    .await
                    .map_err(store_error)?
                    .iter()
                    .map(
                        |r| json!({"name": r.name, "description": r.description, "users": r.users}),
                    )
                    .collect();
                self.reply(session, StatusCode::OK, Some(json!({"roles": roles})))
                    .await
            }
            ("POST", ["roles"]) => {
                let body = self.json_body(session).await?;
                let name = text_field(&body, "name")?.ok_or_else(|| invalid("name", "required"))?;
                let description = text_field(&body, "description")?.unwrap_or_default();
                accounts.create_role(&name, &description).await.map_err(
                    |e| match account_error(e) {
                        GatewayError::Validation { message, .. } => invalid("name", message),
                        other => other,
                    },
                )?;
                let created = json!({"name": name, "description": description, "users": 0});
                self.reply(session, StatusCode::CREATED, Some(created))
                    .await
            }
            ("DELETE", ["roles", role]) => {
                let force = query_param(session, "force").is_some_and(|v| v == "true");
                let holders_filter = UserFilter {
                    role: Some(role.to_string()),
                    limit: MAX_PAGE,
                    ..UserFilter::default()
                };
                let holders = store
                    .search_users(&holders_filter)
                    .await
                    .map_err(store_error)?
                    .0;
                accounts
                    .delete_role(role, force)
                    .await
                    .map_err(account_error)?;
                for user in &holders {
                    self.forget(&user.id);
                }
                self.reply(session, StatusCode::NO_CONTENT, None).await
            }
            ("GET", ["events"]) => self.events(session, &store).await,
            _ => {
                let known = ROUTES
                    .iter()
                    .any(|(_, path, _, _)| path_matches(path, &segments));
                Err(if known {
                    GatewayError::MethodNotAllowed
                } else {
                    GatewayError::UnknownEndpoint
                })
            }
        }
    }

    /// An import's file: CSV or XLSX, by `Content-Type`.
    async fn sheet_body(&self, session: &mut Session) -> Result<bytes::Bytes, GatewayError> {
        let content_type = session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !SHEET_TYPES.contains(&content_type.as_str()) {
            return Err(GatewayError::UnsupportedMediaType);
        }
        body::read_small_body(session, import::MAX_IMPORT_BYTES, self.body_timeout).await
    }

    async fn list_users(&self, session: &mut Session, store: &Store) -> Result<(), GatewayError> {
        let status = query_param(session, "status")
            .map(|s| {
                UserStatus::parse(&s)
                    .ok_or_else(|| invalid("status", "must be enabled, disabled or unverified"))
            })
            .transpose()?;
        let limit = int_param(session, "limit", 50, MAX_PAGE)?;
        let offset = int_param(session, "offset", 0, i64::MAX)?;
        let filter = UserFilter {
            status,
            role: query_param(session, "role"),
            text: query_param(session, "q").filter(|q| !q.is_empty()),
            sort: query_param(session, "sort")
                .map(|s| {
                    UserSort::parse(&s).ok_or_else(|| {
                        invalid("sort", "must be username, email, status, newest or oldest")
                    })
                })
                .transpose()?
                .unwrap_or_default(),
            limit: limit.max(1),
            offset,
        };
        let (users, total) = store.search_users(&filter).await.map_err(store_error)?;
        let list: Vec<Value> = users.iter().map(User::public_json).collect();
        let page = json!({"users": list, "total": total, "limit": filter.limit, "offset": offset});
        self.reply(session, StatusCode::OK, Some(page)).await
    }

    async fn user_draft(
        &self,
        session: &mut Session,
    ) -> Result<(UserDraft, MailOnCreate), GatewayError> {
        let body = self.json_body(session).await?;
        let flag = |name: &'static str| match body.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(name, "must be true or false")),
        };
        let mail = MailOnCreate {
            verification: flag("send_verification")?,
            welcome: flag("send_welcome")?,
        };
        let username =
            text_field(&body, "username")?.ok_or_else(|| invalid("username", "required"))?;
        let email = text_field(&body, "email")?.ok_or_else(|| invalid("email", "required"))?;
        let roles = match body.get("roles") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|r| {
                    r.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid("roles", "must be a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("roles", "must be a list of strings")),
        };
        let draft = UserDraft {
            username,
            email,
            given_name: text_field(&body, "given_name")?.unwrap_or_default(),
            surname: text_field(&body, "surname")?.unwrap_or_default(),
            status: status_field(&body)?,
            password: text_field(&body, "password")?,
            roles,
        };
        Ok((draft, mail))
    }

    async fn update_user(
        &self,
        session: &mut Session,
        store: &Store,
        accounts: &Accounts<'_>,
        id: &str,
    ) -> Result<(), GatewayError> {
        let body = self.json_body(session).await?;
        let custom_data = match body.get("custom_data") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(invalid("custom_data", "must be a JSON object")),
        };
        let update = ProfileUpdate {
            email: text_field(&body, "email")?,
            given_name: text_field(&body, "given_name")?,
            surname: text_field(&body, "surname")?,
            custom_data,
        };
        let status = status_field(&body)?;
        self.user(store, id).await?;
        accounts
            .update_profile(id, &update)
            .await
            .map_err(account_error)?;
        if let Some(status) = status {
            accounts
                .set_status(id, status)
                .await
                .map_err(account_error)?;
            self.forget(id);
        }
        let user = self.user(store, id).await?;
        self.reply(session, StatusCode::OK, Some(user.public_json()))
            .await
    }

    async fn events(&self, session: &mut Session, store: &Store) -> Result<(), GatewayError> {
        let time = |name: &'static str| -> Result<Option<i64>, GatewayError> {
            query_param(session, name)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| invalid(name, "must be Unix seconds"))
                })
                .transpose()
        };
        let filter = EventFilter {
            user_id: query_param(session, "user_id"),
            kind: query_param(session, "kind"),
            since: time("since")?,
            until: time("until")?,
            limit: int_param(session, "limit", 50, MAX_PAGE)?.max(1),
            offset: int_param(session, "offset", 0, i64::MAX)?,
        };
        let events: Vec<Value> = store
            .events(&filter)
            .await
            .map_err(store_error)?
            .iter()
            .map(|e| {
                json!({"id": e.id, "kind": e.kind, "user_id": e.user_id, "actor": e.actor, "ip": e.ip,
                       "user_agent": e.user_agent, "detail": e.detail, "time": e.created_at})
            })
            .collect();
        self.reply(session, StatusCode::OK, Some(json!({"events": events})))
            .await
    }
}

fn path_matches(template: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
    parts.len() == segments.len()
        && parts
            .iter()
            .zip(segments)
            .all(|(p, s)| p.starts_with('{') || p == s)
}

/// The other built-in endpoints (below the builtin prefix): method, path, success status, summary.
pub const BUILTIN_ROUTES: &[(&str, &str, &str, &str)] = &[
    ("GET", "/login", "200", "The HTML login page (?return_to=)"),
    (
        "POST",
        "/login",
        "200",
        "Log in: JSON credentials (200 + cookie) or the page's form (303)",
    ),
    ("POST", "/logout", "204", "End the session"),
    ("GET", "/me", "200", "The current user"),
    (
        "POST",
        "/token",
        "200",
        "A bearer access token for credentials or the current session",
    ),
    ("GET", "/password-policy", "200", "The password policy"),
    (
        "GET",
        "/register",
        "200",
        "The registration page (when registration is open)",
    ),
    (
        "POST",
        "/register",
        "201",
        "Create an account: JSON or the page's form",
    ),
    (
        "GET",
        "/verify",
        "200",
        "A verification link's page, or whether it is valid (?token=)",
    ),
    (
        "POST",
        "/verify",
        "200",
        "Verify with a token (and a first password), or {login} for a new link (202)",
    ),
    ("GET", "/forgot", "200", "The page to ask for a reset link"),
    (
        "POST",
        "/forgot",
        "202",
        "Mail a reset link: the same answer whatever the account",
    ),
    (
        "GET",
        "/reset",
        "200",
        "A reset link's page, or whether it is valid (?token=)",
    ),
    ("POST", "/reset", "200", "A new password with a reset token"),
    ("GET", "/change", "200", "The change-password page"),
    (
        "POST",
        "/change",
        "200",
        "Change the password: current and new",
    ),
    ("GET", "/expired", "200", "The expired-password page"),
    (
        "POST",
        "/expired",
        "200",
        "Change an expired password: current and new",
    ),
];

/// The OpenAPI 3.1 document of the admin API (built from [`ROUTES`]) and the other built-in
/// endpoints (from [`BUILTIN_ROUTES`]).
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, success, summary) in BUILTIN_ROUTES {
        let entry = paths
            .entry(format!("/_postern{path}"))
            .or_insert_with(|| json!({}));
        entry[method.to_lowercase()] = json!({
            "summary": summary,
            "operationId": format!("{}{}", method.to_lowercase(), path.replace('/', "_")),
            "responses": {
                *success: {"description": "success"},
                "401": {"$ref": "#/components/responses/Error"},
                "429": {"$ref": "#/components/responses/Error"},
            },
        });
    }
    for (method, path, success, summary) in ROUTES {
        let full = format!("/_postern/admin{path}");
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut operation = json!({
            "summary": summary,
            "operationId": format!("{}{}", method.to_lowercase(), path.replace(['/', '{', '}', '.'], "_")),
            "parameters": parameters,
            "responses": {
                *success: {"description": "success"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "409": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"},
            },
            "security": [{"session": []}, {"bearer": []}],
        });
        if *path == "/users/import" {
            operation["requestBody"] = json!({
                "required": true,
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}},
                },
            });
        } else if matches!(*method, "POST" | "PATCH" | "PUT") && !path.ends_with("unlock") {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"type": "object"}}},
            });
        }
        let entry = paths.entry(full).or_insert_with(|| json!({}));
        entry[method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "postern admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "__Host-postern"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
            "responses": {
                "Error": {
                    "description": "postern error",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"error": {"type": "object", "properties": {
                            "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}
                        }, "required": ["code", "message"]}},
                        "required": ["error"],
                    }}},
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_every_route_once() {
        let doc = openapi();
        assert_eq!(doc["openapi"], "3.1.0");
        for (method, path, _, _) in ROUTES {
            let op = &doc["paths"][format!("/_postern/admin{path}")][method.to_lowercase()];
            assert!(op.is_object(), "{method} {path} missing");
        }
        let operations: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(operations, ROUTES.len() + BUILTIN_ROUTES.len());
    }

    #[test]
    fn templates_match_segments() {
        assert!(path_matches(
            "/users/{id}/roles/{role}",
            &["users", "x", "roles", "y"]
        ));
        assert!(!path_matches("/users/{id}", &["users", "x", "roles"]));
    }
}
