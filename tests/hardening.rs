//! The trust boundary, attacked: each test tries a way around a guarantee of the README's security
//! model through the real gateway, with a real upstream app and real object stores.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{Postern, S3Server, Upstream, base_config, echoed_header, http_client as client};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use postern::auth::Clock;
use serde_json::{Value, json};

const SECRET: &str = "access-token-secret-0123456789-abcdef";
const ASSERTION_SECRET: &str = "assertion-secret-for-the-app-0123456789";
const COOKIE: &str = "__Host-postern";
const PROXY: &str = "127.0.0.2";

fn config(extra: &str) -> String {
    format!(
        r#"{}
[sessions]
cache_ttl = "0"

[tokens]
algorithm = "HS256"
secret = "{SECRET}"
assertion_header = "X-Postern-Assertion"
assertion_secret = "{ASSERTION_SECRET}"
ttl = "10m"

[identity_headers]
user = "Remote_User"

[lockout]
ip_max_failures = 3
login_rate_per_minute = 1000

[upstreams.app]
backends = ["${{APP}}"]

[stores.files]
type = "fs"
root = "${{FS_ROOT}}"

[stores.media]
type = "s3"
bucket = "media"
region = "us-east-1"
endpoint = "${{S3}}"
access_key_id = "${{S3_KEY}}"
secret_access_key = "${{S3_SECRET}}"

[images]
workers = 1

{extra}

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "admin"
path = "/admin/"
upstream = "app"
access = {{ roles = ["admin"] }}
case_insensitive = true

[[routes]]
name = "docs"
path = "/docs/"
methods = ["GET"]
upstream = "app"
access = "public"

[[routes]]
name = "legacy"
path = "/legacy/"
upstream = "app"
access = "public"
strict_paths = false

[[routes]]
name = "public"
path = "/public/"
upstream = "app"
access = "public"

[[routes]]
name = "files"
path = "/files/"
kind = "assets"
store = "files"
access = "public"
images = "on"

[[routes]]
name = "s3"
path = "/s3/"
kind = "assets"
store = "media"
access = "public"

[[routes]]
name = "home"
path = "/home/"
kind = "assets"
store = "files"
key = "home/{{username}}/{{path}}"

[[routes]]
name = "app"
path = "/"
upstream = "app"
"#,
        base_config("trusted_proxies = [\"127.0.0.2/32\"]\nmax_body_size = \"1KiB\"")
    )
}

struct Gateway {
    p: Postern,
    app: Upstream,
    fs_root: tempfile::TempDir,
    s3: S3Server,
}

async fn start(extra: &str) -> Gateway {
    let app = Upstream::start("app").await;
    let s3 = S3Server::start(&["media"]).await;
    let fs_root = tempfile::tempdir().unwrap();
    let p = Postern::start(
        &config(extra),
        &[
            ("APP", app.url()),
            ("FS_ROOT", fs_root.path().display().to_string()),
            ("S3", s3.url()),
            ("S3_KEY", s3.access_key.clone()),
            ("S3_SECRET", s3.secret_key.clone()),
        ],
    );
    Gateway {
        p,
        app,
        fs_root,
        s3,
    }
}

impl Gateway {
    fn put(&self, key: &str, body: &[u8]) {
        let path = self.fs_root.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    /// An access token from `/token` for these credentials.
    async fn token(&self, user: &str, password: &str) -> String {
        let body: Value = client()
            .post(self.p.url("/_postern/token"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Logs in and returns the session cookie as `name=value`.
    async fn login(&self, user: &str, password: &str) -> String {
        self.p.login_cookie(user, password).await
    }
}

/// A client whose connections come from `source` (any 127/8 address reaches the gateway).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .local_address(source.parse::<IpAddr>().ok())
        .build()
        .unwrap()
}

async fn code(r: reqwest::Response) -> String {
    let body: Value = r.json().await.unwrap_or(Value::Null);
    body["error"]["code"].as_str().unwrap_or("").to_string()
}

fn raw(p: &Postern, request: &str) -> (u16, String) {
    common::raw_request(p.addr, request)
}

// 1. Assertions and access tokens can never stand in for each other.
#[tokio::test(flavor = "multi_thread")]
async fn identity_assertions_are_not_access_tokens() {
    let g = start("").await;
    let kim = g.p.add_user("kim", "kims password", &["admin"]).await;
    let token = g.token("kim", "kims password").await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some("access"));

    let echo: Value = client()
        .get(g.p.url("/admin/reports"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let assertion = echoed_header(&echo, "x-postern-assertion")[0].to_string();
    let header = jsonwebtoken::decode_header(&assertion).unwrap();
    assert_eq!(header.typ.as_deref(), Some("postern-assertion+jwt"));
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["route:admin"]);
    let claims = jsonwebtoken::decode::<Value>(
        &assertion,
        &DecodingKey::from_secret(ASSERTION_SECRET.as_bytes()),
        &v,
    )
    .expect("the app verifies assertions with its own key and audience route:NAME")
    .claims;
    assert_eq!(claims["sub"], kim.id);
    assert!(
        jsonwebtoken::decode::<Value>(&assertion, &DecodingKey::from_secret(SECRET.as_bytes()), &v)
            .is_err(),
        "assertions are not signed with the access-token key"
    );

    let hits = g.app.hits();
    let r = client()
        .get(g.p.url("/admin/reports"))
        .bearer_auth(&assertion)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an assertion replayed as a bearer token");

    // What an app holding the assertion key could mint: refused, whatever the header says.
    let now = postern::auth::SystemClock.now();
    let forged_claims = json!({"sub": kim.id, "name": "kim", "email": "kim@example.com",
        "roles": ["admin"], "iss": "postern", "aud": "postern", "iat": now, "nbf": now,
        "exp": now + 300, "epoch": 0});
    let mut access_header = Header::new(Algorithm::HS256);
    access_header.typ = Some("at+jwt".into());
    access_header.kid = Some("access".into());
    let forged = jsonwebtoken::encode(
        &access_header,
        &forged_claims,
        &EncodingKey::from_secret(ASSERTION_SECRET.as_bytes()),
    )
    .unwrap();
    let r = client()
        .get(g.p.url("/admin/reports"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a token minted with the assertion key");

    // A token that would live longer than the configured ttl, even well signed.
    let mut long = forged_claims.clone();
    long["exp"] = json!(now + 30 * 24 * 3600);
    let sign = |claims: &Value, header: &Header| {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    };
    let bearer = |t: String| {
        let url = g.p.url("/x");
        async move {
            client()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        bearer(sign(&forged_claims, &access_header)).await,
        200,
        "control: a well-formed token"
    );
    assert_eq!(
        bearer(sign(&long, &access_header)).await,
        401,
        "exp - iat > ttl"
    );
    assert_eq!(
        bearer(sign(&forged_claims, &Header::new(Algorithm::HS256))).await,
        401,
        "no typ and kid"
    );
    assert_eq!(g.app.hits(), hits + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_renew_only_from_a_session_and_end_with_it() {
    let g = start("").await;
    g.p.add_user("kim", "kims password", &[]).await;
    let cookie = g.login("kim", "kims password").await;
    let issue = |cookie: &str| {
        client()
            .post(g.p.url("/_postern/token"))
            .header("Cookie", cookie)
            .header("Content-Type", "application/json")
            .send()
    };
    let r = issue(&cookie).await.unwrap();
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let with_token = || client().get(g.p.url("/x")).bearer_auth(&token).send();
    assert_eq!(with_token().await.unwrap().status(), 200);

    let r = client()
        .post(g.p.url("/_postern/token"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a bearer token cannot renew itself");
    assert_eq!(code(r).await, "session_required");

    let r = client()
        .post(g.p.url("/_postern/logout"))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        with_token().await.unwrap().status(),
        401,
        "a token issued from a session ends with it"
    );
}

#[test]
fn token_key_mistakes_are_config_errors() {
    let check = |tokens: &str| {
        let text = format!(
            "[tokens]\n{tokens}\n[upstreams.a]\nbackends = [\"http://127.0.0.1:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"a\"\n"
        );
        match postern::config::parse(&text, &|_| None) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
        }
    };
    let secret = format!("secret = \"{SECRET}\"");
    let problems = check(&format!("{secret}\nassertion_header = \"X-A\""));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("tokens.assertion_secret")),
        "{problems:?}"
    );
    let problems = check(&format!(
        "{secret}\nassertion_header = \"X-A\"\nassertion_secret = \"{SECRET}\""
    ));
    assert!(
        problems.iter().any(|p| p.contains("must differ")),
        "{problems:?}"
    );
    let problems = check(&format!("{secret}\naudience = \"route:admin\""));
    assert!(
        problems.iter().any(|p| p.contains("tokens.audience")),
        "{problems:?}"
    );
    assert!(check(&secret).is_empty());
}

// 2. The path that is routed is the path the app acts on.
#[tokio::test(flavor = "multi_thread")]
async fn path_spellings_cannot_bypass_a_stricter_route() {
    let g = start("").await;
    g.p.add_user("ann", "anns password", &[]).await;
    let cookie = g.login("ann", "anns password").await;
    let before = g.app.hits();
    for path in [
        "/admin;x/panel",
        "/admin;jsessionid=1/panel",
        "/public/..;/admin/panel",
        "/public/.;/admin/panel",
        "/admin%2Fpanel",
        "/admin%2fpanel",
        "/admin%5Cpanel",
        "/x\\..\\admin/panel",
        "/admin%252Fpanel",
        "/admin%3Bx/panel",
        "/admin./panel",
        "/admin%2E/panel",
        "/admin%20/panel",
        "/admin%09/panel",
    ] {
        let (status, body) = raw(
            &g.p,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("bad_path"), "{path}: {body}");
    }
    for path in ["/ADMIN/panel", "/Admin/panel", "/aDmIn"] {
        let (status, _) = raw(
            &g.p,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(
            status, 403,
            "{path}: a case-insensitive route holds in any letter case"
        );
    }
    assert_eq!(g.app.hits(), before, "nothing reached the app");

    let (status, body) = raw(
        &g.p,
        "GET /legacy/report;v=2 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status, 200,
        "a route that opts out keeps path parameters: {body}"
    );
    assert!(body.contains("/legacy/report;v=2"));
    let (status, _) = raw(
        &g.p,
        "GET /legacy/..;/admin/panel HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400, "'..;' is a dot segment on every route");
}

// 3. The first route whose host and path match decides, method included.
#[tokio::test(flavor = "multi_thread")]
async fn a_disallowed_method_does_not_fall_through_to_a_later_route() {
    let g = start("").await;
    g.p.add_user("ann", "anns password", &[]).await;
    let cookie = g.login("ann", "anns password").await;
    let before = g.app.hits();
    let r = client()
        .post(g.p.url("/docs/page"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert_eq!(g.app.hits(), before);
    let r = client().get(g.p.url("/docs/page")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

// 4. and 6. What the app reads as identity or origin comes from postern only.
#[tokio::test(flavor = "multi_thread")]
async fn identity_and_forwarding_claims_from_clients_never_reach_the_app() {
    let g = start("").await;
    let echo: Value = client()
        .get(g.p.url("/public/page"))
        .header("Remote-User", "root")
        .header("REMOTE_USER", "root")
        .header("X_Postern_User_Id", "1")
        .header("Forwarded", "for=6.6.6.6;proto=https")
        .header("X-Real-IP", "6.6.6.6")
        .header("X-Forwarded-Port", "443")
        .header("X-Forwarded-Prefix", "/admin")
        .header("X-Original-URL", "/admin/panel")
        .header("X-Rewrite-URL", "/admin/panel")
        .header("X_Forwarded_For", "6.6.6.6")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("True-Client-IP", "6.6.6.6")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for name in [
        "remote-user",
        "remote_user",
        "x_postern_user_id",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-original-url",
        "x-rewrite-url",
        "x_forwarded_for",
        "true-client-ip",
    ] {
        assert!(
            echoed_header(&echo, name).is_empty(),
            "{name} reached the app"
        );
    }
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["127.0.0.1"]);
    let forwarded = echoed_header(&echo, "forwarded");
    assert_eq!(forwarded.len(), 1);
    assert!(
        forwarded[0].starts_with("for=127.0.0.1;proto=http;host="),
        "{forwarded:?}"
    );

    g.p.add_user("kim", "kims password", &[]).await;
    let cookie = g.login("kim", "kims password").await;
    let echo: Value = client()
        .get(g.p.url("/dashboard"))
        .header("Cookie", &cookie)
        .header("remote-user", "root")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed_header(&echo, "remote_user"), ["kim"]);
    assert!(echoed_header(&echo, "remote-user").is_empty());

    // A trusted proxy's claims are kept; the client is its rightmost untrusted hop.
    let echo: Value = client_from(PROXY)
        .get(g.p.url("/public/page"))
        .header("X-Forwarded-For", "6.6.6.6, 198.51.100.7")
        .header("X-Original-URL", "/public/page")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed_header(&echo, "x-real-ip"), ["198.51.100.7"]);
    assert_eq!(
        echoed_header(&echo, "x-forwarded-for"),
        ["6.6.6.6, 198.51.100.7, 127.0.0.2"]
    );
    assert!(
        echoed_header(&echo, "x-original-url").is_empty(),
        "URL rewrites are believed from nobody"
    );
}

// 5. postern's cookies never reach the app, whatever else the Cookie header holds.
#[tokio::test(flavor = "multi_thread")]
async fn session_and_csrf_cookies_are_stripped_byte_for_byte() {
    let g = start("").await;
    g.p.add_user("kim", "kims password", &[]).await;
    let cookie = g.login("kim", "kims password").await;
    let mut raw_cookie = b"pref=caf\xe9; ".to_vec();
    raw_cookie.extend_from_slice(cookie.as_bytes());
    raw_cookie.extend_from_slice(b"; __Host-postern_csrf=abc; x=\xff");
    let value = reqwest::header::HeaderValue::from_bytes(&raw_cookie).unwrap();
    for path in ["/dashboard", "/public/page"] {
        let r = client()
            .get(g.p.url(path))
            .header("Cookie", value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "{path}: the session is seen past a non-ASCII cookie"
        );
        let echo: Value = r.json().await.unwrap();
        let sent = echoed_header(&echo, "cookie").join("; ");
        assert!(!sent.contains(COOKIE), "{path}: {sent}");
        assert!(
            sent.contains("pref=caf"),
            "{path}: other cookies are kept: {sent}"
        );
        if path == "/dashboard" {
            assert_eq!(echoed_header(&echo, "remote_user"), ["kim"]);
        }
    }
}

// 7. Cookie-authenticated writes need JSON (or a CSRF header) from this site.
#[tokio::test(flavor = "multi_thread")]
async fn cross_site_writes_with_the_admins_cookie_are_refused() {
    let g = start("").await;
    g.p.add_user("root", "roots password", &["admin"]).await;
    let cookie = g.login("root", "roots password").await;
    let body = json!({"username": "mallory", "email": "m@example.com", "password": "a sturdy passphrase", "roles": ["admin"]}).to_string();
    let post = |content_type: &str, origin: Option<&str>, site: Option<&str>| {
        let mut r = client()
            .post(g.p.url("/_postern/admin/users"))
            .header("Cookie", &cookie)
            .header("Content-Type", content_type)
            .body(body.clone());
        if let Some(origin) = origin {
            r = r.header("Origin", origin);
        }
        if let Some(site) = site {
            r = r.header("Sec-Fetch-Site", site);
        }
        r.send()
    };
    for (content_type, origin, site) in [
        ("text/plain", None, None),
        (
            "text/plain",
            Some("https://evil.example"),
            Some("cross-site"),
        ),
        ("application/x-www-form-urlencoded", None, None),
        ("multipart/form-data; boundary=x", None, None),
        ("application/json", Some("https://evil.example"), None),
        ("application/json", Some("null"), None),
        ("application/json", None, Some("cross-site")),
        ("application/json", None, Some("same-site")),
    ] {
        let r = post(content_type, origin, site).await.unwrap();
        assert_eq!(r.status(), 403, "{content_type} {origin:?} {site:?}");
        assert_eq!(code(r).await, "cross_site_request");
    }
    let users: Value = client()
        .get(g.p.url("/_postern/admin/users?q=mallory"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        users["users"].as_array().unwrap().len(),
        0,
        "nobody was created"
    );

    let own_origin = format!("http://{}", g.p.addr);
    let r = post("application/json", Some(&own_origin), Some("same-origin"))
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the same site's JSON call");

    // The double-submit header stands in for JSON.
    let page = client()
        .get(g.p.url("/_postern/login"))
        .send()
        .await
        .unwrap();
    let csrf = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(csrf.starts_with("__Host-postern_csrf="), "{csrf}");
    assert!(
        csrf.contains("Path=/;") && csrf.contains("Secure"),
        "{csrf}"
    );
    let csrf_value = csrf
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let logout = |header: Option<&str>| {
        let mut r = client().post(g.p.url("/_postern/logout")).header(
            "Cookie",
            format!("{cookie}; __Host-postern_csrf={csrf_value}"),
        );
        if let Some(h) = header {
            r = r.header("X-CSRF-Token", h);
        }
        r.send()
    };
    assert_eq!(
        logout(None).await.unwrap().status(),
        403,
        "a form-like logout"
    );
    assert_eq!(logout(Some("wrong")).await.unwrap().status(), 403);
    assert_eq!(
        client()
            .get(g.p.url("/_postern/me"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the session survived the refused logouts"
    );
    assert_eq!(logout(Some(&csrf_value)).await.unwrap().status(), 204);

    // Bearer-authenticated calls are not affected.
    let token = g.token("root", "roots password").await;
    let r = client()
        .post(g.p.url("/_postern/admin/roles"))
        .bearer_auth(&token)
        .header("Origin", "https://tooling.example")
        .json(&json!({"name": "auditor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

// 8. No object runs as active content on the gateway's origin.
#[tokio::test(flavor = "multi_thread")]
async fn objects_are_sandboxed_and_active_types_are_attachments() {
    let g = start("").await;
    let html = b"<html><script>fetch('/_postern/admin/users')</script></html>";
    g.put("page.html", html);
    g.put(
        "logo.svg",
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
    );
    g.put("notes.txt", b"plain words");
    g.put("pixel.png", &tiny_png());
    g.s3.put("media", "evil.html", html);
    g.s3.put("media", "data", html);

    for (path, attachment) in [
        ("/files/page.html", true),
        ("/files/logo.svg", true),
        ("/files/notes.txt", false),
        ("/files/pixel.png", false),
        ("/files/pixel.png?w=1", false),
        ("/s3/evil.html", true),
        ("/s3/data", true),
    ] {
        let r = client().get(g.p.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-security-policy"], "sandbox", "{path}");
        let disposition = r
            .headers()
            .get("content-disposition")
            .map(|v| v.to_str().unwrap().to_string());
        if attachment {
            let d = disposition.unwrap_or_default();
            assert!(d.starts_with("attachment"), "{path}: {d:?}");
        } else {
            assert_eq!(disposition, None, "{path}");
        }
    }
    let r = client()
        .get(g.p.url("/files/page.html"))
        .header("Range", "bytes=0-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
}

fn tiny_png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(4, 4, image::Rgb([200, 10, 10]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A JSON login from `from` claiming `xff`: as kim with the right password, else as an unknown
/// user (so that failures count against the address only, never lock kim).
async fn login_status(p: &Postern, from: &str, xff: String, password: String) -> u16 {
    let user = if password == "kims password" {
        "kim"
    } else {
        "nobody"
    };
    client_from(from)
        .post(p.url("/_postern/login"))
        .header("X-Forwarded-For", xff)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// 9. Behind a proxy, each client is itself: limits, allow-lists and the audit trail.
#[tokio::test(flavor = "multi_thread")]
async fn clients_behind_a_trusted_proxy_are_told_apart() {
    let g = start("[admin]\nallow_from = [\"198.51.100.0/24\"]").await;
    g.p.add_user("kim", "kims password", &[]).await;
    g.p.add_user("root", "roots password", &["admin"]).await;
    let login = |from: &'static str, xff: &str, password: &str| {
        login_status(&g.p, from, xff.to_string(), password.to_string())
    };
    let fail_three_times = |from: &'static str, xff: String| async move {
        for _ in 0..3 {
            assert_eq!(login(from, &xff, "wrong").await, 401);
        }
    };
    fail_three_times(PROXY, "203.0.113.1".into()).await;
    assert_eq!(
        login(PROXY, "203.0.113.1", "kims password").await,
        429,
        "the failing client is blocked"
    );
    assert_eq!(
        login(PROXY, "6.6.6.6, 203.0.113.1", "kims password").await,
        429,
        "a spoofed left-hand hop does not change who it is"
    );
    assert_eq!(
        login(PROXY, "203.0.113.2", "kims password").await,
        200,
        "another client behind the same proxy is not"
    );

    // An untrusted peer's X-Forwarded-For is ignored: it is counted as itself.
    fail_three_times("127.0.0.3", "203.0.113.9".into()).await;
    assert_eq!(
        login("127.0.0.3", "203.0.113.9", "kims password").await,
        429
    );
    assert_eq!(
        login(PROXY, "203.0.113.9", "kims password").await,
        200,
        "the claimed address was never blamed"
    );

    // IPv6 clients count by /64.
    for i in 1..=3 {
        assert_eq!(
            login(PROXY, &format!("2001:db8:5:5::{i}"), "wrong").await,
            401
        );
    }
    assert_eq!(
        login(PROXY, "2001:db8:5:5:ffff::9", "kims password").await,
        429
    );
    assert_eq!(login(PROXY, "2001:db8:5:6::1", "kims password").await, 200);

    // admin.allow_from sees the client, not the proxy.
    let admin_cookie = {
        let r = client_from(PROXY)
            .post(g.p.url("/_postern/login"))
            .header("X-Forwarded-For", "198.51.100.20")
            .json(&json!({"username": "root", "password": "roots password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    };
    let events = |xff: &str| {
        client_from(PROXY)
            .get(g.p.url("/_postern/admin/events?kind=login.failure&limit=200"))
            .header("Cookie", &admin_cookie)
            .header("X-Forwarded-For", xff.to_string())
            .send()
    };
    assert_eq!(events("203.0.113.2").await.unwrap().status(), 403);
    let r = client()
        .get(g.p.url("/_postern/admin/events"))
        .header("Cookie", &admin_cookie)
        .header("X-Forwarded-For", "198.51.100.20")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a direct client cannot claim an allowed address"
    );
    let r = events("198.51.100.20").await.unwrap();
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    let ips: Vec<&str> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["ip"].as_str())
        .collect();
    assert!(
        ips.contains(&"203.0.113.1"),
        "audit events name the client: {ips:?}"
    );
    assert!(!ips.contains(&PROXY), "{ips:?}");
}

// 10a. The body limit does not apply to an upgraded connection's traffic.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_traffic_outlives_the_body_limit() {
    let g =
        start("[[routes]]\nname = \"ws\"\npath = \"/ws\"\nupstream = \"app\"\naccess = \"public\"")
            .await;
    let chunk = "x".repeat(900);
    // Pingora sometimes tears an upgrade down right after the 101 when the upstream answers
    // before the request's empty body is processed (cloudflare/pingora#946, open): a fresh
    // connection is tried then. Every other failure fails the test.
    for attempt in 0..3 {
        let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", g.p.addr))
            .await
            .expect("handshake");
        assert_eq!(resp.status(), 101);
        let mut torn_down = false;
        for i in 0..8 {
            ws.send(tokio_tungstenite::tungstenite::Message::text(chunk.clone()))
                .await
                .unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap_or_else(|_| panic!("message {i} timed out"))
                .expect("open");
            let reply = match reply {
                Err(tokio_tungstenite::tungstenite::Error::Protocol(e))
                    if i == 0 && attempt < 2 =>
                {
                    eprintln!("upgrade torn down at once ({e}): trying again");
                    torn_down = true;
                    break;
                }
                other => other.unwrap_or_else(|e| panic!("message {i}: {e}")),
            };
            assert_eq!(
                reply.into_text().unwrap().len(),
                chunk.len() + 6,
                "message {i}"
            );
        }
        if !torn_down {
            return;
        }
    }
}

// Only WebSocket upgrades reach the app: an h2c upgrade would tunnel past every rule.
#[tokio::test(flavor = "multi_thread")]
async fn h2c_upgrades_are_not_passed_to_the_app() {
    let g = start("").await;
    let (status, body) = raw(
        &g.p,
        "GET /public/x HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_ascii_lowercase().contains("\"upgrade\""), "{body}");
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(g.p.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /public/caf\xe9 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    assert!(
        response.starts_with(b"HTTP/1.1 400"),
        "a request target that is not UTF-8: {}",
        String::from_utf8_lossy(&response)
    );
}

// 10b. Overlapping ranges do not multiply the response.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_ranges_cost_no_more_than_the_object() {
    let g = start("").await;
    g.put("big.bin", &vec![7u8; 10_000]);
    let ranges = vec!["0-9999"; 16].join(",");
    let r = client()
        .get(g.p.url("/files/big.bin"))
        .header("Range", format!("bytes={ranges}"))
        .send()
        .await
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert!(
        body.len() <= 10_000,
        "{} bytes for a 10000-byte object",
        body.len()
    );
    let r = client()
        .get(g.p.url("/files/big.bin"))
        .header("Range", "bytes=0-99,50-149,150-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-199/10000");
    assert_eq!(r.bytes().await.unwrap().len(), 200);
}

// 10d. Only regular files under the root are served, and opening one never blocks.
#[tokio::test(flavor = "multi_thread")]
async fn special_files_in_the_store_are_refused_without_blocking() {
    let g = start("").await;
    let fifo = g.fs_root.path().join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::fs::create_dir_all(g.fs_root.path().join("dir")).unwrap();
    for path in ["/files/pipe", "/files/dir", "/files/pipe?w=10"] {
        let r = tokio::time::timeout(Duration::from_secs(10), client().get(g.p.url(path)).send())
            .await
            .unwrap_or_else(|_| panic!("{path} hung"))
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

// 10e. A truncated source image is refused, and the refusal is not cached.
#[tokio::test(flavor = "multi_thread")]
async fn truncated_images_are_refused_and_not_cached() {
    let g = start("").await;
    let mut out = std::io::Cursor::new(Vec::new());
    let pixels = image::RgbImage::from_fn(256, 256, |x, y| image::Rgb([x as u8, y as u8, 90]));
    pixels.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    let full = out.into_inner();
    g.put("photo.jpg", &full[..full.len() * 2 / 3]);
    for _ in 0..2 {
        let r = client()
            .get(g.p.url("/files/photo.jpg?w=64"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        assert_eq!(code(r).await, "corrupt_image");
    }
    g.put("photo.jpg", &full);
    let r = client()
        .get(g.p.url("/files/photo.jpg?w=64"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the repaired image is transformed");
}

// 10f. A new account never inherits a deleted one's objects.
#[tokio::test(flavor = "multi_thread")]
async fn usernames_of_deleted_accounts_are_not_given_out_again() {
    let g = start("").await;
    g.p.add_user("root", "roots password", &["admin"]).await;
    let ann = g.p.add_user("ann", "anns password", &[]).await;
    g.put("home/ann/diary.txt", b"ann's diary");
    let cookie = g.login("ann", "anns password").await;
    let r = client()
        .get(g.p.url("/home/diary.txt"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let admin = g.login("root", "roots password").await;
    let admin_call = |method: reqwest::Method, path: &str, body: Value| {
        client()
            .request(method, g.p.url(&format!("/_postern/admin{path}")))
            .header("Cookie", &admin)
            .json(&body)
            .send()
    };
    let r = admin_call(
        reqwest::Method::DELETE,
        &format!("/users/{}", ann.id),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let r = admin_call(
        reqwest::Method::POST,
        "/users",
        json!({"username": "Ann", "email": "new-ann@example.com", "password": "a new password"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deleted account"),
        "{body}"
    );
}
