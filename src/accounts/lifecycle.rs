//! The self-service account lifecycle: registration, verification, forgotten and changed
//! passwords, and the mail each step sends. Handlers call it; it owns the rules.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::AccountSettings;
use super::policy::{Identity, PasswordPolicy, PolicyViolation};
use super::tokens::{AccountTokens, TokenError, TokenPurpose, TokenRejection};
use crate::auth::{Admission, Clock, Passwords, RateLimiter, WindowCounter};
use crate::error::GatewayError;
use crate::mail::{MailKind, Mailer};
use crate::metrics::Metrics;
use crate::services::StoreHandle;
use crate::store::{NewEvent, NewUser, PasswordChange, Store, StoreError, User, UserStatus};

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    #[error(transparent)]
    Token(#[from] TokenRejection),
    #[error("self-registration is not open")]
    RegistrationClosed,
    #[error("mail is off")]
    MailDisabled,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("too many requests")]
    RateLimited { retry_after: i64 },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("the user database is unavailable")]
    Unavailable,
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for LifecycleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(format!("{what} is already taken")),
            StoreError::InUse(message) => Self::Conflict(message),
            StoreError::Invalid(message) => Self::Invalid {
                field: "username",
                message,
            },
            StoreError::NotFound(_) => Self::Token(TokenRejection::Invalid),
            other => {
                tracing::error!(error = %other, "account workflow: database error");
                Self::Unavailable
            }
        }
    }
}

impl From<TokenError> for LifecycleError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Rejected(r) => Self::Token(r),
            TokenError::Store(s) => s.into(),
        }
    }
}

impl From<crate::mail::MailError> for LifecycleError {
    fn from(e: crate::mail::MailError) -> Self {
        match e {
            crate::mail::MailError::Disabled => Self::MailDisabled,
            crate::mail::MailError::Store(s) => s.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<LifecycleError> for GatewayError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Policy(v) => GatewayError::PasswordPolicy {
                rule: v.rule,
                message: v.message,
            },
            LifecycleError::Token(TokenRejection::Invalid) => GatewayError::AccountTokenInvalid,
            LifecycleError::Token(TokenRejection::Expired) => GatewayError::AccountTokenExpired,
            LifecycleError::RegistrationClosed => GatewayError::RegistrationClosed,
            LifecycleError::MailDisabled => GatewayError::MailDisabled,
            LifecycleError::WrongPassword => GatewayError::WrongPassword,
            LifecycleError::RateLimited { retry_after } => {
                GatewayError::TooManyRequests { retry_after }
            }
            LifecycleError::Invalid { field, message } => {
                GatewayError::Validation { field, message }
            }
            LifecycleError::Conflict(message) => GatewayError::Conflict(message),
            LifecycleError::Unavailable => GatewayError::Unavailable("the user database"),
            LifecycleError::Internal(message) => {
                tracing::error!(error = %message, "account workflow failed");
                GatewayError::Internal
            }
        }
    }
}

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// An admin's name, or `cli:USER`; `None` for the user themselves.
    pub actor: Option<String>,
}

/// A self-registration.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: String,
    pub given_name: String,
    pub surname: String,
    /// A JSON object kept with the account (Stormpath's `customData`).
    pub custom_data: Option<serde_json::Value>,
}

/// What following a verification link did.
#[derive(Debug)]
pub enum VerifyOutcome {
    /// The account is verified (and, when a password came with the token, has it).
    Verified { user: User, password_set: bool },
    /// The account has no password yet: the token stays valid until one is chosen with it.
    NeedsPassword { user: User },
}

/// How many account jobs (forgot, resend) may run in the background at once; beyond that they
/// run in the request, which only costs the sameness of timing under a flood.
const BACKGROUND_JOBS: usize = 64;

pub struct Lifecycle {
    pub settings: AccountSettings,
    pub policy: PasswordPolicy,
    passwords: Passwords,
    mailer: Option<Arc<Mailer>>,
    store: StoreHandle,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    addresses: RateLimiter,
    account_mails: WindowCounter<String>,
    background: Arc<Semaphore>,
}

fn identity(user: &User) -> Identity<'_> {
    Identity {
        username: &user.username,
        email: &user.email,
        given_name: &user.given_name,
        surname: &user.surname,
    }
}

impl Lifecycle {
    pub fn new(
        settings: AccountSettings,
        policy: PasswordPolicy,
        passwords: Passwords,
        mailer: Option<Arc<Mailer>>,
        store: StoreHandle,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            addresses: RateLimiter::new(settings.rate_per_minute),
            account_mails: WindowCounter::new(3600, 100_000),
            background: Arc::new(Semaphore::new(BACKGROUND_JOBS)),
            settings,
            policy,
            passwords,
            mailer,
            store,
            clock,
            metrics,
        }
    }

    pub fn mail_on(&self) -> bool {
        self.mailer.is_some()
    }

    pub fn mailer(&self) -> Option<&Arc<Mailer>> {
        self.mailer.as_ref()
    }

    fn store(&self) -> Result<Arc<Store>, LifecycleError> {
        self.store.load_full().ok_or(LifecycleError::Unavailable)
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether a password set at `changed_at` must be renewed before anything else.
    pub fn password_expired(&self, changed_at: Option<i64>, now: i64) -> bool {
        super::password_expired(self.policy.max_age, changed_at, now)
    }

    /// The per-address budget of account requests.
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<(), LifecycleError> {
        match self.addresses.admit(ip, self.now()) {
            Admission::Allowed => Ok(()),
            Admission::Limited { retry_after } => Err(LifecycleError::RateLimited { retry_after }),
        }
    }

    /// The per-account budget of self-service mail (forgot, resend).
    fn mail_allowed(&self, user_id: &str) -> bool {
        self.account_mails.add(user_id.to_string(), self.now()) <= self.settings.mails_per_hour
    }

    async fn event(
        &self,
        store: &Store,
        kind: &str,
        user: Option<&User>,
        origin: &Origin,
        detail: Value,
    ) {
        let event = NewEvent {
            kind: kind.to_string(),
            user_id: user.map(|u| u.id.clone()),
            actor: origin.actor.clone(),
            ip: origin.ip.map(|ip| ip.to_string()),
            user_agent: origin.user_agent.clone(),
            detail,
        };
        if let Err(e) = store.record_event(&event, self.now()).await {
            tracing::warn!(error = %e, kind, "could not record an event");
        }
    }

    /// Queues `kind` for `user`; a failure to queue a notice is logged, not returned.
    async fn notify(&self, store: &Store, kind: MailKind, user: &User) {
        if let Some(mailer) = &self.mailer
            && let Err(e) = mailer
                .enqueue(store, kind, user, None, None, self.now())
                .await
        {
            tracing::error!(error = %e, kind = kind.as_str(), "could not queue mail");
        }
    }

    /// Every policy rule for `password` (history against `user` when given), then its hash.
    async fn vet_password(
        &self,
        store: &Store,
        password: &str,
        who: &Identity<'_>,
        user: Option<&User>,
    ) -> Result<String, LifecycleError> {
        self.policy
            .check_with_strength(&self.passwords, password, who)
            .await
            .map_err(|e| LifecycleError::Internal(e.to_string()))??;
        if let Some(user) = user {
            // The current password always counts, history or not: "changing" an expired
            // password to itself must not renew it.
            let recent = if self.policy.history > 0 {
                store
                    .password_history(&user.id, self.policy.history)
                    .await?
            } else {
                Vec::new()
            };
            let current = user.password_hash.iter().cloned();
            for stored in current.chain(recent) {
                let verified = self
                    .passwords
                    .verify(password.to_string(), Some(stored))
                    .await
                    .map_err(|e| LifecycleError::Internal(e.to_string()))?;
                if verified.ok {
                    return Err(PolicyViolation::new(
                        "history",
                        format!(
                            "the password must differ from your last {} password(s)",
                            self.policy.history.max(1)
                        ),
                    )
                    .into());
                }
            }
        }
        self.passwords
            .hash(password.to_string())
            .await
            .map_err(|e| LifecycleError::Internal(e.to_string()))
    }

    async fn set_password(
        &self,
        store: &Store,
        user: &User,
        hash: &str,
        verifies: bool,
    ) -> Result<(), LifecycleError> {
        let change = PasswordChange {
            user_id: &user.id,
            hash,
            keep_history: self.policy.history,
            verifies,
        };
        store.change_password(&change, self.now()).await?;
        Ok(())
    }

    fn tokens<'a>(&'a self, store: &'a Store) -> AccountTokens<'a> {
        AccountTokens {
            store,
            metrics: &self.metrics,
            now: self.now(),
        }
    }

    async fn user(&self, store: &Store, id: &str) -> Result<User, LifecycleError> {
        store
            .user_by_id(id)
            .await?
            .ok_or(LifecycleError::Token(TokenRejection::Invalid))
    }

    /// Refuses an address mail could not be sent to, before an account is made for it.
    pub fn check_mailable(&self, email: &str) -> Result<(), LifecycleError> {
        match &self.mailer {
            Some(mailer) if !mailer.accepts_address(email) => Err(LifecycleError::Invalid {
                field: "email",
                message: format!("{email:?} is not an address mail can be sent to"),
            }),
            _ => Ok(()),
        }
    }

    /// Issues a verification token and queues the mail with its link.
    pub async fn send_verification(
        &self,
        store: &Store,
        user: &User,
    ) -> Result<(), LifecycleError> {
        let ttl = self.settings.verify_ttl;
        self.send_link(
            store,
            user,
            MailKind::Verification,
            TokenPurpose::Verify,
            ttl,
        )
        .await
    }

    /// Issues a reset token and queues the mail with its link.
    pub async fn send_reset(&self, store: &Store, user: &User) -> Result<(), LifecycleError> {
        let ttl = self.settings.reset_ttl;
        self.send_link(
            store,
            user,
            MailKind::PasswordReset,
            TokenPurpose::Reset,
            ttl,
        )
        .await
    }

    async fn send_link(
        &self,
        store: &Store,
        user: &User,
        kind: MailKind,
        purpose: TokenPurpose,
        ttl: std::time::Duration,
    ) -> Result<(), LifecycleError> {
        let mailer = self.mailer.as_ref().ok_or(LifecycleError::MailDisabled)?;
        if !mailer.sends(kind) {
            return Err(LifecycleError::MailDisabled);
        }
        let token = self.tokens(store).issue(&user.id, purpose, ttl).await?;
        // An invitation (no password yet) is answered on postern's own page, which asks for one.
        let own_page = user.password_hash.is_none();
        let link = mailer.token_link(purpose.endpoint(), &token, own_page);
        mailer
            .enqueue(store, kind, user, Some(&link), Some(ttl), self.now())
            .await?;
        Ok(())
    }

    pub async fn send_welcome(&self, store: &Store, user: &User) {
        self.notify(store, MailKind::Welcome, user).await;
    }

    /// `POST /register`.
    pub async fn register(
        &self,
        reg: Registration,
        origin: &Origin,
    ) -> Result<User, LifecycleError> {
        if !self.settings.registration_open {
            return Err(LifecycleError::RegistrationClosed);
        }
        let store = self.store()?;
        crate::store::validate_username(&reg.username)?;
        crate::store::validate_email(&reg.email).map_err(|e| LifecycleError::Invalid {
            field: "email",
            message: e.to_string(),
        })?;
        self.check_mailable(&reg.email)?;
        let who = Identity {
            username: &reg.username,
            email: &reg.email,
            given_name: &reg.given_name,
            surname: &reg.surname,
        };
        let hash = self.vet_password(&store, &reg.password, &who, None).await?;
        let verify = self.settings.verification_required;
        let custom_data = reg.custom_data;
        let new = NewUser {
            username: reg.username,
            email: reg.email,
            given_name: reg.given_name,
            surname: reg.surname,
            status: Some(if verify {
                UserStatus::Unverified
            } else {
                UserStatus::Enabled
            }),
            password_hash: Some(hash.clone()),
            roles: Vec::new(),
        };
        let now = self.now();
        let user = store.create_user(&new, now).await?;
        store
            .remember_password(&user.id, &hash, self.policy.history, now)
            .await?;
        let user = match custom_data {
            Some(data) => {
                let update = crate::store::ProfileUpdate {
                    custom_data: Some(data),
                    ..Default::default()
                };
                store.update_profile(&user.id, &update, now).await?;
                self.user(&store, &user.id).await?
            }
            None => user,
        };
        self.event(
            &store,
            "account.registered",
            Some(&user),
            origin,
            json!({"username": user.username, "verification": verify}),
        )
        .await;
        if verify {
            self.send_verification(&store, &user).await?;
        } else {
            self.send_welcome(&store, &user).await;
        }
        Ok(user)
    }

    /// Runs `job` off the request so that its answer and timing cannot tell whether an
    /// account exists (bounded: beyond [`BACKGROUND_JOBS`] it runs in the request).
    async fn detached<F>(self: &Arc<Self>, job: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.background.clone().try_acquire_owned() {
            Ok(permit) => {
                let running = crate::services::drain::job();
                tokio::spawn(async move {
                    job.await;
                    drop((permit, running));
                });
            }
            Err(_) => job.await,
        }
    }

    /// `POST /verify` with a login: a new link for an unverified account. The caller answers
    /// the same whatever happens here.
    pub async fn resend_verification(self: &Arc<Self>, login: String, origin: Origin) {
        let this = self.clone();
        self.detached(async move {
            let Ok(store) = this.store() else { return };
            let user = match store.user_by_login(&login).await {
                Ok(Some(user)) if user.status == UserStatus::Unverified => user,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "resend verification: lookup failed");
                    return;
                }
            };
            if !this.mail_allowed(&user.id) {
                tracing::info!(user_id = %user.id, "verification mail not resent: hourly limit reached");
                return;
            }
            if let Err(e) = this.send_verification(&store, &user).await {
                tracing::error!(error = %e, "could not resend a verification mail");
                return;
            }
            this.event(&store, "account.verification_sent", Some(&user), &origin, json!({}))
                .await;
        })
        .await;
    }

    /// `GET|POST /verify` with a token, and with the first password when the account has none.
    pub async fn verify(
        &self,
        token: &str,
        password: Option<&str>,
        origin: &Origin,
    ) -> Result<VerifyOutcome, LifecycleError> {
        let store = self.store()?;
        let tokens = self.tokens(&store);
        let user_id = tokens.peek(token, TokenPurpose::Verify).await?;
        let user = self.user(&store, &user_id).await?;
        if user.status == UserStatus::Disabled {
            return Err(TokenRejection::Invalid.into());
        }
        let was_unverified = user.status == UserStatus::Unverified;
        let password_set = match (password, user.password_hash.is_some()) {
            (None, false) => return Ok(VerifyOutcome::NeedsPassword { user }),
            // A verification link is not a way to replace a password (that is what reset, with
            // its shorter lifetime, is for).
            (Some(_), true) => {
                return Err(LifecycleError::Invalid {
                    field: "password",
                    message: "this account has a password: sign in, or ask for a reset link".into(),
                });
            }
            (Some(password), false) => {
                let hash = self
                    .vet_password(&store, password, &identity(&user), Some(&user))
                    .await?;
                tokens.consume(token, TokenPurpose::Verify).await?;
                self.set_password(&store, &user, &hash, true).await?;
                true
            }
            (None, true) => {
                tokens.consume(token, TokenPurpose::Verify).await?;
                store.mark_verified(&user.id, self.now()).await?;
                false
            }
        };
        let user = self.user(&store, &user.id).await?;
        if was_unverified {
            self.event(
                &store,
                "account.verified",
                Some(&user),
                origin,
                json!({"password_set": password_set}),
            )
            .await;
            self.notify(&store, MailKind::VerificationSuccess, &user)
                .await;
            self.send_welcome(&store, &user).await;
        }
        Ok(VerifyOutcome::Verified { user, password_set })
    }

    /// `POST /forgot`: a reset link for an enabled or unverified account. The caller answers
    /// the same whatever happens here.
    pub async fn forgot(self: &Arc<Self>, login: String, origin: Origin) {
        let this = self.clone();
        self.detached(async move {
            let Ok(store) = this.store() else { return };
            let user = match store.user_by_login(&login).await {
                Ok(Some(user)) if user.status != UserStatus::Disabled => user,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "forgot: lookup failed");
                    return;
                }
            };
            if !this.mail_allowed(&user.id) {
                tracing::info!(user_id = %user.id, "reset mail not sent: hourly limit reached");
                return;
            }
            if let Err(e) = this.send_reset(&store, &user).await {
                tracing::error!(error = %e, "could not send a reset mail");
                return;
            }
            this.event(
                &store,
                "password.reset_requested",
                Some(&user),
                &origin,
                json!({}),
            )
            .await;
        })
        .await;
    }

    /// An admin's reset: the mail goes out whatever the hourly limit.
    pub async fn admin_reset(&self, user: &User, origin: &Origin) -> Result<(), LifecycleError> {
        let store = self.store()?;
        self.send_reset(&store, user).await?;
        self.event(
            &store,
            "password.reset_requested",
            Some(user),
            origin,
            json!({"by_admin": true}),
        )
        .await;
        Ok(())
    }

    /// The account a reset token belongs to (to show the form), without using it.
    pub async fn reset_account(&self, token: &str) -> Result<User, LifecycleError> {
        let store = self.store()?;
        let user_id = self.tokens(&store).peek(token, TokenPurpose::Reset).await?;
        self.user(&store, &user_id).await
    }

    /// The account a verification token belongs to, without using it.
    pub async fn verify_account(&self, token: &str) -> Result<User, LifecycleError> {
        let store = self.store()?;
        let user_id = self
            .tokens(&store)
            .peek(token, TokenPurpose::Verify)
            .await?;
        let user = self.user(&store, &user_id).await?;
        if user.status == UserStatus::Disabled {
            return Err(TokenRejection::Invalid.into());
        }
        Ok(user)
    }

    /// `POST /reset`: a new password with a reset token. Every session of the user ends.
    pub async fn reset(
        &self,
        token: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<User, LifecycleError> {
        let store = self.store()?;
        let tokens = self.tokens(&store);
        let user_id = tokens.peek(token, TokenPurpose::Reset).await?;
        let user = self.user(&store, &user_id).await?;
        if user.status == UserStatus::Disabled {
            return Err(TokenRejection::Invalid.into());
        }
        let hash = self
            .vet_password(&store, password, &identity(&user), Some(&user))
            .await?;
        tokens.consume(token, TokenPurpose::Reset).await?;
        self.set_password(&store, &user, &hash, true).await?;
        let user = self.user(&store, &user.id).await?;
        self.event(&store, "password.reset", Some(&user), origin, json!({}))
            .await;
        self.notify(&store, MailKind::PasswordResetSuccess, &user)
            .await;
        Ok(user)
    }

    /// `POST /change` (and the expired-password page): the current password, then a new one.
    /// Every session of the user ends; the caller starts a new one for this client.
    pub async fn change(
        &self,
        user_id: &str,
        current: &str,
        new: &str,
        origin: &Origin,
    ) -> Result<User, LifecycleError> {
        let store = self.store()?;
        let user = store
            .user_by_id(user_id)
            .await?
            .filter(|u| u.status == UserStatus::Enabled)
            .ok_or(LifecycleError::WrongPassword)?;
        let verified = self
            .passwords
            .verify(current.to_string(), user.password_hash.clone())
            .await
            .map_err(|e| LifecycleError::Internal(e.to_string()))?;
        if !verified.ok {
            self.event(
                &store,
                "password.change_failed",
                Some(&user),
                origin,
                json!({"reason": "wrong_password"}),
            )
            .await;
            return Err(LifecycleError::WrongPassword);
        }
        let hash = self
            .vet_password(&store, new, &identity(&user), Some(&user))
            .await?;
        let expired = self.password_expired(user.password_changed_at, self.now());
        self.set_password(&store, &user, &hash, false).await?;
        let user = self.user(&store, &user.id).await?;
        self.event(
            &store,
            "password.changed",
            Some(&user),
            origin,
            json!({"was_expired": expired}),
        )
        .await;
        self.notify(&store, MailKind::PasswordChanged, &user).await;
        Ok(user)
    }

    /// Tells the old address that the account's email changed (`old` is the account as it was).
    pub async fn email_changed(&self, old: &User, new_email: &str, origin: &Origin) {
        if let Ok(store) = self.store() {
            self.event(
                &store,
                "account.email_changed",
                Some(old),
                origin,
                json!({"from": old.email, "to": new_email}),
            )
            .await;
            self.notify(&store, MailKind::EmailChanged, old).await;
        }
    }

    /// Records a login with an expired password (the session is restricted to changing it).
    pub async fn expired_login(&self, user: &User, origin: &Origin) {
        if let Ok(store) = self.store() {
            self.event(
                &store,
                "password.expired_login",
                Some(user),
                origin,
                json!({}),
            )
            .await;
        }
    }
}
