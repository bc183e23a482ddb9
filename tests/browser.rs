//! A real browser through the login page: headless Chromium (Debian's), driven by
//! `tests/browser/login.mjs` with playwright-core. Needs `./dev test-setup`; without Chromium
//! the test says so and passes, except in CI (or with POSTERN_BROWSER_TESTS=1), where it fails.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Postern, Upstream, base_config};
use serde_json::Value;

fn browser_available() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script_deps =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    let ok = Path::new(&chromium).exists()
        && script_deps.exists()
        && Command::new("node").arg("--version").output().is_ok();
    let required = std::env::var("CI").is_ok_and(|v| !v.is_empty())
        || std::env::var("POSTERN_BROWSER_TESTS").is_ok();
    if !ok && required {
        panic!(
            "the browser test must run here but Chromium or tests/browser/node_modules is missing: run ./dev test-setup"
        );
    }
    if !ok {
        eprintln!(
            "browser test skipped: Chromium or tests/browser/node_modules missing (./dev test-setup)"
        );
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_logs_in_and_returns_to_the_protected_page() {
    if !browser_available() {
        return;
    }
    let app = Upstream::start("app").await;
    let config = format!(
        r#"{}
[upstreams.app]
backends = ["${{APP}}"]

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "app"
path = "/"
upstream = "app"
"#,
        base_config("")
    );
    let p = Postern::start(&config, &[("APP", app.url())]);
    let user = p
        .add_user("browser-user", "a browser password", &["staff"])
        .await;
    let base = format!("http://localhost:{}", p.addr.port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/login.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args([base.as_str(), "browser-user", "a browser password"])
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("one JSON line");

    assert!(
        seen["loginUrl"]
            .as_str()
            .unwrap()
            .contains("/_postern/login?return_to=%2Freports%2Fq3%3Fyear%3D2026"),
        "{seen}"
    );
    assert_eq!(seen["title"], "Sign in");
    assert_eq!(
        seen["finalUrl"].as_str().unwrap(),
        format!("http://localhost:{}/reports/q3?year=2026", p.addr.port())
    );
    let echoed_headers = seen["echoed"]["headers"].as_array().unwrap();
    let header = |name: &str| {
        echoed_headers
            .iter()
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair[1].as_str())
            .map(str::to_owned)
    };
    assert_eq!(header("x-postern-user").as_deref(), Some("browser-user"));
    assert_eq!(
        header("x-postern-user-id").as_deref(),
        Some(user.id.as_str())
    );
    assert_eq!(header("x-postern-roles").as_deref(), Some("staff"));
    let session_cookie = seen["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-postern")
        .expect("the browser kept the session cookie");
    assert_eq!(session_cookie["httpOnly"], true);
    assert_eq!(session_cookie["secure"], true);
    assert_eq!(session_cookie["sameSite"], "Lax");
}
