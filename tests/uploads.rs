//! Uploads and file records end to end: a real S3 server that verifies SigV4 (s3s-fs) and the
//! filesystem store, on the test database (SQLite, or PostgreSQL in that variant). Every test
//! checks that the records and the store agree afterwards.

mod common;

use std::time::Duration;

use common::{Postern, S3Server, base_config, http_client as client};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const LINK_KEY: &str = "link-key-0123456789-0123456789-0123456789";

fn config(s3: &S3Server, fs_root: &std::path::Path) -> (String, Vec<(&'static str, String)>) {
    let config = format!(
        r#"{}
[sessions]
secure_cookies = false
cache_ttl = "0"

[tokens]
secret = "uploads-test-secret-0123456789-0123456789"

[links]
keys = ["${{LINK_KEY}}"]

[stores.media]
type = "s3"
bucket = "media"
region = "us-east-1"
endpoint = "${{S3}}"
addressing = "path"
access_key_id = "${{S3_KEY}}"
secret_access_key = "${{S3_SECRET}}"

[stores.local]
type = "fs"
root = "${{FS_ROOT}}"

[[routes]]
name = "files"
path = "/_postern/files"
kind = "uploads"
store = "media"
api = true
key = "users/{{user_id}}/{{folder}}/{{uuid}}.{{ext}}"
link_ttl = "2h"

[routes.upload]
max_file_size = "64KiB"
max_files = 3
allowed_types = ["image/*", "text/plain", "application/pdf"]
acl = ["private", "public-read"]
folders = ["avatars", "docs"]

[[routes]]
name = "local"
path = "/local-files"
kind = "uploads"
store = "local"
api = true

[routes.upload]
max_file_size = "64KiB"

[[routes]]
name = "images"
path = "/image-uploads"
kind = "uploads"
store = "media"
api = true
key = "images/{{user_id}}/{{uuid}}.{{ext}}"

[routes.upload]
max_file_size = "1MiB"
allowed_types = ["image/*"]

[routes.upload.variant]
max_width = 64
max_height = 64
keep_original = true

[[routes]]
name = "big"
path = "/big-uploads"
kind = "uploads"
store = "media"
api = true
key = "big/{{user_id}}/{{uuid}}.{{ext}}"

[routes.upload]
max_file_size = "300MiB"
max_files = 1
part_size = "5MiB"
allowed_types = ["*/*"]

[[routes]]
name = "named"
path = "/named-uploads"
kind = "uploads"
store = "local"
api = true
key = "users/{{user_id}}/{{name}}"

[routes.upload]
client_names = true
allowed_types = ["*/*"]

[[routes]]
name = "named-s3"
path = "/named-s3-uploads"
kind = "uploads"
store = "media"
api = true
key = "named/{{user_id}}/{{name}}"

[routes.upload]
client_names = true

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "my-local-files"
path = "/me/local/"
kind = "assets"
store = "local"
key = "users/{{user_id}}/{{path}}"
"#,
        base_config("")
    );
    let vars = vec![
        ("S3", s3.url()),
        ("S3_KEY", s3.access_key.clone()),
        ("S3_SECRET", s3.secret_key.clone()),
        ("FS_ROOT", fs_root.display().to_string()),
        ("LINK_KEY", LINK_KEY.to_string()),
    ];
    (config, vars)
}

struct Setup {
    pg: Postern,
    s3: S3Server,
    fs_root: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let s3 = S3Server::start(&["media"]).await;
        let fs_root = tempfile::tempdir().unwrap();
        let (config, vars) = config(&s3, fs_root.path());
        let pg = Postern::start(&config, &vars);
        Self { pg, s3, fs_root }
    }

    /// A user and a bearer token for them.
    async fn user(&self, name: &str, roles: &[&str]) -> (String, String) {
        let user = self.pg.add_user(name, "correct horse battery", roles).await;
        let r = client()
            .post(self.pg.url("/_postern/token"))
            .json(&json!({"username": name, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let token = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        (user.id, token)
    }

    fn s3_object(&self, key: &str) -> std::path::PathBuf {
        self.s3.root.path().join("media").join(key)
    }

    async fn count(&self, sql: &str) -> i64 {
        let store = self.pg.store().await;
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(store.pool())
            .await
            .unwrap();
        store.close().await;
        n
    }

    /// Object files under the S3 bucket (not s3s-fs's own bookkeeping) and in the fs store.
    fn stored_objects(&self) -> Vec<String> {
        let mut found = Vec::new();
        for root in [
            self.s3.root.path().join("media"),
            self.fs_root.path().to_path_buf(),
        ] {
            let mut pending = vec![root.clone()];
            while let Some(dir) = pending.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let entry = entry.unwrap();
                    let path = entry.path();
                    if path.is_dir() {
                        pending.push(path);
                    } else {
                        let name = path.strip_prefix(&root).unwrap().display().to_string();
                        if !name.starts_with(".s3s") && !name.contains("/.s3s") {
                            found.push(name);
                        }
                    }
                }
            }
        }
        found.sort();
        found
    }

    /// Multipart uploads s3s-fs still holds parts of.
    fn open_multipart_parts(&self) -> usize {
        std::fs::read_dir(self.s3.root.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".upload_id-")
            })
            .count()
    }
}

async fn send(
    pg: &Postern,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> (reqwest::StatusCode, Value) {
    let r = client()
        .request(method, pg.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn upload(pg: &Postern, path: &str, token: &str, form: Form) -> (reqwest::StatusCode, Value) {
    let r = client()
        .post(pg.url(path))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A JPEG with an EXIF segment carrying `secret`.
fn jpeg_with_exif(width: u32, height: u32, secret: &str) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, _| image::Rgb([x as u8, 50, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    let plain = out.into_inner();
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(secret.as_bytes());
    let len = (payload.len() + 2) as u16;
    let mut jpeg = plain[..2].to_vec();
    jpeg.extend_from_slice(&[0xFF, 0xE1]);
    jpeg.extend_from_slice(&len.to_be_bytes());
    jpeg.extend_from_slice(&payload);
    jpeg.extend_from_slice(&plain[2..]);
    jpeg
}

fn file_part(bytes: Vec<u8>, name: &str, declared: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(declared)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_go_to_s3_with_records_links_and_acls() {
    let t = Setup::new().await;
    let (ann_id, ann) = t.user("ann", &[]).await;
    let picture = png(40, 30);

    // One file, with every field, declared as something it is not: the bytes decide.
    let form = Form::new()
        .text("folder", "avatars")
        .text("alt", "ann's avatar")
        .text("entity_type", "post")
        .text("entity_id", "7")
        .text("acl", "public-read")
        .part(
            "file",
            file_part(picture.clone(), "me.pdf", "application/pdf"),
        );
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 201, "{body}");
    let file = &body["files"][0];
    assert_eq!(file["content_type"], "image/png");
    assert_eq!(file["name"], "me.pdf");
    assert_eq!(
        (file["width"].as_i64(), file["height"].as_i64()),
        (Some(40), Some(30))
    );
    assert_eq!(file["size"], picture.len());
    assert_eq!(file["acl"], "public-read");
    assert_eq!(file["owner"], ann_id.as_str());
    assert_eq!(file["folder"], "avatars");
    assert_eq!(file["entity_type"], "post");
    let id = file["id"].as_str().unwrap().to_string();
    let key = file["key"].as_str().unwrap().to_string();
    assert_eq!(key, format!("users/{ann_id}/avatars/{id}.png"));
    {
        use sha2::Digest;
        let digest: String = sha2::Sha256::digest(&picture)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(file["sha256"], digest.as_str());
    }
    assert_eq!(std::fs::read(t.s3_object(&key)).unwrap(), picture);
    let put =
        t.s3.requests
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.method == "PUT" && r.target.contains(&id))
            .cloned()
            .expect("a PUT of the object");
    assert_eq!(put.acl.as_deref(), Some("public-read"));
    assert_eq!(put.content_type.as_deref(), Some("image/png"));

    // Many at once, with the default ACL and no folder.
    let form = Form::new()
        .part(
            "files[]",
            file_part(b"first note\n".to_vec(), "a.txt", "text/plain"),
        )
        .part(
            "files[]",
            file_part(
                b"%PDF-1.4\n%\xe2\xe3\n".to_vec(),
                "b.pdf",
                "application/pdf",
            ),
        )
        .part("files[]", file_part(png(2, 2), "c.png", "image/png"));
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 201, "{body}");
    let many = body["files"].as_array().unwrap();
    assert_eq!(many.len(), 3);
    assert_eq!(many[0]["acl"], "private");
    assert_eq!(many[1]["content_type"], "application/pdf");
    assert!(
        many[0]["key"]
            .as_str()
            .unwrap()
            .starts_with(&format!("users/{ann_id}/"))
    );
    assert!(!many[0]["key"].as_str().unwrap().contains("//"));

    // Listing, filters, the entity view.
    let (_, list) = send(&t.pg, reqwest::Method::GET, "/_postern/files", &ann).await;
    assert_eq!(list["total"], 4);
    let (_, list) = send(
        &t.pg,
        reqwest::Method::GET,
        "/_postern/files?content_type=image/",
        &ann,
    )
    .await;
    assert_eq!(list["total"], 2);
    let (_, list) = send(
        &t.pg,
        reqwest::Method::GET,
        "/_postern/files?folder=avatars",
        &ann,
    )
    .await;
    assert_eq!(list["total"], 1);
    let (_, list) = send(
        &t.pg,
        reqwest::Method::GET,
        "/_postern/files?limit=2&offset=1",
        &ann,
    )
    .await;
    assert_eq!(list["files"].as_array().unwrap().len(), 2);
    let (status, list) = send(
        &t.pg,
        reqwest::Method::GET,
        "/_postern/files/entity/post/7",
        &ann,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["files"][0]["id"], id.as_str());

    // A fresh presigned link that works, capped by the route, and one that expires.
    let (status, record) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/_postern/files/{id}"),
        &ann,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(record["expires_in"], 3600);
    let url = record["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let fetched = client().get(url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap(), picture);
    let (_, capped) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/_postern/files/{id}?expiresIn=999999"),
        &ann,
    )
    .await;
    assert_eq!(capped["expires_in"], 7200);
    let (status, bad) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/_postern/files/{id}?expiresIn=-5"),
        &ann,
    )
    .await;
    assert_eq!(status, 422, "{bad}");
    let (_, short) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/_postern/files/{id}?expiresIn=1"),
        &ann,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = client()
        .get(short["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        expired.status(),
        403,
        "an expired presigned link is refused by S3"
    );

    // The content, streamed through postern.
    let r = client()
        .get(t.pg.url(&format!("/_postern/files/{id}/content")))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap(), picture);

    // PATCH: alt, detach, attach elsewhere; the rest cannot change.
    let r = client()
        .patch(t.pg.url(&format!("/_postern/files/{id}")))
        .bearer_auth(&ann)
        .json(&json!({"alt": "new alt", "entity_type": null, "entity_id": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["alt"], "new alt");
    assert_eq!(patched["entity_type"], Value::Null);
    let r = client()
        .patch(t.pg.url(&format!("/_postern/files/{id}")))
        .bearer_auth(&ann)
        .json(&json!({"key": "users/someone-else/x.png"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let (_, list) = send(
        &t.pg,
        reqwest::Method::GET,
        "/_postern/files/entity/post/7",
        &ann,
    )
    .await;
    assert_eq!(list["total"], 0);

    // DELETE removes the object and the record.
    let (status, _) = send(
        &t.pg,
        reqwest::Method::DELETE,
        &format!("/_postern/files/{id}"),
        &ann,
    )
    .await;
    assert_eq!(status, 204);
    assert!(!t.s3_object(&key).exists());
    let (status, _) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/_postern/files/{id}"),
        &ann,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(t.count("SELECT COUNT(*) FROM files").await, 3);
    assert_eq!(t.stored_objects().len(), 3);
    assert_eq!(t.count("SELECT COUNT(*) FROM pending_uploads").await, 0);
    let events = t
        .count("SELECT COUNT(*) FROM events WHERE kind IN ('file.uploaded', 'file.deleted')")
        .await;
    assert_eq!(events, 5);
    let metrics = t.pg.metrics().await;
    assert!(
        metrics.contains(r#"postern_uploads_total{result="stored",route="files"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("postern_upload_bytes_total"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_limit_refuses_and_leaves_nothing_behind() {
    let t = Setup::new().await;
    let (_, ann) = t.user("ann", &[]).await;

    // A file past max_file_size (64 KiB), refused while it streams.
    let form = Form::new().part(
        "file",
        file_part(vec![b'a'; 100 << 10], "big.txt", "text/plain"),
    );
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "file_too_large");

    // More than max_files (3): the first three were stored, then all of them removed.
    let mut form = Form::new();
    for i in 0..4 {
        form = form.part(
            "files[]",
            file_part(format!("note {i}\n").into_bytes(), "n.txt", "text/plain"),
        );
    }
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "too_many_files");

    // Types by magic bytes: a Windows executable and a ZIP, both claiming to be PNGs.
    for (bytes, found) in [
        (
            b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff".to_vec(),
            "application/octet-stream",
        ),
        (b"PK\x03\x04\x14\0\0\0\x08\0".to_vec(), "application/zip"),
    ] {
        let form = Form::new().part("file", file_part(bytes, "cat.png", "image/png"));
        let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
        assert_eq!(status, 415, "{body}");
        assert_eq!(body["error"]["code"], "file_type_not_allowed");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(found),
            "{body}"
        );
    }
    // A PNG after an allowed file in the same request: the earlier file goes too.
    let form = Form::new()
        .part(
            "files[]",
            file_part(b"fine\n".to_vec(), "ok.txt", "text/plain"),
        )
        .part(
            "files[]",
            file_part(b"MZ\x90\0\x03\0\0\0".to_vec(), "x.txt", "text/plain"),
        );
    let (status, _) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 415);

    // ACLs outside the route's list, folders outside its list, fields after the file.
    let form = Form::new()
        .text("acl", "public-read-write")
        .part("file", file_part(b"x\n".to_vec(), "x.txt", "text/plain"));
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "acl_not_allowed");
    let form = Form::new()
        .text("folder", "../../etc")
        .part("file", file_part(b"x\n".to_vec(), "x.txt", "text/plain"));
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("folder"),
        "{body}"
    );
    let form = Form::new()
        .part("file", file_part(b"x\n".to_vec(), "x.txt", "text/plain"))
        .text("folder", "docs");
    let (status, _) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 422);
    let form = Form::new()
        .text("surprise", "1")
        .part("file", file_part(b"x\n".to_vec(), "x.txt", "text/plain"));
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("surprise"),
        "{body}"
    );
    let form = Form::new()
        .text("alt", "a".repeat(5000))
        .part("file", file_part(b"x\n".to_vec(), "x.txt", "text/plain"));
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("alt"),
        "{body}"
    );
    let form = Form::new().part("file", file_part(Vec::new(), "empty.txt", "text/plain"));
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("empty"),
        "{body}"
    );
    let form = Form::new().text("folder", "docs");
    let (status, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    assert_eq!(status, 422, "{body}");
    let r = client()
        .post(t.pg.url("/_postern/files"))
        .bearer_auth(&ann)
        .json(&json!({"file": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // Framing without end (no boundary ever comes) is cut off long before the size limits.
    let r = client()
        .post(t.pg.url("/_postern/files"))
        .bearer_auth(&ann)
        .header("content-type", "multipart/form-data; boundary=never-sent")
        .body(vec![b'a'; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("framing"),
        "{body}"
    );

    // A declared body larger than anything the route could take is refused before reading.
    let r = client()
        .post(t.pg.url("/_postern/files"))
        .bearer_auth(&ann)
        .header("content-type", "multipart/form-data; boundary=x")
        .header("content-length", (1u64 << 30).to_string())
        .body("")
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }

    // Nothing was kept from any of it.
    assert_eq!(t.stored_objects(), Vec::<String>::new());
    assert_eq!(t.count("SELECT COUNT(*) FROM files").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM pending_uploads").await, 0);
    let metrics = t.pg.metrics().await;
    for label in ["too_large", "too_many", "type_refused", "refused"] {
        assert!(
            metrics.contains(&format!(
                r#"postern_uploads_total{{result="{label}",route="files"}}"#
            )),
            "{label}: {metrics}"
        );
    }

    // Anonymous callers never reach the API.
    let r = client()
        .get(t.pg.url("/_postern/files"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_only_their_own_files() {
    let t = Setup::new().await;
    let (ann_id, ann) = t.user("ann", &[]).await;
    let (_, bob) = t.user("bob", &[]).await;
    let (_, admin) = t.user("root", &["admin"]).await;
    let form = Form::new()
        .text("entity_type", "post")
        .text("entity_id", "1")
        .part(
            "file",
            file_part(b"ann's secret\n".to_vec(), "s.txt", "text/plain"),
        );
    let (_, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
    let id = body["files"][0]["id"].as_str().unwrap().to_string();

    for (method, path) in [
        (reqwest::Method::GET, format!("/_postern/files/{id}")),
        (
            reqwest::Method::GET,
            format!("/_postern/files/{id}/content"),
        ),
        (reqwest::Method::DELETE, format!("/_postern/files/{id}")),
    ] {
        let (status, _) = send(&t.pg, method.clone(), &path, &bob).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let r = client()
        .patch(t.pg.url(&format!("/_postern/files/{id}")))
        .bearer_auth(&bob)
        .json(&json!({"alt": "mine now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (_, list) = send(&t.pg, reqwest::Method::GET, "/_postern/files", &bob).await;
    assert_eq!(list["total"], 0);
    let (_, list) = send(
        &t.pg,
        reqwest::Method::GET,
        "/_postern/files/entity/post/1",
        &bob,
    )
    .await;
    assert_eq!(list["total"], 0);
    // Another route's file API does not show it either.
    let (status, _) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/local-files/{id}"),
        &ann,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &t.pg,
        reqwest::Method::GET,
        "/_postern/files/not-a-uuid",
        &ann,
    )
    .await;
    assert_eq!(status, 404);

    // Administrators see and manage everyone's files through the admin API.
    let (status, _) = send(&t.pg, reqwest::Method::GET, "/_postern/admin/files", &bob).await;
    assert_eq!(status, 403);
    let (status, list) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/_postern/admin/files?user_id={ann_id}"),
        &admin,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    let (status, one) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/_postern/admin/files/{id}"),
        &admin,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["owner"], ann_id.as_str());
    let fetched = client()
        .get(one["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), b"ann's secret\n");
    let (status, _) = send(
        &t.pg,
        reqwest::Method::DELETE,
        &format!("/_postern/admin/files/{id}"),
        &admin,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(t.stored_objects(), Vec::<String>::new());
    let store = t.pg.store().await;
    let events = store
        .events(&postern::store::EventFilter {
            kind: Some("file.deleted".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events[0].actor.as_deref(), Some("root"));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_sessions_need_proof_of_a_script_and_this_site() {
    let t = Setup::new().await;
    t.pg.add_user("ann", "correct horse battery", &[]).await;
    let cookie = t.pg.login_cookie("ann", "correct horse battery").await;
    let form = || {
        Form::new().part(
            "file",
            file_part(b"hello\n".to_vec(), "h.txt", "text/plain"),
        )
    };
    // A plain cross-site form could send this: refused.
    let r = client()
        .post(t.pg.url("/_postern/files"))
        .header("cookie", &cookie)
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A script on another site: refused even with the header.
    let r = client()
        .post(t.pg.url("/_postern/files"))
        .header("cookie", &cookie)
        .header("x-requested-with", "XMLHttpRequest")
        .header("origin", "https://evil.example")
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // This site's script.
    let r = client()
        .post(t.pg.url("/_postern/files"))
        .header("cookie", &cookie)
        .header("x-requested-with", "XMLHttpRequest")
        .header("origin", format!("http://{}", t.pg.addr))
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(t.count("SELECT COUNT(*) FROM files").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn filesystem_uploads_are_atomic_and_served_back() {
    let t = Setup::new().await;
    let (ann_id, ann) = t.user("ann", &[]).await;
    let form = Form::new().part(
        "file",
        file_part(b"local bytes\n".to_vec(), "l.txt", "text/plain"),
    );
    let (status, body) = upload(&t.pg, "/local-files", &ann, form).await;
    assert_eq!(status, 201, "{body}");
    let file = &body["files"][0];
    let key = file["key"].as_str().unwrap();
    assert!(key.starts_with(&format!("users/{ann_id}/")), "{key}");
    assert_eq!(
        std::fs::read(t.fs_root.path().join(key)).unwrap(),
        b"local bytes\n"
    );
    // No temporary file is left in the root.
    let leftovers: Vec<_> = std::fs::read_dir(t.fs_root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".postern-upload-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The same object through the per-user asset route, and through a postern-signed link.
    let rest = key.strip_prefix(&format!("users/{ann_id}/")).unwrap();
    let r = client()
        .get(t.pg.url(&format!("/me/local/{rest}")))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = file["id"].as_str().unwrap();
    let (_, record) = send(
        &t.pg,
        reqwest::Method::GET,
        &format!("/local-files/{id}"),
        &ann,
    )
    .await;
    let url = record["url"].as_str().unwrap();
    assert!(url.starts_with("/_postern/signed/local/"), "{url}");
    let r = client().get(t.pg.url(url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"local bytes\n");
    let (status, _) = send(
        &t.pg,
        reqwest::Method::DELETE,
        &format!("/local-files/{id}"),
        &ann,
    )
    .await;
    assert_eq!(status, 204);
    assert!(!t.fs_root.path().join(key).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn images_become_variants_with_their_size_and_no_exif() {
    let t = Setup::new().await;
    let (_, ann) = t.user("ann", &[]).await;
    let source = png(200, 100);
    let form = Form::new().part("file", file_part(source.clone(), "wide.png", "image/png"));
    let (status, body) = upload(&t.pg, "/image-uploads", &ann, form).await;
    assert_eq!(status, 201, "{body}");
    let file = &body["files"][0];
    assert_eq!(file["content_type"], "image/webp");
    assert_eq!(
        (file["width"].as_i64(), file["height"].as_i64()),
        (Some(64), Some(32))
    );
    let key = file["key"].as_str().unwrap();
    assert!(key.ends_with(".webp"), "{key}");
    let stored = std::fs::read(t.s3_object(key)).unwrap();
    let decoded = image::load_from_memory(&stored).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (64, 32));
    assert_eq!(file["size"], stored.len());
    let original = file["original_key"].as_str().unwrap();
    assert!(original.ends_with(".original.png"), "{original}");
    assert_eq!(std::fs::read(t.s3_object(original)).unwrap(), source);

    // Small images are not enlarged; EXIF does not survive.
    let secret = "GPS 48.8584N 2.2945E";
    let form = Form::new().part(
        "file",
        file_part(jpeg_with_exif(20, 10, secret), "p.jpg", "image/jpeg"),
    );
    let (status, body) = upload(&t.pg, "/image-uploads", &ann, form).await;
    assert_eq!(status, 201, "{body}");
    let file = &body["files"][0];
    assert_eq!(
        (file["width"].as_i64(), file["height"].as_i64()),
        (Some(20), Some(10))
    );
    let stored = std::fs::read(t.s3_object(file["key"].as_str().unwrap())).unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert!(
        !text.contains(secret) && !text.contains("Exif"),
        "EXIF kept"
    );

    // Not an image on an image route; a corrupt image.
    let form = Form::new().part(
        "file",
        file_part(b"just text\n".to_vec(), "x.png", "image/png"),
    );
    let (status, _) = upload(&t.pg, "/image-uploads", &ann, form).await;
    assert_eq!(status, 415);
    let mut broken = png(50, 50);
    broken.truncate(60);
    let form = Form::new().part("file", file_part(broken, "b.png", "image/png"));
    let (status, body) = upload(&t.pg, "/image-uploads", &ann, form).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(t.count("SELECT COUNT(*) FROM files").await, 2);
    assert_eq!(t.stored_objects().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_reads_the_store_back_into_records() {
    let t = Setup::new().await;
    let (ann_id, ann) = t.user("ann", &[]).await;
    let mut ids = Vec::new();
    for text in ["one\n", "two\n"] {
        let form = Form::new().part(
            "file",
            file_part(text.as_bytes().to_vec(), "t.txt", "text/plain"),
        );
        let (_, body) = upload(&t.pg, "/_postern/files", &ann, form).await;
        ids.push(body["files"][0].clone());
    }
    // Behind postern's back: one object removed, one added, one changed.
    std::fs::remove_file(t.s3_object(ids[0]["key"].as_str().unwrap())).unwrap();
    t.s3.put(
        "media",
        &format!("users/{ann_id}/docs/added.pdf"),
        b"%PDF-1.7\nadded\n",
    );
    t.s3.put(
        "media",
        ids[1]["key"].as_str().unwrap(),
        b"two, longer now\n",
    );
    let (status, report) = send(&t.pg, reqwest::Method::POST, "/_postern/files/sync", &ann).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({"added": 1, "removed": 1, "updated": 1, "unchanged": 0})
    );
    let (_, list) = send(&t.pg, reqwest::Method::GET, "/_postern/files", &ann).await;
    assert_eq!(list["total"], 2);
    let names: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"added.pdf"), "{names:?}");
    let added = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "added.pdf")
        .unwrap();
    assert_eq!(added["content_type"], "application/pdf");
    let changed = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == ids[1]["id"])
        .unwrap();
    assert_eq!(changed["size"], 16);
    // A second sync finds nothing to do; the adopted file can be deleted like any other.
    let (_, report) = send(&t.pg, reqwest::Method::POST, "/_postern/files/sync", &ann).await;
    assert_eq!(
        report,
        json!({"added": 0, "removed": 0, "updated": 0, "unchanged": 2})
    );
    let (status, _) = send(
        &t.pg,
        reqwest::Method::DELETE,
        &format!("/_postern/files/{}", added["id"].as_str().unwrap()),
        &ann,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(t.stored_objects().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_cannot_be_written_takes_its_object_with_it() {
    let t = Setup::new().await;
    let (_, ann) = t.user("ann", &[]).await;
    let store = t.pg.store().await;
    let ddl: &[&str] = if t.pg.database.url.starts_with("postgres") {
        &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.name = 'poison.txt' THEN RAISE EXCEPTION 'injected failure'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON files FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ]
    } else {
        &[
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON files WHEN NEW.name = 'poison.txt' \
           BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        ]
    };
    for statement in ddl {
        sqlx::query(statement).execute(store.pool()).await.unwrap();
    }
    store.close().await;
    for path in ["/_postern/files", "/local-files"] {
        let form = Form::new()
            .part(
                "files[]",
                file_part(b"fine\n".to_vec(), "fine.txt", "text/plain"),
            )
            .part(
                "files[]",
                file_part(b"bad\n".to_vec(), "poison.txt", "text/plain"),
            );
        let (status, body) = upload(&t.pg, path, &ann, form).await;
        assert_eq!(status, 503, "{path}: {body}");
    }
    assert_eq!(t.stored_objects(), Vec::<String>::new());
    assert_eq!(t.count("SELECT COUNT(*) FROM files").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM pending_uploads").await, 0);
}

/// A multipart body whose file part is `size` bytes of a repeating pattern, written in 64 KiB
/// chunks as it is sent.
fn streamed_form(size: u64) -> (Form, String) {
    use futures_util::StreamExt;
    use sha2::Digest;
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let mut hasher = sha2::Sha256::new();
    let full_chunks = size / chunk.len() as u64;
    let tail = (size % chunk.len() as u64) as usize;
    for _ in 0..full_chunks {
        hasher.update(&chunk);
    }
    hasher.update(&chunk[..tail]);
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let chunk = bytes::Bytes::from(chunk);
    let stream = futures_util::stream::iter(0..=full_chunks).map(move |i| {
        let part = if i < full_chunks {
            chunk.clone()
        } else {
            chunk.slice(..tail)
        };
        Ok::<_, std::io::Error>(part)
    });
    let part = Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
        .file_name("big.bin")
        .mime_str("application/octet-stream")
        .unwrap();
    (Form::new().part("file", part), digest)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "200 MiB through S3 multipart: run by CI with --ignored"]
async fn a_200_mib_upload_streams_through_multipart_in_flat_memory() {
    let t = Setup::new().await;
    let (_, ann) = t.user("ann", &[]).await;
    // Warm up first (the S3 client, its connection pool, the multipart path): one-time
    // allocations are not growth with the upload's size.
    let (warm_up, _) = streamed_form(12 << 20);
    let (status, _) = upload(&t.pg, "/big-uploads", &ann, warm_up).await;
    assert_eq!(status, 201);
    let size: u64 = 200 << 20;
    let (form, digest) = streamed_form(size);
    let before = common::rss_bytes();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(common::rss_bytes());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let r = reqwest::Client::new()
        .post(t.pg.url("/big-uploads"))
        .bearer_auth(&ann)
        .multipart(form)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    let file = &body["files"][0];
    assert_eq!(file["size"], size);
    assert_eq!(file["sha256"], digest.as_str());
    let key = file["key"].as_str().unwrap();
    assert_eq!(std::fs::metadata(t.s3_object(key)).unwrap().len(), size);
    let parts =
        t.s3.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == "PUT" && r.target.contains("partNumber="))
            .count();
    assert_eq!(
        parts,
        3 + 40,
        "12 MiB (5 + 5 + 2), then 200 MiB, in 5 MiB parts"
    );
    let growth = peak.saturating_sub(before);
    println!("RSS grew {} MiB while uploading 200 MiB", growth >> 20);
    assert!(growth < 64 << 20, "RSS grew {growth} bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_midway_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    let t = Setup::new().await;
    let (_, ann) = t.user("ann", &[]).await;
    let boundary = "----postern-test-boundary";
    let preamble = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let declared = 100u64 << 20;
    let mut socket = tokio::net::TcpStream::connect(t.pg.addr).await.unwrap();
    let head = format!(
        "POST /big-uploads HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ann}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n{preamble}",
        t.pg.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..12 {
        socket.write_all(&chunk).await.unwrap();
    }
    // Wait until the upload has started its multipart upload and sent parts.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t.open_multipart_parts() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no parts were uploaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(socket);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let claims = t.count("SELECT COUNT(*) FROM pending_uploads").await;
        if claims == 0 && t.open_multipart_parts() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload was not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM files").await, 0);
    assert_eq!(t.stored_objects(), Vec::<String>::new());
    let aborted =
        t.s3.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.method == "DELETE" && r.target.contains("uploadId="));
    assert!(aborted, "the multipart upload was aborted");
    let metrics = t.pg.metrics().await;
    assert!(
        metrics.contains(r#"postern_uploads_total{result="aborted",route="big"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_cleans_up_what_a_crash_left() {
    use std::sync::Arc;
    let t = Setup::new().await;
    let (ann_id, _) = t.user("ann", &[]).await;
    let store = t.pg.store().await;
    // A crash after the object was written but before its record; and one mid-way through an
    // S3 multipart upload; and a temporary file.
    let orphan = format!("users/{ann_id}/orphan.txt");
    std::fs::create_dir_all(t.fs_root.path().join(format!("users/{ann_id}"))).unwrap();
    std::fs::write(t.fs_root.path().join(&orphan), b"orphan").unwrap();
    store.claim_object_key("local", &orphan, 0).await.unwrap();
    let s3_key = format!("users/{ann_id}/half.bin");
    let (text, mut vars) = config(&t.s3, t.fs_root.path());
    vars.push(("LISTEN", "127.0.0.1:1".into()));
    vars.push(("OPS", "127.0.0.1:2".into()));
    vars.push(("DATA", t.pg.data_dir.path().display().to_string()));
    let settings = postern::config::parse(&text, &|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let metrics = Arc::new(postern::metrics::Metrics::new().unwrap());
    let s3_store = postern::objects::ObjectStores::new(&settings.stores, &metrics);
    let Some(postern::objects::ObjectStore::S3(s3)) =
        s3_store.get(s3_store.index_of("media").unwrap())
    else {
        panic!("media is S3");
    };
    let upload_id = s3
        .client
        .start_multipart(&s3_key, "application/octet-stream", "private")
        .await
        .unwrap();
    s3.client
        .upload_part(
            &s3_key,
            &upload_id,
            1,
            bytes::Bytes::from(vec![1u8; 5 << 20]),
        )
        .await
        .unwrap();
    let claim = store.claim_object_key("media", &s3_key, 0).await.unwrap();
    store
        .note_multipart_upload(claim, &upload_id)
        .await
        .unwrap();
    let temp = t.fs_root.path().join(".postern-upload-crashed.tmp");
    std::fs::write(&temp, b"partial").unwrap();
    assert_eq!(t.open_multipart_parts(), 1);

    let handle: postern::services::StoreHandle = Arc::default();
    handle.store(Some(Arc::new(store.clone())));
    let files = Arc::new(postern::files::Files::new(
        handle,
        Arc::new(s3_store),
        Arc::new(postern::images::Images::new(
            settings.images.clone(),
            metrics.clone(),
        )),
        Arc::new(postern::auth::SystemClock),
        metrics,
    ));
    let sweeper =
        postern::files::UploadSweeper::new(files, Duration::ZERO, Duration::from_secs(60));
    assert_eq!(sweeper.sweep().await, 2);
    assert!(!t.fs_root.path().join(&orphan).exists());
    assert!(!temp.exists());
    assert_eq!(t.open_multipart_parts(), 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM pending_uploads").await, 0);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_sync_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let database = common::TestDatabase::new(&data);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_postern"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("POSTERN_CONFIG")
            .env("POSTERN_DATA_DIR", &data)
            .env("POSTERN_DATABASE_URL", &database.url)
            .envs(common::SHARED_KEY_ENV)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["migrate"]);
    let store = postern::store::Store::open(&database.url, 1).await.unwrap();
    let user = store
        .create_user(
            &postern::store::NewUser {
                username: "ann".into(),
                email: "ann@example.com".into(),
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
    // The built-in config's upload route keeps files under users/{user_id}/ in data/objects.
    let dir_of_user = data.join("objects/users").join(&user.id).join("docs");
    std::fs::create_dir_all(&dir_of_user).unwrap();
    std::fs::write(dir_of_user.join("report.pdf"), b"%PDF-1.5\n").unwrap();
    let report: Value =
        serde_json::from_str(&run(&["files", "sync", "--user", "ann", "--json"])).unwrap();
    assert_eq!(
        report,
        json!({"added": 1, "removed": 0, "updated": 0, "unchanged": 0})
    );
    std::fs::remove_file(dir_of_user.join("report.pdf")).unwrap();
    let out = run(&["files", "sync"]);
    assert!(out.contains("removed 1"), "{out}");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(count, 0);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_chosen_names_never_overwrite() {
    let t = Setup::new().await;
    let (ann_id, ann) = t.user("ann", &[]).await;
    // The stored type decides the extension, whatever the name said.
    let form = Form::new().part(
        "file",
        file_part(
            b"%PDF-1.7\n".to_vec(),
            "../report.exe",
            "application/x-msdownload",
        ),
    );
    let (status, body) = upload(&t.pg, "/named-uploads", &ann, form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["files"][0]["key"],
        format!("users/{ann_id}/report.pdf")
    );
    assert_eq!(body["files"][0]["name"], "report.exe");
    // The same name again, and a name held by an object without a record: 409, nothing replaced.
    let form = Form::new().part(
        "file",
        file_part(
            b"%PDF-1.7\nsecond\n".to_vec(),
            "report.pdf",
            "application/pdf",
        ),
    );
    let (status, body) = upload(&t.pg, "/named-uploads", &ann, form).await;
    assert_eq!(status, 409, "{body}");
    let placed = t.fs_root.path().join(format!("users/{ann_id}/placed.txt"));
    std::fs::write(&placed, b"placed by the operator").unwrap();
    let form = Form::new().part(
        "file",
        file_part(b"replacement\n".to_vec(), "placed.txt", "text/plain"),
    );
    let (status, _) = upload(&t.pg, "/named-uploads", &ann, form).await;
    assert_eq!(status, 409);
    assert_eq!(std::fs::read(&placed).unwrap(), b"placed by the operator");
    t.s3.put(
        "media",
        &format!("named/{ann_id}/placed.txt"),
        b"placed in the bucket",
    );
    let form = Form::new().part(
        "file",
        file_part(b"replacement\n".to_vec(), "placed.txt", "text/plain"),
    );
    let (status, _) = upload(&t.pg, "/named-s3-uploads", &ann, form).await;
    assert_eq!(status, 409);
    assert_eq!(
        std::fs::read(t.s3_object(&format!("named/{ann_id}/placed.txt"))).unwrap(),
        b"placed in the bucket"
    );
    assert_eq!(t.count("SELECT COUNT(*) FROM files").await, 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM pending_uploads").await, 0);
    assert_eq!(
        std::fs::read_dir(t.fs_root.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".postern-upload-"))
            .count(),
        0,
        "no temporary file is left"
    );
}
