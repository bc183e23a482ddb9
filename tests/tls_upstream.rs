//! https upstreams: certificate verification on by default, SNI sent as configured.

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use common::{Postern, base_config};
use openssl::ssl::NameType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS server with a self-signed certificate that answers every request with the SNI it saw.
async fn tls_upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let acceptor = common::self_signed_acceptor("app.internal");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen_by_server = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen_by_server.clone();
            tokio::spawn(async move {
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if Pin::new(&mut stream).accept().await.is_err() {
                    return;
                }
                let sni = stream
                    .ssl()
                    .servername(NameType::HOST_NAME)
                    .unwrap_or("")
                    .to_string();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock().unwrap().push(sni.clone());
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sni}",
                    sni.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn config(tls_lines: &str) -> String {
    format!(
        r#"{}
[upstreams.secure]
backends = ["https://127.0.0.1:${{PORT}}"]
sni = "app.internal"
{tls_lines}

[[routes]]
name = "secure"
path = "/"
upstream = "secure"
access = "public"
"#,
        base_config("")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_are_verified_by_default() {
    let (addr, seen) = tls_upstream().await;
    let p = Postern::start(&config(""), &[("PORT", addr.port().to_string())]);
    let r = reqwest::get(p.url("/x")).await.unwrap();
    assert_eq!(r.status(), 502, "a self-signed certificate is refused");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request was sent over the untrusted connection"
    );
    let metrics = p.metrics().await;
    assert!(
        metrics.contains(r#"postern_upstream_errors_total{kind="tls",route="secure"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_the_configured_sni_when_verification_is_off() {
    let (addr, seen) = tls_upstream().await;
    let p = Postern::start(
        &config("tls_verify = false"),
        &[("PORT", addr.port().to_string())],
    );
    let r = reqwest::get(p.url("/x")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "app.internal");
    assert_eq!(seen.lock().unwrap().as_slice(), ["app.internal"]);
}
