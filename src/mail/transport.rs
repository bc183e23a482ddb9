//! Where queued messages go: an SMTP server (lettre) or `.eml` files in an outbox directory.

use std::path::PathBuf;

use lettre::address::Envelope;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncTransport, Tokio1Executor};

use super::{MailError, SmtpSettings, SmtpTls, TransportSettings};

pub enum Transport {
    Off,
    Outbox(PathBuf),
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
}

impl Transport {
    pub fn new(settings: &TransportSettings) -> Result<Self, MailError> {
        Ok(match settings {
            TransportSettings::Off => Self::Off,
            TransportSettings::Outbox(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    MailError::Transport(format!("cannot create the outbox {}: {e}", dir.display()))
                })?;
                Self::Outbox(dir.clone())
            }
            TransportSettings::Smtp(smtp) => Self::Smtp(Box::new(smtp_transport(smtp)?)),
        })
    }

    /// Delivers one message; `name` is used for the outbox file.
    pub async fn send(
        &self,
        from: &str,
        to: &str,
        message: &[u8],
        name: &str,
    ) -> Result<(), MailError> {
        match self {
            Self::Off => Err(MailError::Disabled),
            Self::Outbox(dir) => {
                let path = dir.join(format!("{name}.eml"));
                let partial = dir.join(format!(".{name}.eml.partial"));
                tokio::fs::write(&partial, message)
                    .await
                    .map_err(|e| MailError::Transport(format!("outbox write: {e}")))?;
                tokio::fs::rename(&partial, &path)
                    .await
                    .map_err(|e| MailError::Transport(format!("outbox rename: {e}")))
            }
            Self::Smtp(smtp) => {
                let parse = |a: &str| {
                    a.parse::<Address>()
                        .map_err(|e| MailError::Address(format!("{a:?}: {e}")))
                };
                let envelope = Envelope::new(Some(parse(from)?), vec![parse(to)?])
                    .map_err(|e| MailError::Address(e.to_string()))?;
                smtp.send_raw(&envelope, message)
                    .await
                    .map(|_| ())
                    .map_err(|e| MailError::Transport(e.to_string()))
            }
        }
    }
}

fn smtp_transport(s: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let tls_parameters = || -> Result<TlsParameters, MailError> {
        let mut builder = TlsParameters::builder(s.host.clone());
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| MailError::Transport(format!("cannot read {}: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| MailError::Transport(format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build()
            .map_err(|e| MailError::Transport(e.to_string()))
    };
    let tls = match s.tls {
        SmtpTls::StartTls => Tls::Required(tls_parameters()?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
        SmtpTls::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
        .port(s.port)
        .tls(tls)
        .timeout(Some(s.timeout));
    if let (Some(user), Some(password)) = (&s.username, &s.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}
