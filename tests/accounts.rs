//! The account lifecycle through the gateway, with mail written to the outbox: registration and
//! verification, forgot and reset, change, history, policy, expiry, admin invitations, and the
//! attacks each one invites (enumeration, token reuse, expired tokens, forged forms).

mod common;

use std::sync::Arc;

use common::{
    Postern, Upstream, base_config, builtin_and_app_routes, http_client, mail_header, mail_token,
};
use postern::auth::{Clock, ManualClock, SystemClock};
use postern::store::EventFilter;
use serde_json::{Value, json};

const DAY: i64 = 86_400;

/// A gateway with open registration and the outbox; `accounts` and `rest` add keys to
/// `[accounts]` and further sections.
fn config(accounts: &str, rest: &str) -> String {
    format!(
        r#"{}
[accounts]
registration = "open"
public_url = "https://gw.example"
rate_per_minute = 1000
{accounts}

[mail]
transport = "outbox"
from = "Example <noreply@example.com>"
app_name = "Example"

{rest}
{}"#,
        base_config(""),
        builtin_and_app_routes()
    )
}

struct Gateway {
    p: Postern,
    _app: Upstream,
    clock: ManualClock,
}

async fn start(accounts: &str, rest: &str) -> Gateway {
    let app = Upstream::start("app").await;
    let clock = ManualClock::new(SystemClock.now());
    let config = config(accounts, rest);
    let vars = [("APP", app.url())];
    let shared = Arc::new(clock.clone());
    let p = tokio::task::spawn_blocking(move || Postern::start_with_clock(&config, &vars, shared))
        .await
        .unwrap();
    Gateway {
        p,
        _app: app,
        clock,
    }
}

struct Answer {
    status: u16,
    body: Value,
    cookie: Option<String>,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let cookie = header("set-cookie").map(|c| c.split(';').next().unwrap().to_string());
    let body = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        cookie,
    }
}

async fn post(p: &Postern, path: &str, body: Value, cookie: Option<&str>) -> Answer {
    let mut req = http_client().post(p.url(path)).json(&body);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    send(req).await
}

async fn get(p: &Postern, path: &str, cookie: Option<&str>) -> Answer {
    let mut req = http_client().get(p.url(path));
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    send(req).await
}

async fn login(p: &Postern, user: &str, password: &str) -> Answer {
    post(
        p,
        "/_postern/login",
        json!({"username": user, "password": password}),
        None,
    )
    .await
}

async fn events(p: &Postern, kind: &str) -> Vec<postern::store::Event> {
    let store = p.store().await;
    let list = store
        .events(&EventFilter {
            kind: Some(kind.to_string()),
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    store.close().await;
    list
}

fn subject(message: &str) -> String {
    mail_header(message, "subject").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn open_registration_without_verification_signs_in_at_once() {
    let g = start("", "[passwords]\nmin_length = 10").await;
    let p = &g.p;
    let a = post(
        p,
        "/_postern/register",
        json!({"username": "walt", "email": "walt@example.com", "password": "a fine long passphrase", "given_name": "Walt"}),
        None,
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["status"], "enabled");
    assert_eq!(a.body["verification_required"], false);
    assert!(a.body.get("password_hash").is_none());
    let mail = p.outbox(1).await;
    assert_eq!(subject(&mail[0]), "Welcome to Example");
    assert!(mail[0].contains("To: walt@example.com"), "{}", mail[0]);
    assert_eq!(login(p, "walt", "a fine long passphrase").await.status, 200);
    assert_eq!(events(p, "account.registered").await.len(), 1);

    let taken = post(
        p,
        "/_postern/register",
        json!({"username": "WALT", "email": "other@example.com", "password": "a fine long passphrase"}),
        None,
    )
    .await;
    assert_eq!((taken.status, taken.code()), (409, "conflict"));
    // a username that is someone's email would shadow their login (and their reset mail)
    let emailish = post(
        p,
        "/_postern/register",
        json!({"username": "dora@example.org", "email": "dora@example.net", "password": "a fine long passphrase"}),
        None,
    )
    .await;
    assert_eq!(emailish.status, 201);
    for (username, email) in [
        ("Walt@Example.com", "mallory@example.com"),
        ("eve", "DORA@example.org"),
    ] {
        let shadow = post(
            p,
            "/_postern/register",
            json!({"username": username, "email": email, "password": "a fine long passphrase"}),
            None,
        )
        .await;
        assert_eq!(
            (shadow.status, shadow.code()),
            (409, "conflict"),
            "{username} {email}"
        );
    }
    let garbled = post(
        p,
        "/_postern/register",
        json!({"username": "gary", "email": "a,b@example.com", "password": "a fine long passphrase"}),
        None,
    )
    .await;
    assert_eq!(
        (garbled.status, garbled.body["error"]["field"].as_str()),
        (422, Some("email"))
    );
    let short = post(
        p,
        "/_postern/register",
        json!({"username": "ann", "email": "ann@example.com", "password": "too short"}),
        None,
    )
    .await;
    assert_eq!((short.status, short.code()), (422, "password_policy"));
    assert_eq!(short.body["error"]["rule"], "min_length");
}

#[tokio::test(flavor = "multi_thread")]
async fn verification_blocks_login_until_the_link_is_followed_once() {
    let g = start("verification = \"required\"\nverify_ttl = \"1h\"", "").await;
    let p = &g.p;
    let a = post(
        p,
        "/_postern/register",
        json!({"username": "vera", "email": "vera@example.com", "password": "violet skies at noon"}),
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (201, Some("unverified"))
    );
    assert_eq!(login(p, "vera", "violet skies at noon").await.status, 401);

    let mail = p.outbox(1).await;
    assert_eq!(subject(&mail[0]), "Please verify your account");
    assert!(mail[0].contains("https://gw.example/_postern/verify?token"));
    let token = mail_token(&mail[0], "verify");
    assert_eq!(token.len(), 43);

    // the stored token is a hash: the link's token is nowhere in the database
    let store = p.store().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM account_tokens")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(!stored.is_empty() && stored.iter().all(|h| h != &token && h.len() == 64));
    store.close().await;

    let wrong = get(
        p,
        "/_postern/verify?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        None,
    )
    .await;
    assert_eq!((wrong.status, wrong.code()), (400, "invalid_account_token"));

    // following the link (as a mail scanner would) uses nothing up: the POST verifies
    for _ in 0..2 {
        let peek = get(p, &format!("/_postern/verify?token={token}"), None).await;
        assert_eq!(
            peek.body,
            json!({"status": "valid", "password_required": false})
        );
    }
    assert_eq!(login(p, "vera", "violet skies at noon").await.status, 401);
    let with_password = post(
        p,
        "/_postern/verify",
        json!({"token": token, "password": "a replacement passphrase"}),
        None,
    )
    .await;
    assert_eq!(
        (
            with_password.status,
            with_password.body["error"]["field"].as_str()
        ),
        (422, Some("password")),
        "a verification link never replaces a password"
    );
    let ok = post(p, "/_postern/verify", json!({"token": token}), None).await;
    assert_eq!(
        (ok.status, ok.body["status"].as_str()),
        (200, Some("verified")),
        "{}",
        ok.body
    );
    assert_eq!(ok.body["user"]["status"], "enabled");
    assert_eq!(login(p, "vera", "violet skies at noon").await.status, 200);
    let again = post(p, "/_postern/verify", json!({"token": token}), None).await;
    assert_eq!((again.status, again.code()), (400, "invalid_account_token"));

    let mail = p.outbox(3).await;
    let subjects: Vec<String> = mail.iter().map(|m| subject(m)).collect();
    assert!(
        subjects.contains(&"Your account has been confirmed".to_string()),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"Welcome to Example".to_string()),
        "{subjects:?}"
    );
    assert_eq!(events(p, "account.verified").await.len(), 1);
    let sent = events(p, "mail.sent").await;
    assert!(sent.len() >= 3);
    assert!(
        sent.iter().all(|e| !e.detail.to_string().contains(&token)),
        "no token in events"
    );

    // an expired link: 410, and a new one can be asked for, with the same answer for anyone
    let b = post(
        p,
        "/_postern/register",
        json!({"username": "late", "email": "late@example.com", "password": "violet skies at noon"}),
        None,
    )
    .await;
    assert_eq!(b.status, 201);
    let mail = p.outbox(4).await;
    let late_token = mail_token(mail.last().unwrap(), "verify");
    g.clock.advance(3601);
    let expired = get(p, &format!("/_postern/verify?token={late_token}"), None).await;
    assert_eq!(
        (expired.status, expired.code()),
        (410, "account_token_expired")
    );
    let resend = post(p, "/_postern/verify", json!({"login": "late"}), None).await;
    let nobody = post(
        p,
        "/_postern/verify",
        json!({"login": "nobody-at-all"}),
        None,
    )
    .await;
    assert_eq!(resend.status, 202);
    assert_eq!((resend.status, &resend.body), (nobody.status, &nobody.body));
    let mail = p.outbox(5).await;
    let fresh = mail_token(mail.last().unwrap(), "verify");
    assert_ne!(fresh, late_token);
    let verified = post(p, "/_postern/verify", json!({"token": fresh}), None).await;
    assert_eq!(verified.body["status"], "verified");
}

#[tokio::test(flavor = "multi_thread")]
async fn forgot_and_reset_without_enumeration() {
    let g = start("reset_ttl = \"30m\"", "").await;
    let p = &g.p;
    p.add_user("rita", "old password here", &[]).await;
    let other_session = login(p, "rita", "old password here").await.cookie.unwrap();

    let known = post(p, "/_postern/forgot", json!({"login": "rita"}), None).await;
    let unknown = post(
        p,
        "/_postern/forgot",
        json!({"login": "nobody@example.com"}),
        None,
    )
    .await;
    assert_eq!(known.status, 202);
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    let by_email = post(
        p,
        "/_postern/forgot",
        json!({"email": "rita@example.com"}),
        None,
    )
    .await;
    assert_eq!(
        (by_email.status, &by_email.body),
        (known.status, &known.body)
    );

    let mail = p.outbox(2).await;
    assert_eq!(mail.len(), 2, "only the real account got mail");
    assert!(mail.iter().all(|m| m.contains("To: rita@example.com")));
    // the newer link replaced the older one
    let first = mail_token(&mail[0], "reset");
    let token = mail_token(&mail[1], "reset");
    assert_eq!(
        get(p, &format!("/_postern/reset?token={first}"), None)
            .await
            .status,
        400
    );
    let valid = get(p, &format!("/_postern/reset?token={token}"), None).await;
    assert_eq!(
        (valid.status, valid.body["status"].as_str()),
        (200, Some("valid"))
    );

    let weak = post(
        p,
        "/_postern/reset",
        json!({"token": token, "password": "password123"}),
        None,
    )
    .await;
    assert_eq!(
        (weak.status, weak.body["error"]["rule"].as_str()),
        (422, Some("blocklist"))
    );
    let done = post(
        p,
        "/_postern/reset",
        json!({"token": token, "password": "new password there"}),
        None,
    )
    .await;
    assert_eq!(
        (done.status, done.body["status"].as_str()),
        (200, Some("reset")),
        "{}",
        done.body
    );
    let reused = post(
        p,
        "/_postern/reset",
        json!({"token": token, "password": "another one again"}),
        None,
    )
    .await;
    assert_eq!(
        (reused.status, reused.code()),
        (400, "invalid_account_token")
    );

    assert_eq!(login(p, "rita", "old password here").await.status, 401);
    assert_eq!(login(p, "rita", "new password there").await.status, 200);
    assert_eq!(
        get(p, "/_postern/me", Some(&other_session)).await.status,
        401,
        "sessions ended"
    );
    let mail = p.outbox(3).await;
    assert_eq!(subject(&mail[2]), "Your password has been reset");
    assert_eq!(events(p, "password.reset_requested").await.len(), 2);
    assert_eq!(events(p, "password.reset").await.len(), 1);

    // a link past its lifetime: 410
    assert_eq!(
        post(p, "/_postern/forgot", json!({"login": "rita"}), None)
            .await
            .status,
        202
    );
    let mail = p.outbox(4).await;
    let late = mail_token(&mail[3], "reset");
    g.clock.advance(31 * 60);
    let expired = post(
        p,
        "/_postern/reset",
        json!({"token": late, "password": "yet another phrase"}),
        None,
    )
    .await;
    assert_eq!(
        (expired.status, expired.code()),
        (410, "account_token_expired")
    );

    let metrics = p.metrics().await;
    assert!(
        metrics.contains("postern_account_tokens_total{purpose=\"reset\",result=\"issued\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("postern_account_tokens_total{purpose=\"reset\",result=\"used\"} 1"));
    assert!(
        metrics.contains("postern_account_tokens_total{purpose=\"reset\",result=\"expired\"} 1")
    );
    assert!(metrics.contains("postern_mail_total{kind=\"password_reset\",result=\"sent\"} 3"));
    assert!(metrics.contains("postern_mail_queue_depth 0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_need_the_csrf_token_and_mail_is_rate_limited_per_account() {
    let g = start("mails_per_hour = 2", "").await;
    let p = &g.p;
    p.add_user("fran", "a sturdy passphrase", &[]).await;
    let forged = http_client()
        .post(p.url("/_postern/forgot"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("login=fran")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    for _ in 0..4 {
        assert_eq!(
            post(p, "/_postern/forgot", json!({"login": "fran"}), None)
                .await
                .status,
            202
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        p.outbox(2).await.len(),
        2,
        "two mails an hour for one account"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn change_with_history_ends_other_sessions_and_keeps_this_one() {
    let g = start("", "[passwords]\nhistory = 2").await;
    let p = &g.p;
    p.add_user("hal", "first passphrase one", &[]).await;
    let elsewhere = login(p, "hal", "first passphrase one")
        .await
        .cookie
        .unwrap();
    let mut here = login(p, "hal", "first passphrase one")
        .await
        .cookie
        .unwrap();

    let change = |current: &'static str, new: &'static str, cookie: String| async move {
        post(
            p,
            "/_postern/change",
            json!({"current_password": current, "new_password": new}),
            Some(&cookie),
        )
        .await
    };
    let wrong = change("not the password", "second passphrase two", here.clone()).await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (403, "wrong_password"),
        "{}",
        wrong.body
    );
    let same = change("first passphrase one", "first passphrase one", here.clone()).await;
    assert_eq!(
        (same.status, same.body["error"]["rule"].as_str()),
        (422, Some("history"))
    );

    let ok = change(
        "first passphrase one",
        "second passphrase two",
        here.clone(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    here = ok.cookie.expect("a new session for this client");
    assert_eq!(get(p, "/_postern/me", Some(&here)).await.status, 200);
    assert_eq!(get(p, "/_postern/me", Some(&elsewhere)).await.status, 401);

    let ok = change(
        "second passphrase two",
        "third passphrase three",
        here.clone(),
    )
    .await;
    assert_eq!(ok.status, 200);
    here = ok.cookie.unwrap();
    // the last 2 (current and previous) are refused; the one before them is accepted
    for reused in ["third passphrase three", "second passphrase two"] {
        let r = change("third passphrase three", reused, here.clone()).await;
        assert_eq!(
            (r.status, r.body["error"]["rule"].as_str()),
            (422, Some("history")),
            "{reused}"
        );
    }
    let ok = change(
        "third passphrase three",
        "first passphrase one",
        here.clone(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    here = ok.cookie.unwrap();

    let mail = p.outbox(3).await;
    assert!(
        mail.iter()
            .all(|m| subject(m) == "Your password was changed")
    );
    assert_eq!(events(p, "password.changed").await.len(), 3);
    let store = p.store().await;
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM password_history")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(kept, 2, "history keeps only the last N hashes");
    store.close().await;

    // a cookie-authenticated change from a form without the CSRF field is refused
    let forged = http_client()
        .post(p.url("/_postern/change"))
        .header("cookie", &here)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("current_password=first+passphrase+one&password=x&password_confirm=x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_policy_rule_refuses_with_its_name() {
    let lists = tempfile::tempdir().unwrap();
    let blocklist = lists.path().join("refused.txt");
    std::fs::write(&blocklist, "# our own refused passwords\nSummer-2024!x\n").unwrap();
    let g = start(
        "",
        &format!(
            "[passwords]\nmin_length = 10\nmax_length = 20\nmin_uppers = 1\nmin_lowers = 1\nmin_digits = 1\nmin_specials = 1\nmin_strength = 3\nblocklist = \"{}\"",
            blocklist.display()
        ),
    )
    .await;
    let p = &g.p;
    let policy = get(p, "/_postern/password-policy", None).await;
    assert_eq!(policy.status, 200);
    assert_eq!(policy.body["min_length"], 10);
    assert_eq!(policy.body["min_strength"], 3);
    assert_eq!(policy.body["blocklist"], true);
    let cases = [
        ("Sh0rt!", "min_length"),
        ("Waytoolong-123456789!", "max_length"),
        ("lowercase-only-1", "min_uppers"),
        ("UPPERCASE-ONLY-1", "min_lowers"),
        ("No-Digits-Here", "min_digits"),
        ("NoSpecials123x", "min_specials"),
        ("xPolly-Pocket1", "not_like_identity"),
        ("SUMMER-2024!x", "blocklist"),
        ("Aaaaaaaaaa1!", "min_strength"),
    ];
    for (password, rule) in cases {
        let r = post(
            p,
            "/_postern/register",
            json!({"username": "polly-pocket", "email": "pp@example.com", "password": password}),
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.code(), r.body["error"]["rule"].as_str()),
            (422, "password_policy", Some(rule)),
            "{password}: {}",
            r.body
        );
    }
    let ok = post(
        p,
        "/_postern/register",
        json!({"username": "polly-pocket", "email": "pp@example.com", "password": "Tr4in-Harbor-Moss"}),
        None,
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_password_restricts_the_session_until_it_is_changed() {
    let g = start("", "[passwords]\nmax_age = \"30d\"").await;
    let p = &g.p;
    p.add_user("olga", "original passphrase", &[]).await;
    g.clock.advance(31 * DAY);
    let a = login(p, "olga", "original passphrase").await;
    assert_eq!(a.status, 200, "login still succeeds");
    assert_eq!(a.body["password_expired"], true);
    let cookie = a.cookie.unwrap();
    assert_eq!(events(p, "password.expired_login").await.len(), 1);

    let me = get(p, "/_postern/me", Some(&cookie)).await;
    assert_eq!(
        (me.status, me.body["password_expired"].as_bool()),
        (200, Some(true))
    );
    let api = get(p, "/reports", Some(&cookie)).await;
    assert_eq!((api.status, api.code()), (403, "password_expired"));
    let browser = http_client()
        .get(p.url("/reports?q=1"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 302);
    assert_eq!(
        browser.headers()["location"],
        "/_postern/expired?return_to=%2Freports%3Fq%3D1"
    );
    let token = post(p, "/_postern/token", json!({}), Some(&cookie)).await;
    assert_eq!((token.status, token.code()), (403, "password_expired"));
    let same = post(
        p,
        "/_postern/expired",
        json!({"current_password": "original passphrase", "new_password": "original passphrase"}),
        Some(&cookie),
    )
    .await;
    assert_eq!(
        (same.status, same.body["error"]["rule"].as_str()),
        (422, Some("history")),
        "the same password does not renew an expired one, history or not"
    );
    let page = http_client()
        .get(p.url("/_postern/expired"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Your password has expired")
    );

    let changed = post(
        p,
        "/_postern/expired",
        json!({"current_password": "original passphrase", "new_password": "renewed passphrase"}),
        Some(&cookie),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let cookie = changed.cookie.unwrap();
    assert_eq!(changed.body["user"]["password_expired"], false);
    assert_eq!(
        get(p, "/reports", Some(&cookie)).await.status,
        200,
        "the restriction lifted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_invites_a_user_who_verifies_and_chooses_a_password() {
    let g = start("", "").await;
    let p = &g.p;
    p.add_user("boss", "the boss passphrase", &["admin"]).await;
    let admin = login(p, "boss", "the boss passphrase")
        .await
        .cookie
        .unwrap();
    let created = post(
        p,
        "/_postern/admin/users",
        json!({"username": "newbie", "email": "newbie@example.com", "send_verification": true, "send_welcome": false}),
        Some(&admin),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "unverified");
    assert_eq!(created.body["has_password"], false);
    let mail = p.outbox(1).await;
    let token = mail_token(&mail[0], "verify");
    let first = get(p, &format!("/_postern/verify?token={token}"), None).await;
    assert_eq!(
        first.body,
        json!({"status": "valid", "password_required": true})
    );
    let bare = post(p, "/_postern/verify", json!({"token": token}), None).await;
    assert_eq!(
        (bare.status, bare.body["error"]["field"].as_str()),
        (422, Some("password"))
    );
    let weak = post(
        p,
        "/_postern/verify",
        json!({"token": token, "password": "newbie"}),
        None,
    )
    .await;
    assert_eq!(weak.status, 422);
    let done = post(
        p,
        "/_postern/verify",
        json!({"token": token, "password": "my very own passphrase"}),
        None,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let session = done.cookie.expect("signed in");
    let me = get(p, "/_postern/me", Some(&session)).await;
    assert_eq!(
        (me.status, me.body["status"].as_str()),
        (200, Some("enabled"))
    );

    // an admin-triggered reset mails a link
    let id = created.body["id"].as_str().unwrap();
    let reset = post(
        p,
        &format!("/_postern/admin/users/{id}/reset-password"),
        json!({}),
        Some(&admin),
    )
    .await;
    assert_eq!(reset.status, 202, "{}", reset.body);
    let mail = p.outbox(4).await;
    assert!(mail.iter().any(|m| m.contains("/_postern/reset?token")));
    let requested = events(p, "password.reset_requested").await;
    assert_eq!(requested[0].actor.as_deref(), Some("boss"));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_mail_the_mail_endpoints_say_so_and_registration_can_be_closed() {
    let app = Upstream::start("app").await;
    let config = format!("{}{}", base_config(""), builtin_and_app_routes());
    let p = Postern::start(&config, &[("APP", app.url())]);
    let forgot = post(&p, "/_postern/forgot", json!({"login": "x"}), None).await;
    assert_eq!((forgot.status, forgot.code()), (501, "mail_disabled"));
    let register = post(
        &p,
        "/_postern/register",
        json!({"username": "x", "email": "x@example.com", "password": "long enough passphrase"}),
        None,
    )
    .await;
    assert_eq!(
        (register.status, register.code()),
        (403, "registration_closed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_requests_are_rate_limited_per_address() {
    let app = Upstream::start("app").await;
    let config = config("", "").replace("rate_per_minute = 1000", "rate_per_minute = 3");
    let p = Postern::start(&config, &[("APP", app.url())]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            post(&p, "/_postern/forgot", json!({"login": "x"}), None)
                .await
                .status,
        );
    }
    assert_eq!(statuses, [202, 202, 202, 429, 429]);
}
