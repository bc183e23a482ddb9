//! Black-box proxying behaviour: postern in front of real upstream apps.

mod common;

use common::http_client as client;

use std::time::Duration;

use common::{Postern, Upstream, base_config, dead_address, echoed_header};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.expect("json body")
}

fn one_upstream_config(route_extra: &str, server_extra: &str) -> String {
    format!(
        r#"{}
[upstreams.app]
backends = ["${{APP}}"]
read_timeout = "500ms"
connect_timeout = "1s"

[[routes]]
name = "public"
path = "/public/"
upstream = "app"
access = "public"
{route_extra}
"#,
        base_config(server_extra)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_path_and_method() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let config = format!(
        r#"{}
[upstreams.a]
backends = ["${{A}}"]
[upstreams.b]
backends = ["${{B}}"]

[[routes]]
name = "exact-host"
host = "app.test"
path = "/"
upstream = "a"
access = "public"

[[routes]]
name = "wildcard-host"
host = "*.b.test"
path = "/"
upstream = "b"
access = "public"

[[routes]]
name = "writes"
path = "/w/"
methods = ["POST", "PUT"]
upstream = "b"
access = "public"

[[routes]]
name = "any-host"
path = "/p/"
upstream = "a"
access = "public"
"#,
        base_config("")
    );
    let p = Postern::start(&config, &[("A", a.url()), ("B", b.url())]);
    let c = client();
    let server = |v: Value| v["server"].as_str().unwrap().to_string();

    let r = c
        .get(p.url("/x"))
        .header("Host", "APP.test:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server(json(r).await), "a");

    let r = c
        .get(p.url("/x"))
        .header("Host", "x.y.b.test")
        .send()
        .await
        .unwrap();
    assert_eq!(server(json(r).await), "b");

    let r = c
        .get(p.url("/x"))
        .header("Host", "b.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = json(r).await;
    assert_eq!(body["error"]["code"], "not_found");

    let r = c.post(p.url("/w/1")).send().await.unwrap();
    assert_eq!(server(json(r).await), "b");
    let r = c.get(p.url("/w/1")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST, PUT");
    assert_eq!(json(r).await["error"]["code"], "method_not_allowed");

    let r = c.get(p.url("/p/deep/path?q=1")).send().await.unwrap();
    let body = json(r).await;
    assert_eq!(server(body.clone()), "a");
    assert_eq!(body["uri"], "/p/deep/path?q=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn strips_the_route_prefix_when_asked() {
    let app = Upstream::start("app").await;
    let config = format!(
        r#"{}
[upstreams.app]
backends = ["${{APP}}"]

[[routes]]
name = "api"
path = "/api/"
upstream = "app"
access = "public"
strip_prefix = true

[[routes]]
name = "keep"
path = "/keep/"
upstream = "app"
access = "public"
"#,
        base_config("")
    );
    let p = Postern::start(&config, &[("APP", app.url())]);
    let c = client();
    let uri = |v: Value| v["uri"].as_str().unwrap().to_string();
    assert_eq!(
        uri(json(c.get(p.url("/api/v1/items?x=1&y=2")).send().await.unwrap()).await),
        "/v1/items?x=1&y=2"
    );
    assert_eq!(
        uri(json(c.get(p.url("/api")).send().await.unwrap()).await),
        "/"
    );
    assert_eq!(
        uri(json(c.get(p.url("/keep/a")).send().await.unwrap()).await),
        "/keep/a"
    );
    // Normalized before routing and forwarding: the upstream sees the canonical path.
    assert_eq!(
        uri(json(c.get(p.url("/keep//%61b")).send().await.unwrap()).await),
        "/keep/ab"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_dot_segments_and_default_denies() {
    let app = Upstream::start("app").await;
    let config = format!(
        r#"{}
[[routes]]
name = "private"
path = "/"
upstream = "app"

[[routes.dummy]]
"#,
        one_upstream_config("", "")
    );
    // `routes.dummy` is not a key postern knows: the config must be refused.
    let problems = postern::config::parse(&config, &|_| Some("x".into())).unwrap_err();
    assert!(problems[0].path.starts_with("routes[1]"), "{problems:?}");

    let config = format!(
        "{}\n[[routes]]\nname = \"private\"\npath = \"/\"\nupstream = \"app\"\n",
        one_upstream_config("", "")
    );
    let p = Postern::start(&config, &[("APP", app.url())]);
    let c = client();
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/./x",
        "/public/a%00b",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, body) = common::raw_request(p.addr, &request);
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("\"bad_path\""), "{path}: {body}");
    }
    let r = c.get(p.url("/private")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["error"]["code"], "unauthenticated");
    assert_eq!(app.hits(), 0, "nothing denied may reach the app");
}

#[tokio::test(flavor = "multi_thread")]
async fn strips_identity_headers_in_every_spelling() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&one_upstream_config("", ""), &[("APP", app.url())]);
    let r = client()
        .get(p.url("/public/x"))
        .header("X-Postern-User", "mallory")
        .header("x-postern-user-id", "1")
        .header("X_Postern_Roles", "admin")
        .header("x_postern_email", "m@evil")
        .header("X-POSTERN-ASSERTION", "forged")
        .header("X-Kept", "yes")
        .send()
        .await
        .unwrap();
    let body = json(r).await;
    let names: Vec<String> = body["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().replace('_', "-"))
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("x-postern-")),
        "{names:?}"
    );
    assert_eq!(echoed_header(&body, "x-kept"), ["yes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sets_forwarded_headers_and_trusts_only_configured_proxies() {
    let app = Upstream::start("app").await;
    let send = |p: &Postern| {
        client()
            .get(p.url("/public/x"))
            .header("Host", "shop.example")
            .header("X-Forwarded-For", "203.0.113.9")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "spoofed.example")
            .header("Connection", "keep-alive, X-Hop")
            .header("X-Hop", "secret")
            .send()
    };

    let p = Postern::start(&one_upstream_config("", ""), &[("APP", app.url())]);
    let body = json(send(&p).await.unwrap()).await;
    assert_eq!(echoed_header(&body, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed_header(&body, "x-forwarded-host"), ["shop.example"]);
    assert_eq!(echoed_header(&body, "host"), ["shop.example"]);
    assert!(
        echoed_header(&body, "x-hop").is_empty(),
        "Connection-listed headers are hop-by-hop"
    );
    drop(p);

    let trusted = Postern::start(
        &one_upstream_config("", "trusted_proxies = [\"127.0.0.0/8\"]"),
        &[("APP", app.url())],
    );
    let body = json(send(&trusted).await.unwrap()).await;
    assert_eq!(
        echoed_header(&body, "x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["https"]);
    assert_eq!(
        echoed_header(&body, "x-forwarded-host"),
        ["spoofed.example"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_passes_through() {
    let app = Upstream::start("app").await;
    let p = Postern::start(
        &format!(
            "{}\n[[routes]]\nname = \"ws\"\npath = \"/ws\"\nupstream = \"app\"\naccess = \"public\"\n",
            one_upstream_config("", "")
        ),
        &[("APP", app.url())],
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", p.addr))
        .await
        .expect("websocket handshake through postern");
    assert_eq!(resp.status(), 101);
    for text in ["hello", "second"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let reply = ws.next().await.expect("reply").expect("frame");
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo: {text}"));
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_bodies_over_the_limit() {
    let app = Upstream::start("app").await;
    let p = Postern::start(
        &one_upstream_config("", "max_body_size = \"1KiB\""),
        &[("APP", app.url())],
    );
    let c = client();

    let r = c
        .post(p.url("/public/upload"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "exactly the limit is fine");
    assert_eq!(json(r).await["body"].as_str().unwrap().len(), 1024);

    let hits_before = app.hits();
    let r = c
        .post(p.url("/public/upload"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(json(r).await["error"]["code"], "payload_too_large");
    assert_eq!(
        app.hits(),
        hits_before,
        "a declared oversize body never reaches the app"
    );

    let chunks = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 512]))),
    );
    let r = c
        .post(p.url("/public/stream"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "chunked bodies are counted as they stream");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_upstream_is_502_and_slow_upstream_is_504() {
    let app = Upstream::start("app").await;
    let config = format!(
        r#"{}
[upstreams.dead]
backends = ["${{DEAD}}"]
connect_timeout = "1s"

[[routes]]
name = "dead"
path = "/dead/"
upstream = "dead"
access = "public"
"#,
        one_upstream_config("", "")
    );
    let p = Postern::start(&config, &[("APP", app.url()), ("DEAD", dead_address())]);
    let c = client();

    let r = c.get(p.url("/dead/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(json(r).await["error"]["code"], "upstream_unavailable");

    let r = c
        .get(p.url("/dead/x"))
        .header("Accept", "text/html,*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("502 Bad Gateway"));

    let r = c.get(p.url("/public/slow?ms=3000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(json(r).await["error"]["code"], "upstream_timeout");

    let r = c.get(p.url("/public/slow?ms=10")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "a fast answer on the same route still works"
    );

    let metrics = p.metrics().await;
    assert!(
        metrics.contains(r#"postern_upstream_errors_total{kind="connect",route="dead"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"postern_upstream_errors_total{kind="timeout",route="public"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_skips_a_dead_backend() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let config = format!(
        r#"{}
[upstreams.pool]
backends = ["${{A}}", "${{DEAD}}", "${{B}}"]
fail_timeout = "1m"
retries = 2

[[routes]]
name = "pool"
path = "/"
upstream = "pool"
access = "public"
"#,
        base_config("")
    );
    let p = Postern::start(
        &config,
        &[("A", a.url()), ("B", b.url()), ("DEAD", dead_address())],
    );
    let c = client();
    for i in 0..12 {
        let method = if i % 2 == 0 {
            reqwest::Method::GET
        } else {
            reqwest::Method::POST
        };
        let r = c.request(method, p.url("/rr")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i} failed over to a live backend");
    }
    assert_eq!(a.hits() + b.hits(), 12);
    assert!(
        a.hits() >= 4 && b.hits() >= 4,
        "a={} b={}",
        a.hits(),
        b.hits()
    );
    let metrics = p.metrics().await;
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("postern_upstream_errors_total{kind=\"connect\",route=\"pool\"}"))
        .collect();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].ends_with(" 1"),
        "the dead backend is tried once, then skipped: {failures:?}"
    );
    assert!(
        metrics.contains("postern_backend_up{backend=\"http://127.0.0.1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_route_and_status_class() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&one_upstream_config("", ""), &[("APP", app.url())]);
    let c = client();
    for _ in 0..3 {
        assert_eq!(
            c.get(p.url("/public/x")).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!(
        c.get(p.url("/public/status/503"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(c.get(p.url("/nowhere")).send().await.unwrap().status(), 404);

    let metrics = p.metrics().await;
    for line in [
        r#"postern_requests_total{route="public",status_class="2xx"} 3"#,
        r#"postern_requests_total{route="public",status_class="5xx"} 1"#,
        r#"postern_requests_total{route="none",status_class="4xx"} 1"#,
        r#"postern_request_duration_seconds_count{route="public"} 4"#,
        r#"postern_build_info{version=""#,
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    let health = c.get(p.ops_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = c.get(p.ops_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(json(ready).await["status"], "ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_reports_unresolvable_upstreams() {
    let config = format!(
        r#"{}
[upstreams.app]
backends = ["http://no-such-host.invalid:80"]

[[routes]]
path = "/"
upstream = "app"
access = "public"
"#,
        base_config("")
    );
    let p = Postern::start(&config, &[]);
    let r = client().get(p.ops_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body = json(r).await;
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .contains("upstream app"),
        "{body}"
    );
    let r = client().get(p.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let app = Upstream::start("app").await;
    let p = Postern::start(
        &one_upstream_config("", "")
            .replace("read_timeout = \"500ms\"", "read_timeout = \"10s\"")
            .replace(
                "shutdown_grace_period = \"0s\"",
                "shutdown_grace_period = \"3s\"",
            ),
        &[("APP", app.url())],
    );
    let url = p.url("/public/slow?ms=1500");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = p.addr;
    p.stop(postern::pingora::server::ShutdownSignal::GracefulTerminate)
        .await;
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(resp.status(), 200);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_and_asset_routes_answer_without_reaching_the_app() {
    let app = Upstream::start("app").await;
    let config = format!(
        r#"{}
[stores.files]
type = "fs"

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "assets"
path = "/assets/"
kind = "assets"
store = "files"
key = "shared/{{path}}"

[[routes]]
name = "open-assets"
path = "/open/"
kind = "assets"
store = "files"
access = "public"
"#,
        one_upstream_config("", "")
    );
    let p = Postern::start(&config, &[("APP", app.url())]);
    let c = client();
    let code = |v: Value| v["error"]["code"].as_str().unwrap().to_string();

    let r = c
        .post(p.url("/_postern/files/upload"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    assert_eq!(code(json(r).await), "not_implemented");
    let r = c.get(p.url("/_postern/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(p.url("/assets/logo.png")).send().await.unwrap();
    assert_eq!(r.status(), 401, "access is decided before anything else");
    let r = c.get(p.url("/open/logo.png")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        code(json(r).await),
        "not_found",
        "a missing object, not the app"
    );
    let r = c.head(p.url("/open/logo.png")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "HEAD gets headers only"
    );
    assert_eq!(app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_count_after_the_first_attempt() {
    let live = Upstream::start("live").await;
    let dead = dead_address();
    let config = |retries: u32| {
        format!(
            r#"{}
[upstreams.pool]
backends = ["${{DEAD}}", "${{LIVE}}"]
fail_timeout = "0s"
retries = {retries}

[upstreams.single]
backends = ["${{DEAD}}"]
retries = {retries}

[[routes]]
name = "single"
path = "/single/"
upstream = "single"
access = "public"

[[routes]]
name = "pool"
path = "/"
upstream = "pool"
access = "public"
"#,
            base_config("")
        )
    };
    let vars = [("DEAD", dead.clone()), ("LIVE", live.url())];
    let c = client();
    // Without retries, the requests that start at the dead backend fail.
    let p = Postern::start(&config(0), &vars);
    let mut failed = 0;
    for _ in 0..4 {
        if c.post(p.url("/x")).send().await.unwrap().status() == 502 {
            failed += 1;
        }
    }
    assert_eq!(
        failed, 2,
        "round-robin starts half of them at the dead backend"
    );
    drop(p);
    // retries = 1: one more attempt, on the other backend (a POST too: nothing was sent).
    let p = Postern::start(&config(1), &vars);
    for i in 0..4 {
        let r = c.post(p.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    // With one backend, the retries go to it: three connection attempts for retries = 2.
    drop(p);
    let p = Postern::start(&config(2), &vars);
    let r = c.get(p.url("/single/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let metrics = p.metrics().await;
    assert!(
        metrics.contains(r#"postern_upstream_errors_total{kind="connect",route="single"} 3"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_going_away_is_counted_not_logged_as_an_error() {
    use std::io::{Read, Write};
    let app = Upstream::start("app").await;
    let config = format!(
        r#"{}
[upstreams.app]
backends = ["${{APP}}"]

[[routes]]
name = "app"
path = "/"
upstream = "app"
access = "public"
"#,
        base_config("")
    );
    let p = Postern::start(&config, &[("APP", app.url())]);
    let addr = p.addr;
    // An event stream read for a moment, then the client hangs up.
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = p.metrics().await;
        if metrics.contains("postern_disconnects_total{side=\"client\"} 1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the disconnect was never counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
