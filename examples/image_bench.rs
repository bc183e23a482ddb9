//! Runs postern's image pipeline (the same function the gateway calls on its worker pool) on one
//! input at a fixed concurrency for a while, and prints ops/s and the output size as JSON: the
//! postern half of `benches/images/compare.sh`.
//!
//!   cargo run --release --example image_bench -- INPUT WIDTH FORMAT QUALITY CONCURRENCY SECONDS

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postern::images::params::{Fit, Format, FormatRequest, Transform};
use postern::images::pipeline::{Limits, transform};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, width, format, quality, concurrency, seconds] = args.as_slice() else {
        eprintln!("usage: image_bench INPUT WIDTH jpeg|webp|png QUALITY CONCURRENCY SECONDS");
        std::process::exit(2);
    };
    let source = Arc::new(std::fs::read(input)?);
    let format = match format.as_str() {
        "jpeg" => Format::Jpeg,
        "webp" => Format::Webp,
        "png" => Format::Png,
        other => return Err(format!("unknown format {other}").into()),
    };
    let t = Transform {
        width: Some(width.parse()?),
        height: None,
        fit: Fit::Inside,
        format: FormatRequest::Fixed(format),
        quality: quality.parse()?,
    };
    let limits = Limits {
        max_source_pixels: 100_000_000,
        max_width: 8192,
        max_height: 8192,
    };
    let (first, phases) = transform(&source, &t, false, &limits)?;
    let until = Instant::now() + Duration::from_secs_f64(seconds.parse()?);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.parse::<usize>()?)
        .map(|_| {
            let (source, t, done) = (source.clone(), t.clone(), done.clone());
            std::thread::spawn(move || {
                while Instant::now() < until {
                    if transform(&source, &t, false, &limits).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"ops_per_s\":{:.2},\"bytes\":{},\"width\":{},\"height\":{},\"ms\":{{\"decode\":{:.2},\"resize\":{:.2},\"encode\":{:.2}}}}}",
        done.load(Ordering::Relaxed) as f64 / elapsed,
        first.bytes.len(),
        first.width,
        first.height,
        phases.decode.as_secs_f64() * 1000.0,
        phases.resize.as_secs_f64() * 1000.0,
        phases.encode.as_secs_f64() * 1000.0,
    );
    Ok(())
}
