//! Brute-force protection for the login endpoint: failures counted per user and per client IP
//! within a window, and a per-IP rate limit on login attempts. Counters live in memory (per
//! instance); a user's lock is written to the database so that it holds on every instance and
//! `postern user unlock` can lift it.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::LockoutSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Too many attempts from this address: retry after this many seconds.
    Limited {
        retry_after: i64,
    },
}

/// Counts events per key within a window; bounded in size.
struct WindowCounter {
    window: i64,
    entries: HashMap<String, (u32, i64)>,
}

const MAX_TRACKED: usize = 100_000;

impl WindowCounter {
    fn new(window: i64) -> Self {
        Self {
            window,
            entries: HashMap::new(),
        }
    }

    fn add(&mut self, key: &str, now: i64) -> u32 {
        if self.entries.len() >= MAX_TRACKED {
            let window = self.window;
            self.entries.retain(|_, (_, start)| now - *start < window);
            if self.entries.len() >= MAX_TRACKED {
                self.entries.clear();
            }
        }
        let entry = self.entries.entry(key.to_string()).or_insert((0, now));
        if now - entry.1 >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.0
    }

    fn count(&self, key: &str, now: i64) -> u32 {
        match self.entries.get(key) {
            Some((count, start)) if now - start < self.window => *count,
            _ => 0,
        }
    }

    fn clear(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Token bucket per key.
struct RateLimiter {
    per_minute: u32,
    buckets: HashMap<String, (f64, i64)>,
}

impl RateLimiter {
    fn take(&mut self, key: &str, now: i64) -> Admission {
        if self.buckets.len() >= MAX_TRACKED {
            self.buckets.retain(|_, (_, last)| now - *last < 60);
        }
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let (tokens, last) = self
            .buckets
            .entry(key.to_string())
            .or_insert((capacity, now));
        *tokens = (*tokens + (now - *last).max(0) as f64 * rate).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Admission::Allowed
        } else {
            Admission::Limited {
                retry_after: ((1.0 - *tokens) / rate).ceil().max(1.0) as i64,
            }
        }
    }
}

pub struct Lockout {
    settings: LockoutSettings,
    users: Mutex<WindowCounter>,
    ips: Mutex<WindowCounter>,
    limiter: Mutex<RateLimiter>,
}

impl Lockout {
    pub fn new(settings: LockoutSettings) -> Self {
        let window = settings.window.as_secs() as i64;
        Self {
            users: Mutex::new(WindowCounter::new(window)),
            ips: Mutex::new(WindowCounter::new(
                settings.lock_for.as_secs().max(settings.window.as_secs()) as i64,
            )),
            limiter: Mutex::new(RateLimiter {
                per_minute: settings.login_rate_per_minute,
                buckets: HashMap::new(),
            }),
            settings,
        }
    }

    /// Before a login attempt from `ip`: the rate limit, and the per-IP failure block.
    pub fn admit(&self, ip: &str, now: i64) -> Admission {
        let ip_failures = self.ips.lock().map_or(0, |c| c.count(ip, now));
        if ip_failures >= self.settings.ip_max_failures {
            return Admission::Limited {
                retry_after: self.settings.lock_for.as_secs() as i64,
            };
        }
        match self.limiter.lock() {
            Ok(mut limiter) => limiter.take(ip, now),
            Err(_) => Admission::Allowed,
        }
    }

    /// Records a failed login. Returns `Some(until)` when the user must now be locked.
    pub fn failed(&self, user_id: Option<&str>, ip: &str, now: i64) -> Option<i64> {
        if let Ok(mut ips) = self.ips.lock() {
            ips.add(ip, now);
        }
        let user_id = user_id?;
        let mut users = self.users.lock().ok()?;
        if users.add(user_id, now) >= self.settings.max_failures {
            users.clear(user_id);
            return Some(now + self.settings.lock_for.as_secs() as i64);
        }
        None
    }

    pub fn succeeded(&self, user_id: &str) {
        if let Ok(mut users) = self.users.lock() {
            users.clear(user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
        assert_eq!(l.failed(Some("u"), "1.1.1.1", 0), None);
        assert_eq!(l.failed(Some("u"), "1.1.1.2", 10), None);
        assert_eq!(l.failed(Some("u"), "1.1.1.3", 20), Some(920));
        assert_eq!(l.failed(Some("v"), "1.1.1.3", 0), None);
        assert_eq!(
            l.failed(Some("v"), "1.1.1.3", 700),
            None,
            "the window restarted"
        );
        l.succeeded("v");
        assert_eq!(l.failed(Some("v"), "1.1.1.3", 701), None);
    }

    #[test]
    fn addresses_with_many_failures_are_blocked() {
        let l = lockout();
        for i in 0..5 {
            l.failed(Some(&format!("user{i}")), "9.9.9.9", i);
        }
        assert!(matches!(l.admit("9.9.9.9", 10), Admission::Limited { .. }));
        assert_eq!(l.admit("8.8.8.8", 10), Admission::Allowed);
        assert_eq!(
            l.admit("9.9.9.9", 2000),
            Admission::Allowed,
            "the block ends"
        );
    }

    #[test]
    fn the_rate_limit_refills_over_time() {
        let l = lockout();
        for _ in 0..6 {
            assert_eq!(l.admit("7.7.7.7", 100), Admission::Allowed);
        }
        let Admission::Limited { retry_after } = l.admit("7.7.7.7", 100) else {
            panic!("limited")
        };
        assert_eq!(retry_after, 10);
        assert_eq!(l.admit("7.7.7.7", 110), Admission::Allowed);
    }
}
