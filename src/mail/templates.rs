//! Mail templates (minijinja): compiled into the binary, each replaceable by a file of the same
//! name in `mail.templates_dir`. `.html` templates escape what they print; `.txt` ones do not.

use std::path::Path;

use minijinja::Environment;

use super::{MailError, MailKind};

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

const BUILTIN: &[(&str, &str)] = builtin!(
    "base.html",
    "verification.txt",
    "verification.html",
    "verification_success.txt",
    "verification_success.html",
    "welcome.txt",
    "welcome.html",
    "password_reset.txt",
    "password_reset.html",
    "password_reset_success.txt",
    "password_reset_success.html",
    "password_changed.txt",
    "password_changed.html",
    "email_changed.txt",
    "email_changed.html",
);

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Every template parsed now, so that a broken override is found at start, by name.
    pub fn load(dir: Option<&Path>) -> Result<Self, MailError> {
        let mut env = Environment::new();
        for (name, source) in BUILTIN {
            let source = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => std::fs::read_to_string(&path).map_err(|e| MailError::Template {
                    name: path.display().to_string(),
                    reason: e.to_string(),
                })?,
                None => (*source).to_string(),
            };
            env.add_template_owned(*name, source)
                .map_err(|e| MailError::Template {
                    name: (*name).to_string(),
                    reason: e.to_string(),
                })?;
        }
        Ok(Self { env })
    }

    pub fn render_named(&self, name: &str, vars: &minijinja::Value) -> Result<String, MailError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(vars))
            .map_err(|e| MailError::Template {
                name: name.to_string(),
                reason: e.to_string(),
            })
    }

    pub fn render(
        &self,
        kind: MailKind,
        extension: &str,
        vars: &minijinja::Value,
    ) -> Result<String, MailError> {
        self.render_named(&format!("{}.{extension}", kind.as_str()), vars)
    }

    /// A one-off template string (a subject line).
    pub fn render_str(&self, source: &str, vars: &minijinja::Value) -> Result<String, MailError> {
        self.env
            .render_str(source, vars)
            .map_err(|e| MailError::Template {
                name: "subject".into(),
                reason: e.to_string(),
            })
    }
}
