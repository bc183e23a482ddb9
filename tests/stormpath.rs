//! The Stormpath-flavoured account API (`kind = "account-api"`) over HTTP: the JSON shapes
//! react-stormpath and userdb's stormpath transformer produced, mounted at `/` beside the app,
//! and the same security as postern's own endpoints. (`tests/browser.rs` runs react-stormpath's
//! own client code against it.)

mod common;

use common::{Postern, Upstream, base_config, echoed_header, http_client, mail_text};
use serde_json::{Value, json};

fn config() -> String {
    format!(
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
href_base = "https://api.example/v1"
protected_custom_data = ["plan"]

[[routes]]
name = "api"
path = "/api/"
upstream = "app"

[[routes]]
name = "spa"
path = "/"
upstream = "app"
access = "public"
"#,
        base_config("")
    )
}

struct Answer {
    status: u16,
    body: Value,
    cookie: Option<String>,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let r = req
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    let text = r.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
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

/// The `sptoken` of the newest mailed link to `page`.
async fn sptoken(p: &Postern, count: usize, page: &str) -> String {
    let mail = p.outbox(count).await;
    let text = mail_text(&mail[count - 1]);
    let marker = format!("https://spa.example/{page}?sptoken=");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in {text}"))
        + marker.len();
    text[start..start + 43].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stormpath_contract_end_to_end() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(), &[("APP", app.url())]);

    // the view models, and the app still answering browsers and everything else
    let view = get(&p, "/login", None).await;
    assert_eq!(view.body["form"]["fields"][0]["name"], "login");
    assert_eq!(view.body["accountStores"], json!([]));
    let page = http_client()
        .get(p.url("/login"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let echoed: Value = page.json().await.unwrap();
    assert_eq!(
        echoed["uri"], "/login",
        "a browser opening /login gets the app's page"
    );
    assert_eq!(get(&p, "/about", None).await.body["uri"], "/about");
    // a mailed link's token stays in the browser: the app's server never sees it
    let page = http_client()
        .get(p.url("/verify?sptoken=SECRET&lang=en"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let echoed: Value = page.json().await.unwrap();
    assert_eq!(echoed["uri"], "/verify?lang=en");

    // register: an unverified account, as Stormpath shaped it
    let registered = post(
        &p,
        "/register",
        json!({"email": "sam@example.com", "password": "second breakfast please", "givenName": "Sam", "surname": "Gamgee", "customData": {"shire": true}}),
        None,
    )
    .await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    let account = &registered.body["account"];
    let id = account["href"]
        .as_str()
        .unwrap()
        .strip_prefix("https://api.example/v1/accounts/")
        .unwrap()
        .to_string();
    assert_eq!(account["username"], "sam@example.com");
    assert_eq!(account["fullName"], "Sam Gamgee");
    assert_eq!(account["status"], "UNVERIFIED");
    assert_eq!(account["customData"]["shire"], true);
    assert_eq!(
        account["customData"]["href"],
        format!("https://api.example/v1/accounts/{id}/customData")
    );
    assert_eq!(
        account["groups"],
        json!({"href": format!("https://api.example/v1/accounts/{id}/groups"), "size": 0, "items": []})
    );
    for key in ["createdAt", "modifiedAt"] {
        let stamp = account[key].as_str().unwrap();
        assert!(stamp.ends_with('Z') && stamp.len() == 24, "{key}: {stamp}");
    }
    assert!(account.get("password_hash").is_none() && account.get("id").is_none());

    // errors as the client reads them
    let early = post(
        &p,
        "/login",
        json!({"login": "sam@example.com", "password": "second breakfast please"}),
        None,
    )
    .await;
    assert_eq!(early.status, 401);
    assert_eq!(early.body["status"], 401);
    assert_eq!(early.body["error"], "invalid_credentials");
    assert!(early.body["message"].as_str().is_some());

    // verify by the mailed link (to the app's page, with sptoken); a non-JSON fetch does nothing
    let token = sptoken(&p, 1, "verify").await;
    let scanner = http_client()
        .get(p.url(&format!("/verify?sptoken={token}")))
        .header("accept", "*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(scanner.status(), 400);
    let verified = get(&p, &format!("/verify?sptoken={token}"), None).await;
    assert_eq!((verified.status, &verified.body), (200, &json!({})));
    assert_eq!(
        get(&p, &format!("/verify?sptoken={token}"), None)
            .await
            .status,
        400
    );

    // log in, me, groups from roles, profile update
    let login = post(
        &p,
        "/login",
        json!({"username": "sam@example.com", "password": "second breakfast please"}),
        None,
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["account"]["status"], "ENABLED");
    assert!(login.cookie.is_some());
    // a role granted now ends the session (roles changed): log in again to see it
    let store = p.store().await;
    store
        .create_role("gardeners", "Keep the gardens", 0)
        .await
        .unwrap();
    store.add_role(&id, "gardeners", 0).await.unwrap();
    store.close().await;
    let cookie = post(
        &p,
        "/login",
        json!({"login": "sam@example.com", "password": "second breakfast please"}),
        None,
    )
    .await
    .cookie
    .unwrap();
    let me = get(&p, "/me", Some(&cookie)).await;
    assert_eq!(
        me.body["account"]["groups"]["items"],
        json!([{"href": "https://api.example/v1/groups/gardeners", "name": "gardeners", "description": "Keep the gardens", "status": "ENABLED"}])
    );
    let api = get(&p, "/api/x", Some(&cookie)).await;
    assert_eq!(
        echoed_header(&api.body, "x-postern-user"),
        ["sam@example.com"]
    );
    let updated = post(
        &p,
        "/me",
        json!({"givenName": "Samwise", "surname": "", "email": "", "password": "", "existingPassword": "", "customData": {"shire": false, "pony": "Bill"}}),
        Some(&cookie),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["account"]["givenName"], "Samwise");
    assert_eq!(
        updated.body["account"]["surname"], "Gamgee",
        "empty fields are left alone"
    );
    assert_eq!(updated.body["account"]["customData"]["pony"], "Bill");
    let merged = post(
        &p,
        "/me",
        json!({"customData": {"shire": null, "pipe": "longbottom"}}),
        Some(&cookie),
    )
    .await;
    let data = &merged.body["account"]["customData"];
    assert_eq!(
        (data["pony"].as_str(), data["pipe"].as_str()),
        (Some("Bill"), Some("longbottom"))
    );
    assert!(data.get("shire").is_none(), "null removes a key: {data}");
    let upgrade = post(
        &p,
        "/me",
        json!({"customData": {"plan": "gold"}}),
        Some(&cookie),
    )
    .await;
    assert_eq!(upgrade.status, 422, "{}", upgrade.body);
    let sneaky = post(
        &p,
        "/me",
        json!({"email": "mallory@example.com", "existingPassword": "a guess"}),
        Some(&cookie),
    )
    .await;
    assert_eq!(
        (sneaky.status, sneaky.body["error"].as_str()),
        (403, Some("wrong_password"))
    );
    // a new email is not trusted on the user's word: the account waits for its verification
    let mails_before = p.outbox(3).await.len();
    let moved = post(
        &p,
        "/me",
        json!({"email": "samwise@example.com", "existingPassword": "second breakfast please"}),
        Some(&cookie),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["account"]["status"], "UNVERIFIED");
    assert_eq!(moved.body["account"]["email"], "samwise@example.com");
    assert_eq!(
        get(&p, "/me", Some(&cookie)).await.status,
        401,
        "signed out until verified"
    );
    // a notice to the old address, the verification link to the new one
    let mail = p.outbox(mails_before + 2).await;
    let notice = &mail[mails_before];
    assert!(notice.contains("To: sam@example.com"), "{notice}");
    assert!(notice.contains("Subject: Your email address was changed"));
    assert!(mail[mails_before + 1].contains("To: samwise@example.com"));
    let token = sptoken(&p, mails_before + 2, "verify").await;
    assert_eq!(
        get(&p, &format!("/verify?sptoken={token}"), None)
            .await
            .status,
        200
    );
    let cookie = post(
        &p,
        "/login",
        json!({"login": "samwise@example.com", "password": "second breakfast please"}),
        None,
    )
    .await
    .cookie
    .unwrap();
    let cross_site = http_client()
        .post(p.url("/me"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&json!({"givenName": "Pwned"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);

    // forgot (same answer for anybody) and change with the mailed sptoken
    let known = post(&p, "/forgot", json!({"email": "samwise@example.com"}), None).await;
    let unknown = post(&p, "/forgot", json!({"email": "frodo@example.com"}), None).await;
    assert_eq!((known.status, &known.body), (200, &json!({})));
    assert_eq!((unknown.status, &unknown.body), (known.status, &known.body));
    // then: confirmation and welcome for the new address, and this reset link
    let reset = sptoken(&p, mails_before + 5, "change").await;
    assert_eq!(
        get(&p, &format!("/change?sptoken={reset}"), None)
            .await
            .status,
        200
    );
    let bogus = get(
        &p,
        "/change?sptoken=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        None,
    )
    .await;
    assert_eq!(bogus.status, 404);
    let mismatch = post(
        &p,
        "/change",
        json!({"sptoken": reset, "password": "a new shire passphrase", "confirmPassword": "other"}),
        None,
    )
    .await;
    assert_eq!(mismatch.status, 422);
    let changed = post(
        &p,
        "/change",
        json!({"sptoken": reset, "password": "a new shire passphrase"}),
        None,
    )
    .await;
    assert_eq!((changed.status, &changed.body), (200, &json!({})));
    assert_eq!(
        get(&p, "/me", Some(&cookie)).await.status,
        401,
        "sessions ended"
    );

    // OAuth: password grant, bearer on /me, refresh, revoke
    let form = |body: &str| {
        http_client()
            .post(p.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
    };
    let tokens = send(form(
        "grant_type=password&username=samwise%40example.com&password=a+new+shire+passphrase",
    ))
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = tokens.body["access_token"].as_str().unwrap().to_string();
    let refresh = tokens.body["refresh_token"].as_str().unwrap().to_string();
    let me = send(
        http_client()
            .get(p.url("/me"))
            .header("authorization", format!("Bearer {access}")),
    )
    .await;
    assert_eq!(me.body["account"]["givenName"], "Samwise");
    let cookie_name = cookie.split('=').next().unwrap();
    let as_cookie = get(&p, "/me", Some(&format!("{cookie_name}={refresh}"))).await;
    assert_eq!(
        as_cookie.status, 401,
        "a refresh token is not a session cookie"
    );
    let renewed = send(form(&format!(
        "grant_type=refresh_token&refresh_token={refresh}"
    )))
    .await;
    assert_eq!(renewed.status, 200);
    let revoke = send(
        http_client()
            .post(p.url("/oauth/revoke"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={refresh}&token_type_hint=refresh_token")),
    )
    .await;
    assert_eq!(revoke.status, 200);
    let after = send(form(&format!(
        "grant_type=refresh_token&refresh_token={refresh}"
    )))
    .await;
    assert_eq!(after.status, 401);
    let me = send(
        http_client()
            .get(p.url("/me"))
            .header("authorization", format!("Bearer {access}")),
    )
    .await;
    assert_eq!(me.status, 401, "access tokens end with their session");
    let wrong = send(form(
        "grant_type=password&username=samwise%40example.com&password=nope",
    ))
    .await;
    assert_eq!(
        (wrong.status, wrong.body["status"].as_u64()),
        (401, Some(401))
    );

    // logout
    let cookie = post(
        &p,
        "/login",
        json!({"login": "samwise@example.com", "password": "a new shire passphrase"}),
        None,
    )
    .await
    .cookie
    .unwrap();
    let out = post(&p, "/logout", json!({}), Some(&cookie)).await;
    assert_eq!(out.status, 200);
    assert!(out.cookie.unwrap().ends_with('='), "the cookie is cleared");
    let me = get(&p, "/me", Some(&cookie)).await;
    assert_eq!((me.status, me.body["status"].as_u64()), (401, Some(401)));
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_and_cross_site_rules_hold_on_the_account_api() {
    use postern::auth::{Clock, ManualClock, SystemClock};
    let app = Upstream::start("app").await;
    let clock = ManualClock::new(SystemClock.now());
    let config = config().replace("[mail]", "[passwords]\nmax_age = \"30d\"\n\n[mail]");
    let shared = std::sync::Arc::new(clock.clone());
    let vars = [("APP", app.url())];
    let p = tokio::task::spawn_blocking(move || Postern::start_with_clock(&config, &vars, shared))
        .await
        .unwrap();
    p.add_user("old-timer", "a weathered passphrase", &[]).await;
    clock.advance(31 * 86_400);
    let login = post(
        &p,
        "/login",
        json!({"login": "old-timer", "password": "a weathered passphrase"}),
        None,
    )
    .await;
    assert_eq!(login.body["account"]["password_expired"], true);
    let cookie = login.cookie.unwrap();
    let api = get(&p, "/api/x", Some(&cookie)).await;
    assert_eq!(
        (api.status, api.body["error"]["code"].as_str()),
        (403, Some("password_expired"))
    );
    let profile = post(&p, "/me", json!({"givenName": "Old"}), Some(&cookie)).await;
    assert_eq!(
        (profile.status, profile.body["error"].as_str()),
        (403, Some("password_expired"))
    );
    let oauth = send(
        http_client()
            .post(p.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=password&username=old-timer&password=a+weathered+passphrase"),
    )
    .await;
    assert_eq!(
        (oauth.status, oauth.body["error"].as_str()),
        (403, Some("password_expired"))
    );

    // a bodiless logout from another site is refused, with or without react-stormpath's header
    for agent in [None, Some("stormpath-sdk-react/2.0.1 react/15.3.2")] {
        let mut req = http_client()
            .post(p.url("/logout"))
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site");
        if let Some(agent) = agent {
            req = req.header("x-stormpath-agent", agent);
        }
        assert_eq!(req.send().await.unwrap().status(), 403, "{agent:?}");
    }
    // the same-site client's own header stands in for JSON
    let same_site = http_client()
        .post(p.url("/me"))
        .header("cookie", &cookie)
        .header(
            "x-stormpath-agent",
            "stormpath-sdk-react/2.0.1 react/15.3.2",
        )
        .header("content-type", "application/json")
        .body(
            r#"{"password": "a renewed passphrase", "existingPassword": "a weathered passphrase"}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), 200);
    let renewed = same_site
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body: Value = same_site.json().await.unwrap();
    assert!(body["account"].get("password_expired").is_none(), "{body}");
    assert_eq!(
        get(&p, "/api/x", Some(&renewed)).await.status,
        200,
        "the restriction lifted"
    );
}
