//! postern as a real process of the built binary (`postern serve -c FILE`), for the tests that
//! need what only a process has: signals, several instances, being killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{free_port, http_client};

/// One `postern serve` process.
pub struct Instance {
    pub child: Child,
    pub listen: String,
    pub ops: String,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Instance {
    pub fn start(dir: &Path, name: &str, config: &str) -> Self {
        Self::start_with_env(dir, name, config, &[])
    }

    /// [`Instance::start`] with further environment variables (for `${NAME}` in the config).
    pub fn start_with_env(dir: &Path, name: &str, config: &str, env: &[(&str, &str)]) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let ops = format!("127.0.0.1:{}", free_port());
        let config = config
            .replace("{LISTEN}", &listen)
            .replace("{OPS}", &ops)
            .replace("{DATA}", &dir.join(name).display().to_string());
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut instance = Self::spawn(dir, name, path, listen, ops, &[], env);
        for addr in [&instance.listen, &instance.ops] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(addr).is_err() {
                if let Ok(Some(status)) = instance.child.try_wait() {
                    panic!("postern {name} exited ({status}):\n{}", instance.log_text());
                }
                assert!(
                    Instant::now() < deadline,
                    "postern {name} never listened on {addr}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        instance
    }

    fn spawn(
        dir: &Path,
        name: &str,
        config: PathBuf,
        listen: String,
        ops: String,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_postern"))
            .arg("serve")
            .args(args)
            .arg("-c")
            .arg(&config)
            .env_remove("POSTERN_CONFIG")
            .env("LINK_KEY", "several-instances-link-key-0123456789-abcdef")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn postern");
        Self {
            child,
            listen,
            ops,
            log,
            config,
        }
    }

    /// A new process taking over this one's listeners (`serve --upgrade`, then SIGQUIT here),
    /// as the systemd unit's reload does. Returns once the new process serves the ops port.
    pub async fn upgrade(&self, dir: &Path, name: &str) -> Self {
        let next = Self::spawn(
            dir,
            name,
            self.config.clone(),
            self.listen.clone(),
            self.ops.clone(),
            &["--upgrade"],
            &[],
        );
        // The new process waits on the upgrade socket for the listeners.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.signal(libc::SIGQUIT);
        next
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child process this test started and has not reaped.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(sent, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits for the process to exit; None when it is still running after `limit`.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Open file descriptors of the process (sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.ops))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn metric(&self, line_start: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until this instance hears revocations (its listener is connected).
    pub async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.metric("postern_revocation_listener_up ").await < 1.0 {
            assert!(
                Instant::now() < deadline,
                "the revocation listener never connected:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = http_client()
            .post(self.url("/_postern/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login as {username}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        cookie.split(';').next().unwrap().to_string()
    }

    pub async fn status(&self, path: &str, cookie: &str) -> u16 {
        http_client()
            .get(self.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
