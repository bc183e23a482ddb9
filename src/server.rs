//! Builds the Pingora server from validated settings: the same entry point for `postern serve`
//! and for the integration tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::proxy::ProxyServiceBuilder;
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::accounts::Lifecycle;
use crate::auth::{
    Bootstrap, BootstrapError, Clock, Lockout, Passwords, Sessions, SystemClock, Tokens,
    bootstrap_admin,
};
use crate::config::{RouteTarget, Settings, StoreSettings};
use crate::console::history::{HistorySampler, MetricsHistory};
use crate::files::{Files, UploadRoute, UploadSweeper};
use crate::handlers::Builtin;
use crate::handlers::admin::Admin;
use crate::handlers::admin_files::AdminFiles;
use crate::handlers::console::{Console, ThumbnailRoute};
use crate::handlers::files::FileApi;
use crate::images::Images;
use crate::images::shared::SharedVariants;
use crate::mail::{LinkBase, MailWorker, Mailer, Transport};
use crate::metrics::Metrics;
use crate::objects::{LinkSigner, ObjectStores};
use crate::ops::OpsApp;
use crate::proxy::assets::Assets;
use crate::proxy::cut::{Cutter, Watches};
use crate::proxy::transform::ImageServer;
use crate::proxy::{Gateway, Logins, ObjectServing};
use crate::services::{
    CredentialRefresher, DatabaseConnector, DnsRefresher, InFlight, ListenerState,
    RevocationListener, SessionJanitor, StoreHandle,
};
use crate::store::{Store, StoreError};
use crate::tls::{CertificateReloader, LiveListener};
use crate::upstream::UpstreamPool;

#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Detach and run in the background (systemd `Type=forking`).
    pub daemon: bool,
    /// Take the listening sockets over from a running instance (zero-downtime upgrade).
    pub upgrade: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("tokens: {0}")]
    Tokens(#[from] crate::auth::TokenError),
    #[error("password hashing: {0}")]
    Passwords(#[from] crate::auth::PasswordError),
    #[error("database {url}: {source}")]
    Database { url: String, source: StoreError },
    #[error("mail: {0}")]
    Mail(#[from] crate::mail::MailError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// A claim on an upload key outlives the longest upload by this much before the sweep takes it
/// for abandoned.
const UPLOAD_STALE_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);
const UPLOAD_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// The built-in endpoints' prefix (for links in mail), `/_postern/` when no route serves them.
fn builtin_prefix(settings: &Settings) -> String {
    settings
        .routes
        .iter()
        .find(|r| matches!(r.target, RouteTarget::Builtin))
        .map_or_else(|| "/_postern/".to_string(), |r| r.path.clone())
}

/// The account workflow and, when mail is on, its mailer: for the server and the CLI alike.
/// Asset routes with image transforms over the whole of a store (`key = "{path}"`): the
/// console's files page shows thumbnails through them. Preset-only routes take no sizes.
fn thumbnail_routes(settings: &Settings) -> Vec<ThumbnailRoute> {
    settings
        .routes
        .iter()
        .filter_map(|r| match &r.target {
            RouteTarget::Assets(a) if a.key_template == "{path}" => {
                let signed = match a.images? {
                    crate::images::params::Policy::Open => false,
                    crate::images::params::Policy::Signed => true,
                    crate::images::params::Policy::PresetsOnly => return None,
                };
                Some(ThumbnailRoute {
                    store: settings.stores.get(a.store)?.name().to_string(),
                    prefix: r.path.clone(),
                    signed,
                })
            }
            _ => None,
        })
        .collect()
}

pub fn build_lifecycle(
    settings: &Settings,
    passwords: Passwords,
    store: StoreHandle,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Result<Arc<Lifecycle>, BuildError> {
    let mailer = if settings.mail.is_on() {
        let stormpath = settings
            .routes
            .iter()
            .find(|r| matches!(r.target, RouteTarget::AccountApi(_)))
            .map(|r| r.path.clone());
        let links = LinkBase {
            public_url: settings.accounts.public_url.clone().unwrap_or_default(),
            builtin: builtin_prefix(settings),
            stormpath,
        };
        Some(Arc::new(Mailer::new(settings.mail.clone(), links)?))
    } else {
        None
    };
    Ok(Arc::new(Lifecycle::new(
        settings.accounts.clone(),
        settings.passwords.policy.clone(),
        passwords,
        mailer,
        store,
        clock,
        metrics,
    )))
}

/// A built server and the handle to its database, connected once the server runs.
pub struct Built {
    pub server: Server,
    pub store: StoreHandle,
    /// Requests in progress on the proxy listeners.
    pub in_flight: Arc<InFlight>,
}

/// Connects once and applies migrations, so that `serve` fails at start (not at the first login)
/// when the database is unusable. Runs on its own thread and runtime: the serving pool is opened
/// later inside Pingora's runtime.
fn prepare_database(settings: &Settings, passwords: &Passwords) -> Result<(), BuildError> {
    let url = settings.database.url.clone();
    let failed = |source| BuildError::Database {
        url: redact_url(&url),
        source,
    };
    if let Some(parent) = crate::store::sqlite_parent(&url) {
        ensure_dir(&parent)?;
    }
    let bootstrap = settings.bootstrap.clone();
    let passwords = passwords.clone();
    let url_owned = url.clone();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(async {
            let store = Store::open(&url_owned, 1).await?;
            let created = bootstrap_admin(&store, &bootstrap, &passwords, SystemClock.now()).await;
            store.close().await;
            match created {
                Ok(outcome) => Ok(outcome),
                Err(BootstrapError::Store(e)) => Err(e),
                Err(BootstrapError::Password(e)) => Err(StoreError::Invalid(e.to_string())),
            }
        })
    })
    .join()
    .map_err(|_| failed(StoreError::Invalid("the database thread panicked".into())))?;
    match outcome.map_err(failed)? {
        Bootstrap::Created {
            generated_password: Some(password),
        } => tracing::warn!(
            "created user \"admin\" with role admin and password {password} \
             (shown only this once: log in and change it)"
        ),
        Bootstrap::Created {
            generated_password: None,
        } => {
            tracing::info!(
                "created user \"admin\" with role admin and the configured bootstrap password"
            )
        }
        Bootstrap::NameTaken => tracing::warn!(
            "nobody holds the role admin and a user named admin exists without it: grant it with `postern user add-role admin admin`"
        ),
        Bootstrap::NotNeeded => {}
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn ensure_dir(path: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(path).map_err(|source| BuildError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

pub fn server_conf(settings: &Settings, options: ServeOptions) -> ServerConf {
    let s = &settings.server;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    ServerConf {
        daemon: options.daemon,
        threads: s.threads,
        work_stealing: s.work_stealing,
        pid_file: path(&s.pid_file),
        upgrade_sock: path(&s.upgrade_sock),
        error_log: s.error_log.as_deref().map(path),
        grace_period_seconds: Some(s.shutdown_grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(s.shutdown_timeout.as_secs()),
        // Pingora's `max_retries` counts attempts, the first included: an upstream's `retries`
        // are retries after the first attempt. One attempt at least (S3 streams need it even
        // without upstreams), two for object stores (a stale pooled connection).
        max_retries: settings
            .upstreams
            .iter()
            .map(|u| u.retries.saturating_add(1))
            .chain(
                settings
                    .stores
                    .iter()
                    .filter(|s| matches!(s, StoreSettings::S3(_)))
                    .map(|_| 2),
            )
            .max()
            .unwrap_or(0)
            .max(1),
        ..ServerConf::default()
    }
}

pub fn build_server(settings: Settings, options: ServeOptions) -> Result<Built, BuildError> {
    build_server_with_clock(settings, options, Arc::new(SystemClock))
}

/// [`build_server`] with a given clock (tests move time forward instead of sleeping).
pub fn build_server_with_clock(
    settings: Settings,
    options: ServeOptions,
    clock: Arc<dyn Clock>,
) -> Result<Built, BuildError> {
    let settings = Arc::new(settings);
    ensure_dir(&settings.server.data_dir)?;
    for parent in [&settings.server.pid_file, &settings.server.upgrade_sock]
        .iter()
        .filter_map(|p| p.parent())
    {
        ensure_dir(parent)?;
    }
    for store in &settings.stores {
        if let StoreSettings::Filesystem { root, .. } = store {
            ensure_dir(root)?;
        }
    }

    let passwords = Passwords::new(settings.passwords.hash, settings.server.threads)?;
    prepare_database(&settings, &passwords)?;
    let store: StoreHandle = Arc::default();

    let metrics = Arc::new(Metrics::new()?);
    let pools: Vec<Arc<UpstreamPool>> = settings
        .upstreams
        .iter()
        .map(|u| Arc::new(UpstreamPool::new(u.clone(), metrics.clone())))
        .collect();
    let stores = Arc::new(ObjectStores::new(&settings.stores, &metrics));
    let store_pools: Vec<Arc<UpstreamPool>> = stores.s3().map(|s3| s3.pool.clone()).collect();
    for pool in pools.iter().chain(&store_pools) {
        pool.resolve_at_start();
    }

    let opt = Opt {
        upgrade: options.upgrade,
        daemon: options.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&settings, options));
    server.bootstrap();

    let sessions = Arc::new(Sessions::new(
        settings.sessions.clone(),
        store.clone(),
        clock.clone(),
        metrics.clone(),
    ));
    if settings.tokens.secret_is_random {
        tracing::warn!(
            "tokens.secret is not set: bearer tokens are signed with a random key that lives as long as this process"
        );
    }
    let tokens = Arc::new(Tokens::new(
        settings.tokens.clone(),
        clock.clone(),
        store.clone(),
        settings.sessions.cache_ttl,
    )?);
    let lifecycle = build_lifecycle(
        &settings,
        passwords.clone(),
        store.clone(),
        clock.clone(),
        metrics.clone(),
    )?;
    let image_work = Arc::new(Images::new(settings.images.clone(), metrics.clone()));
    let shared_variants = settings.images.shared.clone().map(|shared| {
        Arc::new(SharedVariants::new(
            shared,
            settings.links.keys.first().cloned().unwrap_or_default(),
            stores.clone(),
            store.clone(),
            clock.clone(),
        ))
    });
    let images = ImageServer::new(image_work.clone(), clock.clone(), shared_variants);
    let files = Arc::new(Files::new(
        store.clone(),
        stores.clone(),
        image_work,
        clock.clone(),
        metrics.clone(),
    ));
    let upload_routes: Vec<(String, String, UploadRoute)> = settings
        .routes
        .iter()
        .filter_map(|r| match &r.target {
            RouteTarget::Uploads(u) => Some((r.name.clone(), r.path.clone(), (**u).clone())),
            _ => None,
        })
        .collect();
    let longest_upload = upload_routes.iter().map(|(_, _, u)| u.timeout).max();
    let history = Arc::new(MetricsHistory::new(metrics.clone(), clock.clone()));
    let builtin = settings
        .routes
        .iter()
        .find(|r| matches!(r.target, RouteTarget::Builtin))
        .map(|r| Builtin {
            lifecycle: lifecycle.clone(),
            console: Console::new(
                history.clone(),
                thumbnail_routes(&settings),
                LinkSigner::new(settings.links.keys.clone()),
            ),
            prefix: r.path.clone(),
            sessions: sessions.clone(),
            passwords: passwords.clone(),
            tokens: tokens.clone(),
            lockout: if settings.database.shared {
                Lockout::shared(settings.lockout.clone(), store.clone())
            } else {
                Lockout::new(settings.lockout.clone())
            },
            store: store.clone(),
            metrics: metrics.clone(),
            body_timeout: settings.server.client_timeout,
            trusted_proxies: settings.server.trusted_proxies.clone(),
            admin: Admin {
                store: store.clone(),
                sessions: sessions.clone(),
                tokens: tokens.clone(),
                passwords: passwords.clone(),
                lifecycle: lifecycle.clone(),
                body_timeout: settings.server.client_timeout,
                allow_from: settings.admin_allow_from.clone(),
                files: longest_upload.map(|_| AdminFiles {
                    files: files.clone(),
                    routes: upload_routes.clone(),
                    links: Assets::new(
                        stores.clone(),
                        LinkSigner::new(settings.links.keys.clone()),
                        clock.clone(),
                        metrics.clone(),
                        Some(r.path.as_str()),
                    ),
                }),
            },
        });
    if settings.links.keys_are_random {
        tracing::info!(
            "links.keys is not set: signed links use a random key that lives as long as this process"
        );
    }
    let assets = Assets::new(
        stores.clone(),
        LinkSigner::new(settings.links.keys.clone()),
        clock.clone(),
        metrics.clone(),
        builtin.as_ref().map(|b| b.prefix.as_str()),
    );
    let watches = Arc::new(Watches::default());
    server.add_service(background_service(
        "cut on revoke",
        Cutter::new(
            watches.clone(),
            sessions.clone(),
            tokens.clone(),
            clock.clone(),
            metrics.clone(),
            settings.sessions.recheck_interval,
        ),
    ));
    let gateway = Gateway::new(
        settings.clone(),
        pools.clone(),
        metrics.clone(),
        Logins {
            sessions: sessions.clone(),
            tokens: tokens.clone(),
            watches: watches.clone(),
        },
        builtin,
        ObjectServing {
            assets,
            images,
            files: longest_upload.map(|_| FileApi {
                files: files.clone(),
            }),
        },
    );
    let in_flight = gateway.in_flight();
    let mut server_options = HttpServerOptions::default();
    server_options.keepalive_request_limit = Some(settings.server.keepalive_requests);
    let mut proxy = ProxyServiceBuilder::new(&server.configuration, gateway)
        .name("postern proxy")
        .server_options(server_options)
        .build();
    proxy.add_tcp(&settings.server.listen.to_string());
    let mut tls_listeners = Vec::new();
    for listener in &settings.server.tls {
        let live = LiveListener::new(listener.clone(), clock.now())?;
        proxy.add_tls_with_settings(&listener.listen.to_string(), None, live.pingora_settings()?);
        tls_listeners.push(live);
    }
    if let (Some(first), Some(app)) = (tls_listeners.first(), proxy.app_logic_mut()) {
        app.h2_options = Some(first.h2_options());
    }
    server.add_service(proxy);
    // Also without TLS listeners: SIGHUP is then a no-op instead of its default, which ends
    // the process.
    server.add_service(background_service(
        "tls certificates",
        CertificateReloader::new(&tls_listeners, metrics.clone(), clock.clone()),
    ));

    let revocations = settings.database.shared.then(|| {
        let state = Arc::new(ListenerState::default());
        server.add_service(background_service(
            "revocations",
            RevocationListener::new(
                settings.database.url.clone(),
                &settings.server.listen.to_string(),
                sessions.clone(),
                tokens.clone(),
                state.clone(),
                metrics.clone(),
            ),
        ));
        state
    });
    let mut ops = Service::new(
        "postern ops".to_string(),
        OpsApp::new(
            settings.clone(),
            pools.clone(),
            metrics.clone(),
            store.clone(),
            stores.clone(),
            revocations,
        ),
    );
    ops.add_tcp(&settings.ops.listen.to_string());
    ops.threads = Some(1);
    server.add_service(ops);

    let mut resolved_pools = pools;
    resolved_pools.extend(store_pools);
    server.add_service(background_service("dns", DnsRefresher::new(resolved_pools)));
    let chain_stores: Vec<_> = stores
        .s3()
        .filter(|s3| s3.uses_credential_chain())
        .cloned()
        .collect();
    if !chain_stores.is_empty() {
        server.add_service(background_service(
            "credentials",
            CredentialRefresher::new(chain_stores),
        ));
    }
    if let Some(mailer) = lifecycle.mailer() {
        server.add_service(background_service(
            "mail",
            MailWorker::new(
                store.clone(),
                Transport::new(&settings.mail.transport)?,
                settings.mail.clone(),
                clock.clone(),
                metrics.clone(),
                mailer.waker(),
            ),
        ));
    }
    if let Some(longest) = longest_upload {
        server.add_service(background_service(
            "upload sweeper",
            UploadSweeper::new(
                files.clone(),
                longest + UPLOAD_STALE_MARGIN,
                UPLOAD_SWEEP_INTERVAL,
            ),
        ));
    }
    server.add_service(background_service(
        "log writer",
        crate::telemetry::LogWriter,
    ));
    server.add_service(background_service(
        "console history",
        HistorySampler::new(history),
    ));
    server.add_service(background_service(
        "session janitor",
        SessionJanitor::new(
            store.clone(),
            clock,
            metrics.clone(),
            settings.lockout.window.max(settings.lockout.lock_for),
        ),
    ));
    server.add_service(background_service(
        "database",
        DatabaseConnector::new(settings.database.clone(), store.clone()),
    ));
    Ok(Built {
        server,
        store,
        in_flight,
    })
}
