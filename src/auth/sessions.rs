//! Server-side sessions: a 256-bit random id in a cookie, stored as its SHA-256, with idle and
//! absolute expiry and a per-user epoch; a short-lived cache in front so that a proxied request
//! normally costs no database round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::clock::Clock;
use crate::config::SessionSettings;
use crate::metrics::Metrics;
use crate::policy::Principal;
use crate::services::StoreHandle;
use crate::store::{SessionRecord, Store, StoreError, User, UserStatus};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the database is not connected yet")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Cached {
    record: SessionRecord,
    principal: Arc<Principal>,
    /// When the row's `last_seen_at` was last written (throttled by `touch_interval`).
    last_written: AtomicI64,
    idle_expires_at: AtomicI64,
}

pub struct Sessions {
    settings: SessionSettings,
    store: StoreHandle,
    clock: Arc<dyn Clock>,
    cache: moka::sync::Cache<String, Arc<Cached>>,
    /// Off while revocations from other instances cannot be heard: every check reads the
    /// database then.
    cache_on: AtomicBool,
    /// Moves on every revocation: a lookup that began before one may not fill the cache with
    /// what it read (the revocation's invalidation could have passed it by).
    generation: std::sync::atomic::AtomicU64,
    /// Woken whenever sessions are revoked here or elsewhere (long responses re-check then); a
    /// wake that finds nobody waiting is kept for the next wait, so none is lost mid-sweep.
    revoked: Arc<tokio::sync::Notify>,
    cache_hits: prometheus::IntCounter,
    cache_misses: prometheus::IntCounter,
}

const BROWSER: &str = "browser";
const REFRESH: &str = "refresh";

/// A freshly created session: the cookie value, shown once and never stored.
pub struct NewSession {
    pub token: String,
}

pub fn principal_of(user: &User) -> Principal {
    Principal::new(
        user.id.clone(),
        user.username.clone(),
        user.email.clone(),
        user.roles.clone(),
        user.password_changed_at,
    )
}

fn hash_token(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Cookie values postern issues are 43 base64url characters; anything else is not worth a lookup.
fn plausible_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Sessions {
    pub fn new(
        settings: SessionSettings,
        store: StoreHandle,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .support_invalidation_closures()
            .time_to_live(settings.cache_ttl.max(Duration::from_millis(1)))
            .build();
        Self {
            settings,
            store,
            clock,
            cache,
            cache_on: AtomicBool::new(true),
            generation: std::sync::atomic::AtomicU64::new(0),
            revoked: Arc::new(tokio::sync::Notify::new()),
            cache_hits: metrics.session_cache.with_label_values(&["hit"]),
            cache_misses: metrics.session_cache.with_label_values(&["miss"]),
        }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    fn store(&self) -> Result<Arc<Store>, SessionError> {
        self.store.load_full().ok_or(SessionError::Unavailable)
    }

    /// A browser session (the cookie).
    pub async fn create(
        &self,
        user: &User,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<NewSession, SessionError> {
        self.create_for(user, ip, user_agent, BROWSER).await
    }

    /// A session behind an OAuth refresh token: never accepted as a cookie.
    pub async fn create_refresh(
        &self,
        user: &User,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> Result<NewSession, SessionError> {
        self.create_for(user, ip, user_agent, REFRESH).await
    }

    async fn create_for(
        &self,
        user: &User,
        ip: Option<String>,
        user_agent: Option<String>,
        purpose: &str,
    ) -> Result<NewSession, SessionError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.clock.now();
        let absolute = now + self.settings.absolute_timeout.as_secs() as i64;
        let record = SessionRecord {
            id_hash: hash_token(&token),
            user_id: user.id.clone(),
            epoch: user.session_epoch,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: (now + self.settings.idle_timeout.as_secs() as i64).min(absolute),
            absolute_expires_at: absolute,
            ip,
            user_agent: user_agent.map(|ua| ua.chars().take(512).collect()),
            purpose: purpose.to_string(),
        };
        self.store()?.insert_session(&record).await?;
        Ok(NewSession { token })
    }

    /// The session's id (the hash it is stored under) for a cookie value.
    pub fn id_of(&self, token: &str) -> Option<String> {
        plausible_token(token).then(|| hash_token(token))
    }

    /// The user behind a session cookie value, if the session is valid now.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Arc<Principal>>, SessionError> {
        self.authenticate_for(token, BROWSER).await
    }

    /// [`Sessions::authenticate`] for a cookie value already turned into its id ([`Sessions::id_of`]).
    pub async fn authenticate_id(
        &self,
        id_hash: &str,
    ) -> Result<Option<Arc<Principal>>, SessionError> {
        self.authenticate_hashed(id_hash, BROWSER).await
    }

    /// The user behind an OAuth refresh token, if its session is valid now.
    pub async fn authenticate_refresh(
        &self,
        token: &str,
    ) -> Result<Option<Arc<Principal>>, SessionError> {
        self.authenticate_for(token, REFRESH).await
    }

    async fn authenticate_for(
        &self,
        token: &str,
        purpose: &str,
    ) -> Result<Option<Arc<Principal>>, SessionError> {
        let Some(id_hash) = self.id_of(token) else {
            return Ok(None);
        };
        self.authenticate_hashed(&id_hash, purpose).await
    }

    async fn authenticate_hashed(
        &self,
        id_hash: &str,
        purpose: &str,
    ) -> Result<Option<Arc<Principal>>, SessionError> {
        let now = self.clock.now();
        let Some(cached) = self.live(id_hash, now).await? else {
            return Ok(None);
        };
        if cached.record.purpose != purpose {
            return Ok(None);
        }
        self.touch(id_hash, &cached, now).await;
        Ok(Some(cached.principal.clone()))
    }

    /// Whether the session stored under `id_hash` is still valid (for tokens issued from it);
    /// it is not marked as used.
    pub async fn is_live(&self, id_hash: &str) -> Result<bool, SessionError> {
        Ok(self.live(id_hash, self.clock.now()).await?.is_some())
    }

    /// The session under `id_hash`, from the cache or the database, unless it has expired.
    async fn live(&self, id_hash: &str, now: i64) -> Result<Option<Arc<Cached>>, SessionError> {
        let cache_on = self.cache_on.load(Ordering::Acquire);
        let generation = self.generation.load(Ordering::Acquire);
        let cached = match self.cache.get(id_hash).filter(|_| cache_on) {
            Some(cached) => {
                self.cache_hits.inc();
                cached
            }
            None => match self.load(id_hash).await? {
                Some(cached) => {
                    self.cache_misses.inc();
                    let cached = Arc::new(cached);
                    if cache_on {
                        self.cache.insert(id_hash.to_string(), cached.clone());
                        // A revocation since the lookup began may have passed the entry by.
                        if self.generation.load(Ordering::Acquire) != generation {
                            self.cache.invalidate(id_hash);
                        }
                    }
                    cached
                }
                None => return Ok(None),
            },
        };
        let idle_expires = cached.idle_expires_at.load(Ordering::Relaxed);
        if now >= idle_expires || now >= cached.record.absolute_expires_at {
            self.cache.invalidate(id_hash);
            self.store()?.delete_session(id_hash).await?;
            return Ok(None);
        }
        Ok(Some(cached))
    }

    /// Extends the idle expiry; the database write is throttled to once per `touch_interval`.
    async fn touch(&self, id_hash: &str, cached: &Cached, now: i64) {
        let new_idle = (now + self.settings.idle_timeout.as_secs() as i64)
            .min(cached.record.absolute_expires_at);
        // Written once a second at most (times are in seconds), not on every request.
        if cached.idle_expires_at.load(Ordering::Relaxed) < new_idle {
            cached
                .idle_expires_at
                .fetch_max(new_idle, Ordering::Relaxed);
        }
        let last = cached.last_written.load(Ordering::Relaxed);
        if now - last < self.settings.touch_interval.as_secs() as i64 {
            return;
        }
        if cached
            .last_written
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // Awaited, not spawned: a later cache miss must not read an idle expiry older than the
        // one this request earned. It happens once per `touch_interval` per session.
        if let Ok(store) = self.store()
            && let Err(e) = store.touch_session(id_hash, now, new_idle).await
        {
            tracing::warn!(error = %e, "could not record session activity");
        }
    }

    async fn load(&self, id_hash: &str) -> Result<Option<Cached>, SessionError> {
        let store = self.store()?;
        let Some(record) = store.session(id_hash).await? else {
            return Ok(None);
        };
        let user = match store.user_by_id(&record.user_id).await? {
            Some(user)
                if user.status == UserStatus::Enabled && user.session_epoch == record.epoch =>
            {
                user
            }
            _ => {
                store.delete_session(id_hash).await?;
                return Ok(None);
            }
        };
        Ok(Some(Cached {
            principal: Arc::new(principal_of(&user)),
            last_written: AtomicI64::new(record.last_seen_at),
            idle_expires_at: AtomicI64::new(record.idle_expires_at),
            record,
        }))
    }

    /// Ends a session (logout). Returns whether there was one.
    pub async fn destroy(&self, token: &str) -> Result<bool, SessionError> {
        if !plausible_token(token) {
            return Ok(false);
        }
        self.destroy_id(&hash_token(token)).await
    }

    /// Ends the session stored under `id_hash` (the one a bearer token was issued from).
    pub async fn destroy_id(&self, id_hash: &str) -> Result<bool, SessionError> {
        self.forget_session(id_hash);
        Ok(self.store()?.delete_session(id_hash).await?)
    }

    /// Drops a user's cached sessions on this instance, so that a revocation or a change of
    /// roles or status applies to the very next request.
    pub fn forget_user(&self, user_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let user_id = user_id.to_string();
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |_, cached| cached.record.user_id == user_id)
        {
            tracing::warn!(error = %e, "could not invalidate cached sessions");
        }
        self.revoked.notify_one();
    }

    /// Drops one cached session on this instance.
    pub fn forget_session(&self, id_hash: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(id_hash);
        self.revoked.notify_one();
    }

    /// Turns the cache on or off; either way it starts empty. Off while revocations from other
    /// instances may be missed, so that no answer rests on what could be stale.
    pub fn set_cache(&self, on: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache_on.store(on, Ordering::Release);
        self.cache.invalidate_all();
        self.revoked.notify_one();
    }

    /// Notified whenever sessions are revoked or the cache is flushed.
    pub fn revocations(&self) -> Arc<tokio::sync::Notify> {
        self.revoked.clone()
    }

    /// `Set-Cookie` value carrying a new session, for a request that did (`secure_request`) or
    /// did not come over TLS.
    pub fn cookie(&self, token: &str, secure_request: bool) -> String {
        let names = self.settings.cookies(secure_request);
        format!(
            "{}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
            names.session,
            self.settings.absolute_timeout.as_secs(),
            if names.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` value that removes the session cookie.
    pub fn clearing_cookie(&self, secure_request: bool) -> String {
        let names = self.settings.cookies(secure_request);
        format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
            names.session,
            if names.secure { "; Secure" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hashed_and_shape_checked() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(hash_token("abc"), hash_token("abd"));
        assert!(plausible_token(&"a".repeat(43)));
        assert!(!plausible_token(&"a".repeat(42)));
        assert!(!plausible_token(&format!("{}=", "a".repeat(42))));
    }
}
