//! Mail through a real SMTP server (aiosmtpd, started by the test: STARTTLS required before AUTH,
//! one user): a reset link delivered and followed; an outage that the queue rides out, across a
//! postern restart; a message that never goes through kept as failed and retried by the CLI.
//! Needs `./dev test-setup` (aiosmtpd); without it the tests say so and pass, except in CI.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Postern, Upstream, base_config, builtin_and_app_routes, http_client, mail_files, mail_token,
};
use postern::store::EventFilter;
use serde_json::json;

const SMTP_USER: &str = "mailer";
const SMTP_PASSWORD: &str = "smtp secret 42";

fn smtp_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    let required = std::env::var("CI").is_ok_and(|v| !v.is_empty())
        || std::env::var("POSTERN_SMTP_TESTS").is_ok();
    if !ok && required {
        panic!("the SMTP tests must run here but aiosmtpd is missing: run ./dev test-setup");
    }
    if !ok {
        eprintln!("SMTP test skipped: python3 with aiosmtpd missing (./dev test-setup)");
    }
    ok
}

/// The certificate the SMTP server presents, and the CA file postern trusts for it.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = common::self_signed("localhost");
        std::fs::write(dir.path().join("cert.pem"), cert.to_pem().unwrap()).unwrap();
        std::fs::write(
            dir.path().join("key.pem"),
            key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        Self { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

/// A port for the SMTP server, held (bound, not listening: connections to it are refused) until
/// the server starts, so that no other listener of the concurrent tests takes it meanwhile.
struct SmtpPort {
    port: u16,
    held: Option<tokio::net::TcpSocket>,
}

impl SmtpPort {
    fn reserve() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        Self {
            port,
            held: Some(socket),
        }
    }

    /// Lets go of the port and starts the server on it.
    fn start_sink(&mut self, dir: &Path, certs: &Certificates) -> SmtpSink {
        drop(self.held.take());
        SmtpSink::start(self.port, dir, certs)
    }
}

/// A running SMTP sink writing each accepted message to `dir`.
struct SmtpSink {
    child: Child,
}

impl SmtpSink {
    fn start(port: u16, dir: &Path, certs: &Certificates) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir)
            .arg(certs.cert())
            .arg(certs.key())
            .args([SMTP_USER, SMTP_PASSWORD])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP sink");
        let mut ready = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the SMTP sink did not start");
        Self { child }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(smtp_port: u16, certs: &Certificates, mail_extra: &str) -> String {
    format!(
        r#"{}
[accounts]
public_url = "https://gw.example"
rate_per_minute = 1000

[mail]
transport = "smtp"
from = "Example <noreply@example.com>"
{mail_extra}

[mail.smtp]
host = "localhost"
port = {smtp_port}
tls = "starttls"
ca_file = "{ca}"
username = "{SMTP_USER}"
password = "{SMTP_PASSWORD}"
timeout = "5s"

{routes}
"#,
        base_config(""),
        ca = certs.cert().display(),
        routes = builtin_and_app_routes(),
    )
}

async fn forgot(p: &Postern, login: &str) -> u16 {
    http_client()
        .post(p.url("/_postern/forgot"))
        .json(&json!({"login": login}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until `check` holds for the queue's newest record.
async fn wait_for_record(
    p: &Postern,
    what: &str,
    check: impl Fn(&postern::store::MailRecord) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let store = p.store().await;
        let records = store.mail_records(false, 10).await.unwrap();
        store.close().await;
        if records.first().is_some_and(&check) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {records:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_link_arrives_over_starttls_with_auth_and_works() {
    if !smtp_available() {
        return;
    }
    let certs = Certificates::new();
    let mut smtp = SmtpPort::reserve();
    let port = smtp.port;
    let inbox = tempfile::tempdir().unwrap();
    let _sink = smtp.start_sink(inbox.path(), &certs);
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(port, &certs, ""), &[("APP", app.url())]);
    p.add_user("sam", "the old passphrase", &[]).await;

    assert_eq!(forgot(&p, "sam@example.com").await, 202);
    let mail = mail_files(inbox.path(), 1).await;
    let message = &mail[0];
    assert!(
        message.contains("X-Envelope-From: noreply@example.com"),
        "{message}"
    );
    assert!(message.contains("X-Envelope-To: sam@example.com"));
    assert!(message.contains("multipart/alternative"));
    assert!(message.contains("text/plain") && message.contains("text/html"));
    let token = mail_token(message, "reset");

    let reset = http_client()
        .post(p.url("/_postern/reset"))
        .json(&json!({"token": token, "password": "the new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let login = http_client()
        .post(p.url("/_postern/login"))
        .json(&json!({"username": "sam", "password": "the new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    // the notice of the reset follows the link through the same server
    let mail = mail_files(inbox.path(), 2).await;
    assert!(
        mail[1].contains("Subject: Your password has been reset"),
        "{}",
        mail[1]
    );
    wait_for_record(&p, "the notice is marked sent", |r| r.status == "sent").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_waits_out_an_smtp_outage_and_a_restart() {
    if !smtp_available() {
        return;
    }
    let certs = Certificates::new();
    let mut smtp = SmtpPort::reserve();
    let port = smtp.port;
    let app = Upstream::start("app").await;
    let p = Postern::start(
        &config(
            port,
            &certs,
            "retry_base = \"1s\"\nretry_max = \"1s\"\nmax_attempts = 100",
        ),
        &[("APP", app.url())],
    );
    p.add_user("dora", "the old passphrase", &[]).await;

    // nothing listens on the SMTP port: the request still answers, the message waits
    assert_eq!(forgot(&p, "dora").await, 202);
    wait_for_record(&p, "a failed attempt is recorded", |r| {
        r.status == "pending" && r.attempts >= 1 && r.last_error.is_some()
    })
    .await;

    let p = p.restart().await;
    let inbox = tempfile::tempdir().unwrap();
    let _sink = smtp.start_sink(inbox.path(), &certs);
    let mail = mail_files(inbox.path(), 1).await;
    let token = mail_token(&mail[0], "reset");
    assert_eq!(token.len(), 43);
    wait_for_record(&p, "the message is marked sent", |r| r.status == "sent").await;

    let store = p.store().await;
    let body: Option<String> = sqlx::query_scalar("SELECT message FROM mail_queue")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(body, None, "a sent message (and its link) is not kept");
    store.close().await;
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("postern_mail_total{kind=\"password_reset\",result=\"sent\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_never_goes_through_is_kept_as_failed_and_can_be_retried() {
    if !smtp_available() {
        return;
    }
    let certs = Certificates::new();
    let mut smtp = SmtpPort::reserve();
    let port = smtp.port;
    let app = Upstream::start("app").await;
    let p = Postern::start(
        &config(
            port,
            &certs,
            "retry_base = \"1s\"\nretry_max = \"1s\"\nmax_attempts = 2",
        ),
        &[("APP", app.url())],
    );
    p.add_user("fay", "the old passphrase", &[]).await;
    assert_eq!(forgot(&p, "fay").await, 202);
    wait_for_record(&p, "the message fails for good", |r| {
        r.status == "failed" && r.attempts == 2
    })
    .await;
    let store = p.store().await;
    let failed = store
        .events(&EventFilter {
            kind: Some("mail.failed".into()),
            limit: 10,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    store.close().await;
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("postern_mail_total{kind=\"password_reset\",result=\"failed\"} 1"),
        "{metrics}"
    );

    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_postern"))
            .args(args)
            .current_dir(p.data_dir.path())
            .env_remove("POSTERN_CONFIG")
            .env("POSTERN_DATA_DIR", p.data_dir.path())
            .env("POSTERN_DATABASE_URL", &p.database.url)
            .envs(common::SHARED_KEY_ENV)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, listed) = cli(&["mail", "list", "--failed", "--json"]);
    assert_eq!(code, Some(0), "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["status"], "failed");
    assert_eq!(listed[0]["recipient"], "fay@example.com");
    assert!(
        listed[0].get("message").is_none(),
        "the CLI never shows bodies"
    );
    let id = listed[0]["id"].as_i64().unwrap().to_string();

    let inbox = tempfile::tempdir().unwrap();
    let _sink = smtp.start_sink(inbox.path(), &certs);
    let (code, out) = cli(&["mail", "retry", &id]);
    assert_eq!(code, Some(0), "{out}");
    mail_files(inbox.path(), 1).await;
    wait_for_record(&p, "the retried message is sent", |r| r.status == "sent").await;
    let (code, _) = cli(&["mail", "retry", &id]);
    assert_eq!(code, Some(1), "a sent message is not retried");
}
