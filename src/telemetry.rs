//! Logging: `tracing` for postern, with Pingora's `log` output bridged in.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber once; later calls (tests building several servers) are no-ops.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Without a ceiling every `log::debug!` in Pingora's hot path would be bridged into tracing
    // and filtered there, record by record.
    let log_ceiling = match filter.max_level_hint() {
        Some(level) if level == tracing::level_filters::LevelFilter::OFF => log::LevelFilter::Off,
        Some(level) if level == tracing::level_filters::LevelFilter::ERROR => {
            log::LevelFilter::Error
        }
        Some(level) if level == tracing::level_filters::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(level) if level == tracing::level_filters::LevelFilter::INFO => log::LevelFilter::Info,
        Some(level) if level == tracing::level_filters::LevelFilter::DEBUG => {
            log::LevelFilter::Debug
        }
        _ => log::LevelFilter::Trace,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok() {
        let _ = tracing_log::LogTracer::init_with_filter(log_ceiling);
    }
}
