//! The account endpoints: register, verify, forgot, reset, change, expired, password-policy.
//! JSON for API clients, HTML pages for browsers; the rules live in [`crate::accounts`].

use http::StatusCode;
use pingora::proxy::Session;
use serde_json::json;

use super::pages::{self, Field, Form};
use super::{Builtin, Caller, Input, query_param};
use crate::accounts::{Registration, VerifyOutcome};
use crate::error::GatewayError;
use crate::proxy::respond;

/// The same answer for every `forgot` and resend request, whatever the account.
const ACCEPTED_MESSAGE: &str =
    "If an account matches, a message with a link is on its way. Check your mail.";

/// A page whose form posts a mailed link's token back to `endpoint`.
struct TokenForm<'a> {
    endpoint: &'a str,
    title: &'a str,
    intro: Option<&'a str>,
    fields: Vec<Field<'static>>,
    submit: &'a str,
}

/// What a page needs to show a form again after a mistake.
struct Retry<'a> {
    input: &'a Input,
    error: String,
}

impl Builtin {
    async fn json(
        &self,
        session: &mut Session,
        status: StatusCode,
        body: serde_json::Value,
        set_cookies: Vec<String>,
    ) -> Result<(), GatewayError> {
        let cookies: Vec<_> = set_cookies
            .into_iter()
            .map(|c| (http::header::SET_COOKIE, c))
            .collect();
        respond::json(session, status, &body, &cookies)
            .await
            .map_err(|_| GatewayError::Internal)
    }

    async fn message_page(
        &self,
        session: &mut Session,
        status: StatusCode,
        title: &str,
        text: &str,
        links: Vec<(String, &str)>,
    ) -> Result<(), GatewayError> {
        self.send_page(session, status, pages::message(title, text, &links), vec![])
            .await
    }

    async fn problem_page(
        &self,
        session: &mut Session,
        err: &GatewayError,
        title: &str,
        links: Vec<(String, &str)>,
    ) -> Result<(), GatewayError> {
        let page = pages::problem(title, &err.to_string(), &links);
        self.send_page(session, err.status(), page, vec![]).await
    }

    fn sign_in_link(&self) -> Vec<(String, &'static str)> {
        vec![(self.login_path(), "Sign in")]
    }

    /// The token from the query (`token`, or Stormpath's `sptoken`).
    fn query_token(session: &Session) -> Option<String> {
        query_param(session, "token").or_else(|| query_param(session, "sptoken"))
    }

    fn input_token(input: &Input) -> Option<String> {
        input
            .get("token")
            .or_else(|| input.get("sptoken"))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    /// A new password from a form must be typed twice alike; JSON clients send it once.
    fn new_password<'a>(input: &'a Input, field: &'static str) -> Result<&'a str, GatewayError> {
        let password = input.required(field)?;
        if input.from_form && input.get("password_confirm") != Some(password) {
            return Err(GatewayError::Validation {
                field: "password_confirm",
                message: "the two passwords differ".into(),
            });
        }
        Ok(password)
    }

    fn password_fields(&self, label: &'static str) -> Vec<Field<'static>> {
        vec![
            Field::new("password", label, "password", "new-password").hint(
                "Use a long passphrase; common passwords and ones that contain your username are refused.",
            ),
            Field::new("password_confirm", "Repeat it", "password", "new-password"),
        ]
    }

    pub(super) async fn password_policy(&self, session: &mut Session) -> Result<(), GatewayError> {
        let body = self.lifecycle.policy.describe();
        self.json(session, StatusCode::OK, body, vec![]).await
    }

    // --- registration -------------------------------------------------------------------

    async fn register_form(
        &self,
        session: &mut Session,
        status: StatusCode,
        retry: Option<Retry<'_>>,
    ) -> Result<(), GatewayError> {
        let action = self.link("register");
        let value = |name: &str| {
            retry
                .as_ref()
                .map(|r| r.input.text(name))
                .unwrap_or_default()
        };
        let (username, email, given, surname) = (
            value("username"),
            value("email"),
            value("given_name"),
            value("surname"),
        );
        let error = retry.as_ref().map(|r| r.error.as_str());
        let mut fields = vec![
            Field::new("username", "Username", "text", "username").value(&username),
            Field::new("email", "Email", "email", "email").value(&email),
            Field::new("given_name", "First name", "text", "given-name")
                .value(&given)
                .optional(),
            Field::new("surname", "Last name", "text", "family-name")
                .value(&surname)
                .optional(),
        ];
        fields.extend(self.password_fields("Password"));
        let links = self.sign_in_link();
        self.send_form(session, status, |csrf| {
            Form {
                title: "Create an account",
                intro: None,
                error,
                action: &action,
                csrf,
                hidden: vec![],
                fields,
                submit: "Create account",
                links,
            }
            .render()
        })
        .await
    }

    pub(super) async fn register_page(&self, session: &mut Session) -> Result<(), GatewayError> {
        if !self.lifecycle.settings.registration_open {
            return Err(GatewayError::RegistrationClosed);
        }
        self.register_form(session, StatusCode::OK, None).await
    }

    pub(super) async fn register(
        &self,
        session: &mut Session,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        if !self.lifecycle.settings.registration_open {
            return Err(GatewayError::RegistrationClosed);
        }
        self.lifecycle.admit(caller.ip)?;
        let input = self.read_input(session).await?;
        let attempt = async {
            let registration = Registration {
                username: input.required("username")?.trim().to_string(),
                email: input.required("email")?.trim().to_string(),
                password: Self::new_password(&input, "password")?.to_string(),
                given_name: input.text("given_name").trim().to_string(),
                surname: input.text("surname").trim().to_string(),
                custom_data: None,
            };
            self.lifecycle
                .register(registration, &caller.origin(session))
                .await
                .map_err(GatewayError::from)
        }
        .await;
        let user = match attempt {
            Ok(user) => user,
            Err(err) if input.from_form && is_retryable(&err) => {
                let retry = Retry {
                    input: &input,
                    error: err.to_string(),
                };
                return self.register_form(session, err.status(), Some(retry)).await;
            }
            Err(err) => return Err(err),
        };
        let verification = self.lifecycle.settings.verification_required;
        if input.from_form {
            let text = if verification {
                "Your account is created. We sent you a message with a link: follow it to verify your address, then sign in."
            } else {
                "Your account is created. You can sign in now."
            };
            let links = self.sign_in_link();
            return self
                .message_page(session, StatusCode::CREATED, "Account created", text, links)
                .await;
        }
        let mut body = self.user_json(&user);
        body["verification_required"] = json!(verification);
        self.json(session, StatusCode::CREATED, body, vec![]).await
    }

    // --- verification -------------------------------------------------------------------

    async fn resend_form(
        &self,
        session: &mut Session,
        status: StatusCode,
        error: Option<&str>,
    ) -> Result<(), GatewayError> {
        let action = self.link("verify");
        let links = self.sign_in_link();
        self.send_form(session, status, |csrf| {
            Form {
                title: "Verify your account",
                intro: Some(
                    "Enter your username or email and we will send you a new verification link.",
                ),
                error,
                action: &action,
                csrf,
                hidden: vec![],
                fields: vec![Field::new("login", "Username or email", "text", "username")],
                submit: "Send the link",
                links,
            }
            .render()
        })
        .await
    }

    async fn set_first_password_form(
        &self,
        session: &mut Session,
        status: StatusCode,
        token: &str,
        username: &str,
        error: Option<&str>,
    ) -> Result<(), GatewayError> {
        let intro = format!("Choose a password for {username} to finish setting up your account.");
        let form = TokenForm {
            endpoint: "verify",
            title: "Set your password",
            intro: Some(&intro),
            fields: self.password_fields("New password"),
            submit: "Set password and sign in",
        };
        self.token_form(session, status, form, token, error).await
    }

    /// A form that posts a mailed link's token back to its endpoint.
    async fn token_form(
        &self,
        session: &mut Session,
        status: StatusCode,
        form: TokenForm<'_>,
        token: &str,
        error: Option<&str>,
    ) -> Result<(), GatewayError> {
        let action = self.link(form.endpoint);
        self.send_form(session, status, |csrf| {
            Form {
                title: form.title,
                intro: form.intro,
                error,
                action: &action,
                csrf,
                hidden: vec![("token", token)],
                fields: form.fields,
                submit: form.submit,
                links: vec![],
            }
            .render()
        })
        .await
    }

    /// `GET /verify?token=`: never uses the link up (mail scanners fetch links): browsers get a
    /// button that confirms (or, for an account without a password, the form to choose one), API
    /// clients whether the link is valid. Without a token: the form to ask for a new link.
    pub(super) async fn verify_link(&self, session: &mut Session) -> Result<(), GatewayError> {
        let html = respond::wants_html(session);
        let Some(token) = Self::query_token(session) else {
            if html {
                return self.resend_form(session, StatusCode::OK, None).await;
            }
            return Err(GatewayError::Validation {
                field: "token",
                message: "required".into(),
            });
        };
        let account = self
            .lifecycle
            .verify_account(&token)
            .await
            .map_err(GatewayError::from);
        match (account, html) {
            (Ok(user), true) if user.password_hash.is_none() => {
                self.set_first_password_form(session, StatusCode::OK, &token, &user.username, None)
                    .await
            }
            (Ok(user), true) => self.confirm_form(session, &token, &user.email).await,
            (Ok(user), false) => {
                let body =
                    json!({"status": "valid", "password_required": user.password_hash.is_none()});
                self.json(session, StatusCode::OK, body, vec![]).await
            }
            (Err(err), true) => {
                let links = vec![(self.link("verify"), "Send a new link")];
                self.problem_page(session, &err, "Verification failed", links)
                    .await
            }
            (Err(err), false) => Err(err),
        }
    }

    async fn confirm_form(
        &self,
        session: &mut Session,
        token: &str,
        email: &str,
    ) -> Result<(), GatewayError> {
        let intro = format!("Confirm that {email} is your address.");
        let form = TokenForm {
            endpoint: "verify",
            title: "Verify your account",
            intro: Some(&intro),
            fields: vec![],
            submit: "Confirm my address",
        };
        self.token_form(session, StatusCode::OK, form, token, None)
            .await
    }

    /// `POST /verify`: `{"token"}` (with `"password"` for an account without one) verifies;
    /// `{"login"}` asks for a new link and gets the same answer whatever the account.
    pub(super) async fn verify(
        &self,
        session: &mut Session,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        self.lifecycle.admit(caller.ip)?;
        let input = self.read_input(session).await?;
        let origin = caller.origin(session);
        let Some(token) = Self::input_token(&input) else {
            let login = input
                .get("login")
                .or_else(|| input.get("email"))
                .or_else(|| input.get("username"))
                .filter(|l| !l.trim().is_empty())
                .ok_or(GatewayError::Validation {
                    field: "login",
                    message: "required (or token)".into(),
                })?
                .trim()
                .to_string();
            if !self.lifecycle.mail_on() {
                return Err(GatewayError::MailDisabled);
            }
            self.lifecycle.resend_verification(login, origin).await;
            return self.accepted(session, &input, "Check your mail").await;
        };
        let password = input
            .get("password")
            .map(|_| Self::new_password(&input, "password"))
            .transpose();
        let outcome = match password {
            Err(err) => Err(err),
            Ok(password) => self
                .lifecycle
                .verify(&token, password, &origin)
                .await
                .map_err(GatewayError::from),
        };
        match outcome {
            Ok(VerifyOutcome::Verified { user, password_set }) => {
                self.forget_user(&user.id);
                // Whoever chose the first password with the mailed token is that user: sign
                // them in, as after a login.
                let cookies = if password_set {
                    vec![self.start_session(session, &user, &caller).await?]
                } else {
                    vec![]
                };
                if input.from_form {
                    if password_set {
                        return self.see_other(session, "/".into(), cookies).await;
                    }
                    let links = self.sign_in_link();
                    return self
                        .message_page(
                            session,
                            StatusCode::OK,
                            "Account verified",
                            "Thank you: your address is confirmed. You can sign in now.",
                            links,
                        )
                        .await;
                }
                let body = json!({"status": "verified", "user": self.user_json(&user)});
                self.json(session, StatusCode::OK, body, cookies).await
            }
            Ok(VerifyOutcome::NeedsPassword { user }) => {
                if input.from_form {
                    return self
                        .set_first_password_form(
                            session,
                            StatusCode::UNPROCESSABLE_ENTITY,
                            &token,
                            &user.username,
                            Some("Choose a password."),
                        )
                        .await;
                }
                Err(GatewayError::Validation {
                    field: "password",
                    message: "this account has no password yet: send one with the token".into(),
                })
            }
            Err(err) if input.from_form && is_retryable(&err) => {
                let username = self
                    .lifecycle
                    .verify_account(&token)
                    .await
                    .map(|u| u.username)
                    .unwrap_or_default();
                self.set_first_password_form(
                    session,
                    err.status(),
                    &token,
                    &username,
                    Some(&err.to_string()),
                )
                .await
            }
            Err(err) if input.from_form => {
                let links = vec![(self.link("verify"), "Send a new link")];
                self.problem_page(session, &err, "Verification failed", links)
                    .await
            }
            Err(err) => Err(err),
        }
    }

    /// `202` with the one answer `forgot` and resend give, whatever the account.
    async fn accepted(
        &self,
        session: &mut Session,
        input: &Input,
        title: &str,
    ) -> Result<(), GatewayError> {
        if input.from_form {
            let links = self.sign_in_link();
            return self
                .message_page(
                    session,
                    StatusCode::ACCEPTED,
                    title,
                    ACCEPTED_MESSAGE,
                    links,
                )
                .await;
        }
        let body = json!({"status": "accepted", "message": ACCEPTED_MESSAGE});
        self.json(session, StatusCode::ACCEPTED, body, vec![]).await
    }

    // --- forgot and reset ---------------------------------------------------------------

    pub(super) async fn forgot_page(&self, session: &mut Session) -> Result<(), GatewayError> {
        if !self.lifecycle.mail_on() {
            return Err(GatewayError::MailDisabled);
        }
        let action = self.link("forgot");
        let links = self.sign_in_link();
        self.send_form(session, StatusCode::OK, |csrf| {
            Form {
                title: "Forgot your password?",
                intro: Some("Enter your username or email and we will send you a link to choose a new password."),
                error: None,
                action: &action,
                csrf,
                hidden: vec![],
                fields: vec![Field::new("login", "Username or email", "text", "username")],
                submit: "Send the link",
                links,
            }
            .render()
        })
        .await
    }

    /// `POST /forgot`: always `202` with the same body, in the same time.
    pub(super) async fn forgot(
        &self,
        session: &mut Session,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        if !self.lifecycle.mail_on() {
            return Err(GatewayError::MailDisabled);
        }
        self.lifecycle.admit(caller.ip)?;
        let input = self.read_input(session).await?;
        let login = input
            .get("login")
            .or_else(|| input.get("email"))
            .or_else(|| input.get("username"))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .ok_or(GatewayError::Validation {
                field: "login",
                message: "required (or email)".into(),
            })?
            .to_string();
        self.lifecycle.forgot(login, caller.origin(session)).await;
        self.accepted(session, &input, "Check your mail").await
    }

    async fn reset_form(
        &self,
        session: &mut Session,
        status: StatusCode,
        token: &str,
        error: Option<&str>,
    ) -> Result<(), GatewayError> {
        let form = TokenForm {
            endpoint: "reset",
            title: "Choose a new password",
            intro: None,
            fields: self.password_fields("New password"),
            submit: "Save the new password",
        };
        self.token_form(session, status, form, token, error).await
    }

    /// `GET /reset?token=`: the form (browsers) or whether the token is valid (API clients).
    pub(super) async fn reset_page(&self, session: &mut Session) -> Result<(), GatewayError> {
        let html = respond::wants_html(session);
        let token = Self::query_token(session).unwrap_or_default();
        match (self.lifecycle.reset_account(&token).await, html) {
            (Ok(_), true) => self.reset_form(session, StatusCode::OK, &token, None).await,
            (Ok(_), false) => {
                let body = json!({"status": "valid"});
                self.json(session, StatusCode::OK, body, vec![]).await
            }
            (Err(err), true) => {
                let err = GatewayError::from(err);
                let links = vec![(self.link("forgot"), "Ask for a new link")];
                self.problem_page(session, &err, "This link does not work", links)
                    .await
            }
            (Err(err), false) => Err(err.into()),
        }
    }

    /// `POST /reset`: token and new password. Every session of the user ends; they sign in
    /// again with the new password.
    pub(super) async fn reset(
        &self,
        session: &mut Session,
        caller: Caller,
    ) -> Result<(), GatewayError> {
        self.lifecycle.admit(caller.ip)?;
        let input = self.read_input(session).await?;
        let token = Self::input_token(&input).ok_or(GatewayError::Validation {
            field: "token",
            message: "required".into(),
        })?;
        let attempt = async {
            let password = Self::new_password(&input, "password")?;
            self.lifecycle
                .reset(&token, password, &caller.origin(session))
                .await
                .map_err(GatewayError::from)
        }
        .await;
        match attempt {
            Ok(user) => {
                self.forget_user(&user.id);
                if input.from_form {
                    let links = self.sign_in_link();
                    return self
                        .message_page(
                            session,
                            StatusCode::OK,
                            "Password changed",
                            "Your new password is saved, and every session signed in with the old one has ended. Sign in with the new password.",
                            links,
                        )
                        .await;
                }
                let body = json!({"status": "reset"});
                self.json(session, StatusCode::OK, body, vec![]).await
            }
            Err(err) if input.from_form && is_retryable(&err) => {
                self.reset_form(session, err.status(), &token, Some(&err.to_string()))
                    .await
            }
            Err(err) if input.from_form => {
                let links = vec![(self.link("forgot"), "Ask for a new link")];
                self.problem_page(session, &err, "This link does not work", links)
                    .await
            }
            Err(err) => Err(err),
        }
    }

    // --- change and expired -------------------------------------------------------------

    async fn change_form(
        &self,
        session: &mut Session,
        status: StatusCode,
        expired: bool,
        return_to: &str,
        error: Option<&str>,
    ) -> Result<(), GatewayError> {
        let endpoint = if expired { "expired" } else { "change" };
        let action = self.link(endpoint);
        let (title, intro) = if expired {
            (
                "Your password has expired",
                Some("Choose a new password to continue."),
            )
        } else {
            ("Change your password", None)
        };
        let mut fields = vec![Field::new(
            "current_password",
            "Current password",
            "password",
            "current-password",
        )];
        fields.extend(self.password_fields("New password"));
        let links = vec![];
        self.send_form(session, status, |csrf| {
            Form {
                title,
                intro,
                error,
                action: &action,
                csrf,
                hidden: vec![("return_to", return_to)],
                fields,
                submit: "Change password",
                links,
            }
            .render()
        })
        .await
    }

    /// `GET /change` and `GET /expired`: the form, for a signed-in browser.
    pub(super) async fn change_page(
        &self,
        session: &mut Session,
        caller: Caller,
        expired: bool,
    ) -> Result<(), GatewayError> {
        if caller.principal.is_none() {
            if respond::wants_html(session) {
                let here = self.link(if expired { "expired" } else { "change" });
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", &here)
                    .finish();
                respond::redirect(session, format!("{}?{query}", self.login_path()))
                    .await
                    .map_err(|_| GatewayError::Internal)?;
                return Ok(());
            }
            return Err(GatewayError::Unauthenticated);
        }
        let return_to = self
            .query_return_to(session)
            .unwrap_or_else(|| "/".to_string());
        self.change_form(session, StatusCode::OK, expired, &return_to, None)
            .await
    }

    /// `POST /change` and `POST /expired`: current and new password. Every session of the user
    /// ends; this client gets a new one at once, so the restriction of an expired password lifts.
    pub(super) async fn change(
        &self,
        session: &mut Session,
        caller: Caller,
        expired: bool,
    ) -> Result<(), GatewayError> {
        let principal = caller
            .principal
            .clone()
            .ok_or(GatewayError::Unauthenticated)?;
        self.lifecycle.admit(caller.ip)?;
        let input = self.read_input(session).await?;
        let new_field = if input.get("new_password").is_some() {
            "new_password"
        } else {
            "password"
        };
        let attempt = async {
            let current = input.required("current_password")?;
            let new = if input.from_form {
                Self::new_password(&input, "password")?
            } else {
                input.required(new_field)?
            };
            self.lifecycle
                .change(&principal.user_id, current, new, &caller.origin(session))
                .await
                .map_err(GatewayError::from)
        }
        .await;
        let return_to = input
            .get("return_to")
            .and_then(|r| super::safe_return_to(r, &self.sessions.settings().return_to_hosts))
            .unwrap_or_else(|| "/".to_string());
        if let Err(GatewayError::WrongPassword) = attempt
            && let Ok(store) = self.store()
            && let Ok(Some(user)) = store.user_by_id(&principal.user_id).await
        {
            self.wrong_current_password(session, &store, &user, &caller)
                .await;
        }
        let user = match attempt {
            Ok(user) => user,
            Err(err) if input.from_form && is_retryable(&err) => {
                return self
                    .change_form(
                        session,
                        err.status(),
                        expired,
                        &return_to,
                        Some(&err.to_string()),
                    )
                    .await;
            }
            Err(err) => return Err(err),
        };
        self.forget_user(&user.id);
        let cookies = if caller.via_bearer {
            vec![]
        } else {
            vec![self.start_session(session, &user, &caller).await?]
        };
        if input.from_form {
            return self.see_other(session, return_to, cookies).await;
        }
        let body = json!({"status": "changed", "user": self.user_json(&user)});
        self.json(session, StatusCode::OK, body, cookies).await
    }
}

/// Mistakes a form page shows beside the form (rather than a dead end).
fn is_retryable(err: &GatewayError) -> bool {
    matches!(
        err,
        GatewayError::PasswordPolicy { .. }
            | GatewayError::Validation { .. }
            | GatewayError::Conflict(_)
            | GatewayError::WrongPassword
    )
}
