//! Private assets end to end: a real S3 server that verifies SigV4 (s3s-fs) and the filesystem
//! store, behind logins, per-user prefixes, redirects and signed links.

mod common;

use std::sync::Arc;

use common::{Postern, S3Server, base_config, http_client as client};
use postern::auth::{Clock, ManualClock};
use serde_json::Value;

const LINK_KEY: &str = "link-key-0123456789-0123456789-0123456789";
const OLD_LINK_KEY: &str = "old-link-key-0123456789-0123456789-012345";
const SPECIAL_KEYS: &[&str] = &[
    "with space.txt",
    "plus+sign.txt",
    "percent%25.txt",
    "ünïcødé-✓.txt",
    "paren(1)!*'.txt",
    "tilde~eq=amp&.txt",
    "deep/er/path.txt",
];

fn config(store_extra: &str, links: &str) -> String {
    format!(
        r#"{}
[sessions]
cache_ttl = "0"

[stores.media]
type = "s3"
bucket = "media"
region = "us-east-1"
endpoint = "${{S3}}"
addressing = "path"
access_key_id = "${{S3_KEY}}"
secret_access_key = "${{S3_SECRET}}"
{store_extra}

[stores.local]
type = "fs"
root = "${{FS_ROOT}}"

[links]
keys = [{links}]

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "s3"
path = "/s3/"
kind = "assets"
store = "media"
key = "shared/{{path}}"

[[routes]]
name = "s3-mine"
path = "/s3-mine/"
kind = "assets"
store = "media"
key = "users/{{user_id}}/{{path}}"

[[routes]]
name = "s3-go"
path = "/s3-go/"
kind = "assets"
store = "media"
key = "shared/{{path}}"
mode = "redirect"
link_ttl = "10m"

[[routes]]
name = "fs"
path = "/fs/"
kind = "assets"
store = "local"
key = "shared/{{path}}"
referer = {{ allow = ["https://app.example.com"], allow_missing = true }}

[[routes]]
name = "fs-mine"
path = "/fs-mine/"
kind = "assets"
store = "local"
key = "users/{{user_id}}/{{path}}"

[[routes]]
name = "fs-go"
path = "/fs-go/"
kind = "assets"
store = "local"
key = "shared/{{path}}"
mode = "redirect"

[[routes]]
name = "fs-public"
path = "/fs-public/"
kind = "assets"
store = "local"
key = "shared/{{path}}"
access = "public"
cache_control = "public, max-age=60"
"#,
        base_config("")
    )
}

struct Setup {
    s3: S3Server,
    fs_root: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let s3 = S3Server::start(&["media"]).await;
        let fs_root = tempfile::tempdir().unwrap();
        Self { s3, fs_root }
    }

    fn vars(&self, secret: Option<&str>) -> Vec<(&'static str, String)> {
        vec![
            ("S3", self.s3.url()),
            ("S3_KEY", self.s3.access_key.clone()),
            (
                "S3_SECRET",
                secret.unwrap_or(&self.s3.secret_key).to_string(),
            ),
            ("FS_ROOT", self.fs_root.path().display().to_string()),
            ("LINK_KEY", LINK_KEY.to_string()),
            ("OLD_LINK_KEY", OLD_LINK_KEY.to_string()),
        ]
    }

    fn start(&self) -> Postern {
        Postern::start(&config("", "\"${LINK_KEY}\""), &self.vars(None))
    }

    fn put_both(&self, key: &str, body: &[u8]) {
        self.s3.put("media", key, body);
        let path = self.fs_root.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
}

async fn get(p: &Postern, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(p.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn error_code(r: reqwest::Response) -> String {
    let body: Value = r.json().await.expect("a JSON error");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn s3_objects_stream_whole_in_ranges_and_by_head_without_s3_headers() {
    let setup = Setup::new().await;
    setup.put_both("shared/hello.txt", b"hello, private world");
    let p = setup.start();
    p.add_user("ann", "correct horse", &[]).await;
    let cookie = p.login_cookie("ann", "correct horse").await;

    let r = get(&p, "/s3/hello.txt", &cookie).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "private");
    assert_eq!(h["content-length"], "20");
    assert!(h.contains_key("etag"));
    assert!(h.contains_key("last-modified"));
    assert!(h.keys().all(|k| !k.as_str().starts_with("x-amz-")), "{h:?}");
    assert!(
        h.get("server")
            .is_none_or(|s| !s.to_str().unwrap().contains("s3s"))
    );
    assert_eq!(r.text().await.unwrap(), "hello, private world");

    let r = client()
        .get(p.url("/s3/hello.txt"))
        .header("cookie", &cookie)
        .header("range", "bytes=7-13")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 7-13/20");
    assert_eq!(r.text().await.unwrap(), "private");

    let r = client()
        .head(p.url("/s3/hello.txt"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "20");

    let r = get(&p, "/s3/missing.txt", &cookie).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("<?xml") && !text.contains("NoSuchKey"),
        "{text}"
    );
    assert!(text.contains("\"not_found\""), "{text}");

    let r = client()
        .delete(p.url("/s3/hello.txt"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");

    let metrics = p.metrics().await;
    assert!(
        metrics.contains(
            r#"postern_store_requests_total{op="get",status_class="2xx",store="media"} 2"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"postern_store_bytes_total{store="media"} 27"#));
    assert!(
        metrics.contains(
            r#"postern_store_requests_total{op="get",status_class="4xx",store="media"} 1"#
        )
    );
}

#[tokio::test]
async fn keys_with_special_characters_reach_both_stores() {
    let setup = Setup::new().await;
    for key in SPECIAL_KEYS {
        setup.put_both(&format!("shared/{key}"), key.as_bytes());
    }
    let p = setup.start();
    p.add_user("ann", "correct horse", &[]).await;
    let cookie = p.login_cookie("ann", "correct horse").await;
    for key in SPECIAL_KEYS {
        let encoded = postern::objects::encode_key(key);
        for route in ["s3", "fs"] {
            let r = get(&p, &format!("/{route}/{encoded}"), &cookie).await;
            assert_eq!(r.status(), 200, "{route} {key}");
            assert_eq!(r.text().await.unwrap(), *key, "{route} {key}");
        }
    }
    // '+' in a path is a plus, and unreserved characters may come unencoded.
    let r = get(&p, "/s3/plus+sign.txt", &cookie).await;
    assert_eq!(r.text().await.unwrap(), "plus+sign.txt");
    let r = get(&p, "/fs/paren(1)!*'.txt", &cookie).await;
    assert_eq!(r.text().await.unwrap(), "paren(1)!*'.txt");
}

#[tokio::test]
async fn anonymous_clients_go_to_login_and_users_only_reach_their_own_prefix() {
    let setup = Setup::new().await;
    let p = setup.start();
    let ann = p.add_user("ann", "correct horse", &[]).await;
    p.add_user("bob", "battery staple", &[]).await;
    setup.put_both(&format!("users/{}/diary.txt", ann.id), b"ann's diary");

    let r = client()
        .get(p.url("/s3-mine/diary.txt"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/_postern/login?return_to=")
    );
    let r = client()
        .get(p.url("/fs-mine/diary.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let ann_cookie = p.login_cookie("ann", "correct horse").await;
    let bob_cookie = p.login_cookie("bob", "battery staple").await;
    for route in ["s3-mine", "fs-mine"] {
        let r = get(&p, &format!("/{route}/diary.txt"), &ann_cookie).await;
        assert_eq!(r.status(), 200, "{route}");
        assert_eq!(r.text().await.unwrap(), "ann's diary");

        let r = get(&p, &format!("/{route}/diary.txt"), &bob_cookie).await;
        assert_eq!(r.status(), 404, "{route}: bob has no diary");
        let tricks = [
            format!("/{route}/..%2F{}%2Fdiary.txt", ann.id),
            format!("/{route}/%2E%2E/{}/diary.txt", ann.id),
            format!("/{route}/x/%252e%252e/{}/diary.txt", ann.id),
            format!("/{route}/a%5C..%5C{}%5Cdiary.txt", ann.id),
            format!("/{route}/diary.txt%00"),
        ];
        for trick in &tricks {
            let (status, body) = common::raw_request(
                p.addr,
                &format!(
                    "GET {trick} HTTP/1.1\r\nHost: x\r\nCookie: {bob_cookie}\r\nConnection: close\r\n\r\n"
                ),
            );
            assert!(status == 400 || status == 404, "{trick}: {status} {body}");
            assert!(!body.contains("ann's diary"), "{trick}");
        }
        let (status, _) = common::raw_request(
            p.addr,
            &format!(
                "GET /{route}/../{}/diary.txt HTTP/1.1\r\nHost: x\r\nCookie: {bob_cookie}\r\nConnection: close\r\n\r\n",
                ann.id
            ),
        );
        assert_eq!(status, 400, "{route}: plain ..");
    }
}

#[tokio::test]
async fn store_failures_become_postern_errors() {
    let setup = Setup::new().await;
    setup.put_both("shared/hello.txt", b"hello");
    let wrong = Postern::start(
        &config("", "\"${LINK_KEY}\""),
        &setup.vars(Some("not-the-secret")),
    );
    wrong.add_user("ann", "correct horse", &[]).await;
    let cookie = wrong.login_cookie("ann", "correct horse").await;
    let r = get(&wrong, "/s3/hello.txt", &cookie).await;
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("\"forbidden\"") && !text.contains("Signature"),
        "{text}"
    );

    let hidden = Postern::start(
        &config("access_denied = \"not_found\"", "\"${LINK_KEY}\""),
        &setup.vars(Some("not-the-secret")),
    );
    hidden.add_user("ann", "correct horse", &[]).await;
    let cookie = hidden.login_cookie("ann", "correct horse").await;
    let r = get(&hidden, "/s3/hello.txt", &cookie).await;
    assert_eq!(r.status(), 404);

    let mut vars = setup.vars(None);
    vars[0].1 = common::dead_address();
    let down = Postern::start(&config("", "\"${LINK_KEY}\""), &vars);
    down.add_user("ann", "correct horse", &[]).await;
    let cookie = down.login_cookie("ann", "correct horse").await;
    let r = get(&down, "/s3/hello.txt", &cookie).await;
    assert_eq!(r.status(), 502);
    assert_eq!(error_code(r).await, "store_unavailable");
}

#[tokio::test]
async fn redirects_go_to_presigned_urls_that_work_and_then_expire() {
    let setup = Setup::new().await;
    setup.put_both("shared/hello.txt", b"hello");
    let clock = ManualClock::new(postern::auth::SystemClock.now());
    let p = Postern::start_with_clock(
        &config("", "\"${LINK_KEY}\""),
        &setup.vars(None),
        Arc::new(clock.clone()),
    );
    p.add_user("ann", "correct horse", &[]).await;
    let cookie = p.login_cookie("ann", "correct horse").await;

    let r = get(&p, "/s3-go/hello.txt", &cookie).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&setup.s3.url()), "{location}");
    assert!(location.contains("X-Amz-Expires=600"), "{location}");
    let direct = client().get(&location).send().await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.text().await.unwrap(), "hello");

    let r = get(&p, "/s3-go/hello.txt?expiresIn=30", &cookie).await;
    let short = r.headers()["location"].to_str().unwrap().to_string();
    assert!(short.contains("X-Amz-Expires=30"), "{short}");
    let r = get(&p, "/s3-go/hello.txt?expiresIn=999999", &cookie).await;
    let capped = r.headers()["location"].to_str().unwrap().to_string();
    assert!(capped.contains("X-Amz-Expires=600"), "{capped}");
    let r = get(&p, "/s3-go/hello.txt?expiresIn=soon", &cookie).await;
    assert_eq!(r.status(), 422);

    // A URL signed two hours ago for ten minutes no longer opens the object.
    clock.advance(-7200);
    let r = get(&p, "/s3-go/hello.txt", &cookie).await;
    let old = r.headers()["location"].to_str().unwrap().to_string();
    let direct = client().get(&old).send().await.unwrap();
    assert_eq!(direct.status(), 403);

    let metrics = p.metrics().await;
    assert!(
        metrics.contains(r#"postern_presigned_total{store="media"} 4"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_url_endpoint_renders_links_for_logged_in_users_only() {
    let setup = Setup::new().await;
    let p = setup.start();
    let ann = p.add_user("ann", "correct horse", &[]).await;
    setup.put_both(&format!("users/{}/photo one.jpg", ann.id), b"JPEG");
    let cookie = p.login_cookie("ann", "correct horse").await;

    for (route, absolute) in [("s3-mine", true), ("fs-mine", false)] {
        let r = get(
            &p,
            &format!("/_postern/assets/url?path=/{route}/photo%20one.jpg&expiresIn=60"),
            &cookie,
        )
        .await;
        assert_eq!(r.status(), 200, "{route}");
        let body: Value = r.json().await.unwrap();
        let url = body["url"].as_str().unwrap().to_string();
        assert_eq!(body["expires_in"], 60);
        assert!(body["expires_at"].as_i64().unwrap() > postern::auth::SystemClock.now());
        let full = if absolute { url.clone() } else { p.url(&url) };
        assert_eq!(url.starts_with("http"), absolute, "{url}");
        let r = client().get(&full).send().await.unwrap();
        assert_eq!(r.status(), 200, "{full}");
        assert_eq!(r.text().await.unwrap(), "JPEG");
    }
    let r = client()
        .get(p.url("/_postern/assets/url?path=/s3-mine/photo%20one.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = get(&p, "/_postern/assets/url?path=/nowhere", &cookie).await;
    assert_eq!(r.status(), 404);
    let r = get(&p, "/_postern/assets/url", &cookie).await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn filesystem_store_serves_ranges_conditionals_and_types() {
    let setup = Setup::new().await;
    setup.put_both("shared/data.bin", b"0123456789");
    setup.put_both("shared/page.html", b"<p>hi</p>");
    setup.put_both("shared/noext", b"\x89PNG\r\n\x1a\nrest");
    std::os::unix::fs::symlink("/etc/passwd", setup.fs_root.path().join("shared/passwd")).unwrap();
    let p = setup.start();
    p.add_user("ann", "correct horse", &[]).await;
    let cookie = p.login_cookie("ann", "correct horse").await;
    let ranged = |range: &'static str| {
        client()
            .get(p.url("/fs/data.bin"))
            .header("cookie", &cookie)
            .header("range", range)
    };

    let r = get(&p, "/fs/data.bin", &cookie).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0123456789");

    let r = ranged("bytes=2-4").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(r.text().await.unwrap(), "234");
    let r = ranged("bytes=-3").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "789");

    let r = ranged("bytes=0-1,8-9").send().await.unwrap();
    assert_eq!(r.status(), 206);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap()
        .to_string();
    let length: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(body.len(), length);
    assert!(
        body.contains("Content-Range: bytes 0-1/10\r\n\r\n01"),
        "{body}"
    );
    assert!(
        body.contains("Content-Range: bytes 8-9/10\r\n\r\n89"),
        "{body}"
    );
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));

    let r = ranged("bytes=20-30").send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10");

    let r = client()
        .get(p.url("/fs/data.bin"))
        .header("cookie", &cookie)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    let r = client()
        .get(p.url("/fs/data.bin"))
        .header("cookie", &cookie)
        .header("if-modified-since", &modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = client()
        .get(p.url("/fs/data.bin"))
        .header("cookie", &cookie)
        .header("if-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);

    let r = client()
        .head(p.url("/fs/data.bin"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "10");

    let r = get(&p, "/fs/page.html", &cookie).await;
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let r = get(&p, "/fs/noext", &cookie).await;
    assert_eq!(r.headers()["content-type"], "image/png");
    let r = get(&p, "/fs/passwd", &cookie).await;
    assert_eq!(r.status(), 404, "a symlink out of the root");
    let r = get(&p, "/fs/missing", &cookie).await;
    assert_eq!(r.status(), 404);

    let r = client()
        .get(p.url("/fs-public/data.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");

    let r = client()
        .get(p.url("/fs/data.bin"))
        .header("cookie", &cookie)
        .header("referer", "https://evil.example.net/page")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "referer_denied");
}

#[tokio::test]
async fn signed_links_work_expire_resist_tampering_and_survive_key_rotation() {
    let setup = Setup::new().await;
    setup.put_both("shared/hello.txt", b"hello");
    let clock = ManualClock::new(postern::auth::SystemClock.now());
    let old = Postern::start_with_clock(
        &config("", "\"${OLD_LINK_KEY}\""),
        &setup.vars(None),
        Arc::new(clock.clone()),
    );
    old.add_user("ann", "correct horse", &[]).await;
    let cookie = old.login_cookie("ann", "correct horse").await;

    let r = get(&old, "/fs-go/hello.txt", &cookie).await;
    assert_eq!(r.status(), 302);
    let link = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        link.starts_with("/_postern/signed/local/shared/hello.txt?expires="),
        "{link}"
    );

    let r = client().get(old.url(&link)).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "no login needed: the signature is the grant"
    );
    assert_eq!(r.text().await.unwrap(), "hello");

    let tampered = link.replace("hello.txt", "hellp.txt");
    let r = client().get(old.url(&tampered)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "bad_signature");
    let later = link.replacen("expires=", "expires=9", 1);
    let r = client().get(old.url(&later)).send().await.unwrap();
    assert_eq!(error_code(r).await, "bad_signature");
    let r = client()
        .get(old.url("/_postern/signed/local/shared/hello.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "bad_signature");

    let rotated = Postern::start(
        &config("", "\"${LINK_KEY}\", \"${OLD_LINK_KEY}\""),
        &setup.vars(None),
    );
    let r = client().get(rotated.url(&link)).send().await.unwrap();
    assert_eq!(r.status(), 200, "the old key still verifies");
    let only_new = Postern::start(&config("", "\"${LINK_KEY}\""), &setup.vars(None));
    let r = client().get(only_new.url(&link)).send().await.unwrap();
    assert_eq!(r.status(), 403, "a retired key no longer verifies");

    clock.advance(3601);
    let r = client().get(old.url(&link)).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert_eq!(error_code(r).await, "link_expired");
}

#[tokio::test]
async fn s3_over_tls_sends_the_endpoint_name_as_sni() {
    let (s3, sni) = S3Server::start_tls(&["media"]).await;
    s3.put("media", "shared/hello.txt", b"hello over tls");
    let fs_root = tempfile::tempdir().unwrap();
    let vars = [
        ("S3", format!("https://localhost:{}", s3.addr.port())),
        ("S3_KEY", s3.access_key.clone()),
        ("S3_SECRET", s3.secret_key.clone()),
        ("FS_ROOT", fs_root.path().display().to_string()),
        ("LINK_KEY", LINK_KEY.to_string()),
    ];
    // The certificate is self-signed: verification off here, on by default.
    let p = Postern::start(&config("tls_verify = false", "\"${LINK_KEY}\""), &vars);
    p.add_user("ann", "correct horse", &[]).await;
    let cookie = p.login_cookie("ann", "correct horse").await;
    let r = get(&p, "/s3/hello.txt", &cookie).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello over tls");
    assert_eq!(
        sni.lock().unwrap().first().map(String::as_str),
        Some("localhost")
    );

    let verifying = Postern::start(&config("", "\"${LINK_KEY}\""), &vars);
    verifying.add_user("ann", "correct horse", &[]).await;
    let cookie = verifying.login_cookie("ann", "correct horse").await;
    let r = get(&verifying, "/s3/hello.txt", &cookie).await;
    assert_eq!(r.status(), 502, "an unverifiable certificate is refused");
    assert_eq!(error_code(r).await, "store_unavailable");
}

/// Streams a 1 GiB object from S3 and from the filesystem store and checks that resident memory
/// (of this process, which runs postern, the S3 server and the client) grows by less than
/// 64 MiB. Ignored by default for its time; CI runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn a_gibibyte_streams_in_flat_memory() {
    use futures_util::StreamExt;
    const SIZE: u64 = 1 << 30;
    let setup = Setup::new().await;
    for path in [
        setup.s3.root.path().join("media/shared/big.bin"),
        setup.fs_root.path().join("shared/big.bin"),
    ] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path).unwrap().set_len(SIZE).unwrap();
    }
    let p = setup.start();
    p.add_user("ann", "correct horse", &[]).await;
    let cookie = p.login_cookie("ann", "correct horse").await;
    for route in ["s3", "fs"] {
        let before = common::rss_bytes();
        let r = reqwest::Client::new()
            .get(p.url(&format!("/{route}/big.bin")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut stream = r.bytes_stream();
        let mut total = 0u64;
        let mut peak = before;
        while let Some(chunk) = stream.next().await {
            total += chunk.unwrap().len() as u64;
            if total % (64 << 20) < 65536 {
                peak = peak.max(common::rss_bytes());
            }
        }
        assert_eq!(total, SIZE, "{route}");
        let growth = peak.saturating_sub(before);
        eprintln!(
            "{route}: RSS grew {} MiB while streaming 1 GiB",
            growth >> 20
        );
        assert!(growth < 64 << 20, "{route}: RSS grew {growth} bytes");
    }
}
