//! Long responses end with the login they started under. A request on a route with
//! `cut_on_revoke` is watched while it runs: a background sweep (every
//! `sessions.recheck_interval`, and at once whenever sessions are revoked here or on another
//! instance) checks its session or bearer token, and when that has ended — revoked, expired,
//! its user disabled or changed — shuts the client's connection down. That ends a download, an
//! SSE stream, a long poll or a WebSocket however quiet it is, on HTTP/1 and HTTP/2 alike (on
//! HTTP/2 the whole connection closes).
//!
//! The connection is found by its kernel socket cookie (read when the request starts, while the
//! socket surely is this client's): the sweep looks for a descriptor with that cookie, so a
//! connection that has closed meanwhile, whose descriptor number may now be someone else's, is
//! never touched.

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
    /// The kernel cookie of the client's socket.
    cookie: u64,
    cut: AtomicBool,
}

#[derive(Default)]
pub struct Watches {
    entries: Mutex<HashMap<u64, Arc<Watch>>>,
    next: AtomicU64,
}

/// A watched request; dropping it (at the end of the request) ends the watch.
pub struct WatchGuard {
    watches: Arc<Watches>,
    id: u64,
    watch: Arc<Watch>,
}

impl WatchGuard {
    /// Whether the sweep has cut this request's connection.
    pub fn is_cut(&self) -> bool {
        self.watch.cut.load(Ordering::Acquire)
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Ok(mut entries) = self.watches.entries.lock() {
            entries.remove(&self.id);
        }
    }
}

impl Watches {
    /// Watches a request on the connection whose socket cookie is `cookie`.
    pub fn watch(self: &Arc<Self>, grant: Grant, cookie: u64) -> Option<WatchGuard> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            grant,
            cookie,
            cut: AtomicBool::new(false),
        });
        self.entries.lock().ok()?.insert(id, watch.clone());
        Some(WatchGuard {
            watches: self.clone(),
            id,
            watch,
        })
    }

    fn snapshot(&self) -> Vec<Arc<Watch>> {
        self.entries
            .lock()
            .map(|entries| entries.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
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

/// The kernel cookie of a request's client socket.
pub fn client_socket_cookie(session: &pingora::proxy::Session) -> Option<u64> {
    let digest = session.as_downstream().digest()?;
    digest.socket_digest.as_ref()?.socket_cookie().ok()
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
            if shut_down_socket(watch.cookie) {
                self.metrics
                    .streams_cut
                    .with_label_values(&[ended.label()])
                    .inc();
                tracing::info!(
                    reason = ended.label(),
                    "closed a connection whose login ended"
                );
            }
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
    fn watches_end_when_their_guard_drops() {
        let watches = Arc::new(Watches::default());
        let guard = watches.watch(Grant::Session("x".into()), 7).unwrap();
        assert_eq!(watches.len(), 1);
        assert!(!guard.is_cut());
        drop(guard);
        assert!(watches.is_empty());
    }
}
