use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    postern::cli::run(postern::cli::Cli::parse())
}
