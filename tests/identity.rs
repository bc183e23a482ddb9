//! Login, sessions and route access, end to end against a real upstream (SQLite, or PostgreSQL in
//! that variant).

mod common;

use common::http_client as client;

use std::sync::Arc;

use common::{Postern, Upstream, base_config, echoed_header};
use postern::auth::{Clock, ManualClock};
use serde_json::{Value, json};

const COOKIE: &str = "__Host-postern";

fn config(session_extra: &str) -> String {
    format!(
        r#"{}
[sessions]
cache_ttl = "0"
idle_timeout = "30m"
absolute_timeout = "8h"
{session_extra}

[upstreams.app]
backends = ["${{APP}}"]

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "public"
path = "/public/"
upstream = "app"
access = "public"

[[routes]]
name = "admin"
path = "/admin/"
upstream = "app"
access = {{ roles = ["admin"] }}

[[routes]]
name = "both"
path = "/both/"
upstream = "app"
access = {{ roles = ["admin", "ops"], match = "all" }}

[[routes]]
name = "api"
path = "/api/"
upstream = "app"
api = true

[[routes]]
name = "app"
path = "/"
upstream = "app"
"#,
        base_config("")
    )
}

/// Logs in with JSON and returns the session cookie value.
async fn login(p: &Postern, username: &str, password: &str) -> String {
    let r = client()
        .post(p.url("/_postern/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login as {username}");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    cookie
        .strip_prefix(&format!("{COOKIE}="))
        .and_then(|rest| rest.split(';').next())
        .expect("session cookie")
        .to_string()
}

async fn get(p: &Postern, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(p.url(path))
        .header("Cookie", format!("theme=dark; {COOKIE}={token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_sets_a_hardened_cookie_and_the_app_sees_who_it_is() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(""), &[("APP", app.url())]);
    let alice = p.add_user("alice", "correct horse", &["admin"]).await;

    let r = client()
        .post(p.url("/_postern/login"))
        .json(&json!({"email": "ALICE@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in [
        "__Host-postern=",
        "Path=/",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=28800",
    ] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from {cookie}"
        );
    }
    assert!(
        !cookie.contains("Domain="),
        "__Host- cookies have no Domain"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], alice.id);
    assert_eq!(body["roles"], json!(["admin"]));
    assert!(body.get("password_hash").is_none());

    let token = login(&p, "alice", "correct horse").await;
    let me: Value = get(&p, "/_postern/me", &token).await.json().await.unwrap();
    assert_eq!(me["username"], "alice");

    let r = client()
        .get(p.url("/dashboard"))
        .header("Cookie", format!("theme=dark; {COOKIE}={token}"))
        .header("X-Postern-User", "mallory")
        .header("X_Postern_Roles", "superuser")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(
        echoed_header(&echo, "x-postern-user-id"),
        [alice.id.as_str()]
    );
    assert_eq!(echoed_header(&echo, "x-postern-user"), ["alice"]);
    assert_eq!(
        echoed_header(&echo, "x-postern-email"),
        ["alice@example.com"]
    );
    assert_eq!(echoed_header(&echo, "x-postern-roles"), ["admin"]);
    assert!(echoed_header(&echo, "x_postern_roles").is_empty());
    assert_eq!(
        echoed_header(&echo, "cookie"),
        ["theme=dark"],
        "the session cookie stays with postern"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_unknown_and_disabled_logins_get_the_same_answer() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(""), &[("APP", app.url())]);
    let bob = p.add_user("bob", "bobs password", &[]).await;
    let store = p.store().await;
    store
        .set_status(&bob.id, postern::store::UserStatus::Disabled, 0)
        .await
        .unwrap();
    p.add_user("carol", "carols password", &[]).await;

    let mut answers = Vec::new();
    for (user, password) in [
        ("carol", "wrong"),
        ("nobody", "whatever"),
        ("bob", "bobs password"),
    ] {
        let r = client()
            .post(p.url("/_postern/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        answers.push((r.status().as_u16(), r.text().await.unwrap()));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 401);
    assert!(answers[0].1.contains("invalid_credentials"));

    let events = store
        .events(&postern::store::EventFilter {
            kind: Some("login.failure".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].ip.as_deref(), Some("127.0.0.1"));

    let r = client()
        .post(p.url("/_postern/login"))
        .header("Content-Type", "text/plain")
        .body("alice:pw")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = client()
        .post(p.url("/_postern/login"))
        .json(&json!({"username": "carol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_are_sent_to_login_and_api_clients_get_401() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(""), &[("APP", app.url())]);
    let c = client();

    let r = c
        .get(p.url("/reports/q3?year=2026"))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/_postern/login?return_to=%2Freports%2Fq3%3Fyear%3D2026"
    );

    for request in [
        c.get(p.url("/reports/q3")),
        c.get(p.url("/reports/q3"))
            .header("Accept", "text/html")
            .header("X-Requested-With", "XMLHttpRequest"),
        c.post(p.url("/reports/q3")).header("Accept", "text/html"),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    let r = c
        .get(p.url("/reports/q3"))
        .header("Accept", "text/html")
        .header("Authorization", "Bearer x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a bearer attempt is an API client");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_token"
    );
    assert_eq!(
        c.get(p.url("/_postern/me")).send().await.unwrap().status(),
        401
    );
    assert_eq!(app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_any_and_all() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(""), &[("APP", app.url())]);
    p.add_user("admin1", "admin password", &["admin"]).await;
    p.add_user("both1", "both password", &["admin", "ops"])
        .await;
    p.add_user("plain", "plain password", &[]).await;
    let admin = login(&p, "admin1", "admin password").await;
    let both = login(&p, "both1", "both password").await;
    let plain = login(&p, "plain", "plain password").await;

    assert_eq!(get(&p, "/admin/x", &admin).await.status(), 200);
    let r = get(&p, "/admin/x", &plain).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "forbidden"
    );
    assert_eq!(
        get(&p, "/both/x", &admin).await.status(),
        403,
        "match = all needs every role"
    );
    assert_eq!(get(&p, "/both/x", &both).await.status(), 200);
    assert_eq!(get(&p, "/anything", &plain).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_and_revocation_end_sessions_at_once() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(""), &[("APP", app.url())]);
    let user = p.add_user("dora", "doras password", &["admin"]).await;

    let token = login(&p, "dora", "doras password").await;
    let r = client()
        .post(p.url("/_postern/logout"))
        .header("Cookie", format!("{COOKIE}={token}"))
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get(&p, "/x", &token).await.status(),
        401,
        "a logged-out session is dead"
    );

    let token = login(&p, "dora", "doras password").await;
    let other = login(&p, "dora", "doras password").await;
    assert_eq!(get(&p, "/x", &token).await.status(), 200);
    let store = p.store().await;
    store.revoke_sessions(&user.id, 0).await.unwrap();
    assert_eq!(get(&p, "/x", &token).await.status(), 401);
    assert_eq!(get(&p, "/x", &other).await.status(), 401);

    let token = login(&p, "dora", "doras password").await;
    store.remove_role(&user.id, "admin", 0).await.unwrap();
    assert_eq!(
        get(&p, "/x", &token).await.status(),
        401,
        "a role change ends sessions (epoch)"
    );
    let token = login(&p, "dora", "doras password").await;
    assert_eq!(get(&p, "/admin/x", &token).await.status(), 403);

    let forged = "A".repeat(43);
    assert_eq!(get(&p, "/x", &forged).await.status(), 401);
    assert_eq!(get(&p, "/x", "short").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_expire_when_idle_and_absolutely() {
    let app = Upstream::start("app").await;
    let clock = ManualClock::new(1_800_000_000);
    let p = Postern::start_with_clock(
        &config("touch_interval = \"0\""),
        &[("APP", app.url())],
        Arc::new(clock.clone()),
    );
    p.add_user("erin", "erins password", &[]).await;

    let token = login(&p, "erin", "erins password").await;
    clock.advance(29 * 60);
    assert_eq!(
        get(&p, "/x", &token).await.status(),
        200,
        "activity within the idle timeout"
    );
    clock.advance(29 * 60);
    assert_eq!(
        get(&p, "/x", &token).await.status(),
        200,
        "each request extends the idle timeout"
    );
    clock.advance(31 * 60);
    assert_eq!(
        get(&p, "/x", &token).await.status(),
        401,
        "idle for longer than 30m"
    );

    let token = login(&p, "erin", "erins password").await;
    for _ in 0..17 {
        clock.advance(28 * 60);
        assert_eq!(get(&p, "/x", &token).await.status(), 200);
    }
    clock.advance(28 * 60);
    assert_eq!(
        get(&p, "/x", &token).await.status(),
        401,
        "8h after login, however active"
    );
    assert!(clock.now() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_html_form_logs_in_with_csrf_and_returns_safely() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(""), &[("APP", app.url())]);
    p.add_user("fred", "freds password", &[]).await;
    let c = client();

    let page = c
        .get(p.url("/_postern/login?return_to=%2Freports%3Fq%3D1"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf_cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(csrf_cookie.contains("SameSite=Strict") && csrf_cookie.contains("HttpOnly"));
    let csrf = csrf_cookie
        .strip_prefix("__Host-postern_csrf=")
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_string();
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("name=\"csrf\" value=\"{csrf}\"")));
    assert!(html.contains("value=\"/reports?q=1\""));

    let post = |token: &str, return_to: &str| {
        c.post(p.url("/_postern/login"))
            .header("Accept", "text/html")
            .header("Cookie", format!("__Host-postern_csrf={csrf}"))
            .form(&[
                ("username", "fred"),
                ("password", "freds password"),
                ("csrf", token),
                ("return_to", return_to),
            ])
            .send()
    };
    let r = post("forged", "/reports?q=1").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("csrf_failed"));

    let r = post(&csrf, "/reports?q=1").await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/reports?q=1");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("__Host-postern=")
    );

    for attack in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/%2F%2Fevil.example",
    ] {
        let r = post(&csrf, attack).await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/", "{attack}");
    }

    let r = c
        .post(p.url("/_postern/login"))
        .header("Accept", "text/html")
        .header("Cookie", format!("__Host-postern_csrf={csrf}"))
        .form(&[
            ("username", "fred"),
            ("password", "nope"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let html = r.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"fred\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn old_password_hashes_are_upgraded_at_login() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(""), &[("APP", app.url())]);
    let weak = postern::auth::Passwords::new(
        postern::auth::HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
        1,
    )
    .unwrap();
    let store = p.store().await;
    let user = store
        .create_user(
            &postern::store::NewUser {
                username: "gina".into(),
                email: "gina@example.com".into(),
                password_hash: Some(weak.hash("ginas password".into()).await.unwrap()),
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
    login(&p, "gina", "ginas password").await;
    let hash = store
        .user_by_id(&user.id)
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let token = login(&p, "gina", "ginas password").await;
    assert_eq!(
        get(&p, "/x", &token).await.status(),
        200,
        "the upgraded hash still verifies"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_lock_the_account_until_unlock_or_timeout() {
    let app = Upstream::start("app").await;
    let clock = ManualClock::new(1_800_000_000);
    let lockout = "[lockout]\nmax_failures = 3\nwindow = \"5m\"\nlock_for = \"10m\"\nip_max_failures = 100\nlogin_rate_per_minute = 1000\n";
    let p = Postern::start_with_clock(
        &format!("{}\n{lockout}", config("")),
        &[("APP", app.url())],
        Arc::new(clock.clone()),
    );
    let user = p.add_user("hank", "hanks password", &[]).await;
    let attempt = |password: &'static str| {
        client()
            .post(p.url("/_postern/login"))
            .json(&json!({"username": "hank", "password": password}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt("wrong").await.unwrap().status(), 401);
    }
    let r = attempt("hanks password").await.unwrap();
    assert_eq!(
        r.status(),
        401,
        "locked: the right password gets the same answer as a wrong one"
    );
    assert!(r.text().await.unwrap().contains("invalid_credentials"));

    let store = p.store().await;
    let locked_until = store
        .user_by_id(&user.id)
        .await
        .unwrap()
        .unwrap()
        .locked_until;
    assert_eq!(locked_until, Some(clock.now() + 600));
    let lockouts = store
        .events(&postern::store::EventFilter {
            kind: Some("login.lockout".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(lockouts.len(), 1);

    store.set_locked_until(&user.id, None).await.unwrap();
    assert_eq!(
        attempt("hanks password").await.unwrap().status(),
        200,
        "unlocked by an operator"
    );

    for _ in 0..3 {
        attempt("wrong").await.unwrap();
    }
    assert_eq!(attempt("hanks password").await.unwrap().status(), 401);
    clock.advance(601);
    assert_eq!(
        attempt("hanks password").await.unwrap().status(),
        200,
        "unlocked by time"
    );

    let metrics = p.metrics().await;
    for line in [
        r#"postern_auth_attempts_total{result="failure"} 6"#,
        r#"postern_auth_attempts_total{result="locked"} 2"#,
        r#"postern_auth_attempts_total{result="success"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn login_attempts_are_rate_limited_per_address() {
    let app = Upstream::start("app").await;
    let p = Postern::start(
        &format!("{}\n[lockout]\nlogin_rate_per_minute = 3\n", config("")),
        &[("APP", app.url())],
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = client()
            .post(p.url("/_postern/login"))
            .json(&json!({"username": "nobody", "password": "x"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let retry: i64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            assert!(r.text().await.unwrap().contains("too_many_requests"));
        }
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    assert!(
        p.metrics()
            .await
            .contains(r#"postern_auth_attempts_total{result="rate_limited"} 1"#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn session_checks_are_served_from_the_cache() {
    let app = Upstream::start("app").await;
    let p = Postern::start(
        &config("").replace("cache_ttl = \"0\"", "cache_ttl = \"30s\""),
        &[("APP", app.url())],
    );
    p.add_user("ivy", "ivys password", &[]).await;
    let token = login(&p, "ivy", "ivys password").await;
    for _ in 0..5 {
        assert_eq!(get(&p, "/x", &token).await.status(), 200);
    }
    let metrics = p.metrics().await;
    assert!(
        metrics.contains(r#"postern_session_cache_total{result="miss"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"postern_session_cache_total{result="hit"} 4"#),
        "{metrics}"
    );

    let r = client()
        .post(p.url("/_postern/logout"))
        .header("Cookie", format!("{COOKIE}={token}"))
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get(&p, "/x", &token).await.status(),
        401,
        "logout invalidates the cached entry too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn referer_allowlists_and_cors() {
    let app = Upstream::start("app").await;
    let extra_routes = r#"
[[routes]]
name = "images"
path = "/img/"
upstream = "app"
access = "public"
referer = { allow = ["https://shop.example.com", "*.shop.example.com"], allow_missing = false }

[[routes]]
name = "cross"
path = "/xapi/"
upstream = "app"
api = true
cors = { origins = ["https://app.example.com"], methods = ["GET", "POST"], headers = ["Content-Type", "X-Token"], credentials = true, max_age = "5m" }
"#;
    let text = config("").replace(
        "[[routes]]\nname = \"app\"",
        &format!("{extra_routes}\n[[routes]]\nname = \"app\""),
    );
    let p = Postern::start(&text, &[("APP", app.url())]);
    p.add_user("jo", "jos password", &[]).await;
    let token = login(&p, "jo", "jos password").await;
    let c = client();
    let img = |referer: Option<&str>, origin: Option<&str>| {
        let mut r = c.get(p.url("/img/logo.png"));
        if let Some(v) = referer {
            r = r.header("Referer", v);
        }
        if let Some(v) = origin {
            r = r.header("Origin", v);
        }
        r.send()
    };
    assert_eq!(
        img(Some("https://shop.example.com/product/1"), None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        img(Some("https://m.shop.example.com/"), None)
            .await
            .unwrap()
            .status(),
        200
    );
    let r = img(Some("https://evil.example/hotlink"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "referer_denied"
    );
    assert_eq!(
        img(None, None).await.unwrap().status(),
        403,
        "allow_missing = false"
    );
    assert_eq!(
        img(
            Some("https://shop.example.com/"),
            Some("https://evil.example")
        )
        .await
        .unwrap()
        .status(),
        403,
        "Origin wins over Referer"
    );

    let hits = app.hits();
    let preflight = c
        .request(reqwest::Method::OPTIONS, p.url("/xapi/orders"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type, x-token")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(h["access-control-max-age"], "300");
    assert_eq!(app.hits(), hits, "postern answers preflights itself");
    let denied = c
        .request(reqwest::Method::OPTIONS, p.url("/xapi/orders"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(
        denied.json::<Value>().await.unwrap()["error"]["code"],
        "cors_denied"
    );

    let r = c
        .get(p.url("/xapi/orders"))
        .header("Origin", "https://app.example.com")
        .header("Cookie", format!("{COOKIE}={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert!(r.headers().get_all("vary").iter().any(|v| v == "Origin"));
    let r = c
        .get(p.url("/xapi/orders"))
        .header("Origin", "https://evil.example")
        .header("Cookie", format!("{COOKIE}={token}"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_change_never_reaches_the_app_with_the_cached_identity() {
    let app = Upstream::start("app").await;
    let cached = config("").replace("cache_ttl = \"0\"", "cache_ttl = \"60s\"");
    let p = Postern::start(&cached, &[("APP", app.url())]);
    let alice = p.add_user("alice", "correct horse", &["staff"]).await;
    p.add_user("root", "root passphrase", &["admin"]).await;
    let dashboard = async |cookie: &str| {
        client()
            .get(p.url("/dashboard"))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap()
    };
    let roles_seen = async |cookie: &str| {
        let r = dashboard(cookie).await;
        assert_eq!(r.status(), 200);
        let echo: Value = r.json().await.unwrap();
        let mut roles: Vec<String> = echoed_header(&echo, "x-postern-roles")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::to_string)
            .collect();
        roles.sort();
        roles
    };
    let alice_cookie = p.login_cookie("alice", "correct horse").await;
    assert_eq!(roles_seen(&alice_cookie).await, ["staff"]);
    assert_eq!(
        roles_seen(&alice_cookie).await,
        ["staff"],
        "served from the cache"
    );

    let admin_cookie = p.login_cookie("root", "root passphrase").await;
    let r = client()
        .post(p.url(&format!("/_postern/admin/users/{}/roles", alice.id)))
        .header("Cookie", &admin_cookie)
        .json(&json!({"role": "editor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The change ends the session (and its cached identity) at once; a new login sees it.
    let r = dashboard(&alice_cookie).await;
    assert_eq!(
        r.status(),
        401,
        "the old session's cached roles never reach the app"
    );
    let alice_again = p.login_cookie("alice", "correct horse").await;
    assert_eq!(roles_seen(&alice_again).await, ["editor", "staff"]);
}
