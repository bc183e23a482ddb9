//! Image transforms end to end: fit modes, formats, orientation, negotiation, presets, signed
//! parameters, hostile inputs and the result cache, from the filesystem store and from S3.

mod common;

use std::io::Cursor;

use common::{Postern, S3Server, base_config, http_client as client};
use postern::objects::LinkSigner;
use serde_json::Value;

const LINK_KEY: &str = "image-signing-key-0123456789-0123456789";

fn config() -> String {
    format!(
        r#"{}
[images]
workers = 2
max_width = 2000
max_height = 2000
max_source_pixels = 4000000

[images.presets.thumb]
w = 64
h = 64
fit = "cover"
fmt = "webp"

[links]
keys = ["${{LINK_KEY}}"]

[stores.local]
type = "fs"
root = "${{FS_ROOT}}"

[stores.media]
type = "s3"
bucket = "media"
region = "us-east-1"
endpoint = "${{S3}}"
access_key_id = "${{S3_KEY}}"
secret_access_key = "${{S3_SECRET}}"

[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"

[[routes]]
name = "img"
path = "/img/"
kind = "assets"
store = "local"
access = "public"
images = "on"
cache_control = "public, max-age=3600"

[[routes]]
name = "thumbs"
path = "/thumbs/"
kind = "assets"
store = "local"
access = "public"
images = "presets"

[[routes]]
name = "signed"
path = "/signed/"
kind = "assets"
store = "local"
access = "public"
images = "signed"

[[routes]]
name = "s3img"
path = "/s3img/"
kind = "assets"
store = "media"
access = "public"
images = "on"
"#,
        base_config("")
    )
}

struct Setup {
    p: Postern,
    fs_root: tempfile::TempDir,
    s3: S3Server,
}

async fn setup() -> Setup {
    let s3 = S3Server::start(&["media"]).await;
    let fs_root = tempfile::tempdir().unwrap();
    let p = Postern::start(
        &config(),
        &[
            ("FS_ROOT", fs_root.path().display().to_string()),
            ("LINK_KEY", LINK_KEY.to_string()),
            ("S3", s3.url()),
            ("S3_KEY", s3.access_key.clone()),
            ("S3_SECRET", s3.secret_key.clone()),
        ],
    );
    let s = Setup { p, fs_root, s3 };
    s.put("wide.png", &png(400, 200));
    s.put("photo.jpg", &jpeg(300, 200, None));
    s
}

impl Setup {
    fn put(&self, key: &str, bytes: &[u8]) {
        std::fs::write(self.fs_root.path().join(key), bytes).unwrap();
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> reqwest::Response {
        let mut r = client().get(self.p.url(path));
        if let Some(accept) = accept {
            r = r.header("accept", accept);
        }
        r.send().await.unwrap()
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([
            (x % 256) as u8,
            (y % 256) as u8,
            128,
            if x < w / 2 { 255 } else { 128 },
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A JPEG, optionally with an EXIF orientation tag.
fn jpeg(w: u16, h: u16, orientation: Option<u16>) -> Vec<u8> {
    let pixels: Vec<u8> = (0..u32::from(w) * u32::from(h))
        .flat_map(|i| [(i % 251) as u8, (i % 13 * 19) as u8, 90])
        .collect();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    if let Some(o) = orientation {
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend_from_slice(&o.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        encoder.add_app_segment(1, exif).unwrap();
    }
    encoder
        .encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

async fn decoded(r: reqwest::Response) -> (image::ImageFormat, u32, u32) {
    let bytes = r.bytes().await.unwrap();
    let format = image::guess_format(&bytes).unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    (format, img.width(), img.height())
}

async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn fit_modes_and_formats() {
    let s = setup().await;
    let cases = [
        ("fit=cover", 100, 100),
        ("fit=contain", 100, 100),
        ("fit=fill", 100, 100),
        ("fit=inside", 100, 50),
        ("fit=outside", 200, 100),
    ];
    for (fit, w, h) in cases {
        let r = s
            .get(&format!("/img/wide.png?w=100&h=100&{fit}"), None)
            .await;
        assert_eq!(r.status(), 200, "{fit}");
        assert_eq!(decoded(r).await, (image::ImageFormat::Png, w, h), "{fit}");
    }
    let r = s.get("/img/wide.png?w=100", None).await;
    assert_eq!(decoded(r).await, (image::ImageFormat::Png, 100, 50));
    let r = s.get("/img/wide.png?h=50", None).await;
    assert_eq!(decoded(r).await, (image::ImageFormat::Png, 100, 50));
    for (fmt, format, content_type) in [
        ("jpeg", image::ImageFormat::Jpeg, "image/jpeg"),
        ("webp", image::ImageFormat::WebP, "image/webp"),
        ("png", image::ImageFormat::Png, "image/png"),
    ] {
        let r = s
            .get(&format!("/img/photo.jpg?w=150&fmt={fmt}"), None)
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], content_type);
        assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
        assert_eq!(decoded(r).await, (format, 150, 100), "{fmt}");
    }
    // Without parameters the original is streamed untouched.
    let r = s.get("/img/photo.jpg", None).await;
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        jpeg(300, 200, None).as_slice()
    );
}

#[tokio::test]
async fn exif_orientation_is_applied_and_metadata_dropped() {
    let s = setup().await;
    s.put("rotated.jpg", &jpeg(60, 30, Some(6)));
    let r = s.get("/img/rotated.jpg?w=30&fmt=jpeg", None).await;
    let bytes = r.bytes().await.unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (30, 60));
    assert!(
        !bytes.windows(4).any(|w| w == b"Exif"),
        "metadata is stripped"
    );
}

#[tokio::test]
async fn auto_format_follows_accept_and_varies() {
    let s = setup().await;
    let chrome = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
    let r = s.get("/img/photo.jpg?w=120&fmt=auto", Some(chrome)).await;
    assert_eq!(r.headers()["vary"], "Accept");
    assert_eq!(r.headers()["content-type"], "image/webp");
    let webp_etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(decoded(r).await.0, image::ImageFormat::WebP);
    let r = s
        .get("/img/photo.jpg?w=120&fmt=auto", Some("image/jpeg,*/*"))
        .await;
    assert_eq!(r.headers()["vary"], "Accept");
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_ne!(r.headers()["etag"].to_str().unwrap(), webp_etag);
    let r = s.get("/img/wide.png?w=120&fmt=auto", None).await;
    assert_eq!(r.headers()["content-type"], "image/png");
}

#[tokio::test]
async fn presets_only_and_signed_routes() {
    let s = setup().await;
    let r = s.get("/thumbs/wide.png?w=10", None).await;
    assert_eq!(
        error_of(r).await,
        (400, "bad_image_param".into(), "preset".into())
    );
    let r = s.get("/thumbs/wide.png?preset=thumb", None).await;
    assert_eq!(decoded(r).await, (image::ImageFormat::WebP, 64, 64));
    let r = s.get("/thumbs/wide.png?preset=huge", None).await;
    assert_eq!(error_of(r).await.2, "preset");

    let r = s.get("/signed/wide.png?w=50", None).await;
    assert_eq!(
        error_of(r).await,
        (400, "bad_image_param".into(), "sig".into())
    );
    let signer = LinkSigner::new(vec![LINK_KEY.as_bytes().to_vec()]);
    let sig = signer.sign_transform("/signed/wide.png", "fit=cover&fmt=source&q=80&w=50");
    let r = s
        .get(&format!("/signed/wide.png?w=50&sig={sig}"), None)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(decoded(r).await.1, 50);
    let r = s
        .get(&format!("/signed/wide.png?w=51&sig={sig}"), None)
        .await;
    assert_eq!(
        error_of(r).await,
        (403, "bad_signature".into(), String::new())
    );
    let r = s
        .get(&format!("/signed/photo.jpg?w=50&sig={sig}"), None)
        .await;
    assert_eq!(r.status(), 403, "a signature is bound to its path");
    let r = s.get("/signed/wide.png?preset=thumb", None).await;
    assert_eq!(r.status(), 200, "presets need no signature");
}

#[tokio::test]
async fn bad_parameters_are_named() {
    let s = setup().await;
    for (query, field) in [
        ("w=0", "w"),
        ("w=2001", "w"),
        ("h=abc", "h"),
        ("fit=crop", "fit"),
        ("fmt=tiff", "fmt"),
        ("q=0", "q"),
        ("zoom=2", "query"),
        ("w=10&w=20", "w"),
    ] {
        let r = s.get(&format!("/img/wide.png?{query}"), None).await;
        assert_eq!(
            error_of(r).await,
            (400, "bad_image_param".into(), field.into()),
            "{query}"
        );
    }
    let metrics = s.p.metrics().await;
    assert!(
        metrics.contains(r#"postern_image_rejected_total{reason="bad_param"} 8"#),
        "{metrics}"
    );
}

/// A PNG whose header claims `w`×`h` pixels, with a few bytes of (bogus) data.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A real JPEG whose frame header is patched to claim `w`×`h`.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut bytes = jpeg(16, 16, None);
    let sof = bytes
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("a baseline frame header");
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

#[tokio::test]
async fn hostile_images_are_refused() {
    let s = setup().await;
    s.put("bomb.png", &png_bomb(100_000, 100_000));
    s.put("huge.jpg", &jpeg_claiming(60_000, 60_000));
    s.put("noise.png", b"this is not an image at all, just text");
    let mut truncated = png(64, 64);
    truncated.truncate(truncated.len() / 2);
    s.put("truncated.png", &truncated);

    let before = common::rss_bytes();
    for name in ["bomb.png", "huge.jpg"] {
        let r = s.get(&format!("/img/{name}?w=10"), None).await;
        assert_eq!(error_of(r).await.0, 422, "{name}");
    }
    let r = s.get("/img/bomb.png?w=10", None).await;
    assert_eq!(error_of(r).await.1, "image_too_large");
    let grew = common::rss_bytes().saturating_sub(before);
    assert!(grew < 64 << 20, "refusing a bomb allocated {grew} bytes");

    let r = s.get("/img/noise.png?w=10", None).await;
    assert_eq!(
        error_of(r).await,
        (415, "unsupported_image".into(), String::new())
    );
    let r = s.get("/img/truncated.png?w=10", None).await;
    assert_eq!(
        error_of(r).await,
        (422, "corrupt_image".into(), String::new())
    );
    let r = s.get("/img/missing.png?w=10", None).await;
    assert_eq!(r.status(), 404);
    // The server is still fine.
    let r = s.get("/img/wide.png?w=10", None).await;
    assert_eq!(r.status(), 200);
    let metrics = s.p.metrics().await;
    assert!(
        metrics.contains(r#"postern_image_rejected_total{reason="too_large"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"postern_image_rejected_total{reason="unsupported"} 1"#));
    assert!(metrics.contains(r#"postern_image_rejected_total{reason="corrupt"} 1"#));
}

#[tokio::test]
async fn results_are_cached_and_revalidated_with_etags() {
    let s = setup().await;
    let r = s.get("/img/photo.jpg?w=100&fmt=webp", None).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let first = r.bytes().await.unwrap();
    let r = s.get("/img/photo.jpg?fmt=webp&w=100", None).await;
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.bytes().await.unwrap(), first);
    let metrics = s.p.metrics().await;
    assert!(
        metrics.contains(r#"postern_image_cache_total{result="miss"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"postern_image_cache_total{result="hit"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("postern_image_transform_seconds_count{phase=\"resize\"} 1"));

    // The store is not read for a 304: the object may even be gone.
    std::fs::remove_file(s.fs_root.path().join("photo.jpg")).unwrap();
    let r = client()
        .get(s.p.url("/img/photo.jpg?w=100&fmt=webp"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.headers()["vary"], "Accept");
}

#[tokio::test]
async fn sources_come_from_s3_too() {
    let s = setup().await;
    s.s3.put("media", "pics/wide.png", &png(400, 200));
    let r = s.get("/s3img/pics/wide.png?w=80&fmt=jpeg", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(decoded(r).await, (image::ImageFormat::Jpeg, 80, 40));
    let r = s.get("/s3img/pics/none.png?w=80", None).await;
    assert_eq!(r.status(), 404);
}
