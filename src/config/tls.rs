//! `[[server.tls]]`, `server.https_redirect` and `server.hsts`: validated into the listeners the
//! `tls` module serves. Every certificate and key is loaded here, so `postern check` names a
//! missing file, a key that does not match, an expired certificate or a host no certificate names.

use std::path::Path;

use serde::Deserialize;

use super::units::SizeValue;
use super::validate::Checker;
use crate::tls::{Certificate, CertificateFiles, ClientAuth, MinVersion, TlsListener};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub listen: String,
    #[serde(default)]
    pub certificates: Vec<CertificateSection>,
    pub min_version: Option<String>,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
    pub http2: Option<bool>,
    pub h2_max_concurrent_streams: Option<u32>,
    pub h2_max_header_list_size: Option<SizeValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    pub cert: String,
    pub key: String,
    pub name: Option<String>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The TLS listeners, with their certificates loaded once to check them.
pub(super) fn tls_listeners(c: &mut Checker, sections: &[TlsSection]) -> Vec<TlsListener> {
    let mut listeners = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        let at = |key: &str| format!("server.tls[{i}].{key}");
        let Ok(listen) = s.listen.parse::<std::net::SocketAddr>() else {
            c.report(
                at("listen"),
                format!(
                    "{:?} is not an IP:port address (e.g. \"0.0.0.0:8443\")",
                    s.listen
                ),
            );
            continue;
        };
        if s.certificates.is_empty() {
            c.report(
                at("certificates"),
                "list at least one { cert, key } (the first is the default)",
            );
            continue;
        }
        let certificates: Vec<CertificateFiles> = s
            .certificates
            .iter()
            .map(|cert| CertificateFiles {
                name: cert.name.clone().unwrap_or_else(|| cert.cert.clone()),
                cert: Path::new(&cert.cert).to_path_buf(),
                key: Path::new(&cert.key).to_path_buf(),
            })
            .collect();
        for (j, files) in certificates.iter().enumerate() {
            if let Err(e) = Certificate::load(files, now()) {
                c.report(format!("server.tls[{i}].certificates[{j}]"), e.to_string());
            }
        }
        let min_version = match s.min_version.as_deref().unwrap_or("1.2") {
            "1.2" => MinVersion::Tls12,
            "1.3" => MinVersion::Tls13,
            other => {
                c.report(
                    at("min_version"),
                    format!(
                        "{other:?} is not one of \"1.2\", \"1.3\" (older versions are not offered)"
                    ),
                );
                MinVersion::Tls12
            }
        };
        let client_ca = s.client_ca.as_ref().map(|p| Path::new(p).to_path_buf());
        if let Some(ca) = &client_ca {
            match std::fs::read(ca) {
                Err(e) => c.report(
                    at("client_ca"),
                    format!("{}: cannot read it: {e}", ca.display()),
                ),
                Ok(pem)
                    if openssl::x509::X509::stack_from_pem(&pem).map_or(true, |s| s.is_empty()) =>
                {
                    c.report(
                        at("client_ca"),
                        format!("{}: holds no PEM certificate", ca.display()),
                    )
                }
                Ok(_) => {}
            }
        }
        let client_auth = match (s.client_auth.as_deref(), &client_ca) {
            (None, None) => ClientAuth::Off,
            (None | Some("required"), Some(_)) => ClientAuth::Required,
            (Some("required"), None) => {
                c.report(
                    at("client_auth"),
                    "needs client_ca, the CA that signs client certificates",
                );
                ClientAuth::Off
            }
            (Some(other), _) => {
                c.report(
                    at("client_auth"),
                    format!(
                        "{other:?} is not \"required\" (an optional certificate would prove nothing here)"
                    ),
                );
                ClientAuth::Off
            }
        };
        let h2_max_concurrent_streams = s.h2_max_concurrent_streams.unwrap_or(100);
        if h2_max_concurrent_streams == 0 {
            c.report(at("h2_max_concurrent_streams"), "must be at least 1");
        }
        let h2_max_header_list_size = c.size(
            &at("h2_max_header_list_size"),
            s.h2_max_header_list_size.as_ref(),
            64 << 10,
        );
        if !(1024..=(16 << 20)).contains(&h2_max_header_list_size) {
            c.report(at("h2_max_header_list_size"), "must be 1KiB to 16MiB");
        }
        listeners.push(TlsListener {
            listen,
            certificates,
            min_version,
            client_ca,
            client_auth,
            http2: s.http2.unwrap_or(true),
            h2_max_concurrent_streams,
            h2_max_header_list_size: u32::try_from(h2_max_header_list_size).unwrap_or(u32::MAX),
        });
    }
    // Client certificates guard nothing while another listener serves the same routes without.
    if listeners
        .iter()
        .any(|l| l.client_auth == ClientAuth::Required)
        && listeners
            .iter()
            .any(|l| l.client_auth != ClientAuth::Required)
    {
        c.report(
            "server.tls",
            "client certificates are required on some TLS listeners but not all: the others would serve the same routes without",
        );
    }
    listeners
}

/// Routes for an exact host need a certificate for it on every TLS listener.
pub(super) fn hosts_have_certificates(
    c: &mut Checker,
    listeners: &[TlsListener],
    routes: &[super::settings::RouteSettings],
) {
    for (i, listener) in listeners.iter().enumerate() {
        // The certificates that load (the others are reported already).
        let loaded: Vec<Certificate> = listener
            .certificates
            .iter()
            .filter_map(|files| Certificate::load(files, now()).ok())
            .collect();
        if loaded.is_empty() {
            continue;
        }
        for (j, route) in routes.iter().enumerate() {
            if let Some(super::settings::HostPattern::Exact(host)) = &route.host
                && !loaded.iter().any(|cert| cert.serves(host))
            {
                c.report(
                    format!("routes[{j}].host"),
                    format!("no certificate of server.tls[{i}] names {host:?} (subject alternative names)"),
                );
            }
        }
    }
}
