//! The mail worker: a background service that claims due messages from the queue, delivers
//! them, and reschedules failures with exponential backoff until `max_attempts`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::json;
use tokio::sync::Notify;

use super::{MailSettings, Transport, TransportSettings};
use crate::auth::Clock;
use crate::metrics::Metrics;
use crate::services::StoreHandle;
use crate::store::{DueMail, NewEvent, Store};

/// How often the queue is looked at without a wake-up (messages queued by the CLI or by another
/// instance, and retries that came due).
const POLL: Duration = Duration::from_secs(2);
/// Messages claimed per round.
const BATCH: i64 = 20;

pub struct MailWorker {
    store: StoreHandle,
    transport: Transport,
    settings: MailSettings,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

impl MailWorker {
    pub fn new(
        store: StoreHandle,
        transport: Transport,
        settings: MailSettings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            transport,
            settings,
            clock,
            metrics,
            wake,
        }
    }

    /// When a message that failed its `attempts`th try is tried again.
    fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        self.settings
            .retry_base
            .saturating_mul(1u32 << exponent)
            .min(self.settings.retry_max)
    }

    /// The longest one delivery may take: the SMTP conversation has several steps, each bounded
    /// by `mail.smtp.timeout`.
    fn delivery_limit(&self) -> Duration {
        match &self.settings.transport {
            TransportSettings::Smtp(smtp) => smtp.timeout.saturating_mul(4),
            _ => Duration::from_secs(30),
        }
    }

    /// A lease that outlives any delivery (which is cut at [`Self::delivery_limit`]): a worker
    /// that dies mid-send leaves the message to be tried again when it runs out, and no message
    /// is claimed twice while it is being sent.
    fn lease(&self) -> i64 {
        self.delivery_limit().as_secs() as i64 + 30
    }

    async fn run_once(&self, store: &Store) {
        loop {
            let now = self.clock.now();
            let due = match store.claim_due_mail(now, now + self.lease(), BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the mail queue");
                    return;
                }
            };
            if due.is_empty() {
                break;
            }
            for mail in due {
                self.deliver(store, mail).await;
            }
        }
        match store.count_pending_mail().await {
            Ok(n) => self.metrics.mail_queue_depth.set(n),
            Err(e) => tracing::warn!(error = %e, "could not count queued mail"),
        }
    }

    async fn deliver(&self, store: &Store, mail: DueMail) {
        let record = &mail.record;
        let name = format!("{}-{:06}-{}", record.created_at, record.id, record.kind);
        let send = self.transport.send(
            &mail.sender,
            &record.recipient,
            mail.message.as_bytes(),
            &name,
        );
        let result = match tokio::time::timeout(self.delivery_limit(), send).await {
            Ok(result) => result,
            Err(_) => Err(super::MailError::Transport(format!(
                "no answer within {:?}",
                self.delivery_limit()
            ))),
        };
        let now = self.clock.now();
        let count = |result: &str| {
            self.metrics
                .mail
                .with_label_values(&[record.kind.as_str(), result])
                .inc();
        };
        let event = |kind: &str, detail| NewEvent {
            kind: kind.to_string(),
            user_id: record.user_id.clone(),
            detail,
            ..NewEvent::default()
        };
        match result {
            Ok(()) => {
                count("sent");
                if let Err(e) = store.mail_sent(record.id, now).await {
                    tracing::error!(error = %e, id = record.id, "mail sent but not marked sent: it may be sent again");
                }
                let detail =
                    json!({"id": record.id, "kind": record.kind, "attempts": record.attempts});
                let _ = store.record_event(&event("mail.sent", detail), now).await;
            }
            Err(e) => {
                let error = e.to_string();
                let last = record.attempts >= i64::from(self.settings.max_attempts);
                let retry_at =
                    (!last).then(|| now + self.backoff(record.attempts).as_secs() as i64);
                tracing::warn!(id = record.id, kind = %record.kind, attempts = record.attempts, error = %error,
                    "mail delivery failed{}", if last { "; giving up" } else { "; will retry" });
                if let Err(e) = store.mail_attempt_failed(record.id, &error, retry_at).await {
                    tracing::error!(error = %e, id = record.id, "could not record a mail failure");
                }
                if last {
                    count("failed");
                    let detail = json!({"id": record.id, "kind": record.kind, "attempts": record.attempts, "error": error});
                    let _ = store.record_event(&event("mail.failed", detail), now).await;
                } else {
                    count("retry");
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for MailWorker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            if let Some(store) = self.store.load_full() {
                // A delivery cut short by an early exit would be sent again by the next process.
                let _running = crate::services::drain::job();
                self.run_once(&store).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
