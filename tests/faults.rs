//! Faults, through real processes: postern runs as its built binary, and what fails is a process
//! of its own that the test kills, stops or restarts: a private PostgreSQL cluster, an S3 server
//! that verifies SigV4, the upstream app, a filesystem that fills up. Also a zero-downtime
//! upgrade under load and a graceful stop that ends when the last request does.
//!
//! The S3 server and the upstream app are this test binary started again to run one ignored
//! test (`helper_s3_server`, `helper_upstream`) that serves until it is killed. PostgreSQL is a
//! cluster of its own (initdb into a temporary directory, as the `postgres` user when running as
//! root); a full disk is a 1 MiB tmpfs (needs root). Outside CI a test without its tool says it
//! was skipped; in CI that is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::process::Instance;
use common::{Upstream, free_port, http_client, wait_for_port};
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "fault injection admin 1";
const S3_KEY: &str = "AKIDFAULTS";
const S3_SECRET: &str = "fault-injection-s3-secret-key";

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

fn skip(test: &str, why: &str) {
    assert!(!required(), "{test} must run in CI: {why}");
    eprintln!("{test} skipped: {why}");
}

/// A process of this test binary serving as `kind` on `listen` until it is killed.
struct Helper {
    child: Child,
    kind: &'static str,
    listen: String,
    root: Option<PathBuf>,
}

impl Helper {
    fn start(kind: &'static str, listen: &str, root: Option<&Path>) -> Self {
        let test = format!("helper_{kind}");
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([test.as_str(), "--exact", "--ignored", "--test-threads=1"])
            .env("FAULTS_HELPER_LISTEN", listen)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(root) = root {
            command.env("FAULTS_HELPER_ROOT", root);
        }
        let child = command.spawn().expect("spawn helper");
        wait_for_port(listen.parse().unwrap());
        Self {
            child,
            kind,
            listen: listen.to_string(),
            root: root.map(Path::to_path_buf),
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Self::start(self.kind, &self.listen, self.root.as_deref());
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

fn helper_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The S3 server process: s3s-fs with SigV4 authentication, buckets under FAULTS_HELPER_ROOT.
#[test]
#[ignore = "a helper process the fault tests start, stop and kill"]
fn helper_s3_server() {
    let (Ok(listen), Ok(root)) = (
        std::env::var("FAULTS_HELPER_LISTEN"),
        std::env::var("FAULTS_HELPER_ROOT"),
    ) else {
        return;
    };
    helper_runtime().block_on(async move {
        let fs = s3s_fs::FileSystem::new(&root).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(S3_KEY, S3_SECRET));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(conn);
        }
    });
}

/// The upstream app process: the test harness's echo server on FAULTS_HELPER_LISTEN.
#[test]
#[ignore = "a helper process the fault tests start and kill"]
fn helper_upstream() {
    let Ok(listen) = std::env::var("FAULTS_HELPER_LISTEN") else {
        return;
    };
    helper_runtime().block_on(async move {
        let _upstream = Upstream::start_on(listen.parse().unwrap(), "helper").await;
        std::future::pending::<()>().await;
    });
}

fn process_config(extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{LISTEN}}"
data_dir = "{{DATA}}"
threads = 2
shutdown_timeout = "1s"

[ops]
listen = "{{OPS}}"

[bootstrap]
admin_password = "{ADMIN_PASSWORD}"

[links]
keys = ["${{LINK_KEY}}"]

{extra}

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"
"#
    )
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    (status, code)
}

async fn get(url: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = http_client().get(url).timeout(Duration::from_secs(10));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    error_of(request.send().await.expect("an answer, not a hang")).await
}

async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PostgreSQL cluster of this test's own, which it can stop and start.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    fn start() -> Option<Self> {
        let bin = Command::new("pg_config").arg("--bindir").output().ok()?;
        let bin = PathBuf::from(String::from_utf8(bin.stdout).ok()?.trim());
        if !bin.join("initdb").exists() {
            return None;
        }
        // SAFETY: geteuid(2) has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::tempdir().unwrap();
        if as_postgres {
            let owned = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .ok()?;
            if !owned.success() {
                return None;
            }
        }
        let cluster = Self {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = cluster.data();
        let initialized = cluster.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        if !initialized {
            return None;
        }
        cluster.start_server();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> bool {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let data = self.data();
        assert!(
            self.run(
                "pg_ctl",
                &["-D", &data, "-o", &options, "-l", &log, "-w", "start"]
            ),
            "pg_ctl start"
        );
    }

    fn stop_server(&self) {
        let data = self.data();
        assert!(
            self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]),
            "pg_ctl stop"
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// Requests sent in a loop until stopped: how many were answered 200 and what else came back.
struct Traffic {
    running: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Traffic {
    fn start(url: String, cookie: Option<String>, connections: usize) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let ok = Arc::new(AtomicUsize::new(0));
        let client = http_client();
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let (running, ok, client) = (running.clone(), ok.clone(), client.clone());
                let (url, cookie) = (url.clone(), cookie.clone());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    while running.load(Ordering::Relaxed) {
                        let mut request = client.get(&url).timeout(Duration::from_secs(10));
                        if let Some(cookie) = &cookie {
                            request = request.header("cookie", cookie);
                        }
                        match request.send().await {
                            Ok(r) if r.status() == 200 => match r.bytes().await {
                                Ok(_) => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => failures.push(format!("body: {e}")),
                            },
                            Ok(r) => failures.push(format!("status {}", r.status())),
                            Err(e) => failures.push(format!("{e:?}")),
                        }
                    }
                    failures
                })
            })
            .collect();
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            for worker in workers {
                failures.extend(worker.await.unwrap());
            }
            failures
        });
        Self { running, ok, task }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    async fn stop(self) -> (usize, Vec<String>) {
        self.running.store(false, Ordering::Relaxed);
        let failures = self.task.await.unwrap();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_mid_traffic_keeps_cached_sessions_and_recovers() {
    let Some(pg) = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap()
    else {
        return skip(
            "postgres_stopped_mid_traffic",
            "no PostgreSQL server binaries (pg_config --bindir)",
        );
    };
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = process_config(&format!(
        r#"
[database]
url = "{}"
instances = "one"
max_connections = 4

[sessions]
cache_ttl = "60s"

[upstreams.app]
backends = ["{}"]

[[routes]]
name = "private"
path = "/private/"
upstream = "app"
access = "authenticated"
"#,
        pg.url(),
        app.url()
    ));
    let postern = Instance::start(dir.path(), "postern", &config);
    let cookie = postern.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(get(&postern.url("/private/x"), Some(&cookie)).await.0, 200);
    let traffic = Traffic::start(postern.url("/private/x"), Some(cookie.clone()), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    tokio::task::block_in_place(|| pg.stop_server());
    let served_before = traffic.ok();

    // A cached session goes on working while the database is down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        traffic.ok() > served_before,
        "the cached session kept being served"
    );
    // A login cannot be checked: 503 with a code, promptly.
    let r = http_client()
        .post(postern.url("/_postern/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("the login answers, not hangs");
    assert_eq!(error_of(r).await, (503, "unavailable".to_string()));
    // Readiness says so.
    let readyz = format!("http://{}/readyz", postern.ops);
    eventually("/readyz not ready", Duration::from_secs(15), async || {
        get(&readyz, None).await.0 == 503
    })
    .await;

    // Back without a restart.
    tokio::task::block_in_place(|| pg.start_server());
    eventually("/readyz ready again", Duration::from_secs(30), async || {
        get(&readyz, None).await.0 == 200
    })
    .await;
    let again = postern.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(get(&postern.url("/private/y"), Some(&again)).await.0, 200);

    let (ok, failures) = traffic.stop().await;
    assert!(ok > 0);
    assert!(
        failures.is_empty(),
        "the cached session failed while the database was down: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_killed_mid_stream_fails_fast_and_recovers_without_leaks() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("media")).unwrap();
    let big: Vec<u8> = (0..48u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path().join("media/big.bin"), &big).unwrap();
    std::fs::write(root.path().join("media/small.txt"), b"small object").unwrap();
    let s3_listen = format!("127.0.0.1:{}", free_port());
    let mut s3 = Helper::start("s3_server", &s3_listen, Some(root.path()));

    let dir = tempfile::tempdir().unwrap();
    let config = process_config(&format!(
        r#"
[stores.media]
type = "s3"
bucket = "media"
region = "us-east-1"
endpoint = "http://{s3_listen}"
addressing = "path"
access_key_id = "${{S3_KEY}}"
secret_access_key = "${{S3_SECRET}}"
connect_timeout = "1s"
read_timeout = "2s"

[[routes]]
name = "media"
path = "/media/"
kind = "assets"
store = "media"
access = "public"
"#
    ));
    let postern = Instance::start_with_env(
        dir.path(),
        "postern",
        &config,
        &[("S3_KEY", S3_KEY), ("S3_SECRET", S3_SECRET)],
    );
    assert_eq!(get(&postern.url("/media/small.txt"), None).await.0, 200);
    let fds_before = postern.open_fds();

    // Killed while a 48 MiB download is on its way: the client's download ends (short), it
    // does not hang.
    let response = http_client()
        .get(postern.url("/media/big.bin"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = 0usize;
    use futures_util::StreamExt;
    while received < 1 << 20 {
        received += stream.next().await.unwrap().unwrap().len();
    }
    s3.kill();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(chunk)) => received += chunk.len(),
                Some(Err(_)) | None => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the download hung after the S3 server died");
    assert!(received < big.len(), "a cut download may not look complete");

    // While it is down: 502 with a code, at once, again and again, without piling up sockets.
    for _ in 0..30 {
        assert_eq!(
            get(&postern.url("/media/small.txt"), None).await,
            (502, "store_unavailable".to_string())
        );
    }

    // Stuck (stopped, not dead): 504 with a code after the read timeout.
    s3.restart();
    assert_eq!(get(&postern.url("/media/small.txt"), None).await.0, 200);
    s3.signal(libc::SIGSTOP);
    assert_eq!(
        get(&postern.url("/media/small.txt"), None).await,
        (504, "store_timeout".to_string())
    );
    s3.signal(libc::SIGCONT);

    // Restarted: served in full again.
    s3.restart();
    let body = http_client()
        .get(postern.url("/media/big.bin"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        body == big,
        "the download after recovery is complete and intact"
    );

    eventually(
        "open descriptors back near where they were",
        Duration::from_secs(10),
        async || postern.open_fds() <= fds_before + 4,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_killed_answers_502_is_marked_down_and_recovers() {
    let app_listen = format!("127.0.0.1:{}", free_port());
    let mut app = Helper::start("upstream", &app_listen, None);
    let dir = tempfile::tempdir().unwrap();
    let config = process_config(&format!(
        r#"
[upstreams.app]
backends = ["http://{app_listen}"]
connect_timeout = "1s"
fail_timeout = "2s"

[[routes]]
name = "app"
path = "/"
upstream = "app"
access = "public"
"#
    ));
    let postern = Instance::start(dir.path(), "postern", &config);
    assert_eq!(get(&postern.url("/hello"), None).await.0, 200);
    let backend_up = "postern_backend_up{";

    app.kill();
    assert_eq!(
        get(&postern.url("/hello"), None).await,
        (502, "upstream_unavailable".to_string())
    );
    let metrics = postern.metrics().await;
    let up = metrics
        .lines()
        .find(|l| l.starts_with(backend_up))
        .unwrap_or_else(|| panic!("no {backend_up} in\n{metrics}"));
    assert!(up.ends_with(" 0"), "the dead backend is marked down: {up}");
    // While marked down it is not even tried: still a prompt 502.
    assert_eq!(get(&postern.url("/hello"), None).await.0, 502);

    app.restart();
    eventually(
        "the upstream is used again",
        Duration::from_secs(15),
        async || get(&postern.url("/hello"), None).await.0 == 200,
    )
    .await;
    eventually(
        "the backend is marked up",
        Duration::from_secs(15),
        async || {
            postern
                .metrics()
                .await
                .lines()
                .any(|l| l.starts_with(backend_up) && l.ends_with(" 1"))
        },
    )
    .await;
}

/// A 1 MiB tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every file under the mount, relative.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        out
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_an_upload_cleanly() {
    let Some(disk) = SmallDisk::mount() else {
        return skip(
            "a_full_disk_fails_an_upload_cleanly",
            "cannot mount a tmpfs (needs root)",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let config = process_config(&format!(
        r#"
[tokens]
secret = "fault-injection-token-secret-0123456789"

[stores.local]
type = "fs"
root = "{}"

[[routes]]
name = "files"
path = "/files"
kind = "uploads"
store = "local"
api = true

[routes.upload]
max_file_size = "8MiB"
"#,
        disk.path().display()
    ));
    let postern = Instance::start(dir.path(), "postern", &config);
    let token = http_client()
        .post(postern.url("/_postern/token"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let upload = async |bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name("data.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
        let r = http_client()
            .post(postern.url("/files"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .expect("an answer");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let list = async || {
        http_client()
            .get(postern.url("/files"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["total"]
            .as_i64()
            .unwrap()
    };

    // 3 MiB onto a 1 MiB filesystem.
    let (status, body) = upload(vec![b'a'; 3 << 20]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (507, Some("insufficient_storage")),
        "{body}"
    );
    assert_eq!(disk.files(), Vec::<String>::new(), "nothing half-written");
    assert_eq!(list().await, 0, "no record of the failed upload");
    assert_eq!(
        postern
            .metric(r#"postern_uploads_total{result="failed",route="files"}"#)
            .await,
        1.0,
        "a full disk is a failure, not a refusal"
    );

    // The disk is usable again at once: a file that fits is stored whole.
    let (status, body) = upload(vec![b'b'; 100 << 10]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(disk.files().len(), 1);
    assert_eq!(list().await, 1);
}

/// A public route to `app` with a 60 s grace period: a stop that takes as long failed the test.
fn app_with_grace_period(app: &Upstream, sections: &str, upstream_keys: &str) -> String {
    process_config(&format!(
        r#"
{sections}

[upstreams.app]
backends = ["{}"]
{upstream_keys}

[[routes]]
name = "app"
path = "/"
upstream = "app"
access = "public"
"#,
        app.url()
    ))
    .replace(
        "shutdown_timeout = \"1s\"",
        "shutdown_timeout = \"1s\"\nshutdown_grace_period = \"60s\"",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_under_load_fails_no_request() {
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = app_with_grace_period(&app, "[log]\naccess_log = false", "");
    let mut old = Instance::start(dir.path(), "old", &config);
    let traffic = Traffic::start(old.url("/load"), None, 16);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = traffic.ok();

    let signalled = Instant::now();
    let mut new = old.upgrade(dir.path(), "new").await;
    let exited = old.exited_within(Duration::from_secs(40)).await;
    let old_ran_for = signalled.elapsed();
    assert!(
        exited.is_some_and(|s| s.success()),
        "the old process ended cleanly once its requests were done (not after its 60 s grace \
         period): {exited:?}\n{}",
        old.log_text()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failures) = traffic.stop().await;
    assert!(
        failures.is_empty(),
        "{} failed request(s) of {} during the upgrade: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > before, "the new process served after the old one left");
    assert!(
        new.child.try_wait().unwrap().is_none(),
        "{}",
        new.log_text()
    );
    eprintln!(
        "upgrade under load: {ok} requests, none failed; the old process left {:.1} s after SIGQUIT",
        old_ran_for.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_requests_finish_and_exits_as_soon_as_they_are_done() {
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let config = app_with_grace_period(&app, "", "read_timeout = \"30s\"");

    // Idle: the process ends at once, not after 60 s.
    let mut idle = Instance::start(dir.path(), "idle", &config);
    idle.signal(libc::SIGTERM);
    let exited = idle.exited_within(Duration::from_secs(20)).await;
    assert!(exited.is_some_and(|s| s.success()), "{}", idle.log_text());

    // Busy: a 3 s request in flight is answered in full, then the process ends.
    let mut busy = Instance::start(dir.path(), "busy", &config);
    let slow = tokio::spawn({
        let url = busy.url("/slow?ms=3000");
        async move {
            let r = http_client().get(url).send().await.unwrap();
            let connection = r.headers().get("connection").cloned();
            (
                r.status().as_u16(),
                connection,
                r.json::<Value>().await.unwrap(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    busy.signal(libc::SIGTERM);
    // No new connections are taken once the stop has begun.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = http_client()
        .get(busy.url("/late"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        late.as_ref().map_or(true, |r| r.status() != 200),
        "a request after SIGTERM was served: {late:?}"
    );
    let (status, connection, echo) = slow.await.unwrap();
    assert_eq!(status, 200, "the request in flight was answered");
    assert_eq!(
        connection.as_ref().and_then(|v| v.to_str().ok()),
        Some("close"),
        "a request that began before the stop still ends its connection"
    );
    assert_eq!(echo["uri"], "/slow?ms=3000");
    let exited = busy.exited_within(Duration::from_secs(20)).await;
    assert!(
        exited.is_some_and(|s| s.success()),
        "the process ended after its last request: {exited:?}\n{}",
        busy.log_text()
    );
    eprintln!(
        "SIGTERM with a 3 s request in flight: exited {:.1} s after the signal (grace period 60 s)",
        signalled.elapsed().as_secs_f64()
    );
}
