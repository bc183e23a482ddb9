use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use postern::{ServeOptions, commands};

/// postern: reverse-proxy asset gateway.
#[derive(Parser)]
#[command(name = "postern", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (default: $POSTERN_CONFIG, else conf/postern.toml, else the built-in config).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Run in the background (for systemd Type=forking).
        #[arg(short, long)]
        daemon: bool,
        /// Take over the listening sockets of a running postern (zero-downtime upgrade).
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Validate a config file and print a one-line summary.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            config,
            daemon,
            upgrade,
        } => commands::serve(config.as_deref(), ServeOptions { daemon, upgrade }),
        Command::Check { config } => commands::check(config.as_deref()),
    }
}
