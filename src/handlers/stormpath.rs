//! The Stormpath-flavoured account API (`kind = "account-api"`): the endpoints and JSON that
//! react-stormpath 2.0.1 and express-stormpath clients expect, on any prefix, over the same
//! sessions, tokens, policy, rate limits and mail as postern's own endpoints.

use std::time::{Duration, UNIX_EPOCH};

use http::{Method, StatusCode, header};
use pingora::proxy::Session;
use serde_json::{Map, Value, json};

use super::{
    Builtin, Caller, Credentials, is_form, is_json, json_string_fields, query_param, same_site,
};
use crate::accounts::{Accounts, Actor, Registration, VerifyOutcome};
use crate::config::AccountApi;
use crate::error::GatewayError;
use crate::proxy::{body, respond};
use crate::store::{ProfileUpdate, User, UserStatus};

const MAX_BODY: usize = 64 * 1024;

/// An error as react-stormpath reads it (`message`, then `error`), with postern's code.
fn error_body(err: &GatewayError) -> Value {
    json!({"status": err.status().as_u16(), "message": err.to_string(), "error": err.code()})
}

fn rfc3339(seconds: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64))
        .to_string()
}

fn stormpath_status(status: UserStatus) -> &'static str {
    match status {
        UserStatus::Enabled => "ENABLED",
        UserStatus::Disabled => "DISABLED",
        UserStatus::Unverified => "UNVERIFIED",
    }
}

/// The account as Stormpath (and userdb's stormpath transformer) shaped it; `roles` are the
/// user's roles with their descriptions (its groups).
pub fn account_json(
    user: &User,
    href_base: &str,
    roles: &[(String, String)],
    password_expired: bool,
) -> Value {
    let href = format!("{href_base}/accounts/{}", user.id);
    let full_name = [user.given_name.as_str(), user.surname.as_str()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut custom_data = match serde_json::from_str::<Value>(&user.custom_data) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    custom_data.insert("href".into(), json!(format!("{href}/customData")));
    let groups: Vec<Value> = roles
        .iter()
        .map(|(role, description)| {
            json!({
                "href": format!("{href_base}/groups/{role}"),
                "name": role,
                "description": description,
                "status": "ENABLED",
            })
        })
        .collect();
    let mut account = json!({
        "href": href,
        "username": user.username,
        "email": user.email,
        "givenName": user.given_name,
        "middleName": null,
        "surname": user.surname,
        "fullName": full_name,
        "status": stormpath_status(user.status),
        "createdAt": rfc3339(user.created_at),
        "modifiedAt": rfc3339(user.updated_at),
        "customData": custom_data,
        "groups": {"href": format!("{href}/groups"), "size": groups.len(), "items": groups},
    });
    if password_expired {
        account["password_expired"] = json!(true);
    }
    account
}

fn field(name: &str, label: &str, kind: &str, required: bool) -> Value {
    json!({"name": name, "label": label, "placeholder": label, "required": required, "type": kind})
}

/// The user's custom data with `sent` merged in: a key set to `null` is removed, `href` is
/// ignored, and keys the route protects (kept by administrators) cannot be written.
fn merged_custom_data(
    user: Option<&User>,
    sent: Option<&Value>,
    api: &AccountApi,
) -> Result<Option<Value>, GatewayError> {
    let sent = match sent {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(GatewayError::Validation {
                field: "customData",
                message: "must be an object".into(),
            });
        }
    };
    let mut data = match user.map(|u| serde_json::from_str::<Value>(&u.custom_data)) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    };
    for (key, value) in sent {
        if key == "href" {
            continue;
        }
        if api.protected_custom_data.iter().any(|k| k == key) {
            if data.get(key) == Some(value) {
                continue;
            }
            return Err(GatewayError::Validation {
                field: "customData",
                message: format!("{key:?} is kept by administrators"),
            });
        }
        if value.is_null() {
            data.remove(key);
        } else {
            data.insert(key.clone(), value.clone());
        }
    }
    Ok(Some(Value::Object(data)))
}

fn text(body: &Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| body.get(*n).and_then(Value::as_str))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Builtin {
    /// Serves `rest` (the path below the account API's prefix). Every error is answered here,
    /// in the shape the client reads.
    pub async fn stormpath(
        &self,
        session: &mut Session,
        rest: &str,
        caller: Caller,
        api: &AccountApi,
    ) -> Result<(), GatewayError> {
        let endpoint = rest.trim_matches('/').to_string();
        match self
            .stormpath_endpoint(session, &endpoint, caller, api)
            .await
        {
            Ok(()) => Ok(()),
            Err(err) => self.stormpath_error(session, &err).await,
        }
    }

    async fn stormpath_error(
        &self,
        session: &mut Session,
        err: &GatewayError,
    ) -> Result<(), GatewayError> {
        let mut extra = vec![(header::CACHE_CONTROL, "no-store".to_string())];
        if let GatewayError::TooManyRequests { retry_after } = err {
            extra.push((header::RETRY_AFTER, retry_after.to_string()));
        }
        if let GatewayError::MethodNotAllowed = err {
            let endpoint = session
                .req_header()
                .uri
                .path()
                .rsplit('/')
                .next()
                .unwrap_or("");
            let allow = match endpoint {
                "me" | "login" | "register" | "verify" | "change" => "GET, HEAD, POST",
                _ => "POST",
            };
            extra.push((header::ALLOW, allow.to_string()));
        }
        respond::json(session, err.status(), &error_body(err), &extra)
            .await
            .map_err(|_| GatewayError::Internal)
    }

    async fn stormpath_endpoint(
        &self,
        session: &mut Session,
        endpoint: &str,
        caller: Caller,
        api: &AccountApi,
    ) -> Result<(), GatewayError> {
        let method = session.req_header().method.clone();
        let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        // The OAuth endpoints take credentials or tokens in the body, never the cookie.
        let oauth = endpoint.starts_with("oauth/");
        if changes_state
            && !oauth
            && endpoint != "login"
            && !caller.via_bearer
            && caller.session_token.is_some()
        {
            let req = session.req_header();
            // react-stormpath marks its own requests with `X-Stormpath-Agent` (even a bodiless
            // logout): a custom header, which no cross-site form can send, stands in for JSON.
            if req.headers.contains_key("x-stormpath-agent") {
                same_site::check_origin(req, caller.origin_allowed)?;
            } else {
                same_site::check(req, self.csrf_cookie_name(session), caller.origin_allowed)?;
            }
        }
        match (endpoint, method) {
            ("me", Method::GET | Method::HEAD) => self.sp_me(session, caller, api).await,
            ("me", Method::POST) => self.sp_update_me(session, caller, api).await,
            ("login", Method::GET | Method::HEAD) => {
                let view = json!({
                    "form": {"fields": [
                        field("login", "Username or Email", "text", true),
                        field("password", "Password", "password", true),
                    ]},
                    "accountStores": [],
                });
                self.sp_json(session, StatusCode::OK, view, vec![]).await
            }
            ("login", Method::POST) => self.sp_login(session, caller, api).await,
            ("register", Method::GET | Method::HEAD) => {
                if !self.lifecycle.settings.registration_open {
                    return Err(GatewayError::RegistrationClosed);
                }
                let view = json!({
                    "form": {"fields": [
                        field("givenName", "First Name", "text", false),
                        field("surname", "Last Name", "text", false),
                        field("email", "Email", "email", true),
                        field("password", "Password", "password", true),
                    ]},
                    "accountStores": [],
                });
                self.sp_json(session, StatusCode::OK, view, vec![]).await
            }
            ("register", Method::POST) => self.sp_register(session, caller, api).await,
            ("verify", Method::GET | Method::HEAD) => self.sp_verify_link(session, caller).await,
            ("verify", Method::POST) => self.sp_verify(session, caller).await,
            ("forgot", Method::POST) => self.sp_forgot(session, caller).await,
            ("change", Method::GET | Method::HEAD) => self.sp_check_reset(session).await,
            ("change", Method::POST) => self.sp_reset(session, caller).await,
            ("logout", Method::POST) => self.sp_logout(session, caller).await,
            ("oauth/token", Method::POST) => self.sp_oauth_token(session, caller).await,
            ("oauth/revoke", Method::POST) => self.sp_oauth_revoke(session).await,
            _ => Err(GatewayError::MethodNotAllowed),
        }
    }

    async fn sp_json(
        &self,
        session: &mut Session,
        status: StatusCode,
        body: Value,
        set_cookies: Vec<String>,
    ) -> Result<(), GatewayError> {
        let mut extra = vec![(header::CACHE_CONTROL, "no-store".to_string())];
        extra.extend(set_cookies.into_iter().map(|c| (header::SET_COOKIE, c)));
        respond::json(session, status, &body, &extra)
            .await
            .map_err(|_| GatewayError::Internal)
    }

    async fn read_json(&self, session: &mut Session) -> Result<Value, GatewayError> {
        if !is_json(session.req_header()) {
            return Err(GatewayError::UnsupportedMediaType);
        }
        let bytes = body::read_small_body(session, MAX_BODY, self.body_timeout).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| GatewayError::BadRequest("the body is not valid JSON"))?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(GatewayError::BadRequest("the body must be a JSON object"))
        }
    }

    async fn sp_account(&self, user: &User, api: &AccountApi) -> Result<Value, GatewayError> {
        let roles = if user.roles.is_empty() {
            Vec::new()
        } else {
            self.store()?
                .role_descriptions_of(&user.id)
                .await
                .map_err(|_| GatewayError::Unavailable("the user database"))?
        };
        Ok(account_json(
            user,
            &api.href_base,
            &roles,
            self.password_expired(user),
        ))
    }

    async fn sp_me(
        &self,
        session: &mut Session,
        caller: Caller,
        api: &AccountApi,
    ) -> Result<(), GatewayError> {
        let user = self.current_user(&caller).await?;
        let body = json!({"account": self.sp_account(&user, api).await?});
        self.sp_json(session, StatusCode::OK, body, vec![]).await
    }

    /// `POST /me`: names and custom data; a new password with the current one
    /// (`existingPassword`), which ends the user's other sessions; a new email with the current
    /// password too, after which the account is unverified until the link mailed to the new
    /// address is followed (the address is never trusted on the user's word).
    async fn sp_update_me(
        &self,
        session: &mut Session,
        caller: Caller,
        api: &AccountApi,
    ) -> Result<(), GatewayError> {
        let user = self.current_user(&caller).await?;
        self.lifecycle.admit(caller.ip)?;
        let body = self.read_json(session).await?;
        let new_email = text(&body, &["email"]).filter(|e| !e.eq_ignore_ascii_case(&user.email));
        let new_password = text(&body, &["password"]);
        let existing = text(&body, &["existingPassword"]).unwrap_or_default();
        if new_password.is_none() && self.password_expired(&user) {
            return Err(GatewayError::PasswordExpired(
                "POST /me with password and existingPassword".into(),
            ));
        }
        let custom_data = merged_custom_data(Some(&user), body.get("customData"), api)?;
        let store = self.store()?;
        // Everything about a new email is checked before anything changes.
        if let Some(email) = &new_email {
            crate::store::validate_email(email).map_err(|e| GatewayError::Validation {
                field: "email",
                message: e.to_string(),
            })?;
            self.lifecycle.check_mailable(email)?;
            if !self
                .lifecycle
                .mailer()
                .is_some_and(|m| m.sends(crate::mail::MailKind::Verification))
            {
                return Err(GatewayError::Validation {
                    field: "email",
                    message: "a new email needs mail, to verify the address".into(),
                });
            }
            let taken = store
                .user_by_login(email)
                .await
                .map_err(|_| GatewayError::Unavailable("the user database"))?;
            if taken.is_some_and(|other| other.id != user.id) {
                return Err(GatewayError::Conflict("email is already taken".into()));
            }
            if new_password.is_none() {
                let verified = self
                    .passwords
                    .verify(existing.clone(), user.password_hash.clone())
                    .await
                    .map_err(|_| GatewayError::Internal)?;
                if !verified.ok {
                    self.wrong_current_password(session, &store, &user, &caller)
                        .await;
                    return Err(GatewayError::WrongPassword);
                }
            }
        }
        let mut cookies = Vec::new();
        if let Some(password) = &new_password {
            let changed = self
                .lifecycle
                .change(&user.id, &existing, password, &caller.origin(session))
                .await
                .map_err(GatewayError::from);
            if let Err(GatewayError::WrongPassword) = changed {
                self.wrong_current_password(session, &store, &user, &caller)
                    .await;
            }
            let changed = changed?;
            self.forget_user(&changed.id);
            if !caller.via_bearer && new_email.is_none() {
                cookies.push(self.start_session(session, &changed, &caller).await?);
            }
        }
        let update = ProfileUpdate {
            email: new_email.clone(),
            given_name: text(&body, &["givenName", "firstName"]),
            surname: text(&body, &["surname", "lastName"]),
            custom_data,
        };
        let accounts = Accounts {
            store: &store,
            passwords: &self.passwords,
            policy: &self.lifecycle.policy,
            actor: Actor {
                name: user.username.clone(),
                ip: caller.ip_text(),
            },
            now: self.sessions.now(),
        };
        accounts
            .update_profile(&user.id, &update)
            .await
            .map_err(super::admin::account_error)?;
        if let Some(email) = &new_email {
            self.lifecycle
                .email_changed(&user, email, &caller.origin(session))
                .await;
            accounts
                .set_status(&user.id, UserStatus::Unverified)
                .await
                .map_err(super::admin::account_error)?;
            let unverified = self.signed_in_user(&user.id).await?;
            self.lifecycle
                .send_verification(&store, &unverified)
                .await?;
            cookies.push(self.sessions.clearing_cookie(self.cookies(session).secure));
        }
        self.forget_user(&user.id);
        let user = self.signed_in_user(&user.id).await?;
        let body = json!({"account": self.sp_account(&user, api).await?});
        self.sp_json(session, StatusCode::OK, body, cookies).await
    }

    async fn sp_login(
        &self,
        session: &mut Session,
        caller: Caller,
        api: &AccountApi,
    ) -> Result<(), GatewayError> {
        self.rate_limit(&caller).await?;
        let body = self.read_json(session).await?;
        let creds = Credentials {
            login: text(&body, &["login", "username", "email"]).unwrap_or_default(),
            password: body
                .get("password")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            return_to: None,
            from_form: false,
        };
        let user_agent = Self::user_agent(session);
        let user = self
            .check_credentials(&creds, &caller, user_agent.clone())
            .await?;
        let cookie = self.start_session(session, &user, &caller).await?;
        self.record_login(&user, &caller, session, user_agent).await;
        let body = json!({"account": self.sp_account(&user, api).await?});
        self.sp_json(session, StatusCode::OK, body, vec![cookie])
            .await
    }

    async fn sp_register(
        &self,
        session: &mut Session,
        caller: Caller,
        api: &AccountApi,
    ) -> Result<(), GatewayError> {
        if !self.lifecycle.settings.registration_open {
            return Err(GatewayError::RegistrationClosed);
        }
        self.lifecycle.admit(caller.ip)?;
        let body = self.read_json(session).await?;
        let email = text(&body, &["email"]).ok_or(GatewayError::Validation {
            field: "email",
            message: "required".into(),
        })?;
        let custom_data = merged_custom_data(None, body.get("customData"), api)?;
        let registration = Registration {
            username: text(&body, &["username", "login"]).unwrap_or_else(|| email.clone()),
            email,
            password: body
                .get("password")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            given_name: text(&body, &["givenName", "firstName"]).unwrap_or_default(),
            surname: text(&body, &["surname", "lastName"]).unwrap_or_default(),
            custom_data,
        };
        let user = self
            .lifecycle
            .register(registration, &caller.origin(session))
            .await?;
        let body = json!({"account": self.sp_account(&user, api).await?});
        self.sp_json(session, StatusCode::OK, body, vec![]).await
    }

    /// `GET /verify?sptoken=`: verifies, as react-stormpath's verify view asks it to. Only a
    /// request asking for JSON gets this far: a browser opening the link gets the app's page
    /// (whose script then asks), and a scanner's plain fetch of the link is refused.
    async fn sp_verify_link(
        &self,
        session: &mut Session,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        let wants_json = session
            .req_header()
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
        if !wants_json {
            return Err(GatewayError::BadRequest(
                "open the verification link in the application",
            ));
        }
        let token = query_param(session, "sptoken")
            .or_else(|| query_param(session, "token"))
            .ok_or(GatewayError::Validation {
                field: "sptoken",
                message: "required".into(),
            })?;
        self.sp_verify_token(session, &token, &caller).await
    }

    async fn sp_verify_token(
        &self,
        session: &mut Session,
        token: &str,
        caller: &Caller,
    ) -> Result<(), GatewayError> {
        match self
            .lifecycle
            .verify(token, None, &caller.origin(session))
            .await?
        {
            VerifyOutcome::Verified { user, .. } => {
                self.forget_user(&user.id);
                self.sp_json(session, StatusCode::OK, json!({}), vec![])
                    .await
            }
            VerifyOutcome::NeedsPassword { .. } => Err(GatewayError::Validation {
                field: "password",
                message: format!(
                    "this account has no password yet: choose one at {}",
                    self.link("verify")
                ),
            }),
        }
    }

    /// `POST /verify`: `{"sptoken"}` verifies; `{"login"}` (or email) asks for a new link, with
    /// the same answer whatever the account.
    async fn sp_verify(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        self.lifecycle.admit(caller.ip)?;
        let body = self.read_json(session).await?;
        if let Some(token) = text(&body, &["sptoken", "token"]) {
            return self.sp_verify_token(session, &token, &caller).await;
        }
        let login =
            text(&body, &["login", "email", "username"]).ok_or(GatewayError::Validation {
                field: "login",
                message: "required".into(),
            })?;
        if !self.lifecycle.mail_on() {
            return Err(GatewayError::MailDisabled);
        }
        self.lifecycle
            .resend_verification(login, caller.origin(session))
            .await;
        self.sp_json(session, StatusCode::OK, json!({}), vec![])
            .await
    }

    /// `POST /forgot` `{"email"}`: always `200 {}`.
    async fn sp_forgot(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        if !self.lifecycle.mail_on() {
            return Err(GatewayError::MailDisabled);
        }
        self.lifecycle.admit(caller.ip)?;
        let body = self.read_json(session).await?;
        let login =
            text(&body, &["email", "login", "username"]).ok_or(GatewayError::Validation {
                field: "email",
                message: "required".into(),
            })?;
        self.lifecycle.forgot(login, caller.origin(session)).await;
        self.sp_json(session, StatusCode::OK, json!({}), vec![])
            .await
    }

    /// An unknown reset token is `404` here, which react-stormpath reports as an invalid link.
    fn sp_token_error(err: GatewayError) -> GatewayError {
        match err {
            GatewayError::AccountTokenInvalid => GatewayError::Missing("password reset token"),
            other => other,
        }
    }

    /// `GET /change?sptoken=`: `200 {}` while the reset link is valid.
    async fn sp_check_reset(&self, session: &mut Session) -> Result<(), GatewayError> {
        let token = query_param(session, "sptoken").unwrap_or_default();
        self.lifecycle
            .reset_account(&token)
            .await
            .map_err(|e| Self::sp_token_error(e.into()))?;
        self.sp_json(session, StatusCode::OK, json!({}), vec![])
            .await
    }

    /// `POST /change` `{"sptoken","password"}`: the reset. Every session of the user ends.
    async fn sp_reset(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        self.lifecycle.admit(caller.ip)?;
        let body = self.read_json(session).await?;
        let token = text(&body, &["sptoken", "token"]).ok_or(GatewayError::Validation {
            field: "sptoken",
            message: "required".into(),
        })?;
        let password = body
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(confirm) = body.get("confirmPassword").and_then(Value::as_str)
            && confirm != password
        {
            return Err(GatewayError::Validation {
                field: "confirmPassword",
                message: "the two passwords differ".into(),
            });
        }
        let user = self
            .lifecycle
            .reset(&token, &password, &caller.origin(session))
            .await
            .map_err(|e| Self::sp_token_error(e.into()))?;
        self.forget_user(&user.id);
        self.sp_json(session, StatusCode::OK, json!({}), vec![])
            .await
    }

    async fn sp_logout(&self, session: &mut Session, caller: Caller) -> Result<(), GatewayError> {
        self.end_session(&caller).await?;
        let clear = self.sessions.clearing_cookie(self.cookies(session).secure);
        self.sp_json(session, StatusCode::OK, json!({}), vec![clear])
            .await
    }

    /// The OAuth parameters, form-encoded (as react-stormpath sends them) or JSON.
    async fn oauth_params(
        &self,
        session: &mut Session,
    ) -> Result<std::collections::HashMap<String, String>, GatewayError> {
        let (form, json) = (is_form(session.req_header()), is_json(session.req_header()));
        let bytes = body::read_small_body(session, MAX_BODY, self.body_timeout).await?;
        if form {
            return Ok(form_urlencoded::parse(&bytes).into_owned().collect());
        }
        if json {
            return json_string_fields(&bytes);
        }
        Err(GatewayError::UnsupportedMediaType)
    }

    /// `POST /oauth/token`: the password grant starts a session whose id is the refresh token
    /// and answers with an access token bound to it; the refresh grant issues a new access
    /// token while that session lives.
    async fn sp_oauth_token(
        &self,
        session: &mut Session,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        let params = self.oauth_params(session).await?;
        let user_agent = Self::user_agent(session);
        let (user, refresh_token) = match params.get("grant_type").map(String::as_str) {
            Some("password") => {
                self.rate_limit(&caller).await?;
                let creds = Credentials {
                    login: params
                        .get("username")
                        .or_else(|| params.get("login"))
                        .cloned()
                        .unwrap_or_default(),
                    password: params.get("password").cloned().unwrap_or_default(),
                    return_to: None,
                    from_form: false,
                };
                let user = self
                    .check_credentials(&creds, &caller, user_agent.clone())
                    .await?;
                if self.password_expired(&user) {
                    return Err(GatewayError::PasswordExpired(
                        "POST /me with password and existingPassword, signed in with /login".into(),
                    ));
                }
                let created = self
                    .sessions
                    .create_refresh(&user, caller.ip_text(), user_agent.clone())
                    .await
                    .map_err(|_| GatewayError::Unavailable("the user database"))?;
                self.record_login(&user, &caller, session, user_agent).await;
                (user, created.token)
            }
            Some("refresh_token") => {
                let refresh = params.get("refresh_token").cloned().unwrap_or_default();
                let principal = self
                    .sessions
                    .authenticate_refresh(&refresh)
                    .await
                    .map_err(|_| GatewayError::Unavailable("the user database"))?
                    .ok_or(GatewayError::InvalidToken)?;
                let user = self.signed_in_user(&principal.user_id).await?;
                if self.password_expired(&user) {
                    return Err(GatewayError::PasswordExpired(
                        "POST /me with password and existingPassword".into(),
                    ));
                }
                (user, refresh)
            }
            _ => {
                return Err(GatewayError::Validation {
                    field: "grant_type",
                    message: "must be \"password\" or \"refresh_token\"".into(),
                });
            }
        };
        let issued = self
            .tokens
            .issue(&user, self.sessions.id_of(&refresh_token))
            .map_err(|e| {
                tracing::error!(error = %e, "could not sign a token");
                GatewayError::Internal
            })?;
        let body = json!({
            "access_token": issued.token,
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        });
        self.sp_json(session, StatusCode::OK, body, vec![]).await
    }

    /// `POST /oauth/revoke` `token=<refresh token>`: ends the session behind it (and with it
    /// every access token issued from it). Unknown tokens are not an error (RFC 7009).
    async fn sp_oauth_revoke(&self, session: &mut Session) -> Result<(), GatewayError> {
        let params = self.oauth_params(session).await?;
        if let Some(token) = params.get("token") {
            self.sessions
                .destroy(token)
                .await
                .map_err(|_| GatewayError::Unavailable("the user database"))?;
        }
        self.sp_json(session, StatusCode::OK, json!({}), vec![])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_look_like_stormpath_accounts() {
        let user = User {
            id: "u1".into(),
            username: "ann".into(),
            email: "ann@example.com".into(),
            given_name: "Ann".into(),
            surname: "Lee".into(),
            status: UserStatus::Unverified,
            password_hash: Some("x".into()),
            password_changed_at: None,
            custom_data: r#"{"favoriteColor":"teal"}"#.into(),
            session_epoch: 0,
            locked_until: None,
            created_at: 1_700_000_000,
            updated_at: 1_700_000_060,
            roles: vec!["staff".into()],
        };
        let roles = vec![("staff".to_string(), "Staff members".to_string())];
        let a = account_json(&user, "https://gw.example/api", &roles, false);
        assert_eq!(a["href"], "https://gw.example/api/accounts/u1");
        assert_eq!(a["fullName"], "Ann Lee");
        assert_eq!(a["status"], "UNVERIFIED");
        assert_eq!(a["createdAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["modifiedAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(a["customData"]["favoriteColor"], "teal");
        assert_eq!(
            a["groups"]["href"],
            "https://gw.example/api/accounts/u1/groups"
        );
        assert_eq!(
            a["groups"]["items"][0],
            json!({"href": "https://gw.example/api/groups/staff", "name": "staff", "description": "Staff members", "status": "ENABLED"})
        );
        assert!(a.get("password_expired").is_none());
        assert!(a.get("password_hash").is_none() && a.get("password").is_none());
        assert_eq!(
            account_json(&user, "", &roles, true)["password_expired"],
            true
        );
    }
}
