//! Per-request work of an S3 asset request: the object key from the path, its S3 encoding, the
//! SigV4 headers for a streamed GET, and a presigned URL for a redirect.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use criterion::{Criterion, criterion_group, criterion_main};
use postern::objects::sigv4::{SignInput, presign_query, sign_headers};
use postern::objects::{decode_object_path, encode_key};

fn bench_signing(c: &mut Criterion) {
    let credentials = Credentials::new("AKIDBENCH", "bench-secret", None, None, "bench");
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let path = format!(
        "/media/{}",
        encode_key("users/42/holiday photos/IMG 0001 (1).jpg")
    );
    let input = SignInput {
        credentials: &credentials,
        region: "eu-west-3",
        method: "GET",
        authority: "s3.eu-west-3.amazonaws.com",
        path_and_query: &path,
        extra_headers: &[],
        payload: None,
        time,
    };
    let mut group = c.benchmark_group("s3_request");
    group.bench_function("decode_and_encode_key", |b| {
        b.iter(|| {
            let key = decode_object_path(black_box("/holiday%20photos/IMG%200001%20(1).jpg"))
                .expect("key");
            encode_key(&key)
        })
    });
    group.bench_function("sigv4_headers_unsigned_payload", |b| {
        b.iter(|| sign_headers(black_box(&input)).expect("signed"))
    });
    group.bench_function("presigned_url_query", |b| {
        b.iter(|| presign_query(black_box(&input), Duration::from_secs(3600)).expect("presigned"))
    });
    group.finish();
}

criterion_group!(benches, bench_signing);
criterion_main!(benches);
