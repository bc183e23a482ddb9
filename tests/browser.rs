//! A real browser through the login and account pages: headless Chromium (Debian's), driven by
//! `tests/browser/*.mjs` with playwright-core. Needs `./dev test-setup`; without Chromium the
//! tests say so and pass, except in CI (or with POSTERN_BROWSER_TESTS=1), where they fail.

mod common;

use std::path::Path;
use std::process::Command;

use std::sync::Arc;

use common::{Postern, Upstream, base_config};
use postern::auth::{Clock, ManualClock, SystemClock};
use serde_json::{Value, json};

/// Runs `tests/browser/SCRIPT` with `args` and returns the JSON line it printed.
async fn run_script(script: &str, args: Vec<String>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
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
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("one JSON line")
}

fn echoed_header(seen: &Value, name: &str) -> Option<String> {
    seen["echoed"]["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
        .map(str::to_owned)
}

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
    let args = vec![base, "browser-user".into(), "a browser password".into()];
    let seen = run_script("login.mjs", args).await;

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
    let header = |name: &str| echoed_header(&seen, name);
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

/// A gateway with mail to the outbox and passwords that expire after 30 days, on a clock the
/// test moves.
async fn account_gateway() -> (Postern, Upstream, ManualClock) {
    let app = Upstream::start("app").await;
    let config = format!(
        r#"{}
[accounts]
public_url = "https://mail-link.example"
rate_per_minute = 1000

[mail]
transport = "outbox"

[passwords]
max_age = "30d"
{}"#,
        base_config(""),
        common::builtin_and_app_routes()
    );
    let clock = ManualClock::new(SystemClock.now());
    let shared = Arc::new(clock.clone());
    let vars = [("APP", app.url())];
    let p = tokio::task::spawn_blocking(move || Postern::start_with_clock(&config, &vars, shared))
        .await
        .unwrap();
    (p, app, clock)
}

fn flow_args(
    p: &Postern,
    flow: &str,
    user: &str,
    password: &str,
    new_password: &str,
) -> Vec<String> {
    vec![
        flow.into(),
        format!("http://localhost:{}", p.addr.port()),
        p.data_dir.path().join("mail").display().to_string(),
        user.into(),
        password.into(),
        new_password.into(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_resets_a_forgotten_password_from_the_mailed_link() {
    if !browser_available() {
        return;
    }
    let (p, _app, _clock) = account_gateway().await;
    p.add_user("forgetful", "the lost passphrase", &[]).await;
    let args = flow_args(&p, "reset", "forgetful", "", "a remembered passphrase");
    let seen = run_script("accounts.mjs", args).await;
    assert_eq!(
        seen["titles"],
        json!([
            "Forgot your password?",
            "Check your mail",
            "Choose a new password",
            "Password changed",
            ""
        ]),
        "{seen}"
    );
    assert!(
        seen["sentMessage"]
            .as_str()
            .unwrap()
            .contains("If an account matches")
    );
    assert_eq!(
        echoed_header(&seen, "x-postern-user").as_deref(),
        Some("forgetful")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_accepts_an_invitation_and_chooses_a_password() {
    if !browser_available() {
        return;
    }
    let (p, _app, _clock) = account_gateway().await;
    p.add_user("chief", "the chief passphrase", &["admin"])
        .await;
    let admin = p.login_cookie("chief", "the chief passphrase").await;
    let created = common::http_client()
        .post(p.url("/_postern/admin/users"))
        .header("cookie", admin)
        .json(&json!({"username": "invitee", "email": "invitee@example.com", "send_verification": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let args = flow_args(&p, "invite", "invitee", "", "my first passphrase");
    let seen = run_script("accounts.mjs", args).await;
    assert_eq!(seen["titles"][0], "Set your password", "{seen}");
    assert_eq!(
        echoed_header(&seen, "x-postern-user").as_deref(),
        Some("invitee")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_with_an_expired_password_must_change_it_before_the_app_loads() {
    if !browser_available() {
        return;
    }
    let (p, _app, clock) = account_gateway().await;
    p.add_user("stale", "an aging passphrase", &[]).await;
    clock.advance(31 * 86_400);
    let args = flow_args(
        &p,
        "expired",
        "stale",
        "an aging passphrase",
        "a fresh passphrase",
    );
    let seen = run_script("accounts.mjs", args).await;
    let urls: Vec<&str> = seen["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(
        urls[0].contains("/_postern/login?return_to=%2Freports%2Fq4"),
        "{seen}"
    );
    assert!(
        urls[1].contains("/_postern/expired?return_to=%2Freports%2Fq4"),
        "{seen}"
    );
    assert_eq!(seen["titles"][1], "Your password has expired");
    assert!(urls[2].ends_with("/reports/q4"), "{seen}");
    assert_eq!(
        echoed_header(&seen, "x-postern-user").as_deref(),
        Some("stale")
    );
}

/// A react-stormpath front end (its own UserService and ClientApiUserService from npm) against
/// the Stormpath-flavoured account API mounted at `/`.
#[tokio::test(flavor = "multi_thread")]
async fn react_stormpath_client_code_runs_unchanged_against_the_account_api() {
    if !browser_available() {
        return;
    }
    let app = Upstream::start("app").await;
    let config = format!(
        r#"{}
[accounts]
registration = "open"
verification = "required"
public_url = "https://spa.example"
rate_per_minute = 1000

[mail]
transport = "outbox"

[upstreams.app]
backends = ["${{APP}}"]

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "stormpath"
path = "/"
kind = "account-api"

[[routes]]
name = "spa"
path = "/"
upstream = "app"
access = "public"
"#,
        base_config("")
    );
    let p = Postern::start(&config, &[("APP", app.url())]);
    let base = format!("http://localhost:{}", p.addr.port());
    let args = vec![
        base,
        p.data_dir.path().join("mail").display().to_string(),
        "stella@example.com".into(),
        "first bright passphrase".into(),
        "second bright passphrase".into(),
    ];
    let seen = run_script("stormpath.mjs", args).await;
    let ok = |step: &str| {
        assert!(seen[step].get("error").is_none(), "{step}: {}", seen[step]);
        seen[step]["result"].clone()
    };
    let failed = |step: &str| {
        assert!(
            seen[step].get("error").is_some(),
            "{step} should fail: {}",
            seen[step]
        );
        seen[step]["error"].clone()
    };
    assert_eq!(ok("loginView")["form"]["fields"][0]["name"], "login");
    assert_eq!(ok("registerView")["form"]["fields"][2]["name"], "email");
    let registered = ok("register");
    assert_eq!(registered["status"], "UNVERIFIED", "{registered}");
    assert_eq!(registered["customData"]["favoriteColor"], "teal");
    assert_eq!(failed("loginUnverified")["status"], 401);
    ok("verify");
    let logged_in = ok("login");
    assert_eq!(logged_in["email"], "stella@example.com");
    assert_eq!(logged_in["status"], "ENABLED");
    assert_eq!(ok("me")["givenName"], "Stella");
    ok("update");
    let updated = ok("meAfterUpdate");
    assert_eq!(updated["givenName"], "Estelle");
    assert_eq!(updated["fullName"], "Estelle Path");
    assert_eq!(updated["customData"]["favoriteColor"], "green");
    ok("logout");
    assert_eq!(failed("meAfterLogout")["status"], 401);
    ok("forgot");
    ok("change");
    assert_eq!(failed("oldPassword")["status"], 401);
    assert_eq!(ok("newPassword")["email"], "stella@example.com");
    ok("logoutAgain");

    let tokens = ok("apiLogin");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(
        tokens["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() == 43)
    );
    assert_eq!(ok("apiMe")["email"], "stella@example.com", "{seen}");
    assert!(ok("apiRefresh")["access_token"].as_str().is_some());
    ok("apiLogout");
    assert!(
        seen["apiRefreshAfterLogout"].get("error").is_some(),
        "revoked: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_the_console_in_a_browser_without_javascript() {
    if !browser_available() {
        return;
    }
    let app = Upstream::start("app").await;
    let fs_root = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{}
[mail]
transport = "outbox"

[accounts]
public_url = "https://console.example"

[stores.local]
type = "fs"
root = "${{FS_ROOT}}"

[[routes]]
name = "files"
path = "/_postern/files"
kind = "uploads"
store = "local"
api = true
{}"#,
        base_config(""),
        common::builtin_and_app_routes()
    );
    let p = Postern::start(
        &config,
        &[
            ("APP", app.url()),
            ("FS_ROOT", fs_root.path().display().to_string()),
        ],
    );
    p.add_user("operator", "an operator password 1", &["admin"])
        .await;
    p.add_user("pat", "a member password 1", &["staff"]).await;
    let store = p.store().await;
    store
        .create_role("editors", "Edit things", 0)
        .await
        .unwrap();
    let pat_cookie = p.login_cookie("pat", "a member password 1").await;
    let me = |cookie: String| {
        let url = p.url("/_postern/me");
        async move {
            common::http_client()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(me(pat_cookie.clone()).await, 200);

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "First Name,Last Name,Email,Role,Password\n\
         Ada,Lovelace,ada@example.com,staff,an imported password 1\n\
         Grace,Hopper,grace@example.com,,\n\
         Bad,Email,not-an-email,,\n\
         Weak,Password,weak@example.com,,short\n",
    )
    .unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let base = format!("http://localhost:{}", p.addr.port());
    let args = vec![
        base.clone(),
        "operator".into(),
        "an operator password 1".into(),
        "pat".into(),
        csv.display().to_string(),
        shots.display().to_string(),
    ];
    let seen = run_script("console.mjs", args).await;

    assert!(
        seen["loginUrl"]
            .as_str()
            .unwrap()
            .ends_with("/_postern/login?return_to=%2F_postern%2Fconsole%2F"),
        "{seen}"
    );
    assert_eq!(seen["overviewCharts"], 7);
    assert_eq!(seen["firstFocus"], "Skip to content");
    assert_eq!(seen["searchRows"], 1);
    assert_eq!(seen["userTitle"], "pat");
    assert_eq!(
        seen["addRole"],
        "Role granted; their sessions pick it up at once."
    );
    assert_eq!(seen["removeRole"], "Role taken away.");
    assert_eq!(seen["roleChips"], json!(["editors"]));
    assert_eq!(
        (
            seen["sessionsBefore"].as_u64(),
            seen["sessionsAfter"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(seen["revoke"], "Session ended.");
    assert_eq!(
        me(pat_cookie).await,
        401,
        "the revoked session's next request is refused"
    );
    let pat = store.user_by_login("pat").await.unwrap().unwrap();
    assert_eq!(pat.roles, ["editors"]);

    assert_eq!(
        seen["preview"],
        "2 row(s) can be imported, 2 have problems."
    );
    let problems = seen["previewProblems"].to_string();
    assert!(problems.contains("not an email address"), "{problems}");
    assert!(
        problems.contains("password: the password must be at least"),
        "{problems}"
    );
    assert_eq!(seen["imported"], "Imported 2 user(s); 2 row(s) refused.");
    assert!(
        store
            .user_by_login("grace@example.com")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .user_by_login("weak@example.com")
            .await
            .unwrap()
            .is_none()
    );

    assert_eq!(seen["deleted"], "User deleted.");
    assert!(
        seen["afterDeleteUrl"]
            .as_str()
            .unwrap()
            .ends_with("/_postern/console/users?notice=user_deleted")
    );
    assert!(
        store
            .user_by_login("ada@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(seen["phoneOverflow"].as_i64().unwrap() <= 0, "{seen}");

    // Nothing from another origin, on any page.
    for url in seen["requests"].as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with(&format!("{base}/")),
            "the console loaded {url}"
        );
    }
    let screenshots = seen["screenshots"].as_object().unwrap();
    for name in [
        "overview",
        "users",
        "user",
        "import",
        "import-preview",
        "import-done",
        "roles",
        "events",
        "new-user",
        "files",
        "users-phone",
    ] {
        let size = screenshots[name].as_u64().unwrap_or(0);
        assert!(size > 5_000, "screenshot {name} is {size} bytes");
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}");
    }
    eprintln!("console screenshots in {}", shots.display());
    store.close().await;
}
