//! Accounts: the administration service (admin API and CLI), the self-service lifecycle
//! (registration, verification, reset, change, expiry), the password policy and the
//! single-use tokens mailed to users.

mod admin;
pub mod import;
mod lifecycle;
pub mod policy;
mod tokens;

use std::time::Duration;

pub use admin::{AccountError, Accounts, Actor, UserDraft};
pub use lifecycle::{Lifecycle, LifecycleError, Origin, Registration, VerifyOutcome};
pub use policy::{Blocklist, Identity, PasswordPolicy, PolicyViolation};
pub use tokens::{TokenPurpose, TokenRejection};

/// Whether a password set at `changed_at` is older than `max_age` at `now`.
pub fn password_expired(max_age: Option<Duration>, changed_at: Option<i64>, now: i64) -> bool {
    match (max_age, changed_at) {
        (Some(max_age), Some(at)) => now - at >= max_age.as_secs() as i64,
        _ => false,
    }
}

/// What `[accounts]` configures.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Anyone may create an account with `POST /register`.
    pub registration_open: bool,
    /// New self-registered (and mailed-in) users are `unverified` until they follow the link.
    pub verification_required: bool,
    /// The external base URL links in mail start with, without a trailing slash.
    pub public_url: Option<String>,
    pub verify_ttl: Duration,
    pub reset_ttl: Duration,
    /// Account-endpoint requests per client address and minute.
    pub rate_per_minute: u32,
    /// Mails one account may be sent per hour through the self-service endpoints.
    pub mails_per_hour: u32,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            registration_open: false,
            verification_required: false,
            public_url: None,
            verify_ttl: Duration::from_secs(24 * 3600),
            reset_ttl: Duration::from_secs(3600),
            rate_per_minute: 10,
            mails_per_hour: 5,
        }
    }
}
