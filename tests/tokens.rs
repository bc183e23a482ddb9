//! Bearer tokens: issue, use, and the usual attacks (alg none, HS/RS confusion, tampering, expiry,
//! wrong audience or issuer, revocation); the signed identity assertion for the app.

mod common;

use common::http_client as client;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Postern, Upstream, base_config, echoed_header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use postern::auth::{Clock, ManualClock};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const ASSERTION_SECRET: &str = "the-apps-assertion-key-0123456789abcdef";

fn config(tokens: &str) -> String {
    format!(
        r#"{}
[sessions]
cache_ttl = "0"

[tokens]
ttl = "10m"
leeway = "30s"
{tokens}

[upstreams.app]
backends = ["${{APP}}"]

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "admin"
path = "/admin/"
upstream = "app"
access = {{ roles = ["admin"] }}

[[routes]]
name = "app"
path = "/"
upstream = "app"
"#,
        base_config("")
    )
}

fn hs256() -> String {
    format!(
        "algorithm = \"HS256\"\nsecret = \"{SECRET}\"\nassertion_header = \"X-Postern-Assertion\"\nassertion_secret = \"{ASSERTION_SECRET}\""
    )
}

async fn issue(p: &Postern, user: &str, password: &str) -> String {
    let r = client()
        .post(p.url("/_postern/token"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    body["access_token"].as_str().unwrap().to_string()
}

async fn with_bearer(p: &Postern, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(p.url(path))
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap()
}

fn claims(user_id: &str, now: i64) -> Value {
    json!({
        "sub": user_id, "name": "kim", "email": "kim@example.com", "roles": ["admin"],
        "iss": "postern", "aud": "postern", "iat": now, "nbf": now, "exp": now + 600, "epoch": 0,
    })
}

/// Signs `claims` as an access token (`typ: at+jwt`, `kid: access`) with an HS256 `secret`.
fn sign_hs(claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("access".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_issued_and_accepted_instead_of_a_cookie() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(&hs256()), &[("APP", app.url())]);
    let kim = p.add_user("kim", "kims password", &["admin"]).await;

    let token = issue(&p, "kim", "kims password").await;
    let claims =
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(SECRET.as_bytes()), &{
            let mut v = Validation::new(Algorithm::HS256);
            v.set_audience(&["postern"]);
            v
        })
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], kim.id);
    assert_eq!(claims["iss"], "postern");
    assert_eq!(claims["roles"], json!(["admin"]));

    let r = with_bearer(&p, "/admin/reports", &token).await;
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echoed_header(&echo, "x-postern-user"), ["kim"]);
    assert!(
        echoed_header(&echo, "authorization").is_empty(),
        "a consumed bearer token is not passed on"
    );

    let assertion = echoed_header(&echo, "x-postern-assertion")[0].to_string();
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["route:admin"]);
    let asserted = jsonwebtoken::decode::<Value>(
        &assertion,
        &DecodingKey::from_secret(ASSERTION_SECRET.as_bytes()),
        &v,
    )
    .expect("the assertion verifies with the assertion key, audience = route:NAME")
    .claims;
    assert_eq!(asserted["sub"], kim.id);
    assert!(asserted["exp"].as_i64().unwrap() - asserted["iat"].as_i64().unwrap() <= 60);

    let me: Value = with_bearer(&p, "/_postern/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "kim");

    // A session can be exchanged for a token, too.
    let login = client()
        .post(p.url("/_postern/login"))
        .json(&json!({"username": "kim", "password": "kims password"}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = client()
        .post(p.url("/_postern/token"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(p.url("/_postern/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no credentials and no session");
    let r = client()
        .post(p.url("/_postern/token"))
        .json(&json!({"username": "kim", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tampered_and_misaddressed_tokens_are_refused() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(&hs256()), &[("APP", app.url())]);
    let kim = p.add_user("kim", "kims password", &["admin"]).await;
    let now = chrono_now();
    let good = sign_hs(&claims(&kim.id, now), SECRET.as_bytes());
    assert_eq!(
        with_bearer(&p, "/x", &good).await.status(),
        200,
        "a well-formed token is accepted"
    );

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(&kim.id, now).to_string());
    let mut tampered_claims = claims(&kim.id, now);
    tampered_claims["roles"] = json!(["admin", "root"]);
    let (head, _, sig) = {
        let mut parts = good.splitn(3, '.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let tampered = format!(
        "{head}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string())
    );
    let mut wrong_aud = claims(&kim.id, now);
    wrong_aud["aud"] = json!("another-service");
    let mut wrong_iss = claims(&kim.id, now);
    wrong_iss["iss"] = json!("someone-else");
    let mut expired = claims(&kim.id, now - 3600);
    expired["exp"] = json!(now - 60);
    let mut not_yet = claims(&kim.id, now + 3600);
    not_yet["exp"] = json!(now + 7200);

    for (what, token) in [
        ("alg none", format!("{none_header}.{body}.")),
        ("tampered claims", tampered),
        (
            "wrong key",
            sign_hs(&claims(&kim.id, now), b"another-secret-another-secret-xx"),
        ),
        ("wrong audience", sign_hs(&wrong_aud, SECRET.as_bytes())),
        ("wrong issuer", sign_hs(&wrong_iss, SECRET.as_bytes())),
        ("expired", sign_hs(&expired, SECRET.as_bytes())),
        ("not yet valid", sign_hs(&not_yet, SECRET.as_bytes())),
        ("garbage", "not.a.token".to_string()),
    ] {
        let r = with_bearer(&p, "/x", &token).await;
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\"",
            "{what}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_token", "{what}");
    }
    assert_eq!(app.hits(), 1);
}

fn chrono_now() -> i64 {
    postern::auth::SystemClock.now()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_on_the_gateway_clock_and_die_with_revocation() {
    let app = Upstream::start("app").await;
    let clock = ManualClock::new(chrono_now());
    let p = Postern::start_with_clock(
        &config(&hs256()),
        &[("APP", app.url())],
        Arc::new(clock.clone()),
    );
    let kim = p.add_user("kim", "kims password", &[]).await;

    let token = issue(&p, "kim", "kims password").await;
    clock.advance(600 + 20);
    assert_eq!(
        with_bearer(&p, "/x", &token).await.status(),
        200,
        "within the leeway"
    );
    clock.advance(20);
    assert_eq!(
        with_bearer(&p, "/x", &token).await.status(),
        401,
        "expired past the leeway"
    );

    let token = issue(&p, "kim", "kims password").await;
    assert_eq!(with_bearer(&p, "/x", &token).await.status(), 200);
    p.store().await.revoke_sessions(&kim.id, 0).await.unwrap();
    assert_eq!(
        with_bearer(&p, "/x", &token).await.status(),
        401,
        "the user's epoch moved on"
    );
}

/// Logging out with a token made from a session ends that session, and every token made from it.
#[tokio::test(flavor = "multi_thread")]
async fn logout_with_a_session_bound_token_ends_its_session() {
    let app = Upstream::start("app").await;
    let p = Postern::start(&config(&hs256()), &[("APP", app.url())]);
    p.add_user("lou", "a logout passphrase", &[]).await;
    let cookie = p.login_cookie("lou", "a logout passphrase").await;
    let minted = client()
        .post(p.url("/_postern/token"))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 200);
    let token = minted.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(with_bearer(&p, "/x", &token).await.status(), 200);
    let out = client()
        .post(p.url("/_postern/logout"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(with_bearer(&p, "/x", &token).await.status(), 401);
    let me = client()
        .get(p.url("/_postern/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        401,
        "the session the token came from has ended"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rs256_refuses_hs256_tokens_made_with_the_public_key() {
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let key = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    let private_pem = key.private_key_to_pem_pkcs8().unwrap();
    let public_pem = key.public_key_to_pem().unwrap();
    std::fs::write(dir.path().join("private.pem"), &private_pem).unwrap();
    std::fs::write(dir.path().join("public.pem"), &public_pem).unwrap();
    let tokens = format!(
        "algorithm = \"RS256\"\nprivate_key_file = \"{0}/private.pem\"\npublic_key_file = \"{0}/public.pem\"",
        dir.path().display()
    );
    let p = Postern::start(&config(&tokens), &[("APP", app.url())]);
    let kim = p.add_user("kim", "kims password", &[]).await;

    let token = issue(&p, "kim", "kims password").await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(with_bearer(&p, "/x", &token).await.status(), 200);

    let confused = sign_hs(&claims(&kim.id, chrono_now()), &public_pem);
    assert_eq!(
        with_bearer(&p, "/x", &confused).await.status(),
        401,
        "HS256 with the public key as secret"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eddsa_tokens_round_trip() {
    let app = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let key = openssl::pkey::PKey::generate_ed25519().unwrap();
    std::fs::write(
        dir.path().join("ed.pem"),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ed.pub.pem"),
        key.public_key_to_pem().unwrap(),
    )
    .unwrap();
    let tokens = format!(
        "algorithm = \"EdDSA\"\nprivate_key_file = \"{0}/ed.pem\"\npublic_key_file = \"{0}/ed.pub.pem\"",
        dir.path().display()
    );
    let p = Postern::start(&config(&tokens), &[("APP", app.url())]);
    p.add_user("kim", "kims password", &[]).await;
    let token = issue(&p, "kim", "kims password").await;
    assert_eq!(with_bearer(&p, "/x", &token).await.status(), 200);
}
