//! What the command line's subcommands do.

pub mod files;
pub mod users;

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, ConfigError, ConfigSource};
use crate::server::{ServeOptions, build_server};
use crate::services::DrainWatcher;
use crate::telemetry;
use pingora::services::background::background_service;

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

pub(crate) fn report_config_error(err: &ConfigError) {
    match err {
        ConfigError::Read { .. } => eprintln!("postern: {err}"),
        ConfigError::Invalid {
            source_name,
            problems,
        } => {
            eprintln!(
                "postern: {source_name} is not valid ({} problem(s)):",
                problems.len()
            );
            for problem in problems {
                eprintln!("  {problem}");
            }
        }
    }
}

/// `postern check`: exit 0 and a one-line summary, or every problem with its key path and exit 2.
pub fn check(config_path: Option<&Path>) -> ExitCode {
    let source = ConfigSource::locate(config_path);
    match config::load(&source) {
        Ok(settings) => {
            println!("{}: ok: {}", source.name(), settings.summary());
            ExitCode::SUCCESS
        }
        Err(err) => {
            report_config_error(&err);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `postern serve`: runs until SIGTERM (graceful), SIGINT (fast) or SIGQUIT (hand-over to an
/// upgrading process).
pub fn serve(config_path: Option<&Path>, options: ServeOptions) -> ExitCode {
    let source = ConfigSource::locate(config_path);
    let settings = match config::load(&source) {
        Ok(settings) => settings,
        Err(err) => {
            report_config_error(&err);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(&settings.log);
    if !options.upgrade
        && let Err(problem) = check_listeners_free(&settings)
    {
        tracing::error!("{problem}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    let listen = settings.server.listen;
    let ops_listen = settings.ops.listen;
    let threads = settings.server.threads;
    let built = match build_server(settings, options) {
        Ok(built) => built,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    tracing::info!(config = %source.name(), threads, "postern {} starting", env!("CARGO_PKG_VERSION"));
    tracing::info!("proxy listening on http://{listen}");
    tracing::info!("ops listening on http://{ops_listen} (/metrics, /healthz, /readyz)");
    let mut server = built.server;
    let drain = DrainWatcher::new(
        server.watch_execution_phase(),
        built.in_flight,
        telemetry::flush,
    );
    server.add_service(background_service("drain", drain));
    server.run(pingora::server::RunArgs::default());
    tracing::info!("postern stopped");
    ExitCode::SUCCESS
}

/// Binding inside Pingora fails with a panic in a service thread; find the common cause
/// (address in use, no permission) first and say it in one line.
fn check_listeners_free(settings: &config::Settings) -> Result<(), String> {
    let tls = settings
        .server
        .tls
        .iter()
        .map(|listener| ("server.tls.listen", listener.listen));
    for (what, addr) in [
        ("server.listen", settings.server.listen),
        ("ops.listen", settings.ops.listen),
    ]
    .into_iter()
    .chain(tls)
    {
        std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
    }
    Ok(())
}
