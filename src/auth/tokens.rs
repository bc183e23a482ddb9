//! Bearer JWTs: short-lived access tokens issued by `/token`, accepted on any route, and the
//! optional signed assertion postern hands to the app. One algorithm is configured and only that
//! one is accepted (never `none`, never a mismatch); expiry and not-before are checked against
//! postern's clock, and the user's session epoch must still match.
//!
//! The two kinds can never stand in for each other: access tokens carry `typ: at+jwt` and key id
//! `access`, assertions `typ: postern-assertion+jwt` and key id `assertion`, and (with HS256) are
//! signed with a different secret, the only one the app holds. An assertion's audience is
//! `route:NAME`, which no access-token audience may start with. A token whose lifetime
//! (`exp - iat`) is longer than the configured ttl is refused whatever its signature.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::clock::Clock;
use crate::config::{TokenAlgorithm, TokenSettings};
use crate::policy::Principal;
use crate::services::StoreHandle;
use crate::store::{StoreError, User, UserStatus};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token key: {0}")]
    Key(String),
    #[error("the token is not valid")]
    Invalid,
    #[error("the database is not connected yet")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// `typ` of identity assertions sent to the app.
pub const ASSERTION_TYP: &str = "postern-assertion+jwt";
const ACCESS_KID: &str = "access";
const ASSERTION_KID: &str = "assertion";
/// An assertion's audience is this followed by the route's name.
pub const ASSERTION_AUDIENCE_PREFIX: &str = "route:";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub email: String,
    pub roles: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The user's session epoch when the token was issued.
    pub epoch: i64,
    /// The session a token was issued from: it ends with that session (logout, revoke).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// A verified access token: who it stands for, and the session it depends on.
pub struct VerifiedToken {
    pub principal: Arc<Principal>,
    pub session: Option<String>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// The user's session epoch the token was issued under.
    pub epoch: i64,
}

/// A token as `/token` returns it.
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

struct CachedUser {
    epoch: i64,
    principal: Arc<Principal>,
}

pub struct Tokens {
    settings: TokenSettings,
    algorithm: Algorithm,
    encoding: EncodingKey,
    assertion_encoding: EncodingKey,
    decoding: DecodingKey,
    clock: Arc<dyn Clock>,
    store: StoreHandle,
    users: moka::sync::Cache<String, Arc<CachedUser>>,
    /// Off while revocations from other instances may be missed (see `Sessions::set_cache`).
    cache_on: std::sync::atomic::AtomicBool,
    /// Moves on every change: a lookup that began before one does not fill the cache.
    generation: std::sync::atomic::AtomicU64,
}

impl Tokens {
    pub fn new(
        settings: TokenSettings,
        clock: Arc<dyn Clock>,
        store: StoreHandle,
        user_cache_ttl: Duration,
    ) -> Result<Self, TokenError> {
        let key_error = |e: jsonwebtoken::errors::Error| TokenError::Key(e.to_string());
        let (algorithm, encoding, decoding) = match settings.algorithm {
            TokenAlgorithm::Hs256 => (
                Algorithm::HS256,
                EncodingKey::from_secret(&settings.secret),
                DecodingKey::from_secret(&settings.secret),
            ),
            TokenAlgorithm::EdDsa => (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(&settings.private_key_pem).map_err(key_error)?,
                DecodingKey::from_ed_pem(&settings.public_key_pem).map_err(key_error)?,
            ),
            TokenAlgorithm::Rs256 => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&settings.private_key_pem).map_err(key_error)?,
                DecodingKey::from_rsa_pem(&settings.public_key_pem).map_err(key_error)?,
            ),
        };
        let assertion_encoding = match settings.algorithm {
            TokenAlgorithm::Hs256 => EncodingKey::from_secret(&settings.assertion_secret),
            TokenAlgorithm::EdDsa | TokenAlgorithm::Rs256 => encoding.clone(),
        };
        let users = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(user_cache_ttl.max(Duration::from_millis(1)))
            .build();
        Ok(Self {
            settings,
            algorithm,
            encoding,
            assertion_encoding,
            decoding,
            clock,
            store,
            users,
            cache_on: std::sync::atomic::AtomicBool::new(true),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn header(&self, typ: &str, kid: &str) -> Header {
        let mut header = Header::new(self.algorithm);
        header.typ = Some(typ.to_string());
        header.kid = Some(kid.to_string());
        header
    }

    fn claims_for(
        &self,
        principal: &Principal,
        epoch: i64,
        audience: &str,
        ttl: Duration,
    ) -> Claims {
        let now = self.clock.now();
        Claims {
            sub: principal.user_id.clone(),
            name: principal.username.clone(),
            email: principal.email.clone(),
            roles: principal.roles.clone(),
            iss: self.settings.issuer.clone(),
            aud: audience.to_string(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            epoch,
            sid: None,
        }
    }

    /// An access token for `user`; with `session` (the session's id hash) it ends with that
    /// session.
    pub fn issue(&self, user: &User, session: Option<String>) -> Result<IssuedToken, TokenError> {
        let principal = super::principal_of(user);
        let mut claims = self.claims_for(
            &principal,
            user.session_epoch,
            &self.settings.audience,
            self.settings.ttl,
        );
        claims.sid = session;
        let header = self.header(ACCESS_TYP, ACCESS_KID);
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_in: self.settings.ttl.as_secs(),
        })
    }

    /// The short-lived assertion for the app behind route `route`.
    pub fn assertion(&self, principal: &Principal, route: &str) -> Result<String, TokenError> {
        let audience = format!("{ASSERTION_AUDIENCE_PREFIX}{route}");
        let claims = self.claims_for(principal, 0, &audience, self.settings.assertion_ttl);
        let header = self.header(ASSERTION_TYP, ASSERTION_KID);
        jsonwebtoken::encode(&header, &claims, &self.assertion_encoding)
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// Checks a bearer token: type and key id, algorithm, signature, issuer, audience, expiry
    /// (with leeway) and lifetime on postern's clock, and that the user still exists, is enabled
    /// and has the same epoch. The caller checks that the token's session is still live.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let claims = self.verified_claims(token)?;
        let user = self
            .current_user(&claims.sub)
            .await?
            .ok_or(TokenError::Invalid)?;
        if user.epoch != claims.epoch {
            return Err(TokenError::Invalid);
        }
        Ok(VerifiedToken {
            principal: user.principal.clone(),
            session: claims.sid,
            expires_at: claims.exp,
            epoch: claims.epoch,
        })
    }

    /// The token's claims once its header, signature, issuer, audience and times check out
    /// (everything but the user).
    pub(crate) fn verified_claims(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.typ.as_deref() != Some(ACCESS_TYP) || header.kid.as_deref() != Some(ACCESS_KID) {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(self.algorithm);
        validation.algorithms = vec![self.algorithm];
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "nbf", "iat", "iss", "aud", "sub"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let now = self.clock.now();
        let leeway = self.settings.leeway.as_secs() as i64;
        if now > claims.exp + leeway || now + leeway < claims.nbf || now + leeway < claims.iat {
            return Err(TokenError::Invalid);
        }
        if claims.exp - claims.iat > self.settings.ttl.as_secs() as i64 {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Drops the cached state of a user, so that a change applies to the next request.
    pub fn forget_user(&self, user_id: &str) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.users.invalidate(user_id);
    }

    /// Turns the user cache on or off; either way it starts empty.
    pub fn set_cache(&self, on: bool) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.cache_on
            .store(on, std::sync::atomic::Ordering::Release);
        self.users.invalidate_all();
    }

    /// Whether `user_id` still has `epoch` and is enabled: a token issued then is still good.
    pub async fn user_is_current(&self, user_id: &str, epoch: i64) -> Result<bool, TokenError> {
        Ok(self
            .current_user(user_id)
            .await?
            .is_some_and(|user| user.epoch == epoch))
    }

    async fn current_user(&self, user_id: &str) -> Result<Option<Arc<CachedUser>>, TokenError> {
        let cache_on = self.cache_on.load(std::sync::atomic::Ordering::Acquire);
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        if let Some(cached) = self.users.get(user_id).filter(|_| cache_on) {
            return Ok(Some(cached));
        }
        let store = self.store.load_full().ok_or(TokenError::Unavailable)?;
        let Some(user) = store.user_by_id(user_id).await? else {
            return Ok(None);
        };
        if user.status != UserStatus::Enabled {
            return Ok(None);
        }
        let cached = Arc::new(CachedUser {
            epoch: user.session_epoch,
            principal: Arc::new(super::principal_of(&user)),
        });
        let unchanged = self.generation.load(std::sync::atomic::Ordering::Acquire) == generation;
        if cache_on && unchanged {
            self.users.insert(user_id.to_string(), cached.clone());
        }
        Ok(Some(cached))
    }
}
