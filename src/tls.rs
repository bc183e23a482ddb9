//! TLS at the edge: listeners with one or more certificates chosen by SNI, TLS 1.2+ with
//! Mozilla's "intermediate" ciphers, HTTP/2 by ALPN, required client certificates (mTLS), and
//! certificates reloaded on SIGHUP without dropping a connection (a broken replacement is
//! refused and the old certificate keeps serving).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{NameType, SslRef, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use pingora::listeners::TlsAccept;
use pingora::listeners::tls::TlsSettings;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Client certificates are not asked for.
    Off,
    /// A verified client certificate is required to connect.
    Required,
}

/// A certificate chain and its key, by file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The label of its metrics (the certificate file by default).
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TlsListener {
    pub listen: std::net::SocketAddr,
    /// The first is the default (no SNI, or no certificate names the host).
    pub certificates: Vec<CertificateFiles>,
    pub min_version: MinVersion,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub http2: bool,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list_size: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read it: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// A loaded certificate: its chain (leaf first), key, the names it serves, and its expiry.
pub struct Certificate {
    pub name: String,
    chain: Vec<X509>,
    key: PKey<Private>,
    /// DNS names from the subject alternative names (lower case; `*.example.com` kept).
    pub hosts: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
}

fn unix_time(time: &openssl::asn1::Asn1TimeRef) -> Result<i64, String> {
    let epoch = Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
    let diff = epoch.diff(time).map_err(|e| e.to_string())?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl Certificate {
    /// Loads and checks a chain and its key: the key must match the leaf, which must not have
    /// expired at `now` (Unix seconds).
    pub fn load(files: &CertificateFiles, now: i64) -> Result<Self, TlsError> {
        let invalid = |path: &std::path::Path, reason: String| TlsError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        let chain = X509::stack_from_pem(&read(&files.cert)?)
            .map_err(|e| invalid(&files.cert, format!("not a PEM certificate chain: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(invalid(&files.cert, "holds no certificate".into()));
        };
        let key = PKey::private_key_from_pem(&read(&files.key)?)
            .map_err(|e| invalid(&files.key, format!("not a PEM private key: {e}")))?;
        let public = leaf
            .public_key()
            .map_err(|e| invalid(&files.cert, e.to_string()))?;
        if !public.public_eq(&key) {
            return Err(invalid(
                &files.key,
                format!("is not the key of {}", files.cert.display()),
            ));
        }
        let not_before = unix_time(leaf.not_before()).map_err(|e| invalid(&files.cert, e))?;
        if not_before > now {
            return Err(invalid(
                &files.cert,
                format!("is not valid before {}", leaf.not_before()),
            ));
        }
        let not_after = unix_time(leaf.not_after()).map_err(|e| invalid(&files.cert, e))?;
        if not_after <= now {
            return Err(invalid(
                &files.cert,
                format!("expired on {}", leaf.not_after()),
            ));
        }
        let hosts = leaf
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            name: files.name.clone(),
            chain,
            key,
            hosts,
            not_after,
        })
    }

    /// Whether this certificate's names cover `host` (exactly, or one label under a wildcard).
    pub fn serves(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|name| match name.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *name == host,
        })
    }
}

/// The certificates of one listener, first the default.
pub struct CertificateSet {
    certificates: Vec<Certificate>,
}

impl CertificateSet {
    pub fn load(files: &[CertificateFiles], now: i64) -> Result<Self, TlsError> {
        let certificates = files
            .iter()
            .map(|f| Certificate::load(f, now))
            .collect::<Result<Vec<_>, _>>()?;
        if certificates.is_empty() {
            return Err(TlsError::Setup("a TLS listener needs a certificate".into()));
        }
        Ok(Self { certificates })
    }

    /// The certificate for a handshake that asked for `sni`.
    pub fn select(&self, sni: Option<&str>) -> Option<&Certificate> {
        sni.and_then(|host| self.certificates.iter().find(|c| c.serves(host)))
            .or_else(|| self.certificates.first())
    }

    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }
}

/// Hands each handshake the certificate its SNI asks for, from the current set.
struct Resolver(Arc<ArcSwap<CertificateSet>>);

#[async_trait]
impl TlsAccept for Resolver {
    async fn certificate_callback(&self, ssl: &mut SslRef) {
        let set = self.0.load();
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_owned);
        let Some(certificate) = set.select(sni.as_deref()) else {
            return;
        };
        let Some(leaf) = certificate.chain.first() else {
            return;
        };
        let used = pingora::tls::ext::ssl_use_certificate(ssl, leaf)
            .and_then(|()| pingora::tls::ext::ssl_use_private_key(ssl, &certificate.key));
        if let Err(e) = used {
            tracing::error!(certificate = %certificate.name, error = %e, "cannot use a certificate");
            return;
        }
        for intermediate in &certificate.chain[1..] {
            if let Err(e) = pingora::tls::ext::ssl_add_chain_cert(ssl, intermediate) {
                tracing::error!(certificate = %certificate.name, error = %e, "cannot add a chain certificate");
            }
        }
    }
}

/// One TLS listener's live certificates.
pub struct LiveListener {
    pub settings: TlsListener,
    pub certificates: Arc<ArcSwap<CertificateSet>>,
}

impl LiveListener {
    pub fn new(settings: TlsListener, now: i64) -> Result<Self, TlsError> {
        let set = CertificateSet::load(&settings.certificates, now)?;
        Ok(Self {
            settings,
            certificates: Arc::new(ArcSwap::from_pointee(set)),
        })
    }

    /// Pingora's settings for this listener: TLS 1.2+ with Mozilla's intermediate ciphers (or
    /// TLS 1.3 only), certificates by SNI, ALPN `h2` then `http/1.1`, client certificates.
    pub fn pingora_settings(&self) -> Result<TlsSettings, TlsError> {
        let setup = |e: &dyn std::fmt::Display| TlsError::Setup(e.to_string());
        let mut tls = TlsSettings::with_callbacks(Box::new(Resolver(self.certificates.clone())))
            .map_err(|e| setup(&e))?;
        let min = match self.settings.min_version {
            MinVersion::Tls12 => SslVersion::TLS1_2,
            MinVersion::Tls13 => SslVersion::TLS1_3,
        };
        tls.set_min_proto_version(Some(min))
            .map_err(|e| setup(&e))?;
        if self.settings.http2 {
            tls.enable_h2();
        }
        // Resumed sessions must come from this listener (OpenSSL refuses to resume a verified
        // session without an id context).
        tls.set_session_id_context(format!("postern {}", self.settings.listen).as_bytes())
            .map_err(|e| setup(&e))?;
        if let Some(ca) = &self.settings.client_ca
            && self.settings.client_auth == ClientAuth::Required
        {
            let invalid = |e: openssl::error::ErrorStack| TlsError::Invalid {
                path: ca.display().to_string(),
                reason: format!("not a PEM CA bundle: {e}"),
            };
            tls.set_ca_file(ca).map_err(invalid)?;
            // Tells clients (browsers) which certificates the server takes.
            tls.set_client_ca_list(
                openssl::x509::X509Name::load_client_ca_file(ca).map_err(invalid)?,
            );
            tls.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        Ok(tls)
    }

    /// HTTP/2 limits for this listener's connections.
    pub fn h2_options(&self) -> pingora::protocols::http::v2::server::H2Options {
        let mut options = pingora::protocols::http::v2::server::default_h2_options();
        options
            .max_concurrent_streams(self.settings.h2_max_concurrent_streams)
            .max_header_list_size(self.settings.h2_max_header_list_size);
        options
    }
}

/// Publishes each loaded certificate's expiry.
fn publish(metrics: &Metrics, set: &CertificateSet) {
    for certificate in set.certificates() {
        metrics
            .tls_certificate_expiry
            .with_label_values(&[&certificate.name])
            .set(certificate.not_after);
    }
}

/// Reloads every listener's certificates on SIGHUP. A listener keeps its old set when any of
/// its new files fails to load, and says which and why.
pub struct CertificateReloader {
    listeners: Vec<(String, Arc<ArcSwap<CertificateSet>>, Vec<CertificateFiles>)>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn crate::auth::Clock>,
}

impl CertificateReloader {
    pub fn new(
        listeners: &[LiveListener],
        metrics: Arc<Metrics>,
        clock: Arc<dyn crate::auth::Clock>,
    ) -> Self {
        for listener in listeners {
            publish(&metrics, &listener.certificates.load());
        }
        Self {
            listeners: listeners
                .iter()
                .map(|l| {
                    (
                        l.settings.listen.to_string(),
                        l.certificates.clone(),
                        l.settings.certificates.clone(),
                    )
                })
                .collect(),
            metrics,
            clock,
        }
    }

    /// Loads every listener's files again; how many listeners took new certificates. (Without
    /// TLS listeners it still runs: SIGHUP must not stop the process by its default action.)
    pub fn reload(&self) -> usize {
        let mut reloaded = 0;
        for (listen, live, files) in &self.listeners {
            match CertificateSet::load(files, self.clock.now()) {
                Ok(set) => {
                    publish(&self.metrics, &set);
                    live.store(Arc::new(set));
                    reloaded += 1;
                    tracing::info!(listen = %listen, "TLS certificates reloaded");
                }
                Err(e) => tracing::error!(
                    listen = %listen,
                    error = %e,
                    "new TLS certificates refused; the current ones keep serving"
                ),
            }
        }
        reloaded
    }
}

#[async_trait]
impl BackgroundService for CertificateReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: certificates will not reload");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => { self.reload(); }
                _ = shutdown.changed() => return,
            }
        }
    }
}
