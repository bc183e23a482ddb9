//! S3 credentials from the standard chain: a store without keys in the config signs with keys
//! from a shared credentials file and profile, fetched by the background refresher (not on a
//! request), and `/readyz` waits for them. Its own test binary: it sets the process environment.

mod common;

use std::time::{Duration, Instant};

use common::{Postern, S3Server, base_config, http_client as client};

#[tokio::test(flavor = "multi_thread")]
async fn a_store_signs_with_profile_credentials_from_the_chain() {
    let s3 = S3Server::start(&["media"]).await;
    s3.put("media", "shared/hello.txt", b"hello from the chain");
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n\
             [media]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.access_key, s3.secret_key
        ),
    )
    .unwrap();
    // SAFETY: this test binary has this one test; nothing else reads the environment meanwhile.
    unsafe {
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            std::env::remove_var(name);
        }
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials);
        std::env::set_var("AWS_CONFIG_FILE", dir.path().join("no-config"));
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let config = format!(
        r#"{}
[stores.media]
type = "s3"
bucket = "media"
region = "us-east-1"
endpoint = "${{S3}}"
profile = "media"

[[routes]]
name = "files"
path = "/files/"
kind = "assets"
store = "media"
key = "shared/{{path}}"
access = "public"
"#,
        base_config("")
    );
    let p = Postern::start(&config, &[("S3", s3.url())]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client().get(p.ops_url("/readyz")).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        let body = ready.text().await.unwrap();
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = client()
        .get(p.url("/files/hello.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from the chain");
}
