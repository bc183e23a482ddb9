//! TLS at the edge: HTTPS and HTTP/2 through to the upstream, certificates by SNI, TLS 1.1
//! refused, client certificates, the HTTP→HTTPS redirect, scheme-aware headers, and
//! certificates replaced by SIGHUP under load (a broken replacement leaving the old one).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Postern, Upstream, base_config, free_port};
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use serde_json::Value;

/// A certificate for `hosts`, signed by `issuer` (or by itself), valid from `from_days` to
/// `to_days` around now.
fn certificate(
    cn: &str,
    hosts: &[&str],
    issuer: Option<(&X509, &PKey<Private>)>,
    is_ca: bool,
    days: (i64, i64),
) -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    let serial = openssl::bn::BigNum::from_u32(rand::random::<u32>() >> 1)
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    cert.set_serial_number(&serial).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    cert.set_pubkey(&key).unwrap();
    let at = |d: i64| Asn1Time::from_unix(now() + d * 86_400).unwrap();
    cert.set_not_before(&at(days.0)).unwrap();
    cert.set_not_after(&at(days.1)).unwrap();
    if is_ca {
        cert.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    }
    if !hosts.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for host in hosts {
            san.dns(host);
        }
        let san = san
            .build(&cert.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
            .unwrap();
        cert.append_extension(san).unwrap();
    }
    cert.sign(issuer.map_or(&key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    (cert.build(), key)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn write_pair(dir: &Path, name: &str, cert: &X509, key: &PKey<Private>) -> (PathBuf, PathBuf) {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert_path, key_path)
}

struct Edge {
    pg: Postern,
    _app: Upstream,
    tls_addr: SocketAddr,
    dir: tempfile::TempDir,
    /// Signs the server certificates: what clients trust.
    server_ca: (X509, PKey<Private>),
    /// Signs client certificates.
    ca: (X509, PKey<Private>),
}

/// postern with a TLS listener holding certificates for a.test (default) and b.test, the
/// plain listener redirecting to it when `redirect`, and client certificates from the `clients`
/// CA required when `mtls`.
async fn edge(redirect: bool, mtls: bool) -> Edge {
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let server_ca = certificate("servers", &[], None, true, (-1, 30));
    let signer = Some((&server_ca.0, &server_ca.1));
    let (a, a_key) = certificate("a.test", &["a.test"], signer, false, (-1, 30));
    let (b, b_key) = certificate("b.test", &["b.test", "*.b.test"], signer, false, (-1, 30));
    let ca = certificate("clients", &[], None, true, (-1, 30));
    std::fs::write(dir.path().join("clients.pem"), ca.0.to_pem().unwrap()).unwrap();
    write_pair(dir.path(), "a", &a, &a_key);
    write_pair(dir.path(), "b", &b, &b_key);
    let tls_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let extra_tls = if mtls {
        format!(
            "client_ca = \"{}/clients.pem\"\nclient_auth = \"required\"",
            dir.path().display()
        )
    } else {
        String::new()
    };
    let config = format!(
        r#"{}
[[server.tls]]
listen = "{tls_addr}"
certificates = [
  {{ cert = "{dir}/a.crt", key = "{dir}/a.key", name = "a" }},
  {{ cert = "{dir}/b.crt", key = "{dir}/b.key", name = "b" }},
]
{extra_tls}

[sessions]
cache_ttl = "0"

[upstreams.app]
backends = ["${{APP}}"]

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "app"
path = "/"
upstream = "app"
access = "public"
"#,
        base_config(&format!(
            "https_redirect = {redirect}\nhsts = \"max-age=600\"\nhsts_hosts = [\"a.test\", \"*.b.test\"]"
        )),
        dir = dir.path().display(),
    );
    let pg = Postern::start(&config, &[("APP", app.url())]);
    let _ = a;
    Edge {
        pg,
        _app: app,
        tls_addr,
        dir,
        server_ca,
        ca,
    }
}

/// An HTTPS client that trusts `roots`, reaches a.test and b.test at `addr`, and makes a new
/// connection for every request.
fn https_client(addr: SocketAddr, roots: &[&X509]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .resolve("a.test", addr)
        .resolve("b.test", addr)
        .resolve("www.b.test", addr);
    for root in roots {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(&root.to_pem().unwrap()).unwrap());
    }
    builder.build().unwrap()
}

/// The certificate the server presents for `sni`, with `tls` limited as given.
fn handshake(
    addr: SocketAddr,
    sni: &str,
    max_version: Option<SslVersion>,
    client: Option<(&X509, &PKey<Private>)>,
    mtls: bool,
) -> Result<(Option<X509>, Option<Vec<u8>>), String> {
    let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    // With client certificates in play, HTTP/1.1 only: the probe request then gets an answer (or
    // the refusal of the certificate, which TLS 1.3 reports on the first read) to read.
    if !mtls {
        builder.set_alpn_protos(b"\x02h2\x08http/1.1").unwrap();
    }
    if let Some(max) = max_version {
        builder
            .set_min_proto_version(Some(SslVersion::TLS1))
            .unwrap();
        builder.set_max_proto_version(Some(max)).unwrap();
        builder.set_cipher_list("DEFAULT@SECLEVEL=0").unwrap();
    }
    if let Some((cert, key)) = client {
        builder.set_certificate(cert).unwrap();
        builder.set_private_key(key).unwrap();
    }
    let connector = builder.build();
    let stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut tls = connector
        .configure()
        .unwrap()
        .verify_hostname(false)
        .connect(sni, stream)
        .map_err(|e| e.to_string())?;
    // TLS 1.3 reports a refused client certificate only on the first read.
    use std::io::{Read, Write};
    tls.write_all(b"GET /probe HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut first = [0u8; 1];
    if tls.ssl().selected_alpn_protocol() != Some(b"h2") {
        tls.read_exact(&mut first).map_err(|e| e.to_string())?;
    }
    let alpn = tls.ssl().selected_alpn_protocol().map(<[u8]>::to_vec);
    Ok((tls.ssl().peer_certificate(), alpn))
}

fn serial(cert: &X509) -> String {
    cert.serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_http2_reach_the_upstream_with_the_right_scheme() {
    let e = edge(false, false).await;
    let client = https_client(e.tls_addr, &[&e.server_ca.0]);
    let r = client
        .get(format!("https://a.test:{}/hello", e.tls_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=600");
    // HSTS only for the listed hosts: *.b.test is a subdomain, not b.test itself.
    for (host, sent) in [("www.b.test", true), ("b.test", false)] {
        let r = client
            .get(format!("https://{host}:{}/hello", e.tls_addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers().contains_key("strict-transport-security"),
            sent,
            "{host}"
        );
    }
    let echo: Value = r.json().await.unwrap();
    assert_eq!(common::echoed_header(&echo, "x-forwarded-proto"), ["https"]);
    // HTTP/1.1 over TLS too.
    let r = client
        .get(format!("https://a.test:{}/hello", e.tls_addr.port()))
        .version(reqwest::Version::HTTP_11)
        .send()
        .await;
    let r = match r {
        Ok(r) => r,
        Err(_) => {
            let h1 = reqwest::Client::builder()
                .http1_only()
                .resolve("a.test", e.tls_addr)
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&e.server_ca.0.to_pem().unwrap()).unwrap(),
                )
                .build()
                .unwrap();
            h1.get(format!("https://a.test:{}/hello", e.tls_addr.port()))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(r.status(), 200);
    // Plain HTTP still serves (no redirect here), says http and sends no HSTS.
    let r = common::http_client()
        .get(e.pg.url("/hello"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("strict-transport-security"));
    let echo: Value = r.json().await.unwrap();
    assert_eq!(common::echoed_header(&echo, "x-forwarded-proto"), ["http"]);
    // A client cannot claim https over plain HTTP.
    let r = common::http_client()
        .get(e.pg.url("/hello"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(common::echoed_header(&echo, "x-forwarded-proto"), ["http"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_old_tls_is_refused() {
    let e = edge(false, false).await;
    let tls = e.tls_addr;
    let (cert, alpn) =
        tokio::task::spawn_blocking(move || handshake(tls, "b.test", None, None, false))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let subject = |c: &X509| {
        c.subject_name()
            .entries()
            .next()
            .unwrap()
            .data()
            .to_string()
            .unwrap()
    };
    assert_eq!(subject(&cert.unwrap()), "b.test");
    let (cert, _) =
        tokio::task::spawn_blocking(move || handshake(tls, "www.b.test", None, None, false))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(subject(&cert.unwrap()), "b.test", "wildcard");
    let (cert, _) =
        tokio::task::spawn_blocking(move || handshake(tls, "unknown.test", None, None, false))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(subject(&cert.unwrap()), "a.test", "the default certificate");
    for old in [SslVersion::TLS1_1, SslVersion::TLS1] {
        let refused =
            tokio::task::spawn_blocking(move || handshake(tls, "a.test", Some(old), None, false))
                .await
                .unwrap();
        assert!(refused.is_err(), "{old:?} was accepted");
    }
    let metrics = e.pg.metrics().await;
    assert!(
        metrics.contains("postern_tls_certificate_expiry_seconds{name=\"a\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_when_configured() {
    // Client certificates need the plain listener to redirect (else it would serve without).
    let e = edge(true, true).await;
    let tls = e.tls_addr;
    let refused = tokio::task::spawn_blocking(move || handshake(tls, "a.test", None, None, true))
        .await
        .unwrap();
    assert!(refused.is_err(), "connected without a client certificate");
    // With client certificates, not even ACME challenges are served over plain HTTP.
    let r = common::http_client()
        .get(e.pg.url("/.well-known/acme-challenge/token"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    let (stranger, stranger_key) = certificate("stranger", &[], None, false, (-1, 30));
    let refused = tokio::task::spawn_blocking(move || {
        handshake(tls, "a.test", None, Some((&stranger, &stranger_key)), true)
    })
    .await
    .unwrap();
    assert!(
        refused.is_err(),
        "connected with a certificate the CA did not sign"
    );
    let (ca_cert, ca_key) = (e.ca.0.clone(), e.ca.1.clone());
    let accepted = tokio::task::spawn_blocking(move || {
        let (client, client_key) =
            certificate("service-a", &[], Some((&ca_cert, &ca_key)), false, (-1, 30));
        handshake(tls, "a.test", None, Some((&client, &client_key)), true)
    })
    .await
    .unwrap();
    assert!(accepted.is_ok(), "{accepted:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_is_redirected_to_https() {
    let e = edge(true, false).await;
    let r = common::http_client()
        .get(e.pg.url("/some/page?x=1"))
        .header("host", "a.test:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://a.test:{}/some/page?x=1", e.tls_addr.port())
    );
    let r = common::http_client()
        .get(e.pg.url("/"))
        .header("host", "evil.test/@x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // ACME http-01 challenges stay on plain HTTP (here they reach the app).
    let r = common::http_client()
        .get(e.pg.url("/.well-known/acme-challenge/token123"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let client = https_client(e.tls_addr, &[&e.server_ca.0]);
    let r = client
        .get(format!("https://a.test:{}/page", e.tls_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "HTTPS itself is served");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_are_replaced_on_sighup_without_a_failed_request() {
    let e = edge(false, false).await;
    let signer = Some((&e.server_ca.0, &e.server_ca.1));
    let (new_a, new_a_key) = certificate("a.test", &["a.test"], signer, false, (-1, 60));
    let client = https_client(e.tls_addr, &[&e.server_ca.0]);
    let url = format!("https://a.test:{}/load", e.tls_addr.port());
    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (running, ok, failed, client, url) = (
            running.clone(),
            ok.clone(),
            failed.clone(),
            client.clone(),
            url.clone(),
        );
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_pair(e.dir.path(), "a", &new_a, &new_a_key);
    sighup();
    let tls = e.tls_addr;
    let wanted = serial(&new_a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (cert, _) =
            tokio::task::spawn_blocking(move || handshake(tls, "a.test", None, None, false))
                .await
                .unwrap()
                .unwrap();
        if serial(&cert.unwrap()) == wanted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("{ok} requests during the swap, {failed} failed");
    assert!(ok > 10, "{ok}");
    assert_eq!(failed, 0);

    // A broken replacement (a key that is not the certificate's) is refused: the last good
    // certificate keeps serving.
    let (other, other_key) = certificate("a.test", &["a.test"], None, false, (-1, 60));
    let _ = other;
    std::fs::write(
        e.dir.path().join("a.key"),
        other_key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    sighup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cert, _) =
        tokio::task::spawn_blocking(move || handshake(tls, "a.test", None, None, false))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(serial(&cert.unwrap()), wanted);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

fn sighup() {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn check_names_the_certificate_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (good, good_key) = certificate("a.test", &["a.test"], None, false, (-1, 30));
    let (expired, expired_key) = certificate("old.test", &["old.test"], None, false, (-30, -1));
    let (_, other_key) = certificate("x.test", &["x.test"], None, false, (-1, 30));
    write_pair(dir.path(), "good", &good, &good_key);
    write_pair(dir.path(), "expired", &expired, &expired_key);
    std::fs::write(
        dir.path().join("wrong.key"),
        other_key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    let d = dir.path().display();
    let config = format!(
        r#"
[server]
https_redirect = true
[[server.tls]]
listen = "127.0.0.1:8443"
min_version = "1.1"
client_auth = "required"
certificates = [
  {{ cert = "{d}/good.crt", key = "{d}/good.key" }},
  {{ cert = "{d}/missing.crt", key = "{d}/good.key" }},
  {{ cert = "{d}/good.crt", key = "{d}/wrong.key" }},
  {{ cert = "{d}/expired.crt", key = "{d}/expired.key" }},
]
[upstreams.app]
backends = ["http://127.0.0.1:3000"]
[[routes]]
path = "/"
host = "shop.test"
upstream = "app"
"#
    );
    let problems: Vec<String> = postern::config::parse(&config, &|_| None)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    for expected in [
        "server.tls[0].certificates[1]: ",
        "server.tls[0].certificates[2]: ",
        "server.tls[0].certificates[3]: ",
        "server.tls[0].min_version: \"1.1\" is not one of",
        "server.tls[0].client_auth: needs client_ca",
        "routes[0].host: no certificate of server.tls[0] names \"shop.test\"",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing {expected} in {problems:#?}"
        );
    }
    let text = problems.join("\n");
    let auto_named = postern::config::parse(
        "[sessions]\nsecure_cookies = \"auto\"\ncookie_name = \"mine\"\n",
        &|_| None,
    )
    .err()
    .unwrap_or_default();
    assert!(
        auto_named.iter().any(|p| p
            .to_string()
            .starts_with("sessions.cookie_name: with secure_cookies = \"auto\"")),
        "{auto_named:?}"
    );
    assert!(text.contains("missing.crt: cannot read it"), "{text}");
    assert!(text.contains("wrong.key: is not the key of"), "{text}");
    assert!(text.contains("expired.crt: expired on"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_cookies_follow_the_scheme() {
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let server_ca = certificate("servers", &[], None, true, (-1, 30));
    let (a, a_key) = certificate(
        "a.test",
        &["a.test"],
        Some((&server_ca.0, &server_ca.1)),
        false,
        (-1, 30),
    );
    write_pair(dir.path(), "a", &a, &a_key);
    let tls_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = format!(
        r#"{}
[[server.tls]]
listen = "{tls_addr}"
certificates = [{{ cert = "{d}/a.crt", key = "{d}/a.key" }}]

[sessions]
secure_cookies = "auto"
cache_ttl = "0"
{}"#,
        base_config(""),
        common::builtin_and_app_routes(),
        d = dir.path().display(),
    );
    let pg = Postern::start(&config, &[("APP", app.url())]);
    pg.add_user("ann", "correct horse battery", &[]).await;
    let login = serde_json::json!({"username": "ann", "password": "correct horse battery"});
    let tls_client = https_client(tls_addr, &[&server_ca.0]);
    let over_tls = tls_client
        .post(format!("https://a.test:{}/_postern/login", tls_addr.port()))
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(over_tls.status(), 200);
    let cookie = over_tls.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("__Host-postern="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let over_http = common::http_client()
        .post(pg.url("/_postern/login"))
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(over_http.status(), 200);
    let plain = over_http.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(plain.starts_with("postern_session="), "{plain}");
    assert!(!plain.contains("Secure"), "{plain}");
    // Each cookie opens its own scheme, and neither reaches the app.
    let value = |c: &str| c.split(';').next().unwrap().to_string();
    let r = tls_client
        .get(format!("https://a.test:{}/page", tls_addr.port()))
        .header("cookie", value(&cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert!(common::echoed_header(&echo, "cookie").is_empty(), "{echo}");
    let r = common::http_client()
        .get(pg.url("/page"))
        .header("cookie", value(&plain))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The secure cookie sent over plain HTTP opens nothing.
    let r = common::http_client()
        .get(pg.url("/page"))
        .header("cookie", value(&cookie))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
