//! The admin console over HTTP (the browser run is in `browser.rs`): who may open it, what its
//! pages may load, its forms' CSRF defence, every user action, the files page's thumbnails, and
//! the bulk import through the admin API.

mod common;

use common::{Postern, Upstream, base_config, http_client, xlsx};
use serde_json::Value;

const ADMIN_PASSWORD: &str = "console admin password 1";

fn config(extra: &str) -> String {
    format!(
        r#"{}
[mail]
transport = "outbox"
from = "Example <noreply@example.com>"

[accounts]
public_url = "https://example.test"

[sessions]
cache_ttl = "0"
{extra}
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
    )
}

struct Console {
    p: Postern,
    _app: Upstream,
    /// The admin's session and CSRF cookies, ready for a `Cookie` header.
    cookies: String,
    csrf: String,
}

/// The value of `name="NAME" value="…"` in a page (the first).
fn field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_string())
}

async fn start(extra: &str, vars: &[(&str, String)]) -> Console {
    let app = Upstream::start("app").await;
    let mut all = vec![("APP", app.url())];
    all.extend(vars.iter().cloned());
    let p = Postern::start(&config(extra), &all);
    p.add_user("root", ADMIN_PASSWORD, &["admin"]).await;
    let session = p.login_cookie("root", ADMIN_PASSWORD).await;
    // The first console page sets the CSRF cookie its forms repeat.
    let r = http_client()
        .get(p.url("/_postern/console/roles"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let csrf_cookie = set_cookie.split(';').next().unwrap().to_string();
    let page = r.text().await.unwrap();
    let csrf = field(&page, "csrf").expect("the page's CSRF field");
    assert!(csrf_cookie.ends_with(&csrf));
    Console {
        p,
        _app: app,
        cookies: format!("{session}; {csrf_cookie}"),
        csrf,
    }
}

impl Console {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = http_client()
            .get(self.p.url(&format!("/_postern/console/{path}")))
            .header("cookie", &self.cookies)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a form (the CSRF field added) and returns the status, `Location` and body.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        self.post_raw(path, &form, &[]).await
    }

    async fn post_raw(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut request = http_client()
            .post(self.p.url(&format!("/_postern/console/{path}")))
            .header("cookie", &self.cookies)
            .form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let r = request.send().await.unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), location, r.text().await.unwrap())
    }

    async fn user(&self, name: &str) -> postern::store::User {
        let store = self.p.store().await;
        let user = store.user_by_login(name).await.unwrap().expect("user");
        store.close().await;
        user
    }

    async fn me_status(&self, cookie: &str) -> u16 {
        http_client()
            .get(self.p.url("/_postern/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Every `src`, `href` and `action` in a page.
fn references(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"", "action=\""] {
        let mut rest = page;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_for_admins_and_loads_nothing_from_another_origin() {
    let c = start("", &[]).await;
    let client = http_client();
    let staff = c.p.add_user("sam", "a staff password 1", &["staff"]).await;

    // Anonymous: the browser goes to the login page and comes back.
    let r = client
        .get(c.p.url("/_postern/console/users?q=x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/_postern/login?return_to=%2F_postern%2Fconsole%2Fusers%3Fq%3Dx"
    );
    let r = client
        .get(c.p.url("/_postern/console/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an API client is told, not redirected");
    let r = client
        .get(c.p.url("/_postern/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_postern/console/");

    // Signed in without the admin role: refused, and nothing about users shown.
    let sam = c.p.login_cookie("sam", "a staff password 1").await;
    let r = client
        .get(c.p.url("/_postern/console/users"))
        .header("cookie", &sam)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("admin role"), "{page}");
    assert!(!page.contains("root@example.com"));

    // The admin: every page, strict CSP, no script, nothing from elsewhere.
    let pages = [
        String::new(),
        "users".into(),
        "users?q=sam&status=enabled&role=staff&sort=newest".into(),
        "users/new".into(),
        format!("users/{}", staff.id),
        "roles".into(),
        "events".into(),
        "events?user=sam&kind=login.success".into(),
        "import".into(),
    ];
    for path in &pages {
        let r = client
            .get(c.p.url(&format!("/_postern/console/{path}")))
            .header("cookie", &c.cookies)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.starts_with("default-src 'none'; style-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let page = r.text().await.unwrap();
        assert!(!page.contains("<script"), "{path}");
        assert!(
            !page.contains("style="),
            "{path}: inline style would be blocked"
        );
        for reference in references(&page) {
            assert!(
                reference.starts_with('/') && !reference.starts_with("//")
                    || reference.starts_with('#')
                    || reference.starts_with('?'),
                "{path} refers to {reference:?}"
            );
        }
    }
    let (_, users) = c.get("users?q=sam").await;
    assert!(users.contains("sam@example.com"));
    assert!(!users.contains("root@example.com"), "the search filters");

    let r = client
        .get(c.p.url("/_postern/console/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let r = client
        .get(c.p.url("/_postern/console/import-example.csv"))
        .send()
        .await
        .unwrap();
    let example = r.text().await.unwrap();
    assert!(example.starts_with("First Name,Last Name,Email,Role,Password\n"));
    let r = client
        .get(c.p.url("/_postern/console/import-example.xlsx"))
        .send()
        .await
        .unwrap();
    let book = r.bytes().await.unwrap();
    let from_xlsx = postern::accounts::import::parse_sheet(&book).unwrap();
    let from_csv = postern::accounts::import::parse_sheet(example.as_bytes()).unwrap();
    assert_eq!(from_xlsx, from_csv, "the two examples say the same");
    let (status, _) = c.get("nothing-here").await;
    assert_eq!(status, 404);
    let (status, page) = c.get("users/no-such-user").await;
    assert_eq!(status, 404);
    assert!(page.contains("no such user"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn console_forms_need_their_csrf_field_and_a_same_site_origin() {
    let c = start("", &[]).await;
    let sam = c.p.add_user("sam", "a staff password 1", &[]).await;
    let path = format!("users/{}", sam.id);
    let add = [("action", "add_role"), ("role", "admin")];

    let (status, _, body) = c.post_raw(&path, &add, &[]).await;
    assert_eq!(status, 403, "no CSRF field: {body}");
    let wrong = [
        ("csrf", "x".repeat(43)),
        ("action", "add_role".into()),
        ("role", "admin".into()),
    ];
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = c.post_raw(&path, &wrong, &[]).await;
    assert_eq!(status, 403, "a CSRF field that is not the cookie's");
    let mut form = vec![("csrf", c.csrf.as_str())];
    form.extend_from_slice(&add);
    let (status, _, _) = c
        .post_raw(&path, &form, &[("origin", "https://evil.example")])
        .await;
    assert_eq!(status, 403, "another site's form");
    let (status, _, _) = c
        .post_raw(&path, &form, &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(status, 403);
    assert!(c.user("sam").await.roles.is_empty(), "nothing was granted");

    let (status, location, _) = c.post(&path, &add).await;
    assert_eq!(status, 303);
    assert_eq!(
        location,
        format!("/_postern/console/{path}?notice=role_added")
    );
    assert_eq!(c.user("sam").await.roles, ["admin"]);
    let (_, page) = c.get(&format!("{path}?notice=role_added")).await;
    assert!(page.contains("Role granted"));
    let (_, page) = c.get(&format!("{path}?notice=%3Cscript%3E")).await;
    assert!(!page.contains("script"), "notices are a fixed set");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_user_action_from_the_console() {
    let c = start("", &[]).await;
    let sam = c.p.add_user("sam", "a staff password 1", &["staff"]).await;
    let path = format!("users/{}", sam.id);
    let sam_cookie = c.p.login_cookie("sam", "a staff password 1").await;
    let other_cookie = c.p.login_cookie("sam", "a staff password 1").await;
    assert_eq!(c.me_status(&sam_cookie).await, 200);

    // Sessions: listed with device and address, one revoked, the user's next request refused.
    let (_, page) = c.get(&path).await;
    assert_eq!(
        page.matches("name=\"session\" value=\"").count(),
        2,
        "{page}"
    );
    let handle = field(&page, "session").unwrap();
    assert_eq!(handle.len(), 16);
    let (status, _, _) = c
        .post(&path, &[("action", "revoke_session"), ("session", &handle)])
        .await;
    assert_eq!(status, 303);
    let statuses = (
        c.me_status(&sam_cookie).await,
        c.me_status(&other_cookie).await,
    );
    assert!(
        statuses == (401, 200) || statuses == (200, 401),
        "exactly one session ended: {statuses:?}"
    );
    let (status, _, _) = c.post(&path, &[("action", "revoke_all")]).await;
    assert_eq!(status, 303);
    assert_eq!(
        (
            c.me_status(&sam_cookie).await,
            c.me_status(&other_cookie).await
        ),
        (401, 401)
    );

    // Profile and custom data: refused JSON comes back with the problem and the text kept.
    let (status, _, _) = c
        .post(
            &path,
            &[
                ("action", "profile"),
                ("email", "samuel@example.com"),
                ("given_name", "Samuel"),
                ("surname", "Jones"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let user = c.user("sam").await;
    assert_eq!(
        (user.email.as_str(), user.given_name.as_str()),
        ("samuel@example.com", "Samuel")
    );
    let (status, _, page) = c
        .post(
            &path,
            &[
                ("action", "custom_data"),
                ("custom_data", "{\"plan\": pro}"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("is not valid JSON"), "{page}");
    assert!(page.contains("{&quot;plan&quot;: pro}"), "the text is kept");
    let (status, _, _) = c
        .post(&path, &[("action", "custom_data"), ("custom_data", "[1]")])
        .await;
    assert_eq!(status, 422);
    let (status, _, _) = c
        .post(
            &path,
            &[
                ("action", "custom_data"),
                ("custom_data", "{\"plan\": \"pro\"}"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(c.user("sam").await.custom_data, "{\"plan\":\"pro\"}");

    // Roles, password, disable/enable, reset mail, unlock.
    let (status, _, _) = c
        .post(&path, &[("action", "remove_role"), ("role", "staff")])
        .await;
    assert_eq!(status, 303);
    assert!(c.user("sam").await.roles.is_empty());
    let (status, _, page) = c
        .post(&path, &[("action", "set_password"), ("password", "short")])
        .await;
    assert_eq!(status, 422, "the password policy applies");
    assert!(page.contains("at least"), "{page}");
    let (status, _, _) = c
        .post(
            &path,
            &[
                ("action", "set_password"),
                ("password", "a new long password 2"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let fresh = c.p.login_cookie("sam", "a new long password 2").await;
    let (status, _, _) = c.post(&path, &[("action", "disable")]).await;
    assert_eq!(status, 303);
    assert_eq!(
        c.me_status(&fresh).await,
        401,
        "disabling ends the sessions"
    );
    let (status, _, _) = c.post(&path, &[("action", "enable")]).await;
    assert_eq!(status, 303);
    let (status, _, _) = c.post(&path, &[("action", "reset_mail")]).await;
    assert_eq!(status, 303);
    let mail = c.p.outbox(1).await;
    assert!(mail[0].contains("samuel@example.com"));
    let (status, _, _) = c.post(&path, &[("action", "unlock")]).await;
    assert_eq!(status, 303);

    // The user's events are on the page.
    let (_, page) = c.get(&path).await;
    for kind in [
        "user.role_removed",
        "user.password_set",
        "user.enabled",
        "user.disabled",
    ] {
        assert!(page.contains(kind), "{kind} missing");
    }
    let (status, page) = c.get("events?user=sam&kind=user.disabled").await;
    assert_eq!(status, 200);
    assert!(page.contains("user.disabled") && !page.contains("user.enabled"));
    let (status, page) = c.get("events?since=yesterday").await;
    assert_eq!(status, 422);
    assert!(page.contains("since"), "{page}");

    // Delete: the username must be typed.
    let (status, _, _) = c
        .post(&path, &[("action", "delete"), ("confirm", "Sam")])
        .await;
    assert_eq!(status, 422);
    let (status, location, _) = c
        .post(&path, &[("action", "delete"), ("confirm", "sam")])
        .await;
    assert_eq!(status, 303);
    assert_eq!(location, "/_postern/console/users?notice=user_deleted");
    let store = c.p.store().await;
    assert!(store.user_by_login("sam").await.unwrap().is_none());
    let (status, _, _) = c.post(&path, &[("action", "unknown")]).await;
    assert_eq!(status, 404, "the user is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_and_roles_are_created_and_deleted_from_the_console() {
    let c = start("", &[]).await;
    let (status, _, _) = c
        .post(
            "roles",
            &[
                ("action", "create"),
                ("name", "editors"),
                ("description", "Edit things"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (status, _, page) = c
        .post("roles", &[("action", "create"), ("name", "bad role")])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("role &quot;bad role&quot;"), "{page}");

    let (status, location, _) = c
        .post(
            "users/new",
            &[
                ("username", "newbie"),
                ("email", "newbie@example.com"),
                ("given_name", "New"),
                ("surname", "Bie"),
                ("password", ""),
                ("roles", "editors"),
                ("send_verification", "true"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let newbie = c.user("newbie").await;
    assert_eq!(
        location,
        format!("/_postern/console/users/{}?notice=user_created", newbie.id)
    );
    assert_eq!(newbie.status, postern::store::UserStatus::Unverified);
    assert_eq!(newbie.roles, ["editors"]);
    let mail = c.p.outbox(1).await;
    assert!(mail[0].contains("newbie@example.com"));

    let (status, _, page) = c
        .post(
            "users/new",
            &[
                ("username", "newbie"),
                ("email", "other@example.com"),
                ("roles", "editors"),
            ],
        )
        .await;
    assert_eq!(status, 409);
    assert!(page.contains("already exists"), "{page}");
    assert!(
        page.contains("value=\"other@example.com\""),
        "the form keeps what was typed"
    );

    // A role with holders needs the box ticked.
    let (status, _, page) = c
        .post("roles", &[("action", "delete"), ("role", "editors")])
        .await;
    assert_eq!(status, 409, "{page}");
    let (_, page) = c.get("roles").await;
    assert!(page.contains("also take it from 1 user(s)"));
    let (status, _, _) = c
        .post(
            "roles",
            &[("action", "delete"), ("role", "editors"), ("force", "true")],
        )
        .await;
    assert_eq!(status, 303);
    assert!(c.user("newbie").await.roles.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_draws_the_metrics_as_svg() {
    let c = start("", &[]).await;
    for _ in 0..5 {
        c.get("users").await;
    }
    let (status, page) = c.get("").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<svg").count(), 7, "{page}");
    for title in [
        "Requests per second",
        "Server errors (5xx)",
        "Latency p99",
        "Active sessions",
        "Login failures",
        "Image cache hit ratio",
        "Object store errors",
    ] {
        assert!(page.contains(title), "{title}");
    }
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "reloading keeps a session alive: opt-in"
    );
    let (_, live) = c.get("?live=1").await;
    assert!(live.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
    assert!(
        page.contains("</strong><a href=\"/_postern/console/users\">Users</a>"),
        "{page}"
    );
}

const PNG_UPLOAD_CONFIG: &str = r#"
[links]
keys = ["${LINK_KEY}"]

[stores.local]
type = "fs"
root = "${FS_ROOT}"

[[routes]]
name = "files"
path = "/_postern/files"
kind = "uploads"
store = "local"
api = true

[routes.upload]
allowed_types = ["image/*"]

[[routes]]
name = "media"
path = "/media/"
kind = "assets"
store = "local"
access = { roles = ["admin"] }
images = "signed"
"#;

fn png() -> Vec<u8> {
    let image = image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_files_page_shows_thumbnails_through_the_transform_route_and_deletes() {
    let fs_root = tempfile::tempdir().unwrap();
    let c = start(
        PNG_UPLOAD_CONFIG,
        &[
            ("FS_ROOT", fs_root.path().display().to_string()),
            (
                "LINK_KEY",
                "console-link-key-0123456789-0123456789".to_string(),
            ),
        ],
    )
    .await;
    c.p.add_user("ann", "an uploader password 1", &[]).await;
    let ann = c.p.login_cookie("ann", "an uploader password 1").await;
    let part = reqwest::multipart::Part::bytes(png()).file_name("cat.png");
    let r = http_client()
        .post(c.p.url("/_postern/files"))
        .header("cookie", &ann)
        .header("x-requested-with", "test")
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let uploaded: Value = r.json().await.unwrap();
    let id = uploaded["files"][0]["id"].as_str().unwrap().to_string();

    let (status, page) = c.get("files?user=ann").await;
    assert_eq!(status, 200);
    assert!(page.contains("cat.png"), "{page}");
    let src = page
        .split("<img class=\"thumb\" src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a thumbnail")
        .replace("&amp;", "&");
    assert!(src.starts_with("/media/users/"), "{src}");
    assert!(src.contains("w=128") && src.contains("sig="), "{src}");
    let r = http_client()
        .get(c.p.url(&src))
        .header("cookie", &c.cookies)
        .header("accept", "image/webp")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the thumbnail is served by the transform route"
    );
    let thumb = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (128, 128));

    let (status, page) = c.get(&format!("files/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Open the file"));
    let (status, _, _) = c
        .post(
            &format!("files/{id}"),
            &[
                ("action", "update"),
                ("alt", "A cat"),
                ("entity_type", "post"),
                ("entity_id", "7"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page) = c.get("files?entity_type=post&entity_id=7").await;
    assert!(page.contains("alt=\"A cat\""), "{page}");
    let (status, _, _) = c.post("files", &[("action", "delete"), ("id", &id)]).await;
    assert_eq!(status, 303);
    let (_, page) = c.get("files").await;
    assert!(!page.contains("cat.png"));
    let left: Vec<_> = walk(fs_root.path());
    assert!(left.is_empty(), "the object is gone too: {left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

const IMPORT_CSV: &str = "First Name,Last Name,Email,Role,Password
Ada,Lovelace,ada@example.com,staff,an imported password 1
Grace,Hopper,grace@example.com,,
Bad,Email,not-an-email,,
Weak,Password,weak@example.com,,short
";

async fn import(c: &Console, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = http_client()
        .post(c.p.url(&format!("/_postern/admin/users/import{query}")))
        .header("cookie", &c.cookies)
        .header("x-csrf-token", &c.csrf)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_imports_a_spreadsheet_reporting_bad_rows() {
    let c = start("", &[]).await;
    let store = c.p.store().await;
    store.create_role("staff", "", 0).await.unwrap();
    let count =
        |store: postern::store::Store| async move { store.list_users(100, 0).await.unwrap().len() };
    let before = count(store.clone()).await;

    let (status, report) = import(&c, "?dry_run=true", "text/csv", IMPORT_CSV.into()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["valid"].as_u64(), report["refused"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(report["imported"], 0);
    let problems = |report: &Value, line: u64| -> String {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["line"] == line)
            .unwrap()["problems"]
            .to_string()
    };
    assert!(problems(&report, 4).contains("not an email"), "{report}");
    assert!(
        problems(&report, 5).contains("password: the password must be at least"),
        "{report}"
    );
    assert_eq!(
        count(store.clone()).await,
        before,
        "a dry run writes nothing"
    );

    let (_, report) = import(&c, "?all_or_nothing=true", "text/csv", IMPORT_CSV.into()).await;
    assert_eq!(report["imported"], 0);
    assert_eq!(
        count(store.clone()).await,
        before,
        "all or nothing: nothing"
    );

    let (status, report) = import(&c, "", "text/csv; charset=utf-8", IMPORT_CSV.into()).await;
    assert_eq!(status, 200);
    assert_eq!(report["imported"], 2, "{report}");
    let ada = store
        .user_by_login("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ada.roles, ["staff"]);
    assert_eq!(ada.status, postern::store::UserStatus::Enabled);
    c.p.login_cookie("ada@example.com", "an imported password 1")
        .await;
    let grace = store
        .user_by_login("grace@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grace.status, postern::store::UserStatus::Unverified);
    assert!(grace.password_hash.is_none());
    let mail = c.p.outbox(1).await;
    assert!(
        mail.iter().any(|m| m.contains("grace@example.com")),
        "an invitation"
    );
    let grace_row = &report["rows"][1];
    assert_eq!(grace_row["invited"], true);
    assert!(grace_row["user_id"].is_string());

    // Again: both are now taken, and the file's own duplicates are named.
    let again = format!("{IMPORT_CSV}Ada,Again,ADA@example.com,,\n");
    let (_, report) = import(&c, "?dry_run=1", "text/csv", again.into()).await;
    assert!(problems(&report, 2).contains("exists"), "{report}");
    assert!(
        problems(&report, 6).contains("the same email as line 2"),
        "{report}"
    );

    // Roles that do not exist: refused unless created on purpose.
    let roles = "First Name,Last Name,Email,Role\nNew,Role,nr@example.com,auditors\n";
    let (_, report) = import(&c, "", "text/csv", roles.into()).await;
    assert!(
        problems(&report, 2).contains("role \\\"auditors\\\" does not exist"),
        "{report}"
    );
    let (_, report) = import(&c, "?create_roles=true", "text/csv", roles.into()).await;
    assert_eq!(report["imported"], 1);
    assert_eq!(report["created_roles"], serde_json::json!(["auditors"]));

    // XLSX, as a spreadsheet program saves it.
    let sheet = xlsx(&[
        &["First Name", "Last Name", "Email", "Role", "Password"],
        &[
            "Xena",
            "Sheet",
            "xena@example.com",
            "staff",
            "an imported password 2",
        ],
    ]);
    let (status, report) = import(
        &c,
        "",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        sheet,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["imported"], 1, "{report}");
    c.p.login_cookie("xena@example.com", "an imported password 2")
        .await;

    // Bad files and bad callers.
    let (status, body) = import(&c, "", "application/json", b"{}".to_vec()).await;
    assert_eq!(status, 415, "{body}");
    let (status, body) = import(&c, "", "text/csv", b"PK\x03\x04junk".to_vec()).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("file"))
    );
    let (status, _) = import(&c, "?dry_run=maybe", "text/csv", IMPORT_CSV.into()).await;
    assert_eq!(status, 422);
    let events = store
        .events(&postern::store::EventFilter {
            kind: Some("users.imported".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].actor.as_deref(), Some("root"));
    c.p.add_user("sam", "a staff password 1", &["staff"]).await;
    let sam = c.p.login_cookie("sam", "a staff password 1").await;
    let r = http_client()
        .post(c.p.url("/_postern/admin/users/import"))
        .header("cookie", &sam)
        .header("content-type", "text/csv")
        .header("x-requested-with", "x")
        .body(IMPORT_CSV)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_import_previews_then_imports_the_checked_rows() {
    let c = start("", &[]).await;
    let part =
        reqwest::multipart::Part::bytes(IMPORT_CSV.as_bytes().to_vec()).file_name("users.csv");
    let form = reqwest::multipart::Form::new()
        .text("csrf", c.csrf.clone())
        .text("create_roles", "true")
        .part("file", part);
    let r = http_client()
        .post(c.p.url("/_postern/console/import"))
        .header("cookie", &c.cookies)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(
            "<strong>2</strong> row(s) can be imported, <strong>2</strong> have problems"
        ),
        "{page}"
    );
    assert!(page.contains("not-an-email"));
    let store = c.p.store().await;
    let before = store.list_users(10, 0).await.unwrap().len();
    assert_eq!(
        before, 2,
        "root and the bootstrap admin: nothing imported yet"
    );
    assert!(
        !page.contains("an imported password 1"),
        "passwords stay on the server"
    );
    let id = field(&page, "import").unwrap();
    assert_eq!(id.len(), 43);
    let (status, _, page) = c
        .post("import", &[("action", "import"), ("import", &id)])
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Imported 2 user(s); 2 row(s) refused."),
        "{page}"
    );
    assert!(page.contains("Created roles: staff."));
    assert_eq!(store.list_users(10, 0).await.unwrap().len(), before + 2);
    let (status, _, page) = c
        .post("import", &[("action", "import"), ("import", &id)])
        .await;
    assert_eq!(status, 422, "a checked file is imported once");
    assert!(page.contains("expired or was imported already"), "{page}");

    let bad = reqwest::multipart::Form::new()
        .text("csrf", c.csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"".to_vec()).file_name("empty.csv"),
        );
    let r = http_client()
        .post(c.p.url("/_postern/console/import"))
        .header("cookie", &c.cookies)
        .multipart(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("no user rows"));
}
