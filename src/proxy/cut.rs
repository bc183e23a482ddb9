//! Long responses end with the login they started under. A request on a route with
//! `cut_on_revoke` is watched while it runs: a background sweep (every
//! `sessions.recheck_interval`, and at once whenever sessions are revoked here or on another
//! instance) checks its session or bearer token, and when that has ended — revoked, expired,
//! its user disabled or changed — the request is cut: only that request, never the client's
//! connection, which on HTTP/2 (or behind a proxy) carries other requests, maybe other users'.
//!
//! A cut request fails at its next body chunk in either direction, and a proxied one that is
//! quiet (an idle SSE stream, a long poll, a WebSocket) has its HTTP/1 upstream socket shut
//! down, which ends it at once. That socket is found by its kernel socket cookie, read when
//! postern connected it, and is let go before the connection can return to the pool (when the
//! response ends), so no other request's connection is ever touched.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::auth::{Clock, Sessions, Tokens};
use crate::metrics::Metrics;

/// What a watched request was let in on.
#[derive(Debug, Clone)]
pub enum Grant {
    /// A session cookie: the session's id hash.
    Session(String),
    /// A bearer token: its user and epoch, its expiry, and the session it came from (if any).
    Token {
        user_id: String,
        epoch: i64,
        expires_at: i64,
        session: Option<String>,
    },
}

struct Watch {
    grant: Grant,
    /// The cookie of the HTTP/1 upstream socket while this request is using it.
    upstream: Mutex<Option<u64>>,
    cut: AtomicBool,
}

/// Requests start and end on every worker thread at once: the watches are spread over shards
/// (by id, which is sequential) so that they rarely wait on one another's lock.
const SHARDS: usize = 16;

pub struct Watches {
    shards: [Mutex<HashMap<u64, Arc<Watch>>>; SHARDS],
    next: AtomicU64,
}

impl Default for Watches {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::default()),
            next: AtomicU64::new(0),
        }
    }
}

/// A watched request; dropping it (at the end of the request) ends the watch.
pub struct WatchGuard {
    watches: Arc<Watches>,
    id: u64,
    watch: Arc<Watch>,
}

/// Whether a watched request has been cut, for code that streams its body itself.
#[derive(Clone)]
pub struct CutSignal(Arc<Watch>);

impl std::fmt::Debug for CutSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CutSignal").field(&self.is_cut()).finish()
    }
}

impl CutSignal {
    pub fn is_cut(&self) -> bool {
        self.0.cut.load(Ordering::Acquire)
    }
}

impl WatchGuard {
    /// Whether the sweep has cut this request.
    pub fn is_cut(&self) -> bool {
        self.watch.cut.load(Ordering::Acquire)
    }

    pub fn signal(&self) -> CutSignal {
        CutSignal(self.watch.clone())
    }

    /// The request now uses the HTTP/1 upstream socket `fd` (just connected or taken from
    /// the pool, so surely this request's).
    pub fn attach_upstream(&self, fd: RawFd) {
        if let (Some(cookie), Ok(mut upstream)) = (cookie_of(fd), self.watch.upstream.lock()) {
            *upstream = Some(cookie);
        }
    }

    /// The upstream socket may return to the pool: it is no longer this request's to cut.
    pub fn detach_upstream(&self) {
        if let Ok(mut upstream) = self.watch.upstream.lock() {
            *upstream = None;
        }
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.detach_upstream();
        if let Ok(mut shard) = self.watches.shard(self.id).lock() {
            shard.remove(&self.id);
        }
    }
}

impl Watches {
    /// Watches a request let in on `grant`.
    pub fn watch(self: &Arc<Self>, grant: Grant) -> Option<WatchGuard> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            grant,
            upstream: Mutex::new(None),
            cut: AtomicBool::new(false),
        });
        self.shard(id).lock().ok()?.insert(id, watch.clone());
        Some(WatchGuard {
            watches: self.clone(),
            id,
            watch,
        })
    }

    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Arc<Watch>>> {
        &self.shards[id as usize % SHARDS]
    }

    fn snapshot(&self) -> Vec<Arc<Watch>> {
        let mut all = Vec::new();
        for shard in &self.shards {
            if let Ok(shard) = shard.lock() {
                all.extend(shard.values().cloned());
            }
        }
        all
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn cookie_of(fd: RawFd) -> Option<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cookie)
}

/// Shuts down (both ways) this process's socket whose cookie is `cookie`, if it is still open.
/// Each descriptor is duplicated before it is looked at, so the socket checked is the socket
/// shut down even if the number is closed and reused meanwhile.
pub fn shut_down_socket(cookie: u64) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    for entry in entries.flatten() {
        let Some(number) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: F_DUPFD_CLOEXEC on a number that may not be open only fails with EBADF.
        let copy = unsafe { libc::fcntl(number, libc::F_DUPFD_CLOEXEC, 0) };
        if copy < 0 {
            continue;
        }
        // SAFETY: `copy` is a descriptor this function just created and nothing else owns.
        let copy = unsafe { OwnedFd::from_raw_fd(copy) };
        if cookie_of(std::os::fd::AsRawFd::as_raw_fd(&copy)) == Some(cookie) {
            return rustix::net::shutdown(&copy, rustix::net::Shutdown::Both).is_ok();
        }
    }
    false
}

/// Why a grant no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Revoked,
    Expired,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// The background sweep that cuts connections whose grant has ended.
pub struct Cutter {
    watches: Arc<Watches>,
    sessions: Arc<Sessions>,
    tokens: Arc<Tokens>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    interval: Duration,
}

impl Cutter {
    pub fn new(
        watches: Arc<Watches>,
        sessions: Arc<Sessions>,
        tokens: Arc<Tokens>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        interval: Duration,
    ) -> Self {
        Self {
            watches,
            sessions,
            tokens,
            clock,
            metrics,
            interval,
        }
    }

    /// Whether the grant has ended; a database that cannot be asked ends nothing.
    async fn ended(&self, grant: &Grant) -> Option<Ended> {
        let session_ended = |id: &str| {
            let sessions = self.sessions.clone();
            let id = id.to_string();
            async move { matches!(sessions.is_live(&id).await, Ok(false)) }
        };
        match grant {
            Grant::Session(id_hash) => session_ended(id_hash).await.then_some(Ended::Revoked),
            Grant::Token {
                user_id,
                epoch,
                expires_at,
                session,
            } => {
                if self.clock.now() >= *expires_at {
                    return Some(Ended::Expired);
                }
                if let Some(id) = session
                    && session_ended(id).await
                {
                    return Some(Ended::Revoked);
                }
                match self.tokens.user_is_current(user_id, *epoch).await {
                    Ok(false) => Some(Ended::Revoked),
                    _ => None,
                }
            }
        }
    }

    async fn sweep(&self) {
        for watch in self.watches.snapshot() {
            if watch.cut.load(Ordering::Acquire) {
                continue;
            }
            let Some(ended) = self.ended(&watch.grant).await else {
                continue;
            };
            watch.cut.store(true, Ordering::Release);
            // Under the watch's lock (on the blocking pool: it reads /proc), so that the request
            // cannot hand the socket back to the pool meanwhile.
            let target = watch.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(upstream) = target.upstream.lock()
                    && let Some(cookie) = *upstream
                {
                    shut_down_socket(cookie);
                }
            })
            .await;
            self.metrics
                .streams_cut
                .with_label_values(&[ended.label()])
                .inc();
            tracing::info!(reason = ended.label(), "cut a request whose login ended");
        }
    }
}

#[async_trait]
impl BackgroundService for Cutter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let revocations = self.sessions.revocations();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = revocations.notified() => {}
                _ = shutdown.changed() => return,
            }
            if !self.watches.is_empty() {
                self.sweep().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_is_found_by_its_cookie_and_shut_down() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let cookie = cookie_of(std::os::fd::AsRawFd::as_raw_fd(&server)).unwrap();
        assert!(shut_down_socket(cookie));
        let mut buf = [0u8; 1];
        use std::io::Read;
        assert_eq!(
            (&client).read(&mut buf).unwrap(),
            0,
            "the peer sees the end"
        );
        drop(server);
        assert!(
            !shut_down_socket(cookie),
            "a closed socket is never found again"
        );
    }

    #[test]
    fn watches_end_when_their_guard_drops_and_let_their_socket_go() {
        let watches = Arc::new(Watches::default());
        let guard = watches.watch(Grant::Session("x".into())).unwrap();
        assert_eq!(watches.len(), 1);
        assert!(!guard.is_cut());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        guard.attach_upstream(std::os::fd::AsRawFd::as_raw_fd(&server));
        assert!(guard.watch.upstream.lock().unwrap().is_some());
        guard.detach_upstream();
        assert!(guard.watch.upstream.lock().unwrap().is_none());
        drop(guard);
        assert!(watches.is_empty());
    }
}
