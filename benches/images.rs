//! The image pipeline (decode → orient → resize → encode) on sharp's benchmark inputs
//! (`benches/images/inputs`, or `POSTERN_BENCH_IMAGES`): the CPU work one transform costs.

use criterion::{Criterion, criterion_group, criterion_main};
use postern::images::params::{Fit, Format, FormatRequest, Transform};
use postern::images::pipeline::{Limits, transform};

fn input(name: &str) -> Option<Vec<u8>> {
    let dir = std::env::var("POSTERN_BENCH_IMAGES")
        .unwrap_or_else(|_| format!("{}/benches/images/inputs", env!("CARGO_MANIFEST_DIR")));
    std::fs::read(format!("{dir}/{name}")).ok()
}

fn bench_pipeline(c: &mut Criterion) {
    let limits = Limits {
        max_source_pixels: 100_000_000,
        max_width: 8192,
        max_height: 8192,
    };
    let width_720 = |format| Transform {
        width: Some(720),
        height: None,
        fit: Fit::Inside,
        format: FormatRequest::Fixed(format),
        quality: 80,
    };
    let cases = [
        (
            "jpeg_2725x2225_to_720_jpeg_q80",
            "2569067123_aca715a2ee_o.jpg",
            Format::Jpeg,
        ),
        (
            "jpeg_2725x2225_to_720_webp_q80",
            "2569067123_aca715a2ee_o.jpg",
            Format::Webp,
        ),
        (
            "png_rgba_2048x1536_to_720_png",
            "alpha-premultiply-2048x1536-paper.png",
            Format::Png,
        ),
    ];
    let mut group = c.benchmark_group("image_pipeline");
    group.sample_size(20);
    for (name, file, format) in cases {
        let Some(source) = input(file) else {
            eprintln!("skipping {name}: {file} not found (set POSTERN_BENCH_IMAGES)");
            continue;
        };
        let t = width_720(format);
        group.bench_function(name, |b| {
            b.iter(|| transform(&source, &t, false, &limits).expect("transform"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
