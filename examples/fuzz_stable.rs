//! The fuzz targets of `postern::fuzzing` on a stable toolchain: a mutation loop over each
//! target's seeds and corpus (`fuzz/corpus/TARGET/`), without libFuzzer's coverage guidance.
//! `cargo fuzz` (nightly) finds more per second; this runs anywhere, and in CI.
//!
//!   cargo run --release --example fuzz_stable -- [--seconds N] [TARGET...]
//!
//! Prints runs and crashes per target; a crashing input is written to
//! `fuzz/artifacts/TARGET/crash-HASH` and the exit code is 1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postern::fuzzing::{TARGETS, seeds};

/// Pieces that mean something to one parser or another.
const DICTIONARY: &[&[u8]] = &[
    b"/",
    b"//",
    b".",
    b"..",
    b"%2e",
    b"%2E",
    b"%2f",
    b"%5c",
    b"%25",
    b"%00",
    b";",
    b"\\",
    b"?",
    b"#",
    b"admin",
    b"/admin",
    b"${",
    b"$${",
    b"}",
    b":-",
    b"=",
    b"\n",
    b"\"",
    b"[",
    b"]",
    b"[[routes]]",
    b"bytes=",
    b"-",
    b",",
    b"W/",
    b"*",
    b"GMT",
    b"{path}",
    b"{user_id}",
    b"{username}",
    b"w=",
    b"h=",
    b"&",
    b"fmt=webp",
    b"q=",
    b"fit=",
    b"preset=",
    b"sig=",
    b"postern_session=",
    b"postern_csrf=",
    b"; ",
    b"eyJ",
    b"0",
    b"99999999999999999999",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(input: &[u8], rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            2 => out.insert(at, rng.next() as u8),
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from + 1);
                out.splice(at..at, other[from..from + len].iter().copied());
            }
            5 if !out.is_empty() => {
                let from = rng.below(out.len());
                let len = rng.below((out.len() - from).min(16) + 1);
                let chunk = out[from..from + len].to_vec();
                out.splice(at..at, chunk);
            }
            _ => {
                let token = DICTIONARY[rng.below(DICTIONARY.len())];
                out.splice(at..at, token.iter().copied());
            }
        }
    }
    out.truncate(4096);
    out
}

fn corpus_of(name: &str) -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = seeds(name).into_iter().map(<[u8]>::to_vec).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    if let Ok(entries) = std::fs::read_dir(dir) {
        corpus.extend(
            entries
                .flatten()
                .filter_map(|e| std::fs::read(e.path()).ok()),
        );
    }
    corpus
}

fn save_crash(name: &str, input: &[u8]) -> PathBuf {
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/artifacts")
        .join(name);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{hash:016x}"));
    let _ = std::fs::write(&path, input);
    path
}

fn main() {
    let mut seconds = 10u64;
    let mut chosen = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(seconds),
            name => chosen.push(name.to_string()),
        }
    }
    let unknown: Vec<_> = chosen
        .iter()
        .filter(|c| !TARGETS.iter().any(|(name, _)| name == c))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<_> = TARGETS.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "unknown target(s) {unknown:?}; targets: {}",
            names.join(", ")
        );
        std::process::exit(2);
    }
    std::panic::set_hook(Box::new(|_| {}));
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1;
    println!("stable fuzzing, {seconds} s per target, seed {seed}");
    let mut crashed = false;
    for (name, target) in TARGETS {
        if !chosen.is_empty() && !chosen.iter().any(|c| c == name) {
            continue;
        }
        let mut rng = Rng(seed);
        let mut corpus = corpus_of(name);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let (mut runs, mut crashes) = (0u64, 0u64);
        while Instant::now() < deadline {
            for _ in 0..256 {
                let base = corpus[rng.below(corpus.len())].clone();
                let input = mutate(&base, &mut rng, &corpus);
                runs += 1;
                match std::panic::catch_unwind(|| target(&input)) {
                    Ok(()) => {
                        // No coverage to go by: keep a few inputs to spread the search.
                        if corpus.len() < 2000 && rng.below(64) == 0 {
                            corpus.push(input);
                        }
                    }
                    Err(panic) => {
                        crashes += 1;
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        let path = save_crash(name, &input);
                        println!(
                            "  crash in {name}: {message}\n    input {:?} saved to {}",
                            String::from_utf8_lossy(&input),
                            path.display()
                        );
                    }
                }
            }
        }
        crashed |= crashes > 0;
        println!("{name:<18} {runs:>10} runs  {crashes} crash(es)");
    }
    if crashed {
        std::process::exit(1);
    }
}
