//! Revocations from other instances (PostgreSQL): a `LISTEN postern_revocations` connection
//! whose notifications, sent by triggers on every change that ends sessions or changes what a
//! user may do (`migrations/postgres/0006_revocations.sql`), drop the affected cache entries
//! here. While the connection is down the session and token caches are off (every check reads
//! the database), so a notification lost in the gap cannot leave a revoked session usable; the
//! connection is re-made with backoff.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::auth::{Sessions, Tokens};
use crate::metrics::Metrics;

pub const CHANNEL: &str = "postern_revocations";
/// The listener connection's `application_name`, so an operator can tell it apart.
pub const APPLICATION_NAME: &str = "postern-revocations";

/// Whether this instance currently hears revocations (for `/readyz`).
#[derive(Default)]
pub struct ListenerState {
    connected: AtomicBool,
}

impl ListenerState {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

/// How often the listener proves its connection delivers (a notification to itself), and how
/// long it waits for that to arrive before it reconnects: a half-open connection, or a pooler
/// that takes `LISTEN` but delivers nothing, is found within about twice this.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// What a notification asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Revocation<'a> {
    User(&'a str),
    Session(&'a str),
    /// Whole tables were emptied: forget everything.
    All,
    /// A listener's heartbeat, by its application name.
    Ping(&'a str),
}

impl<'a> Revocation<'a> {
    pub fn parse(payload: &'a str) -> Option<Self> {
        match payload.split_once(':')? {
            ("u", id) if !id.is_empty() => Some(Self::User(id)),
            ("s", hash) if !hash.is_empty() => Some(Self::Session(hash)),
            ("all", "") => Some(Self::All),
            ("ping", name) => Some(Self::Ping(name)),
            _ => None,
        }
    }
}

pub struct RevocationListener {
    url: String,
    /// `application_name` of the connection: [`APPLICATION_NAME`] and this instance's address.
    application_name: String,
    sessions: Arc<Sessions>,
    tokens: Arc<Tokens>,
    state: Arc<ListenerState>,
    metrics: Arc<Metrics>,
}

impl RevocationListener {
    /// Until it first connects, this instance's caches are off. `instance` names this instance
    /// in PostgreSQL's `pg_stat_activity` (its listen address).
    pub fn new(
        url: String,
        instance: &str,
        sessions: Arc<Sessions>,
        tokens: Arc<Tokens>,
        state: Arc<ListenerState>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // A random tail: instances on several hosts may share a listen address.
        let tail: u32 = rand::random();
        let mut application_name = format!("{APPLICATION_NAME} {instance} {tail:08x}");
        application_name.truncate(63);
        let listener = Self {
            url,
            application_name,
            sessions,
            tokens,
            state,
            metrics,
        };
        listener.set_connected(false);
        listener
    }

    fn set_connected(&self, up: bool) {
        self.sessions.set_cache(up);
        self.tokens.set_cache(up);
        self.state.connected.store(up, Ordering::Release);
        self.metrics.revocation_listener_up.set(i64::from(up));
    }

    /// The listening connection, and a pool of one more to send heartbeats through.
    async fn connect(&self) -> Result<(PgListener, sqlx::PgPool), sqlx::Error> {
        let options =
            PgConnectOptions::from_str(&self.url)?.application_name(&self.application_name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        Ok((listener, pool))
    }

    /// Applies a notification; `true` when it is this listener's own heartbeat.
    fn apply(&self, payload: &str) -> bool {
        let revocation = Revocation::parse(payload);
        if let Some(Revocation::Ping(name)) = revocation {
            return name == self.application_name;
        }
        self.metrics.revocations_received.inc();
        match revocation {
            Some(Revocation::User(id)) => {
                // Tokens first: forgetting sessions wakes the re-check of running responses.
                self.tokens.forget_user(id);
                self.sessions.forget_user(id);
            }
            Some(Revocation::Session(hash)) => self.sessions.forget_session(hash),
            Some(Revocation::All) => {
                self.tokens.set_cache(true);
                self.sessions.set_cache(true);
            }
            Some(Revocation::Ping(_)) => {}
            None => tracing::warn!(payload, "unknown revocation notification"),
        }
        false
    }

    /// Sends this listener's heartbeat through its own connection's database.
    async fn ping(&self, pool: &sqlx::PgPool) -> bool {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("ping:{}", self.application_name))
            .execute(pool)
            .await
            .is_ok()
    }
}

/// Forwards notifications until the connection ends (then `None`).
async fn receive(mut listener: PgListener, tx: tokio::sync::mpsc::Sender<Option<String>>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if tx
                    .send(Some(notification.payload().to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "revocation listener failed");
                break;
            }
        }
    }
    let _ = tx.send(None).await;
}

#[async_trait]
impl BackgroundService for RevocationListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.connect().await {
                Ok((listener, pool)) => {
                    delay = Duration::from_millis(100);
                    self.set_connected(true);
                    tracing::info!("listening for revocations from other instances");
                    // The listener reads in a task of its own: receiving is not cancel-safe, so
                    // it is never raced against the heartbeat. `None` says the connection ended.
                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<String>>(1024);
                    let receiver = tokio::spawn(receive(listener, tx));
                    let mut heartbeat = tokio::time::interval(HEARTBEAT);
                    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut unanswered = false;
                    loop {
                        tokio::select! {
                            received = rx.recv() => match received {
                                Some(Some(payload)) => {
                                    if self.apply(&payload) {
                                        unanswered = false;
                                    }
                                }
                                _ => break,
                            },
                            _ = heartbeat.tick() => {
                                if unanswered {
                                    tracing::warn!("the revocation listener's heartbeat did not come back");
                                    break;
                                }
                                if !self.ping(&pool).await {
                                    tracing::warn!("the revocation listener cannot send its heartbeat");
                                    break;
                                }
                                unanswered = true;
                            }
                            _ = shutdown.changed() => {
                                receiver.abort();
                                return;
                            }
                        }
                    }
                    receiver.abort();
                    pool.close().await;
                    self.set_connected(false);
                    self.metrics.revocation_listener_reconnects.inc();
                    tracing::warn!(
                        "lost the revocation listener: session cache off until it is back"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "revocation listener cannot connect")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_a_user_or_a_session() {
        assert_eq!(Revocation::parse("u:abc"), Some(Revocation::User("abc")));
        assert_eq!(
            Revocation::parse("s:0f0f"),
            Some(Revocation::Session("0f0f"))
        );
        assert_eq!(Revocation::parse("u:"), None);
        assert_eq!(Revocation::parse("x:1"), None);
        assert_eq!(Revocation::parse("all:"), Some(Revocation::All));
        assert_eq!(
            Revocation::parse("ping:postern-revocations a"),
            Some(Revocation::Ping("postern-revocations a"))
        );
        assert_eq!(Revocation::parse("nothing"), None);
    }
}
