//! Several postern processes on one PostgreSQL database (real processes of the built binary, a
//! fresh schema each test): sessions and revocations across instances (with the measured delay
//! printed), the revocation listener losing its connection, long responses cut when their
//! session ends or expires, login limits shared, and transformed images rendered once.
//! PostgreSQL must be reachable (`POSTERN_TEST_DATABASE_URL`, or 127.0.0.1:5432 database
//! `test`): outside CI the tests say they were skipped without it, in CI they fail.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::Instance;
use common::{TestDatabase, Upstream, http_client};
use futures_util::StreamExt;
use serde_json::json;

const ADMIN_PASSWORD: &str = "several instances admin 1";
const USER_PASSWORD: &str = "several instances user 1";

struct Cluster {
    a: Instance,
    b: Instance,
    database: TestDatabase,
    _app: Upstream,
    _dir: tempfile::TempDir,
    fs_root: PathBuf,
}

fn config(database: &str, app: &str, fs_root: &Path, sessions: &str, tokens: &str) -> String {
    format!(
        r#"
[server]
listen = "{{LISTEN}}"
data_dir = "{{DATA}}"
threads = 2
shutdown_grace_period = "0s"
shutdown_timeout = "1s"

[ops]
listen = "{{OPS}}"

[log]
access_log = false

[database]
url = "{database}"

[tokens]
secret = "several-instances-jwt-secret-0123456789-abcdef"
{tokens}

[links]
keys = ["${{LINK_KEY}}"]

[sessions]
cache_ttl = "30s"
recheck_interval = "1s"
{sessions}

[lockout]
login_rate_per_minute = 6
max_failures = 100
ip_max_failures = 100

[bootstrap]
admin_password = "{ADMIN_PASSWORD}"

[images]
shared_store = "local"
shared_prefix = "variants/"

[stores.local]
type = "fs"
root = "{root}"

[upstreams.app]
backends = ["{app}"]

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "img"
path = "/img/"
kind = "assets"
store = "local"
access = "public"
images = "on"

[[routes]]
name = "files"
path = "/files/"
kind = "assets"
store = "local"

[[routes]]
name = "staff"
path = "/staff/"
upstream = "app"
access = {{ roles = ["staff"] }}

[[routes]]
name = "app"
path = "/"
upstream = "app"
"#,
        root = fs_root.display()
    )
}

/// Two instances, A and B, on one fresh schema, with user `pat` (role staff); `sessions` and
/// `tokens` are more keys for those sections.
async fn cluster_with(sessions: &str, tokens: &str) -> Option<Cluster> {
    let database = TestDatabase::postgres()?;
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let fs_root = dir.path().join("objects");
    std::fs::create_dir_all(&fs_root).unwrap();
    let text = config(&database.url, &app.url(), &fs_root, sessions, tokens);
    let a = Instance::start(dir.path(), "a", &text);
    let b = Instance::start(dir.path(), "b", &text);
    a.wait_listening().await;
    b.wait_listening().await;
    let store = postern::store::Store::open(&database.url, 1).await.unwrap();
    let hash = postern::auth::Passwords::new(postern::auth::HashParams::default(), 1)
        .unwrap()
        .hash(USER_PASSWORD.to_string())
        .await
        .unwrap();
    store
        .create_user(
            &postern::store::NewUser {
                username: "pat".into(),
                email: "pat@example.com".into(),
                password_hash: Some(hash),
                roles: vec!["staff".into()],
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
    store.close().await;
    Some(Cluster {
        a,
        b,
        database,
        _app: app,
        _dir: dir,
        fs_root,
    })
}

async fn cluster(sessions: &str) -> Option<Cluster> {
    cluster_with(sessions, "").await
}

/// How long until `path` on `instance` refuses `cookie` (401 or 403; polling every 10 ms, at
/// most 5 s).
async fn time_until_refused(instance: &Instance, path: &str, cookie: &str) -> Duration {
    let started = Instant::now();
    while !matches!(instance.status(path, cookie).await, 401 | 403) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} was never refused"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

impl Cluster {
    /// An admin API call on A with the admin's session `cookie`.
    async fn admin(
        &self,
        cookie: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) {
        let mut request = http_client()
            .request(method, self.a.url(&format!("/_postern/admin{path}")))
            .header("cookie", cookie.to_string());
        if let Some(body) = body {
            request = request.json(&body);
        } else {
            request = request.header("content-type", "application/json");
        }
        let r = request.send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    async fn pat_id(&self) -> String {
        let store = postern::store::Store::open(&self.database.url, 1)
            .await
            .unwrap();
        let id = store.user_by_login("pat").await.unwrap().unwrap().id;
        store.close().await;
        id
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_on_one_instance_reach_the_other_within_a_second() {
    let Some(c) = cluster("").await else { return };
    let pat = c.pat_id().await;
    let admin = c.a.login("admin", ADMIN_PASSWORD).await;
    let mut delays = Vec::new();

    // A session made on A works on B (and is now in B's cache for 30 s).
    let cookie = c.a.login("pat", USER_PASSWORD).await;
    assert_eq!(c.b.status("/_postern/me", &cookie).await, 200);
    // Logout on A.
    let r = http_client()
        .post(c.a.url("/_postern/logout"))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    delays.push((
        "logout",
        time_until_refused(&c.b, "/_postern/me", &cookie).await,
    ));

    // Revoke all, through A's admin API.
    let cookie = c.a.login("pat", USER_PASSWORD).await;
    assert_eq!(c.b.status("/_postern/me", &cookie).await, 200);
    c.admin(
        &admin,
        reqwest::Method::DELETE,
        &format!("/users/{pat}/sessions"),
        None,
    )
    .await;
    delays.push((
        "revoke all",
        time_until_refused(&c.b, "/_postern/me", &cookie).await,
    ));

    // A role taken away on A: B refuses the staff-only route.
    let cookie = c.a.login("pat", USER_PASSWORD).await;
    assert_eq!(c.b.status("/staff/report", &cookie).await, 200);
    c.admin(
        &admin,
        reqwest::Method::DELETE,
        &format!("/users/{pat}/roles/staff"),
        None,
    )
    .await;
    delays.push((
        "role change",
        time_until_refused(&c.b, "/staff/report", &cookie).await,
    ));

    // Disabled on A.
    c.admin(
        &admin,
        reqwest::Method::POST,
        &format!("/users/{pat}/roles"),
        Some(json!({"role": "staff"})),
    )
    .await;
    let cookie = c.a.login("pat", USER_PASSWORD).await;
    assert_eq!(c.b.status("/staff/report", &cookie).await, 200);
    c.admin(
        &admin,
        reqwest::Method::PATCH,
        &format!("/users/{pat}"),
        Some(json!({"status": "disabled"})),
    )
    .await;
    delays.push((
        "disable",
        time_until_refused(&c.b, "/_postern/me", &cookie).await,
    ));

    for (what, delay) in &delays {
        eprintln!(
            "revocation delay on the other instance, {what}: {} ms",
            delay.as_millis()
        );
        assert!(*delay < Duration::from_secs(1), "{what} took {delay:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_listener_flushes_the_cache_and_reconnects() {
    let Some(c) = cluster("").await else { return };
    let cookie = c.a.login("pat", USER_PASSWORD).await;
    assert_eq!(c.b.status("/_postern/me", &cookie).await, 200);

    // Cut B's listener connection from the database side, then end the session at once:
    // whether B hears it or not, it must not answer from what it cached.
    let admin = sqlx::PgPool::connect(&c.database.url).await.unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name LIKE $1) t",
    )
    .bind(format!("postern-revocations {} %", c.b.listen))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(ended >= 1, "B's listener connections");
    sqlx::query("DELETE FROM sessions")
        .execute(&admin)
        .await
        .unwrap();
    assert!(time_until_refused(&c.b, "/_postern/me", &cookie).await < Duration::from_secs(1));

    // B says so, reconnects, and hears revocations again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .b
        .metric("postern_revocation_listener_reconnects_total ")
        .await
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "B never noticed the lost listener"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.b.wait_listening().await;
    let ready: serde_json::Value = reqwest::get(format!("http://{}/readyz", c.b.ops))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["notes"], json!([]), "{ready}");
    let cookie = c.a.login("pat", USER_PASSWORD).await;
    assert_eq!(c.b.status("/_postern/me", &cookie).await, 200);
    let r = http_client()
        .post(c.a.url("/_postern/logout"))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let delay = time_until_refused(&c.b, "/_postern/me", &cookie).await;
    eprintln!(
        "revocation delay after the listener came back: {} ms",
        delay.as_millis()
    );
    assert!(delay < Duration::from_secs(1));
    admin.close().await;
}

/// Reads `response`'s body until it ends; how long that took.
async fn read_until_cut(response: reqwest::Response, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut body = response.bytes_stream();
    let ended = tokio::time::timeout(limit, async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the response was still running after {limit:?}"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn long_responses_on_one_instance_are_cut_after_a_revoke_on_the_other() {
    let Some(c) = cluster("").await else { return };
    // A large object, read slowly; an endless event stream; a WebSocket — all on B.
    std::fs::write(c.fs_root.join("big.bin"), vec![7u8; 64 * 1024 * 1024]).unwrap();
    let cookie = c.a.login("pat", USER_PASSWORD).await;
    let client = http_client();
    let download = client
        .get(c.b.url("/files/big.bin"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let events = reqwest::Client::new()
        .get(c.b.url("/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/ws",
            c.b.listen
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    use futures_util::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .unwrap();
    assert!(socket.next().await.unwrap().is_ok(), "the WebSocket echoes");

    // The download has read a little; everything is open. Revoke on A.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = c.a.login("admin", ADMIN_PASSWORD).await;
    let revoked = Instant::now();
    c.admin(
        &admin,
        reqwest::Method::DELETE,
        &format!("/users/{}/sessions", c.pat_id().await),
        None,
    )
    .await;
    let limit = Duration::from_secs(4);
    let (download_cut, events_cut) = tokio::join!(
        read_until_cut_slowly(download, limit),
        read_until_cut(events, limit)
    );
    let socket_cut = tokio::time::timeout(limit, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(socket_cut.is_ok(), "the WebSocket is still open");
    let socket_cut = revoked.elapsed();
    eprintln!(
        "cut after a revoke on the other instance: download {} ms, event stream {} ms, WebSocket {} ms (recheck_interval 1s)",
        download_cut.as_millis(),
        events_cut.as_millis(),
        socket_cut.as_millis()
    );
    assert!(
        c.b.metric("postern_streams_cut_total{reason=\"revoked\"}")
            .await
            >= 3.0
    );
}

/// Reads a large body 64 KiB at a time, slowly, until it ends; how long that took.
async fn read_until_cut_slowly(response: reqwest::Response, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut body = response.bytes_stream();
    let mut read = 0usize;
    let ended = tokio::time::timeout(limit, async {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => read += bytes.len(),
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the download was still running after {limit:?}"
    );
    assert!(
        read < 64 * 1024 * 1024,
        "the download was cut, not finished"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_response_is_cut_when_its_session_expires() {
    let Some(c) = cluster("idle_timeout = \"2s\"").await else {
        return;
    };
    let started = Instant::now();
    let cookie = c.a.login("pat", USER_PASSWORD).await;
    let events = reqwest::Client::new()
        .get(c.b.url("/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    read_until_cut(events, Duration::from_secs(6)).await;
    let lasted = started.elapsed();
    eprintln!(
        "an event stream under a session idle for 2s was cut after {} ms",
        lasted.as_millis()
    );
    // Expiry is kept in whole seconds: the session ends between 1 and 2 s after the login.
    assert!(lasted >= Duration::from_secs(1), "not before the expiry");
    assert!(
        c.b.metric("postern_streams_cut_total{reason=\"revoked\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_do_not_allow_twice_the_login_attempts() {
    let Some(c) = cluster("").await else { return };
    let attempt = |instance: &Instance| {
        let url = instance.url("/_postern/login");
        async move {
            http_client()
                .post(url)
                .json(&json!({"username": "pat", "password": "wrong password"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // login_rate_per_minute = 6 for the address, counted in the database.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let instance = if i % 2 == 0 { &c.a } else { &c.b };
        statuses.push(attempt(instance).await);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 401, 429, 429],
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transformed_image_is_rendered_once_for_two_instances() {
    let Some(c) = cluster("").await else { return };
    let image = image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, 50]));
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    std::fs::write(c.fs_root.join("photo.png"), png.into_inner()).unwrap();

    let get = |instance: &Instance| {
        let url = instance.url("/img/photo.png?w=120&fmt=webp");
        async move {
            let r = http_client().get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let etag = r.headers()["etag"].to_str().unwrap().to_string();
            (etag, r.bytes().await.unwrap())
        }
    };
    let (etag_a, body_a) = get(&c.a).await;
    // A writes the variant to the shared store once it has answered.
    let variants = c.fs_root.join("variants");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&variants).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "A never shared the variant");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (etag_b, body_b) = get(&c.b).await;
    assert_eq!(body_a, body_b);
    assert_eq!(etag_a, etag_b, "one variant, one ETag everywhere");
    let rendered = |metrics: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("postern_image_transform_seconds_count{phase=\"decode\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(rendered(&c.a.metrics().await), 1.0, "A rendered it");
    assert_eq!(rendered(&c.b.metrics().await), 0.0, "B did not");
    assert_eq!(
        c.b.metric("postern_image_cache_total{result=\"shared\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_response_under_a_bearer_token_is_cut_at_its_expiry() {
    let Some(c) = cluster_with("", "ttl = \"2s\"").await else {
        return;
    };
    let r = http_client()
        .post(c.a.url("/_postern/token"))
        .json(&json!({"username": "pat", "password": USER_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let issued = Instant::now();
    let token: serde_json::Value = r.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let events = reqwest::Client::new()
        .get(c.b.url("/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    read_until_cut(events, Duration::from_secs(6)).await;
    let lasted = issued.elapsed();
    eprintln!(
        "an event stream under a 2s bearer token was cut after {} ms",
        lasted.as_millis()
    );
    assert!(lasted >= Duration::from_secs(1));
    assert_eq!(
        c.b.metric("postern_streams_cut_total{reason=\"expired\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_starting_together_create_one_admin() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let first = postern::store::Store::open(&database.url, 2).await.unwrap();
    let second = postern::store::Store::open(&database.url, 2).await.unwrap();
    let settings = postern::config::BootstrapSettings {
        admin: true,
        admin_password: Some(ADMIN_PASSWORD.to_string()),
    };
    let passwords = postern::auth::Passwords::new(postern::auth::HashParams::default(), 2).unwrap();
    let (a, b) = tokio::join!(
        postern::auth::bootstrap_admin(&first, &settings, &passwords, 0),
        postern::auth::bootstrap_admin(&second, &settings, &passwords, 0),
    );
    let outcomes = [a.expect("first start"), b.expect("second start")];
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, postern::auth::Bootstrap::Created { .. }))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert_eq!(first.count_role_holders("admin").await.unwrap(), 1);
    first.close().await;
    second.close().await;
}
