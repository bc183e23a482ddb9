//! The command line: argument definitions and dispatch to the commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{self, users::UserCommand};
use crate::server::ServeOptions;

/// postern: reverse-proxy asset gateway.
#[derive(Parser)]
#[command(name = "postern", version, about)]
pub struct Cli {
    /// Config file (default: $POSTERN_CONFIG, else conf/postern.toml, else the built-in config).
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Run in the background (for systemd Type=forking).
        #[arg(short, long)]
        daemon: bool,
        /// Take over the listening sockets of a running postern (zero-downtime upgrade).
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Validate a config file and print a one-line summary.
    Check,
    /// Apply database migrations (serve also applies them at start).
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
}

pub fn run(cli: Cli) -> ExitCode {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { daemon, upgrade } => {
            commands::serve(config, ServeOptions { daemon, upgrade })
        }
        Command::Check => commands::check(config),
        Command::Migrate => commands::users::migrate(config),
        Command::User(command) => commands::users::run(config, command),
    }
}
