//! The command line: argument definitions and dispatch to the commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{
    self,
    users::{MailCommand, RoleCommand, UserCommand},
};
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
    /// Manage roles.
    #[command(subcommand)]
    Role(RoleCommand),
    /// The outgoing mail queue.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Uploaded files and their records.
    #[command(subcommand)]
    Files(commands::files::FilesCommand),
    /// Show the audit trail, newest first.
    Events {
        /// Username or email.
        #[arg(long)]
        user: Option<String>,
        /// Event kind, e.g. login.failure.
        #[arg(long)]
        kind: Option<String>,
        /// How far back: a duration ("1h", "7d") or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    let code = run_command(cli);
    crate::telemetry::flush();
    code
}

fn run_command(cli: Cli) -> ExitCode {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { daemon, upgrade } => {
            commands::serve(config, ServeOptions { daemon, upgrade })
        }
        Command::Check => commands::check(config),
        Command::Migrate => commands::users::migrate(config),
        Command::User(command) => commands::users::run(config, command),
        Command::Role(command) => commands::users::run_role(config, command),
        Command::Mail(command) => commands::users::run_mail(config, command),
        Command::Files(command) => commands::files::run(config, command),
        Command::Events {
            user,
            kind,
            since,
            limit,
            json,
        } => commands::users::events(
            config,
            commands::users::EventQuery {
                user,
                kind,
                since,
                limit,
                json,
            },
        ),
    }
}
