//! What the `[mail]` section configures, as the mail module uses it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The messages postern sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MailKind {
    Verification,
    VerificationSuccess,
    Welcome,
    PasswordReset,
    PasswordResetSuccess,
    PasswordChanged,
    /// To the old address, when a user changes their email.
    EmailChanged,
}

impl MailKind {
    pub const ALL: [MailKind; 7] = [
        Self::Verification,
        Self::VerificationSuccess,
        Self::Welcome,
        Self::PasswordReset,
        Self::PasswordResetSuccess,
        Self::PasswordChanged,
        Self::EmailChanged,
    ];

    /// The name in config (`[mail.messages.NAME]`), template files, the queue and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verification => "verification",
            Self::VerificationSuccess => "verification_success",
            Self::Welcome => "welcome",
            Self::PasswordReset => "password_reset",
            Self::PasswordResetSuccess => "password_reset_success",
            Self::PasswordChanged => "password_changed",
            Self::EmailChanged => "email_changed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn default_subject(self) -> &'static str {
        match self {
            Self::Verification => "Please verify your account",
            Self::VerificationSuccess => "Your account has been confirmed",
            Self::Welcome => "Welcome to {{ app_name }}",
            Self::PasswordReset => "Reset your password",
            Self::PasswordResetSuccess => "Your password has been reset",
            Self::PasswordChanged => "Your password was changed",
            Self::EmailChanged => "Your email address was changed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFormat {
    Text,
    Html,
    /// multipart/alternative with both.
    Both,
}

#[derive(Debug, Clone)]
pub struct MessageSettings {
    pub enabled: bool,
    /// A template: `{{ app_name }}` and the other variables work here too.
    pub subject: String,
    pub format: MailFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, never optional).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host.
    None,
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Extra CA certificate (PEM) to trust for the server's certificate.
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub enum TransportSettings {
    /// No mail: endpoints that need it answer `mail_disabled`.
    Off,
    /// Each message written as an `.eml` file into this directory.
    Outbox(PathBuf),
    Smtp(SmtpSettings),
}

#[derive(Debug, Clone)]
pub struct MailSettings {
    pub transport: TransportSettings,
    /// `Name <address>` or `address`.
    pub from: String,
    pub app_name: String,
    /// Templates here replace the built-in ones of the same name.
    pub templates_dir: Option<PathBuf>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub messages: BTreeMap<MailKind, MessageSettings>,
}

impl MailSettings {
    pub fn is_on(&self) -> bool {
        !matches!(self.transport, TransportSettings::Off)
    }

    /// Whether `kind` is sent (mail on and the message enabled).
    pub fn sends(&self, kind: MailKind) -> bool {
        self.is_on() && self.messages.get(&kind).is_some_and(|m| m.enabled)
    }
}
