//! What a logged-in request costs on top of a public one: finding the session cookie, checking
//! the session (cache hit, the normal case), removing the cookie and adding the identity headers
//! before the request goes upstream. Compare with the per-request CPU time of the load script.

use std::sync::Arc;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use pingora::http::RequestHeader;
use postern::auth::{Passwords, Sessions, SystemClock};
use postern::config::parse;
use postern::metrics::Metrics;
use postern::proxy::headers;
use postern::store::{NewUser, Store};

// The allocator the postern binary runs with: this work is mostly allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench_session_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = parse(
        "[[routes]]\npath = \"/\"\nkind = \"builtin\"\n[sessions]\ncache_ttl = \"60s\"\n",
        &|_| None,
    )
    .unwrap();
    let (sessions, token) = runtime.block_on(async {
        let store = Store::open(&format!("sqlite://{}/bench.db", dir.path().display()), 2)
            .await
            .unwrap();
        let hash = Passwords::new(settings.passwords.hash, 1)
            .unwrap()
            .hash("pw".into())
            .await
            .unwrap();
        let user = store
            .create_user(
                &NewUser {
                    username: "bench".into(),
                    email: "bench@example.com".into(),
                    password_hash: Some(hash),
                    roles: vec!["staff".into()],
                    ..Default::default()
                },
                0,
            )
            .await
            .unwrap();
        let handle: postern::services::StoreHandle = Arc::default();
        handle.store(Some(Arc::new(store)));
        let sessions = Sessions::new(
            settings.sessions.clone(),
            handle,
            Arc::new(SystemClock),
            Arc::new(Metrics::new().unwrap()),
        );
        let created = sessions.create(&user, None, None).await.unwrap();
        assert!(
            sessions
                .authenticate(&created.token)
                .await
                .unwrap()
                .is_some()
        );
        (sessions, created.token)
    });
    let cookie_name = settings.sessions.cookie_name.clone();
    let csrf_name = settings.sessions.csrf_cookie_name.clone();
    let cookie = format!("theme=dark; {cookie_name}={token}; lang=en");
    let identity_names = headers::IdentityNames::new(&settings.identity_headers);

    c.bench_function("logged_in_request_overhead", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut req = RequestHeader::build("GET", b"/dashboard", None).unwrap();
            req.insert_header("cookie", cookie.as_str()).unwrap();
            let token = headers::cookie_value(&req, &cookie_name).map(str::to_owned);
            let principal = sessions
                .authenticate(token.as_deref().unwrap())
                .await
                .unwrap()
                .unwrap();
            headers::strip_cookies(&mut req, &[&cookie_name, &csrf_name]).unwrap();
            headers::set_identity(&mut req, &identity_names, &principal).unwrap();
            black_box(req);
        })
    });
    c.bench_function("public_request_baseline", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut req = RequestHeader::build("GET", b"/dashboard", None).unwrap();
            req.insert_header("cookie", cookie.as_str()).unwrap();
            black_box(req);
        })
    });
}

criterion_group!(benches, bench_session_check);
criterion_main!(benches);
