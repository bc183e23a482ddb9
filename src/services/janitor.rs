//! Deletes expired sessions, old account tokens and old mail, and publishes how many sessions
//! are active, once a minute.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::StoreHandle;
use crate::auth::Clock;
use crate::metrics::Metrics;

pub struct SessionJanitor {
    store: StoreHandle,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// The longest window a shared login failure counter matters for, in seconds.
    failure_window: i64,
}

impl SessionJanitor {
    pub fn new(
        store: StoreHandle,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        failure_window: std::time::Duration,
    ) -> Self {
        Self {
            store,
            clock,
            metrics,
            failure_window: failure_window.as_secs() as i64,
        }
    }

    async fn sweep(&self) {
        let Some(store) = self.store.load_full() else {
            return;
        };
        let now = self.clock.now();
        match store.delete_expired_sessions(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired sessions removed"),
            Err(e) => tracing::warn!(error = %e, "could not remove expired sessions"),
        }
        // Expired account tokens are kept a day, so that a late click is told "expired".
        if let Err(e) = store.delete_stale_account_tokens(now - 86_400).await {
            tracing::warn!(error = %e, "could not remove old account tokens");
        }
        // Account links live at most 30 days: older mail is only history.
        if let Err(e) = store.prune_mail(now - 30 * 86_400).await {
            tracing::warn!(error = %e, "could not prune the mail queue");
        }
        // Shared login counters (PostgreSQL), as soon as their window has passed.
        if let Err(e) = store.prune_limits(now, self.failure_window).await {
            tracing::warn!(error = %e, "could not prune the login counters");
        }
        match store.count_active_sessions(now).await {
            Ok(n) => self.metrics.sessions_active.set(n),
            Err(e) => tracing::warn!(error = %e, "could not count sessions"),
        }
    }
}

#[async_trait]
impl BackgroundService for SessionJanitor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sweep().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}
