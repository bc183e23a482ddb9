//! Brute-force protection for the login endpoint: failures counted per user and per client IP
//! within a window, and a per-IP rate limit on login attempts. A user's lock is written to the
//! database so that it holds on every instance and `postern user unlock` can lift it.
//!
//! The counters live in memory on a single instance. With several instances on one PostgreSQL
//! database they live in the database instead (`Lockout::shared`), so N instances do not allow
//! N times the attempts: the rate limit is then counted per minute from an address's first
//! attempt (a window, not a token bucket), and a database that cannot be reached falls back to
//! this instance's own counters.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::config::LockoutSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Too many attempts from this address: retry after this many seconds.
    Limited {
        retry_after: i64,
    },
}

/// How many keys each counter tracks. When full, entries are evicted one by one, never all at
/// once. Addresses that reached the failure limit move to a separate map of blocked addresses,
/// which a flood of new addresses (one failure each) never enters, so it cannot lift a block.
const MAX_TRACKED: u64 = 100_000;

/// The key an address is counted under: IPv4 as is, IPv6 by its /64 (one customer's network
/// hands out a whole /64, so single IPv6 addresses cost an attacker nothing).
pub fn address_key(ip: Option<IpAddr>) -> IpAddr {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        Some(v4) => v4,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

fn bounded_cache<K, V>(capacity: u64, idle: i64) -> moka::sync::Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .time_to_idle(Duration::from_secs(idle.max(1) as u64))
        .build()
}

/// Counts events per key within a window.
pub struct WindowCounter<K: Hash + Eq + Send + Sync + 'static> {
    window: i64,
    entries: moka::sync::Cache<K, (u32, i64)>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> WindowCounter<K> {
    pub fn new(window: i64, capacity: u64) -> Self {
        Self {
            window,
            entries: bounded_cache(capacity, window),
        }
    }

    /// Counts one more event for `key`; returns the count within the current window.
    pub fn add(&self, key: K, now: i64) -> u32 {
        let window = self.window;
        let entry =
            self.entries
                .entry(key)
                .and_upsert_with(|old| match old.map(|e| e.into_value()) {
                    Some((count, start)) if now - start < window => (count + 1, start),
                    _ => (1, now),
                });
        entry.into_value().0
    }

    fn clear(&self, key: &K) {
        self.entries.invalidate(key);
    }
}

#[derive(Clone)]
struct Bucket {
    tokens: f64,
    last: i64,
    admitted: bool,
}

/// Token bucket per address (IPv6 by its /64).
pub struct RateLimiter {
    per_minute: u32,
    buckets: moka::sync::Cache<IpAddr, Bucket>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: bounded_cache(MAX_TRACKED, 60),
        }
    }

    /// Takes one request from the bucket of `ip`'s address key.
    pub fn admit(&self, ip: Option<IpAddr>, now: i64) -> Admission {
        self.take(address_key(ip), now)
    }

    fn take(&self, key: IpAddr, now: i64) -> Admission {
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let bucket = self
            .buckets
            .entry(key)
            .and_upsert_with(|old| {
                let (tokens, last) = old
                    .map(|e| e.into_value())
                    .map_or((capacity, now), |b| (b.tokens, b.last));
                let tokens = (tokens + (now - last).max(0) as f64 * rate).min(capacity);
                let admitted = tokens >= 1.0;
                Bucket {
                    tokens: if admitted { tokens - 1.0 } else { tokens },
                    last: now,
                    admitted,
                }
            })
            .into_value();
        if bucket.admitted {
            Admission::Allowed
        } else {
            Admission::Limited {
                retry_after: ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as i64,
            }
        }
    }
}

pub struct Lockout {
    settings: LockoutSettings,
    /// The database the counters are shared through, with several instances.
    shared: Option<crate::services::StoreHandle>,
    users: WindowCounter<String>,
    addresses: WindowCounter<IpAddr>,
    /// Addresses blocked after too many failures, with the time the block ends.
    blocked: moka::sync::Cache<IpAddr, i64>,
    limiter: RateLimiter,
}

impl Lockout {
    pub fn new(settings: LockoutSettings) -> Self {
        Self::with_capacity(settings, MAX_TRACKED)
    }

    fn with_capacity(settings: LockoutSettings, capacity: u64) -> Self {
        let window = settings.window.as_secs() as i64;
        let address_window = settings.lock_for.as_secs().max(settings.window.as_secs()) as i64;
        Self {
            users: WindowCounter::new(window, capacity),
            addresses: WindowCounter::new(address_window, capacity),
            blocked: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(settings.lock_for.max(Duration::from_secs(1)))
                .build(),
            limiter: RateLimiter {
                per_minute: settings.login_rate_per_minute,
                buckets: bounded_cache(capacity, 60),
            },
            settings,
            shared: None,
        }
    }

    /// Counters kept in the database `store`, for every instance that uses it.
    pub fn shared(settings: LockoutSettings, store: crate::services::StoreHandle) -> Self {
        Self {
            shared: Some(store),
            ..Self::new(settings)
        }
    }

    fn shared_store(&self) -> Option<std::sync::Arc<crate::store::Store>> {
        self.shared.as_ref()?.load_full()
    }

    /// Before a login attempt from `ip`: the rate limit, and the per-address failure block.
    pub async fn admit(&self, ip: Option<IpAddr>, now: i64) -> Admission {
        if let Some(store) = self.shared_store() {
            match self.admit_shared(&store, ip, now).await {
                Ok(admission) => return admission,
                Err(e) => {
                    tracing::warn!(error = %e, "shared login limits unavailable: counting here")
                }
            }
        }
        self.admit_here(ip, now)
    }

    async fn admit_shared(
        &self,
        store: &crate::store::Store,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Admission, crate::store::StoreError> {
        let key = address_key(ip).to_string();
        if let Some(until) = store.blocked_until(&key, now).await? {
            return Ok(Admission::Limited {
                retry_after: (until - now).max(1),
            });
        }
        let (hits, started) = store.count_in_window("rate", &key, now, 60).await?;
        Ok(if hits > i64::from(self.settings.login_rate_per_minute) {
            Admission::Limited {
                retry_after: (started + 60 - now).max(1),
            }
        } else {
            Admission::Allowed
        })
    }

    fn admit_here(&self, ip: Option<IpAddr>, now: i64) -> Admission {
        let key = address_key(ip);
        if let Some(until) = self.blocked.get(&key)
            && now < until
        {
            return Admission::Limited {
                retry_after: until - now,
            };
        }
        self.limiter.take(key, now)
    }

    /// Records a failed login. Returns `Some(until)` when the user must now be locked.
    pub async fn failed(&self, user_id: Option<&str>, ip: Option<IpAddr>, now: i64) -> Option<i64> {
        if let Some(store) = self.shared_store() {
            match self.failed_shared(&store, user_id, ip, now).await {
                Ok(locked) => return locked,
                Err(e) => {
                    tracing::warn!(error = %e, "shared login limits unavailable: counting here")
                }
            }
        }
        self.failed_here(user_id, ip, now)
    }

    async fn failed_shared(
        &self,
        store: &crate::store::Store,
        user_id: Option<&str>,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Option<i64>, crate::store::StoreError> {
        let s = &self.settings;
        let lock_for = s.lock_for.as_secs() as i64;
        let address_window = s.lock_for.as_secs().max(s.window.as_secs()) as i64;
        let key = address_key(ip).to_string();
        let (hits, _) = store
            .count_in_window("address_failures", &key, now, address_window)
            .await?;
        if hits >= i64::from(s.ip_max_failures) {
            store.clear_count("address_failures", &key).await?;
            store.block(&key, now + lock_for).await?;
        }
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        let (hits, _) = store
            .count_in_window("user_failures", user_id, now, s.window.as_secs() as i64)
            .await?;
        if hits >= i64::from(s.max_failures) {
            store.clear_count("user_failures", user_id).await?;
            return Ok(Some(now + lock_for));
        }
        Ok(None)
    }

    fn failed_here(&self, user_id: Option<&str>, ip: Option<IpAddr>, now: i64) -> Option<i64> {
        let key = address_key(ip);
        if self.addresses.add(key, now) >= self.settings.ip_max_failures {
            self.addresses.clear(&key);
            self.blocked
                .insert(key, now + self.settings.lock_for.as_secs() as i64);
        }
        let user_id = user_id?.to_string();
        if self.users.add(user_id.clone(), now) >= self.settings.max_failures {
            self.users.clear(&user_id);
            return Some(now + self.settings.lock_for.as_secs() as i64);
        }
        None
    }

    pub async fn succeeded(&self, user_id: &str) {
        if let Some(store) = self.shared_store()
            && let Err(e) = store.clear_count("user_failures", user_id).await
        {
            tracing::warn!(error = %e, "could not clear a user's shared failure count");
        }
        self.users.clear(&user_id.to_string());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn lockout() -> Lockout {
        Lockout::new(LockoutSettings {
            max_failures: 3,
            window: Duration::from_secs(600),
            lock_for: Duration::from_secs(900),
            ip_max_failures: 5,
            login_rate_per_minute: 6,
        })
    }

    #[test]
    fn users_lock_after_n_failures_within_the_window() {
        let l = lockout();
        assert_eq!(l.failed_here(Some("u"), ip("1.1.1.1"), 0), None);
        assert_eq!(l.failed_here(Some("u"), ip("1.1.1.2"), 10), None);
        assert_eq!(l.failed_here(Some("u"), ip("1.1.1.3"), 20), Some(920));
        assert_eq!(l.failed_here(Some("v"), ip("1.1.1.3"), 0), None);
        assert_eq!(
            l.failed_here(Some("v"), ip("1.1.1.3"), 700),
            None,
            "the window restarted"
        );
        l.users.clear(&"v".to_string());
        assert_eq!(l.failed_here(Some("v"), ip("1.1.1.3"), 701), None);
    }

    #[test]
    fn addresses_with_many_failures_are_blocked() {
        let l = lockout();
        for i in 0..5 {
            l.failed_here(Some(&format!("user{i}")), ip("9.9.9.9"), i);
        }
        assert!(matches!(
            l.admit_here(ip("9.9.9.9"), 10),
            Admission::Limited { .. }
        ));
        assert_eq!(l.admit_here(ip("8.8.8.8"), 10), Admission::Allowed);
        assert_eq!(
            l.admit_here(ip("9.9.9.9"), 2000),
            Admission::Allowed,
            "the block ends"
        );
    }

    #[test]
    fn the_rate_limit_refills_over_time() {
        let l = lockout();
        for _ in 0..6 {
            assert_eq!(l.admit_here(ip("7.7.7.7"), 100), Admission::Allowed);
        }
        let Admission::Limited { retry_after } = l.admit_here(ip("7.7.7.7"), 100) else {
            panic!("limited")
        };
        assert_eq!(retry_after, 10);
        assert_eq!(l.admit_here(ip("7.7.7.7"), 110), Admission::Allowed);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let l = lockout();
        for i in 0..5 {
            l.failed_here(None, ip(&format!("2001:db8:1:2::{i:x}")), i);
        }
        assert!(matches!(
            l.admit_here(ip("2001:db8:1:2:ffff::1"), 10),
            Admission::Limited { .. }
        ));
        assert_eq!(l.admit_here(ip("2001:db8:1:3::1"), 10), Admission::Allowed);
        assert_eq!(
            address_key(ip("::ffff:1.2.3.4")),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_flood_of_new_addresses_does_not_reset_a_blocked_one() {
        let settings = LockoutSettings {
            max_failures: 3,
            window: Duration::from_secs(600),
            lock_for: Duration::from_secs(900),
            ip_max_failures: 5,
            login_rate_per_minute: 6,
        };
        let l = Lockout::with_capacity(settings, 64);
        for i in 0..5 {
            l.failed_here(None, ip("9.9.9.9"), i);
        }
        for i in 0..5_000u32 {
            l.failed_here(None, Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))), 10);
            if i % 500 == 0 {
                assert!(
                    matches!(l.admit_here(ip("9.9.9.9"), 10), Admission::Limited { .. }),
                    "after {i}"
                );
            }
        }
        l.addresses.entries.run_pending_tasks();
        assert!(
            l.addresses.entries.entry_count() <= 64,
            "the counters stay bounded"
        );
        assert!(matches!(
            l.admit_here(ip("9.9.9.9"), 10),
            Admission::Limited { .. }
        ));
    }
}
