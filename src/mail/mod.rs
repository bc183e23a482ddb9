//! Mail: messages rendered from templates into a durable queue in the database, and a worker
//! that delivers them (SMTP or an outbox directory) with retries. A request never waits for a
//! mail server.

mod queue;
mod settings;
mod templates;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use minijinja::context;
use tokio::sync::Notify;

pub use queue::MailWorker;
pub use settings::{
    MailFormat, MailKind, MailSettings, MessageSettings, SmtpSettings, SmtpTls, TransportSettings,
};
pub use templates::Templates;
pub use transport::Transport;

use crate::store::{NewMail, Store, StoreError, User};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail is off (mail.transport)")]
    Disabled,
    #[error("mail template {name}: {reason}")]
    Template { name: String, reason: String },
    #[error("bad mail address {0}")]
    Address(String),
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("{0}")]
    Transport(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// "24 hours", "1 hour", "30 minutes": how mail states a link's lifetime.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs.is_multiple_of(86400) && secs >= 2 * 86400 {
        (secs / 86400, "day")
    } else if secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else {
        (secs.div_ceil(60), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// A body as 7-bit text when it is plain ASCII with lines under the 998-character limit, so that
/// links in the message (and in outbox files) read as they are; otherwise encoded as lettre
/// chooses (quoted-printable or base64).
fn readable_body(text: String) -> Body {
    let plain =
        text.is_ascii() && !text.contains('\0') && text.lines().all(|line| line.len() < 998);
    if plain {
        let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text)
    }
}

/// Where the links in mail lead.
#[derive(Debug, Clone)]
pub struct LinkBase {
    /// The external base URL (`accounts.public_url`).
    pub public_url: String,
    /// The built-in endpoints' prefix, e.g. `/_postern/`.
    pub builtin: String,
    /// A Stormpath-flavoured account API's prefix: its app's pages then take the links, with
    /// `sptoken` (`verify?sptoken=`, `change?sptoken=`).
    pub stormpath: Option<String>,
}

fn with_slash(prefix: &str) -> String {
    format!("{}/", prefix.trim_end_matches('/'))
}

/// Renders messages and puts them in the queue.
pub struct Mailer {
    settings: MailSettings,
    templates: Templates,
    from: Mailbox,
    links: LinkBase,
    wake: Arc<Notify>,
}

impl Mailer {
    pub fn new(settings: MailSettings, links: LinkBase) -> Result<Self, MailError> {
        let templates = Templates::load(settings.templates_dir.as_deref())?;
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| MailError::Address(format!("{:?}: {e}", settings.from)))?;
        let links = LinkBase {
            public_url: links.public_url.trim_end_matches('/').to_string(),
            builtin: with_slash(&links.builtin),
            stormpath: links.stormpath.as_deref().map(with_slash),
        };
        Ok(Self {
            settings,
            templates,
            from,
            links,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Whether mail can be addressed to `email`.
    pub fn accepts_address(&self, email: &str) -> bool {
        email.parse::<lettre::Address>().is_ok()
    }

    pub fn sends(&self, kind: MailKind) -> bool {
        self.settings.sends(kind)
    }

    /// Wakes the worker when a message is queued.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// An absolute link to a page users open: the account API's (its app's) when one is mounted,
    /// else postern's own, e.g. `https://app.example/_postern/login`.
    pub fn page(&self, endpoint: &str) -> String {
        let prefix = self.links.stormpath.as_ref().unwrap_or(&self.links.builtin);
        format!("{}{prefix}{endpoint}", self.links.public_url)
    }

    /// The link a mailed token opens. `endpoint` is postern's own (`verify`, `reset`); with a
    /// Stormpath account API the link goes to its app's page with `sptoken` (`verify`,
    /// `change`), unless `own_page` asks for postern's page (choosing a first password).
    pub fn token_link(&self, endpoint: &str, token: &str, own_page: bool) -> String {
        match (&self.links.stormpath, own_page) {
            (Some(prefix), false) => {
                let page = if endpoint == "reset" {
                    "change"
                } else {
                    endpoint
                };
                format!("{}{prefix}{page}?sptoken={token}", self.links.public_url)
            }
            _ => format!(
                "{}{}{endpoint}?token={token}",
                self.links.public_url, self.links.builtin
            ),
        }
    }

    fn variables(
        &self,
        user: &User,
        url: Option<&str>,
        expires_in: Option<Duration>,
    ) -> minijinja::Value {
        let name = if user.given_name.is_empty() {
            user.username.as_str()
        } else {
            user.given_name.as_str()
        };
        context! {
            app_name => self.settings.app_name.as_str(),
            public_url => self.links.public_url.as_str(),
            login_url => self.page("login"),
            forgot_url => self.page("forgot"),
            url => url.unwrap_or(""),
            expires_in => expires_in.map(human_duration).unwrap_or_default(),
            user => context! {
                id => user.id.as_str(),
                username => user.username.as_str(),
                email => user.email.as_str(),
                given_name => user.given_name.as_str(),
                surname => user.surname.as_str(),
                name => name,
            },
        }
    }

    /// The whole message for `user`, ready to queue.
    pub fn compose(
        &self,
        kind: MailKind,
        user: &User,
        url: Option<&str>,
        expires_in: Option<Duration>,
    ) -> Result<NewMail, MailError> {
        let message = self
            .settings
            .messages
            .get(&kind)
            .ok_or(MailError::Disabled)?;
        let vars = self.variables(user, url, expires_in);
        let subject: String = self
            .templates
            .render_str(&message.subject, &vars)?
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let to: Mailbox = user
            .email
            .parse()
            .map_err(|e| MailError::Address(format!("{:?}: {e}", user.email)))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject.clone());
        let text = || self.templates.render(kind, "txt", &vars);
        let html = || self.templates.render(kind, "html", &vars);
        let part = |content_type: ContentType, body: String| {
            SinglePart::builder()
                .header(content_type)
                .body(readable_body(body))
        };
        let built = match message.format {
            MailFormat::Text => builder.singlepart(part(ContentType::TEXT_PLAIN, text()?)),
            MailFormat::Html => builder.singlepart(part(ContentType::TEXT_HTML, html()?)),
            MailFormat::Both => builder.multipart(
                MultiPart::alternative()
                    .singlepart(part(ContentType::TEXT_PLAIN, text()?))
                    .singlepart(part(ContentType::TEXT_HTML, html()?)),
            ),
        }
        .map_err(|e| MailError::Build(e.to_string()))?;
        let message = String::from_utf8(built.formatted())
            .map_err(|_| MailError::Build("the message is not 7-bit text".into()))?;
        Ok(NewMail {
            kind: kind.as_str().to_string(),
            user_id: Some(user.id.clone()),
            sender: self.from.email.to_string(),
            recipient: user.email.clone(),
            subject,
            message,
        })
    }

    /// Queues `kind` for `user` when that message is on; returns the queue id.
    pub async fn enqueue(
        &self,
        store: &Store,
        kind: MailKind,
        user: &User,
        url: Option<&str>,
        expires_in: Option<Duration>,
        now: i64,
    ) -> Result<Option<i64>, MailError> {
        if !self.sends(kind) {
            return Ok(None);
        }
        let mail = self.compose(kind, user, url, expires_in)?;
        let id = store.enqueue_mail(&mail, now).await?;
        self.wake.notify_one();
        Ok(Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserStatus;

    fn settings() -> MailSettings {
        let messages = MailKind::ALL
            .into_iter()
            .map(|k| {
                (
                    k,
                    MessageSettings {
                        enabled: true,
                        subject: k.default_subject().to_string(),
                        format: MailFormat::Both,
                    },
                )
            })
            .collect();
        MailSettings {
            transport: TransportSettings::Outbox("/nonexistent".into()),
            from: "Example <noreply@example.com>".into(),
            app_name: "Example".into(),
            templates_dir: None,
            max_attempts: 3,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
            messages,
        }
    }

    fn user(given_name: &str) -> User {
        User {
            id: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            given_name: given_name.into(),
            surname: String::new(),
            status: UserStatus::Enabled,
            password_hash: None,
            password_changed_at: None,
            custom_data: "{}".into(),
            session_epoch: 0,
            locked_until: None,
            created_at: 0,
            updated_at: 0,
            roles: vec![],
        }
    }

    #[test]
    fn every_message_renders_both_parts_and_escapes_html() {
        let mailer = Mailer::new(settings(), links("https://app.example", None)).unwrap();
        for kind in MailKind::ALL {
            let link = mailer.token_link("reset", "TOKEN123", false);
            let mail = mailer
                .compose(
                    kind,
                    &user("<b>Al</b>"),
                    Some(&link),
                    Some(Duration::from_secs(3600)),
                )
                .unwrap();
            assert!(mail.message.contains("multipart/alternative"), "{kind:?}");
            assert!(!mail.subject.contains("{{"), "{kind:?}: {}", mail.subject);
            let vars = mailer.variables(&user("<b>Al</b>"), Some(&link), None);
            let html = mailer.templates.render(kind, "html", &vars).unwrap();
            assert!(
                html.contains("&lt;b&gt;Al&lt;&#x2f;b&gt;") && !html.contains("<b>Al"),
                "{kind:?}: a user's name is escaped in the html part: {html}"
            );
        }
        let link = mailer.token_link("reset", "TOKEN123", false);
        assert_eq!(link, "https://app.example/_postern/reset?token=TOKEN123");
        let mail = mailer
            .compose(
                MailKind::PasswordReset,
                &user("Al"),
                Some(&link),
                Some(Duration::from_secs(3600)),
            )
            .unwrap();
        assert!(mail.message.contains(&link), "the link reads as it is");
        assert!(mail.message.contains("Content-Transfer-Encoding: 7bit"));
        assert!(mail.message.contains("1 hour"));
        let accented = mailer
            .compose(MailKind::Welcome, &user("Zoë"), None, None)
            .unwrap();
        assert!(
            accented.message.contains("quoted-printable") || accented.message.contains("base64")
        );
        assert_eq!(mail.subject, "Reset your password");
        let welcome = mailer
            .compose(MailKind::Welcome, &user("Al"), None, None)
            .unwrap();
        assert_eq!(welcome.subject, "Welcome to Example");
    }

    fn links(public_url: &str, stormpath: Option<&str>) -> LinkBase {
        LinkBase {
            public_url: public_url.into(),
            builtin: "/_postern".into(),
            stormpath: stormpath.map(str::to_owned),
        }
    }

    #[test]
    fn links_lead_to_the_pages_users_open() {
        let own = Mailer::new(settings(), links("https://a.example/", None)).unwrap();
        assert_eq!(own.page("login"), "https://a.example/_postern/login");
        assert_eq!(
            own.token_link("verify", "T", false),
            "https://a.example/_postern/verify?token=T"
        );
        let sp = Mailer::new(settings(), links("https://a.example", Some("/"))).unwrap();
        assert_eq!(sp.page("login"), "https://a.example/login");
        assert_eq!(
            sp.token_link("reset", "T", false),
            "https://a.example/change?sptoken=T"
        );
        assert_eq!(
            sp.token_link("verify", "T", false),
            "https://a.example/verify?sptoken=T"
        );
        assert_eq!(
            sp.token_link("verify", "T", true),
            "https://a.example/_postern/verify?token=T"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(86400)), "24 hours");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(7 * 86400)), "7 days");
        assert_eq!(human_duration(Duration::from_secs(90)), "2 minutes");
    }

    #[test]
    fn an_override_replaces_a_template_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("welcome.txt"), "Hi {{ user.username }}!").unwrap();
        let mut s = settings();
        s.templates_dir = Some(dir.path().to_path_buf());
        s.messages.get_mut(&MailKind::Welcome).unwrap().format = MailFormat::Text;
        let mailer = Mailer::new(s.clone(), links("https://a.example", None)).unwrap();
        let mail = mailer
            .compose(MailKind::Welcome, &user(""), None, None)
            .unwrap();
        assert!(mail.message.contains("Hi alice!"), "{}", mail.message);
        std::fs::write(dir.path().join("welcome.html"), "{% if %}").unwrap();
        match Mailer::new(s, links("", None)) {
            Err(MailError::Template { name, .. }) => assert_eq!(name, "welcome.html"),
            other => panic!("expected a template error, got {:?}", other.err()),
        }
    }
}
