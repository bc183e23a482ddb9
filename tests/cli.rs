//! The `postern` binary as users run it: `check`, `serve` on the built-in config, signals.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TestDatabase, Upstream, echoed_header, free_port, wait_for_port};

fn postern() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_postern"));
    for var in [
        "POSTERN_CONFIG",
        "POSTERN_LISTEN",
        "POSTERN_OPS_LISTEN",
        "POSTERN_DATA_DIR",
        "POSTERN_UPSTREAM",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run postern");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn shipped_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut found = vec![root.join("postern.toml")];
    for entry in std::fs::read_dir(root.join("examples")).expect("conf/examples") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
    found
}

#[test]
fn every_shipped_config_is_valid() {
    let configs = shipped_configs();
    assert!(configs.len() >= 3, "{configs:?}");
    for path in configs {
        let (code, stdout, stderr) = run(postern().arg("check").arg("-c").arg(&path));
        assert_eq!(code, 0, "{}: {stderr}", path.display());
        assert_eq!(stdout.lines().count(), 1, "one-line summary: {stdout}");
        assert!(stdout.contains(": ok: "), "{stdout}");
    }
}

#[test]
fn built_in_config_is_the_shipped_default() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/postern.toml"))
            .unwrap();
    assert_eq!(postern::config::DEFAULT_CONFIG, shipped);
    let empty = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(postern().arg("check").current_dir(empty.path()));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("built-in default config: ok: 8 route(s)"),
        "{stdout}"
    );
}

#[test]
fn check_lists_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "localhost:80"
max_body_size = "ten"

[upstreams.app]
backends = ["ftp://app"]
read_timeout = "soon"

[[routes]]
path = "/"
upstream = "app"

[[routes]]
path = "/admin/"
upstream = "nope"
access = { roles = [], match = "most" }
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = run(postern().arg("check").arg("-c").arg(&path));
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    for key in [
        "server.listen:",
        "server.max_body_size:",
        "upstreams.app.backends[0]:",
        "upstreams.app.read_timeout:",
        "routes[1].upstream:",
        "routes[1].access.roles:",
        "routes[1].access.match:",
    ] {
        assert!(stderr.contains(key), "missing {key} in:\n{stderr}");
    }

    std::fs::write(&path, "[[routes]]\npath = \"/\"\nupstraem = \"app\"\n").unwrap();
    let (code, _, stderr) = run(postern().arg("check").arg("-c").arg(&path));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("routes[0].upstraem: unknown field"),
        "{stderr}"
    );

    std::fs::write(
        &path,
        "[server]\nlisten = \"${POSTERN_TEST_UNSET_VARIABLE}\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(postern().arg("check").arg("-c").arg(&path));
    assert_eq!(code, 2);
    assert!(
        stderr
            .contains("server.listen: environment variable POSTERN_TEST_UNSET_VARIABLE is not set"),
        "{stderr}"
    );

    let (code, _, stderr) = run(postern().arg("serve").arg("-c").arg(&path));
    assert_eq!(code, 2, "serve refuses a bad config with exit 2");
    assert!(stderr.contains("server.listen"), "{stderr}");

    let (code, _, _) = run(postern()
        .arg("check")
        .arg("-c")
        .arg(dir.path().join("missing.toml")));
    assert_eq!(code, 2);
    let (code, _, _) = run(postern().arg("frobnicate"));
    assert_eq!(code, 2, "usage errors exit 2");
}

struct Process {
    child: Child,
    stderr_path: PathBuf,
}

impl Process {
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "postern did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The log once it says `text`: info lines are written in batches (within 100 ms).
    fn log_saying(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(text) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_serve(cwd: &Path, env: &[(&str, String)], extra_args: &[&str], log_name: &str) -> Process {
    let stderr_path = cwd.join(log_name);
    let mut cmd = postern();
    cmd.arg("serve")
        .args(extra_args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .envs(common::SHARED_KEY_ENV);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Process {
        child: cmd.spawn().expect("spawn postern"),
        stderr_path,
    }
}

/// The quickstart scenario: the built-in config in front of an app, then SIGTERM while a request
/// is in flight.
#[tokio::test(flavor = "multi_thread")]
async fn serves_the_built_in_config_and_drains_on_sigterm() {
    let app = Upstream::start("app").await;
    let cwd = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let ops = format!("127.0.0.1:{}", free_port());
    let database = TestDatabase::new(&cwd.path().join("data"));
    let env = [
        ("POSTERN_DATABASE_URL", database.url.clone()),
        ("POSTERN_LISTEN", listen.clone()),
        ("POSTERN_OPS_LISTEN", ops.clone()),
        (
            "POSTERN_DATA_DIR",
            cwd.path().join("data").display().to_string(),
        ),
        ("POSTERN_UPSTREAM", app.url()),
    ];
    let mut process = spawn_serve(cwd.path(), &env, &[], "postern.log");
    wait_for_port(listen.parse().unwrap());
    wait_for_port(ops.parse().unwrap());
    let client = reqwest::Client::new();

    let resp = client
        .get(format!("http://{listen}/public/hello?x=1"))
        .header("X-Postern-User", "forged")
        .header("X_Postern_Roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["uri"], "/public/hello?x=1");
    assert!(echoed_header(&echo, "x-postern-user").is_empty());
    assert!(echoed_header(&echo, "x_postern_roles").is_empty());
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["http"]);

    let resp = client
        .get(format!("http://{listen}/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the catch-all route requires a login");
    let metrics = client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"postern_requests_total{route="public",status_class="2xx"} 1"#),
        "{metrics}"
    );

    let log = process.log_saying("ops listening on");
    assert!(
        log.contains(&format!("proxy listening on http://{listen}")),
        "{log}"
    );
    let password = log
        .split("created user \"admin\" with role admin and password ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the bootstrap admin's password is logged once")
        .to_string();
    let resp = client
        .post(format!("http://{listen}/_postern/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the newcomer can log in as admin");
    let me: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(me["roles"], serde_json::json!(["admin"]));
    assert!(
        log.contains(&format!("ops listening on http://{ops}")),
        "{log}"
    );

    let slow_url = format!("http://{listen}/public/slow?ms=1500");
    let in_flight = tokio::spawn(async move { reqwest::get(slow_url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    process.signal("TERM");
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request survives SIGTERM");
    assert_eq!(resp.status(), 200);
    let code = tokio::task::spawn_blocking(move || {
        let code = process.wait_exit(Duration::from_secs(30));
        (code, process)
    })
    .await
    .unwrap();
    assert_eq!(code.0, 0, "log:\n{}", code.1.log());
}

/// Zero-downtime upgrade: a new process started with `--upgrade` takes the sockets over when the
/// old one gets SIGQUIT; requests keep succeeding throughout.
#[tokio::test(flavor = "multi_thread")]
async fn graceful_upgrade_hands_sockets_to_a_new_process() {
    let app = Upstream::start("app").await;
    let cwd = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let config = cwd.path().join("postern.toml");
    let database = TestDatabase::new(&cwd.path().join("data"));
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "{listen}"
data_dir = "{data}"
shutdown_grace_period = "1s"
shutdown_timeout = "1s"
[ops]
listen = "127.0.0.1:{ops}"
[database]
url = "{database}"
instances = "one"
[upstreams.app]
backends = ["{app}"]
[[routes]]
path = "/"
upstream = "app"
access = "public"
"#,
            data = cwd.path().join("data").display(),
            ops = free_port(),
            app = app.url(),
            database = database.url,
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let mut old = spawn_serve(cwd.path(), &[], &["-c", &config_arg], "old.log");
    wait_for_port(listen.parse().unwrap());
    let url = format!("http://{listen}/x");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);

    let mut new = spawn_serve(
        cwd.path(),
        &[],
        &["-c", &config_arg, "--upgrade"],
        "new.log",
    );
    let sock = cwd.path().join("data/postern-upgrade.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "new process never opened {}",
            sock.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    old.signal("QUIT");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(8);
    let mut served = 0;
    while Instant::now() < until {
        let resp = client
            .get(&url)
            .send()
            .await
            .expect("no connection refused during the upgrade");
        assert_eq!(resp.status(), 200);
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 20);
    let old_code = tokio::task::spawn_blocking(move || old.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(old_code, 0);
    assert!(
        new.child.try_wait().unwrap().is_none(),
        "the new process keeps serving:\n{}",
        new.log()
    );
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    new.signal("INT");
    let new_code = tokio::task::spawn_blocking(move || new.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(new_code, 0);
}

#[test]
fn systemd_unit_is_hardened_and_reloads_by_socket_handover() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/postern.service"),
    )
    .unwrap();
    let directives: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |key: &str, value: &str| {
        directives
            .iter()
            .any(|(k, v)| *k == key && v.contains(value))
    };
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("User", "postern"),
        ("ReadWritePaths", "/var/lib/postern"),
        ("Type", "forking"),
        ("PIDFile", "/var/lib/postern/postern.pid"),
        ("ExecStart", "serve --daemon"),
        ("ExecReload", "postern check"),
        ("ExecReload", "kill -QUIT $MAINPID"),
        ("ExecReload", "serve --daemon --upgrade"),
    ] {
        assert!(has(key, value), "systemd unit lacks {key}={value}");
    }
    let reloads: Vec<&str> = directives
        .iter()
        .filter(|(k, _)| *k == "ExecReload")
        .map(|(_, v)| *v)
        .collect();
    assert!(
        reloads[0].ends_with("check"),
        "the config is checked before the old process is told to hand over"
    );
}

#[test]
fn serve_exits_1_when_the_database_is_unusable() {
    let cwd = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(postern()
        .arg("serve")
        .current_dir(cwd.path())
        .env("POSTERN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("POSTERN_OPS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("POSTERN_DATA_DIR", cwd.path().join("data"))
        .env(
            "POSTERN_DATABASE_URL",
            format!("postgres://postern:s3cret@127.0.0.1:{}/none", free_port()),
        )
        .envs(common::SHARED_KEY_ENV));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("database postgres://postern:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "passwords never reach the log");
}
