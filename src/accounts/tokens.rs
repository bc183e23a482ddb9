//! Account tokens: 256 random bits mailed as a link, stored only as their SHA-256 with a
//! purpose and an expiry, used once.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Proves the mailbox: verifies the account (and may set its first password).
    Verify,
    /// Sets a new password.
    Reset,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Reset => "reset",
        }
    }

    /// The built-in endpoint the mailed link opens.
    pub fn endpoint(self) -> &'static str {
        self.as_str()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Unknown, already used, replaced, or for another purpose.
    #[error("the link is not valid")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum TokenError {
    #[error(transparent)]
    Rejected(#[from] TokenRejection),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Tokens postern issues are 43 base64url characters; anything else is not worth a lookup.
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) struct AccountTokens<'a> {
    pub store: &'a Store,
    pub metrics: &'a Metrics,
    pub now: i64,
}

impl AccountTokens<'_> {
    fn count(&self, purpose: TokenPurpose, result: &str) {
        self.metrics
            .account_tokens
            .with_label_values(&[purpose.as_str(), result])
            .inc();
    }

    /// A new token for `user_id`; earlier unused tokens of the same purpose stop working.
    pub async fn issue(
        &self,
        user_id: &str,
        purpose: TokenPurpose,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        self.store
            .replace_account_token(
                &hash(&token),
                user_id,
                purpose.as_str(),
                self.now,
                self.now + ttl.as_secs() as i64,
            )
            .await?;
        self.count(purpose, "issued");
        Ok(token)
    }

    /// The user a live token belongs to, without using it up (to show a form).
    pub async fn peek(&self, token: &str, purpose: TokenPurpose) -> Result<String, TokenError> {
        if !plausible(token) {
            self.count(purpose, "invalid");
            return Err(TokenRejection::Invalid.into());
        }
        let found = self.store.account_token(&hash(token)).await?;
        match found {
            Some(t) if t.purpose == purpose.as_str() && t.used_at.is_none() => {
                if t.expires_at <= self.now {
                    self.count(purpose, "expired");
                    Err(TokenRejection::Expired.into())
                } else {
                    Ok(t.user_id)
                }
            }
            _ => {
                self.count(purpose, "invalid");
                Err(TokenRejection::Invalid.into())
            }
        }
    }

    /// Uses a live token up; of two requests with one token, one wins.
    pub async fn consume(&self, token: &str, purpose: TokenPurpose) -> Result<String, TokenError> {
        let user_id = self.peek(token, purpose).await?;
        if !self
            .store
            .use_account_token(&hash(token), purpose.as_str(), self.now)
            .await?
        {
            self.count(purpose, "invalid");
            return Err(TokenRejection::Invalid.into());
        }
        self.count(purpose, "used");
        Ok(user_id)
    }
}
