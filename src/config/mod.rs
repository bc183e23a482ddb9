//! Configuration: one TOML file, `${ENV}` interpolation, a strict serde model and a validation pass
//! that yields the normalized [`Settings`] the rest of postern is built from.

mod accounts;
mod file;
mod interpolate;
mod settings;
mod tls;
mod units;
mod uploads;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use interpolate::expand;
pub use settings::*;
pub use units::{SizeValue, parse_duration};

/// The default configuration, compiled in; the same text as `conf/postern.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../conf/postern.toml");
pub const DEFAULT_CONFIG_PATH: &str = "conf/postern.toml";

/// One thing wrong with a configuration, with the key path it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name}: {} problem(s)", problems.len())]
    Invalid {
        source_name: String,
        problems: Vec<Problem>,
    },
}

/// Where a configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    BuiltIn,
}

impl ConfigSource {
    /// `-c FILE`, else `$POSTERN_CONFIG`, else `conf/postern.toml` if present, else the built-in text.
    pub fn locate(explicit: Option<&Path>) -> Self {
        if let Some(path) = explicit {
            return Self::File(path.to_path_buf());
        }
        if let Some(path) = std::env::var_os("POSTERN_CONFIG").filter(|p| !p.is_empty()) {
            return Self::File(PathBuf::from(path));
        }
        let conventional = Path::new(DEFAULT_CONFIG_PATH);
        if conventional.is_file() {
            return Self::File(conventional.to_path_buf());
        }
        Self::BuiltIn
    }

    pub fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::BuiltIn => "built-in default config".to_string(),
        }
    }
}

/// Reads, interpolates and validates a configuration from the process environment.
pub fn load(source: &ConfigSource) -> Result<Settings, ConfigError> {
    let text = match source {
        ConfigSource::File(path) => {
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.clone(),
                source: e,
            })?
        }
        ConfigSource::BuiltIn => DEFAULT_CONFIG.to_string(),
    };
    let env = |name: &str| std::env::var(name).ok();
    parse(&text, &env).map_err(|problems| ConfigError::Invalid {
        source_name: source.name(),
        problems,
    })
}

/// Parses configuration text with the given environment; returns every problem found.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Vec<Problem>> {
    let mut tree: toml::Value = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start].matches('\n').count() + 1)
            .unwrap_or(1);
        vec![Problem::new(
            "",
            format!("line {line}: not valid TOML: {}", one_line(e.message())),
        )]
    })?;
    let mut problems = secrets_written_inline(&tree);
    interpolate::expand_tree(&mut tree, "", env, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let file: file::FileConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![Problem::new(path, one_line(e.into_inner().message()))]
    })?;
    validate::validate(file)
}

/// Object-store keys and link keys may only come from the environment (`${VAR}`), so that a
/// config file can be shared, committed and logged without leaking them.
fn secrets_written_inline(tree: &toml::Value) -> Vec<Problem> {
    let inline = |value: &toml::Value| {
        value
            .as_str()
            .is_some_and(|text| !text.is_empty() && !text.contains("${"))
    };
    let mut problems = Vec::new();
    if let Some(stores) = tree.get("stores").and_then(toml::Value::as_table) {
        for (name, store) in stores {
            for key in ["access_key_id", "secret_access_key", "session_token"] {
                if store.get(key).is_some_and(inline) {
                    problems.push(Problem::new(
                        format!("stores.{name}.{key}"),
                        "keys are read from the environment only: write \"${VAR}\"",
                    ));
                }
            }
        }
    }
    if let Some(keys) = tree
        .get("links")
        .and_then(|l| l.get("keys"))
        .and_then(toml::Value::as_array)
    {
        for (i, key) in keys.iter().enumerate() {
            if inline(key) {
                problems.push(Problem::new(
                    format!("links.keys[{i}]"),
                    "keys are read from the environment only: write \"${VAR}\"",
                ));
            }
        }
    }
    problems
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
