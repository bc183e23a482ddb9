//! Test harness: postern started in-process on free ports from a config text, and a real upstream
//! HTTP server that echoes what it received.

#![allow(dead_code)]

pub mod process;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use postern::auth::{Clock, SystemClock};
use postern::pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use postern::{ServeOptions, build_server_with_clock};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// The HTTP client tests use: no redirects followed (they are what tests look at), 20 s timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// A port nothing listens on now, never handed out before in this test process: tests run in
/// parallel, and two of them given the same port would each find the other's server.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// An address where nothing listens: connections are refused.
pub fn dead_address() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

pub fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct ChannelSignal(tokio::sync::Mutex<mpsc::UnboundedReceiver<ShutdownSignal>>);

#[async_trait]
impl ShutdownSignalWatch for ChannelSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0
            .lock()
            .await
            .recv()
            .await
            .unwrap_or(ShutdownSignal::FastShutdown)
    }
}

/// The keys the built-in config reads from the environment that instances on one PostgreSQL
/// database must share (`postern check` refuses PostgreSQL without them).
pub const SHARED_KEY_ENV: [(&str, &str); 2] = [
    (
        "POSTERN_JWT_SECRET",
        "test-jwt-secret-shared-by-instances-0123456789",
    ),
    (
        "POSTERN_LINK_KEY",
        "test-link-key-shared-by-instances-0123456789",
    ),
];

/// The base URL of the PostgreSQL database to test against, when the PostgreSQL variant runs.
pub fn postgres_base_url() -> Option<String> {
    std::env::var("POSTERN_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work)
    })
    .join()
    .expect("database helper thread")
}

/// A database for one test: a fresh PostgreSQL schema in the PostgreSQL variant, else a SQLite
/// file in `dir`. Dropping it removes the schema.
pub struct TestDatabase {
    pub url: String,
    schema: Option<String>,
}

impl TestDatabase {
    /// A fresh PostgreSQL schema whatever the variant (tests of several instances need one):
    /// `POSTERN_TEST_DATABASE_URL`, else the local server CI provides. `None` when it cannot be
    /// reached outside CI (the caller says it skipped); in CI that is a failure.
    pub fn postgres() -> Option<Self> {
        let base = postgres_base_url()
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let reachable = std::net::TcpStream::connect_timeout(
            &"127.0.0.1:5432".parse().expect("address"),
            Duration::from_secs(2),
        )
        .is_ok()
            || postgres_base_url().is_some();
        if !reachable {
            assert!(
                std::env::var("CI").is_err(),
                "PostgreSQL at 127.0.0.1:5432 is unreachable: the several-instances tests must run in CI"
            );
            eprintln!("several-instances test skipped: no PostgreSQL at 127.0.0.1:5432");
            return None;
        }
        Some(Self::on_postgres(base))
    }

    pub fn new(dir: &std::path::Path) -> Self {
        let Some(base) = postgres_base_url() else {
            return Self {
                url: format!("sqlite://{}", dir.join("postern.db").display()),
                schema: None,
            };
        };
        Self::on_postgres(base)
    }

    fn on_postgres(base: String) -> Self {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let (base_for_setup, schema_for_setup) = (base.clone(), schema.clone());
        on_own_runtime(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&base_for_setup)
                .await
                .unwrap_or_else(|e| {
                    panic!("PostgreSQL at POSTERN_TEST_DATABASE_URL is unreachable: {e}")
                });
            sqlx::query(&format!("CREATE SCHEMA {schema_for_setup}"))
                .execute(&mut conn)
                .await
                .expect("create test schema");
        });
        let sep = if base.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            schema: Some(schema),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let base = postgres_base_url()
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let Some(schema) = self.schema.take() else {
            return;
        };
        on_own_runtime(async move {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        });
    }
}

/// A running postern. Stopped (fast) when dropped.
pub struct Postern {
    pub addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub database: TestDatabase,
    pub data_dir: tempfile::TempDir,
    signal: mpsc::UnboundedSender<ShutdownSignal>,
    thread: Option<JoinHandle<()>>,
    config: String,
    vars: Vec<(String, String)>,
    clock: Arc<dyn Clock>,
}

impl Postern {
    /// Starts postern from `config`, in which `${LISTEN}`, `${OPS}` and `${DATA}` are this
    /// instance's ports and data directory, and `vars` supplies further `${NAME}`s. Unless the
    /// config has a `[database]`, it gets the test database (PostgreSQL in that variant).
    pub fn start(config: &str, vars: &[(&str, String)]) -> Self {
        Self::start_with_clock(config, vars, Arc::new(SystemClock))
    }

    /// [`Postern::start`] with the given clock for sessions and lockouts.
    pub fn start_with_clock(config: &str, vars: &[(&str, String)], clock: Arc<dyn Clock>) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let database = TestDatabase::new(data_dir.path());
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Self::launch(config, vars, clock, data_dir, database)
    }

    /// Stops this instance and starts a new process-equivalent on the same data directory and
    /// database (new ports): what survives a restart.
    pub async fn restart(mut self) -> Self {
        let _ = self.signal.send(ShutdownSignal::FastShutdown);
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("join task")
                .expect("server thread panicked");
        }
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("tempdir"));
        let database = std::mem::replace(
            &mut self.database,
            TestDatabase {
                url: String::new(),
                schema: None,
            },
        );
        let (config, vars, clock) = (self.config.clone(), self.vars.clone(), self.clock.clone());
        tokio::task::spawn_blocking(move || Self::launch(&config, vars, clock, data_dir, database))
            .await
            .expect("restart")
    }

    fn launch(
        config: &str,
        vars: Vec<(String, String)>,
        clock: Arc<dyn Clock>,
        data_dir: tempfile::TempDir,
        database: TestDatabase,
    ) -> Self {
        let original_config = config.to_string();
        let config = if config.contains("[database]") {
            config.to_string()
        } else {
            format!("{config}\n[database]\nurl = \"${{TEST_DATABASE_URL}}\"\ninstances = \"one\"\n")
        };
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let ops_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut env: HashMap<String, String> = vars.iter().cloned().collect();
        env.insert("LISTEN".into(), addr.to_string());
        env.insert("OPS".into(), ops_addr.to_string());
        env.insert("DATA".into(), data_dir.path().display().to_string());
        env.insert("TEST_DATABASE_URL".into(), database.url.clone());
        let mut settings = postern::config::parse(&config, &|name| env.get(name).cloned())
            .unwrap_or_else(|problems| panic!("test config invalid: {problems:?}"));
        // Pingora's per-thread runtimes cannot start again in a process where a server ran and
        // stopped: servers in this process use one work-stealing runtime. The tests that run
        // the binary (cli, faults, instances) run the default.
        settings.server.work_stealing = true;
        let built = build_server_with_clock(settings, ServeOptions::default(), clock.clone())
            .expect("build server");
        let store = built.store.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::spawn(move || {
            built.server.run(RunArgs {
                shutdown_signal: Box::new(ChannelSignal(tokio::sync::Mutex::new(rx))),
            });
        });
        wait_for_port(addr);
        wait_for_port(ops_addr);
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.load().is_none() {
            assert!(
                Instant::now() < deadline,
                "postern never connected to {}",
                database.url
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            addr,
            ops_addr,
            database,
            data_dir,
            signal: tx,
            thread: Some(thread),
            config: original_config,
            vars,
            clock,
        }
    }

    /// The messages in the mail outbox (`DATA/mail/*.eml`), oldest first, once there are at
    /// least `count` (waits up to 20 s).
    pub async fn outbox(&self, count: usize) -> Vec<String> {
        mail_files(&self.data_dir.path().join("mail"), count).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The store this instance uses (a separate pool, as another instance or the CLI would have).
    pub async fn store(&self) -> postern::store::Store {
        postern::store::Store::open(&self.database.url, 2)
            .await
            .expect("open test store")
    }

    /// Creates an enabled user with a password and roles.
    pub async fn add_user(
        &self,
        name: &str,
        password: &str,
        roles: &[&str],
    ) -> postern::store::User {
        let hash = postern::auth::Passwords::new(postern::auth::HashParams::default(), 1)
            .unwrap()
            .hash(password.to_string())
            .await
            .unwrap();
        let store = self.store().await;
        let user = store
            .create_user(
                &postern::store::NewUser {
                    username: name.to_string(),
                    email: format!("{name}@example.com"),
                    password_hash: Some(hash),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    ..Default::default()
                },
                SystemClock.now(),
            )
            .await
            .expect("create user");
        store.close().await;
        user
    }

    /// Logs in with JSON and returns the session cookie as `name=value`, ready for a `Cookie`
    /// header.
    pub async fn login_cookie(&self, username: &str, password: &str) -> String {
        let r = http_client()
            .post(self.url("/_postern/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), 200, "login as {username}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        cookie.split(';').next().unwrap().to_string()
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{}", self.ops_addr, path)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.ops_url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Sends a shutdown signal and waits (off the async runtime) for the server to stop.
    pub async fn stop(mut self, signal: ShutdownSignal) {
        let _ = self.signal.send(signal);
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("join task")
                .expect("server thread panicked");
        }
    }
}

impl Drop for Postern {
    fn drop(&mut self) {
        let _ = self.signal.send(ShutdownSignal::FastShutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `.eml` files in `dir`, by name, once there are at least `count` (waits up to 20 s).
pub async fn mail_files(dir: &std::path::Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        if names.len() >= count {
            names.sort();
            return names
                .iter()
                .map(|p| std::fs::read_to_string(p).expect("read mail"))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} message(s) in {}, found {}",
            dir.display(),
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message's text with quoted-printable soft line breaks and `=3D` undone (enough to read
/// links out of it).
pub fn mail_text(message: &str) -> String {
    message
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// The token of the first link to built-in endpoint `endpoint` in `message`.
pub fn mail_token(message: &str, endpoint: &str) -> String {
    let text = mail_text(message);
    let marker = format!("/_postern/{endpoint}?token=");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} link in:\n{text}"))
        + marker.len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// A header of a message (first occurrence), unfolded.
pub fn mail_header(message: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message
        .split("\r\n\r\n")
        .next()?
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

/// A real upstream HTTP app. Every request is echoed back as JSON
/// (`server`, `method`, `uri`, `headers` as `[name, value]` pairs, `body`), except:
/// paths ending in `/slow` answer after `?ms=N` milliseconds, `/ws` is a WebSocket echo, paths ending in `/status/N` answer with status N.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
}

#[derive(Clone)]
struct UpstreamState {
    name: String,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start(name: &str) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address"), name).await
    }

    /// The same server on a given address (to come back on it after being stopped).
    pub async fn start_on(addr: SocketAddr, name: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let state = UpstreamState {
            name: name.to_string(),
            hits: hits.clone(),
        };
        let app = Router::new()
            .route("/ws", axum::routing::any(websocket))
            .route("/events", axum::routing::get(event_stream))
            .fallback(echo)
            .with_state(state);
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            name: name.to_string(),
            addr,
            hits,
            stop: Some(tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn echo_json(
    state: &UpstreamState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> serde_json::Value {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    json!({
        "server": state.name,
        "method": method.as_str(),
        "uri": uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(body),
    })
}

async fn echo(
    State(state): State<UpstreamState>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if uri.path().ends_with("/slow") {
        let ms = query.get("ms").and_then(|m| m.parse().ok()).unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = uri
        .path()
        .rsplit_once("/status/")
        .and_then(|(_, c)| c.parse::<u16>().ok())
    {
        let status = axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK);
        return (
            status,
            axum::Json(echo_json(&state, &method, &uri, &headers, &body)),
        )
            .into_response();
    }
    axum::Json(echo_json(&state, &method, &uri, &headers, &body)).into_response()
}

async fn websocket(State(state): State<UpstreamState>, ws: WebSocketUpgrade) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("echo: {}", t.as_str()).into()),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// The echoed headers with this name (lower case), in order.
pub fn echoed_header<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|pair| pair[0] == name)
                .filter_map(|pair| pair[1].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// `/events`: a server-sent event every 100 ms, for as long as the client listens.
async fn event_stream() -> Response {
    let ticks = futures_util::stream::unfold(0u64, |n| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {n}\n\n"))),
            n + 1,
        ))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(ticks))
        .expect("event stream response")
}

/// A `[server]` + `[ops]` block on the harness's ports, with quick shutdown for tests.
pub fn base_config(extra_server_keys: &str) -> String {
    format!(
        r#"
[server]
listen = "${{LISTEN}}"
data_dir = "${{DATA}}"
threads = 2
shutdown_grace_period = "0s"
shutdown_timeout = "2s"
{extra_server_keys}

[ops]
listen = "${{OPS}}"

[log]
access_log = false
"#
    )
}

/// The upstream `app` at `${APP}` and two routes: the built-in endpoints at `/_postern/` and
/// everything else to the app (authenticated). Goes after every other section.
pub fn builtin_and_app_routes() -> &'static str {
    r#"
[upstreams.app]
backends = ["${APP}"]

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "app"
path = "/"
upstream = "app"
"#
}

/// Sends `request` verbatim (for paths an HTTP client library would normalize) and returns the
/// status code and body of the answer.
pub fn raw_request(addr: SocketAddr, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Server names (SNI) a TLS test server saw, in order.
pub type SeenNames = Arc<std::sync::Mutex<Vec<String>>>;

/// A real S3 server (s3s-fs) that verifies SigV4 signatures, serving the buckets that are
/// directories under `root`.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    pub access_key: String,
    pub secret_key: String,
    /// Every request the server received, in order.
    pub requests: Arc<std::sync::Mutex<Vec<S3Request>>>,
    stop: Option<oneshot::Sender<()>>,
}

/// What the S3 server saw of one request.
#[derive(Debug, Clone)]
pub struct S3Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub acl: Option<String>,
    pub content_type: Option<String>,
}

impl S3Server {
    pub async fn start(buckets: &[&str]) -> Self {
        Self::start_inner(buckets, None).await
    }

    /// The same server behind TLS with a self-signed certificate for `localhost`; `sni` collects
    /// the server name each connection asked for.
    pub async fn start_tls(buckets: &[&str]) -> (Self, SeenNames) {
        let sni = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = Self::start_inner(
            buckets,
            Some((self_signed_acceptor("localhost"), sni.clone())),
        )
        .await;
        (server, sni)
    }

    async fn start_inner(
        buckets: &[&str],
        tls: Option<(Arc<openssl::ssl::SslAcceptor>, SeenNames)>,
    ) -> Self {
        let root = tempfile::tempdir().expect("s3 root");
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket)).expect("bucket dir");
        }
        let access_key = "AKIDPOSTERNTEST".to_string();
        let secret_key = "s3cr3t-k3y-for-the-test-s3-server".to_string();
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        let s3 = builder.build();
        let requests: Arc<std::sync::Mutex<Vec<S3Request>>> = Arc::default();
        let log = requests.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                log.lock().unwrap().push(S3Request {
                    method: req.method().to_string(),
                    target: req.uri().to_string(),
                    acl: header("x-amz-acl"),
                    content_type: header("content-type"),
                });
                let s3 = s3.clone();
                async move { hyper::service::Service::call(&s3, req).await }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind s3");
        let addr = listener.local_addr().expect("s3 addr");
        let (tx, mut rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => continue,
                    },
                    _ = &mut rx => return,
                };
                let (http, service, tls) = (http.clone(), service.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                                .await;
                        }
                        Some((acceptor, sni)) => {
                            let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else {
                                return;
                            };
                            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, socket) else {
                                return;
                            };
                            if std::pin::Pin::new(&mut stream).accept().await.is_err() {
                                return;
                            }
                            let name = stream
                                .ssl()
                                .servername(openssl::ssl::NameType::HOST_NAME)
                                .unwrap_or("")
                                .to_string();
                            sni.lock().unwrap().push(name);
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            root,
            access_key,
            secret_key,
            requests,
            stop: Some(tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes an object straight into the bucket's directory.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let path = self.root.path().join(bucket).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A TLS acceptor with a fresh self-signed certificate for `host`.
pub fn self_signed_acceptor(host: &str) -> Arc<openssl::ssl::SslAcceptor> {
    use openssl::ssl::{SslAcceptor, SslMethod};
    let (cert, key) = self_signed(host);
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&key).unwrap();
    acceptor.set_certificate(&cert).unwrap();
    Arc::new(acceptor.build())
}

/// A fresh self-signed certificate for `host` (also its subject alternative name), valid a day.
pub fn self_signed(
    host: &str,
) -> (
    openssl::x509::X509,
    openssl::pkey::PKey<openssl::pkey::Private>,
) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", host).unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns(host)
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    (cert.build(), key)
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// An XLSX workbook holding `rows`, as a spreadsheet program would save it: for the import tests.
pub fn xlsx(rows: &[&[&str]]) -> Vec<u8> {
    postern::accounts::import::xlsx_from_rows(rows)
}
