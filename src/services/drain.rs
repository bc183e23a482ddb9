//! A graceful stop that loses no request and ends as soon as the last one finishes.
//!
//! Once a stop or an upgrade begins, every response says `Connection: close` (including those
//! of requests that began before), so that clients leave this process between requests instead
//! of having an idle connection closed under a request they were sending (during an upgrade the
//! new process takes the new connections). Pingora then sleeps the whole
//! `shutdown_grace_period`, even with nothing in flight; this watches its execution phase, the
//! requests in progress and the work that outlives its request (a detached account job, an
//! image variant being saved, a mail round), and ends the process the moment none is left.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How often the count of requests in progress is read during the grace period.
const POLL: Duration = Duration::from_millis(20);

/// Whether this process is on its way out (a stop or an upgrade has begun).
static LEAVING: AtomicBool = AtomicBool::new(false);
/// Work running past its request's answer, in this process.
static JOBS: AtomicUsize = AtomicUsize::new(0);

/// A stop or an upgrade has begun: connections are not kept alive.
pub fn leaving() -> bool {
    LEAVING.load(Ordering::Relaxed)
}

/// Turns keep-alive off for this response once the process is leaving: call it before
/// writing a response header.
pub fn close_if_leaving(session: &mut pingora::proxy::Session) {
    if leaving() || session.is_process_shutting_down() {
        session.set_keepalive(None);
    }
}

/// Counts work that outlives its request until the guard is dropped: an early exit waits
/// for it (within the grace period).
pub fn job() -> JobGuard {
    JOBS.fetch_add(1, Ordering::Relaxed);
    JobGuard(())
}

/// One piece of work that outlives its request.
#[derive(Debug)]
pub struct JobGuard(());

impl Drop for JobGuard {
    fn drop(&mut self) {
        JOBS.fetch_sub(1, Ordering::Release);
    }
}

fn jobs() -> usize {
    JOBS.load(Ordering::Acquire)
}

/// Requests in progress on the proxy listeners.
#[derive(Debug, Default)]
pub struct InFlight {
    requests: AtomicUsize,
}

impl InFlight {
    /// Counts a request until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }
}

/// One request in progress.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::Release);
    }
}

/// The background service that ends the process once the grace period has begun and no
/// request is in progress. `before_exit` runs first (flushing what is buffered). A service, so
/// that its thread starts after Pingora has daemonized.
pub struct DrainWatcher {
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
    in_flight: Arc<InFlight>,
    before_exit: fn(),
}

impl DrainWatcher {
    pub fn new(
        phases: broadcast::Receiver<ExecutionPhase>,
        in_flight: Arc<InFlight>,
        before_exit: fn(),
    ) -> Self {
        Self {
            phases: Mutex::new(Some(phases)),
            in_flight,
            before_exit,
        }
    }
}

#[async_trait]
impl BackgroundService for DrainWatcher {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let Some(phases) = self.phases.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let (in_flight, before_exit) = (self.in_flight.clone(), self.before_exit);
        let started = std::thread::Builder::new()
            .name("postern-drain".into())
            .spawn(move || {
                let mut phases = phases;
                if !stop_begins(&mut phases) {
                    return;
                }
                LEAVING.store(true, Ordering::Relaxed);
                if !grace_period_begins(phases) {
                    return;
                }
                let since = Instant::now();
                // Idle twice in a row: a request read just before the first look (pipelined
                // on a connection that was still open) has been counted by the second.
                let idle = || in_flight.count() == 0 && jobs() == 0;
                loop {
                    if idle() {
                        std::thread::sleep(POLL);
                        if idle() {
                            break;
                        }
                    }
                    std::thread::sleep(POLL);
                }
                tracing::info!(
                    waited_ms = since.elapsed().as_millis() as u64,
                    "graceful stop: no request in progress, exiting before the grace period ends"
                );
                before_exit();
                std::process::exit(0);
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "no drain watcher: a graceful stop waits the whole grace period");
        }
    }
}

/// Waits for a stop or an upgrade to begin; false when the server ended without one.
fn stop_begins(phases: &mut broadcast::Receiver<ExecutionPhase>) -> bool {
    loop {
        match phases.blocking_recv() {
            Ok(
                ExecutionPhase::GracefulUpgradeTransferringFds
                | ExecutionPhase::GracefulUpgradeCloseTimeout
                | ExecutionPhase::GracefulTerminate
                | ExecutionPhase::ShutdownStarted
                | ExecutionPhase::ShutdownGracePeriod,
            ) => return true,
            Ok(ExecutionPhase::ShutdownRuntimes | ExecutionPhase::Terminated) => return false,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

/// Waits for the grace period; false when the server ended without one (fast shutdown).
fn grace_period_begins(mut phases: broadcast::Receiver<ExecutionPhase>) -> bool {
    loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownGracePeriod) => return true,
            Ok(ExecutionPhase::ShutdownRuntimes | ExecutionPhase::Terminated) => return false,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_guards_count_work_past_the_answer() {
        let before = jobs();
        let job = job();
        assert!(jobs() > before);
        drop(job);
        assert_eq!(jobs(), before);
    }

    #[test]
    fn guards_count_requests_in_progress() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.enter();
        let second = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        drop(first);
        assert_eq!(in_flight.count(), 1);
        drop(second);
        assert_eq!(in_flight.count(), 0);
    }

    #[test]
    fn a_fast_shutdown_does_not_wait_for_a_grace_period() {
        let (tx, rx) = broadcast::channel(8);
        tx.send(ExecutionPhase::Running).unwrap();
        tx.send(ExecutionPhase::ShutdownStarted).unwrap();
        tx.send(ExecutionPhase::ShutdownRuntimes).unwrap();
        assert!(!grace_period_begins(rx));
        let (tx, rx) = broadcast::channel(8);
        tx.send(ExecutionPhase::GracefulTerminate).unwrap();
        tx.send(ExecutionPhase::ShutdownGracePeriod).unwrap();
        assert!(grace_period_begins(rx));
    }

    #[test]
    fn an_upgrade_or_a_stop_is_noticed_when_it_begins() {
        let (tx, mut rx) = broadcast::channel(8);
        tx.send(ExecutionPhase::Running).unwrap();
        tx.send(ExecutionPhase::GracefulUpgradeTransferringFds)
            .unwrap();
        assert!(stop_begins(&mut rx));
        let (tx, mut rx) = broadcast::channel(8);
        tx.send(ExecutionPhase::Running).unwrap();
        tx.send(ExecutionPhase::ShutdownRuntimes).unwrap();
        assert!(!stop_begins(&mut rx));
    }
}
