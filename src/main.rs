use std::process::ExitCode;

use clap::Parser;

/// Requests are served by whichever worker thread is free, so memory is often freed on another
/// thread than the one that allocated it; glibc's allocator then contends on its arena locks
/// (measured: a sixth of the proxy's CPU time). mimalloc frees across threads without them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    postern::cli::run(postern::cli::Cli::parse())
}
