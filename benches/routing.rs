//! Route matching and path normalization: the per-request work before any I/O.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use http::Method;
use postern::routing::{RouteTable, normalize_path};

fn table() -> RouteTable {
    let mut text = String::from(
        "[upstreams.app]\nbackends = [\"http://127.0.0.1:3000\"]\n[stores.default]\ntype = \"fs\"\nroot = \"/tmp\"\n",
    );
    for i in 0..20 {
        text.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\nhost = \"*.tenant{i}.example.com\"\npath = \"/api/v{i}/\"\nupstream = \"app\"\n"
        ));
    }
    let default = postern::config::DEFAULT_CONFIG;
    let default_routes = default
        .find("[[routes]]")
        .expect("default config has routes");
    text.push_str(&default[default_routes..]);
    let settings = postern::config::parse(&text, &|_| None).expect("bench config");
    RouteTable::new(&settings.routes)
}

fn bench_routing(c: &mut Criterion) {
    let table = table();
    let mut group = c.benchmark_group("route_match");
    group.bench_function("first_route", |b| {
        b.iter(|| {
            table.find(
                black_box(Some("a.tenant0.example.com")),
                black_box("/api/v0/items"),
                &Method::GET,
            )
        })
    });
    group.bench_function("catch_all_after_26_routes", |b| {
        b.iter(|| {
            table.find(
                black_box(Some("app.example.com:8080")),
                black_box("/dashboard/settings"),
                &Method::GET,
            )
        })
    });
    group.bench_function("no_host_public", |b| {
        b.iter(|| {
            table.find(
                black_box(None),
                black_box("/public/css/site.css"),
                &Method::GET,
            )
        })
    });
    group.finish();

    let mut group = c.benchmark_group("normalize_path");
    group.bench_function("clean", |b| {
        b.iter(|| normalize_path(black_box("/public/css/site.css")))
    });
    group.bench_function("encoded", |b| {
        b.iter(|| normalize_path(black_box("/public//%63ss/site%20x.css")))
    });
    group.finish();
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
