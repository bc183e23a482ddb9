//! `[accounts]`, the policy keys of `[passwords]`, and `[mail]`: validated into the settings the
//! accounts and mail modules define.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::file::{AccountsSection, FileConfig, MailSection};
use super::validate::Checker;
use crate::accounts::{AccountSettings, Blocklist, PasswordPolicy};
use crate::mail::{
    MailFormat, MailKind, MailSettings, MessageSettings, SmtpSettings, SmtpTls, TransportSettings,
};

/// The most recent passwords a history check may compare against: a change costs one argon2
/// verify per entry, and one more for the current password.
const MAX_HISTORY: usize = 24;

pub(super) fn password_policy(c: &mut Checker, file: &FileConfig) -> PasswordPolicy {
    let p = &file.passwords;
    let defaults = PasswordPolicy::default();
    let min_length = p.min_length.unwrap_or(defaults.min_length);
    if min_length == 0 {
        c.report("passwords.min_length", "must be at least 1");
    }
    let max_length = p.max_length.unwrap_or(defaults.max_length);
    if max_length < min_length.max(1) {
        c.report(
            "passwords.max_length",
            format!("must be at least passwords.min_length ({min_length})"),
        );
    }
    if max_length > 4096 {
        c.report(
            "passwords.max_length",
            "must be at most 4096 (every password is hashed)",
        );
    }
    let min_uppers = p.min_uppers.unwrap_or(0);
    let min_lowers = p.min_lowers.unwrap_or(0);
    let min_digits = p.min_digits.unwrap_or(0);
    let min_specials = p.min_specials.unwrap_or(0);
    if min_uppers + min_lowers + min_digits + min_specials > max_length {
        c.report(
            "passwords",
            "min_uppers + min_lowers + min_digits + min_specials exceed max_length: no password can satisfy them",
        );
    }
    let blocklist = match &p.blocklist {
        None | Some(toml::Value::Boolean(true)) => Blocklist::builtin(),
        Some(toml::Value::Boolean(false)) => Blocklist::none(),
        Some(toml::Value::String(path)) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let list = Blocklist::parse(&text);
                if list.is_empty() {
                    c.report(
                        "passwords.blocklist",
                        format!("{path} lists no passwords (one per line)"),
                    );
                }
                list
            }
            Err(e) => {
                c.report("passwords.blocklist", format!("cannot read {path}: {e}"));
                Blocklist::none()
            }
        },
        Some(_) => {
            c.report(
                "passwords.blocklist",
                "must be true (the built-in list of common passwords), false, or a file path",
            );
            Blocklist::none()
        }
    };
    if let Some(score) = p.min_strength
        && score > 4
    {
        c.report(
            "passwords.min_strength",
            "must be a zxcvbn score from 0 to 4",
        );
    }
    let history = p.history.unwrap_or(0);
    if history > MAX_HISTORY {
        c.report(
            "passwords.history",
            format!("must be at most {MAX_HISTORY}"),
        );
    }
    let max_age = match p.max_age.as_deref() {
        None | Some("off") | Some("") => None,
        Some(text) => {
            let age = c.duration("passwords.max_age", Some(&text.to_string()), Duration::ZERO);
            if age.is_zero() {
                None
            } else if age < Duration::from_secs(3600) {
                c.report("passwords.max_age", "must be at least 1h (or \"off\")");
                None
            } else {
                Some(age)
            }
        }
    };
    PasswordPolicy {
        min_length,
        max_length,
        min_uppers,
        min_lowers,
        min_digits,
        min_specials,
        not_like_identity: p.not_like_identity.unwrap_or(defaults.not_like_identity),
        blocklist,
        min_strength: p.min_strength,
        history,
        max_age,
    }
}

pub(super) fn account_settings(c: &mut Checker, a: &AccountsSection) -> AccountSettings {
    let defaults = AccountSettings::default();
    let registration_open = match a.registration.as_deref() {
        None | Some("off") => false,
        Some("open") => true,
        Some(other) => {
            c.report(
                "accounts.registration",
                format!("{other:?} is not one of \"off\", \"open\""),
            );
            false
        }
    };
    let verification_required = match a.verification.as_deref() {
        None | Some("off") => false,
        Some("required") => true,
        Some(other) => {
            c.report(
                "accounts.verification",
                format!("{other:?} is not one of \"off\", \"required\""),
            );
            false
        }
    };
    let public_url = a
        .public_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .and_then(|u| match check_public_url(u) {
            Ok(url) => Some(url),
            Err(why) => {
                c.report("accounts.public_url", why);
                None
            }
        });
    let verify_ttl = c.duration(
        "accounts.verify_ttl",
        a.verify_ttl.as_ref(),
        defaults.verify_ttl,
    );
    let reset_ttl = c.duration(
        "accounts.reset_ttl",
        a.reset_ttl.as_ref(),
        defaults.reset_ttl,
    );
    for (path, ttl) in [
        ("accounts.verify_ttl", verify_ttl),
        ("accounts.reset_ttl", reset_ttl),
    ] {
        if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(30 * 86400) {
            c.report(path, "must be between 1m and 30d");
        }
    }
    let rate_per_minute = a.rate_per_minute.unwrap_or(defaults.rate_per_minute);
    if rate_per_minute == 0 {
        c.report("accounts.rate_per_minute", "must be at least 1");
    }
    let mails_per_hour = a.mails_per_hour.unwrap_or(defaults.mails_per_hour);
    if mails_per_hour == 0 {
        c.report("accounts.mails_per_hour", "must be at least 1");
    }
    AccountSettings {
        registration_open,
        verification_required,
        public_url,
        verify_ttl,
        reset_ttl,
        rate_per_minute,
        mails_per_hour,
    }
}

fn check_public_url(url: &str) -> Result<String, String> {
    let parsed: http::Uri = url
        .parse()
        .map_err(|_| format!("{url:?} is not a URL (e.g. \"https://app.example.com\")"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        return Err(format!("{url:?} must start with https:// or http://"));
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if parsed.query().is_some() || url.contains('#') {
        return Err(format!("{url:?} must not have a query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

pub(super) fn mail_settings(c: &mut Checker, m: &MailSection, data_dir: &Path) -> MailSettings {
    let transport = match m.transport.as_deref() {
        None | Some("off") => TransportSettings::Off,
        Some("outbox") => TransportSettings::Outbox(
            m.outbox_dir
                .as_ref()
                .map(|d| super::validate::absolute(Path::new(d)))
                .unwrap_or_else(|| data_dir.join("mail")),
        ),
        Some("smtp") => match smtp_settings(c, m) {
            Some(smtp) => TransportSettings::Smtp(smtp),
            None => TransportSettings::Off,
        },
        Some(other) => {
            c.report(
                "mail.transport",
                format!("{other:?} is not one of \"off\", \"outbox\", \"smtp\""),
            );
            TransportSettings::Off
        }
    };
    let from = m
        .from
        .clone()
        .unwrap_or_else(|| "postern <postern@localhost>".to_string());
    if let Err(e) = from.parse::<lettre::message::Mailbox>() {
        c.report(
            "mail.from",
            format!("{from:?} is not a mail address (\"Name <user@host>\" or \"user@host\"): {e}"),
        );
    }
    let templates_dir = m.templates_dir.as_ref().map(|d| {
        let dir = super::validate::absolute(Path::new(d));
        if !dir.is_dir() {
            c.report(
                "mail.templates_dir",
                format!("{} is not a directory", dir.display()),
            );
        }
        dir
    });
    let max_attempts = m.max_attempts.unwrap_or(8);
    if max_attempts == 0 || max_attempts > 100 {
        c.report("mail.max_attempts", "must be from 1 to 100");
    }
    let retry_base = c.duration(
        "mail.retry_base",
        m.retry_base.as_ref(),
        Duration::from_secs(30),
    );
    let retry_max = c.duration(
        "mail.retry_max",
        m.retry_max.as_ref(),
        Duration::from_secs(3600),
    );
    if retry_base.is_zero() {
        c.report("mail.retry_base", "must be more than 0s");
    }
    if retry_max < retry_base {
        c.report("mail.retry_max", "must be at least mail.retry_base");
    }
    for name in m.messages.keys() {
        if MailKind::parse(name).is_none() {
            let known: Vec<&str> = MailKind::ALL.iter().map(|k| k.as_str()).collect();
            c.report(
                format!("mail.messages.{name}"),
                format!("is not a message postern sends ({})", known.join(", ")),
            );
        }
    }
    let mut messages = BTreeMap::new();
    for kind in MailKind::ALL {
        let section = m.messages.get(kind.as_str());
        let format = match section.and_then(|s| s.format.as_deref()) {
            None | Some("both") => MailFormat::Both,
            Some("text") => MailFormat::Text,
            Some("html") => MailFormat::Html,
            Some(other) => {
                c.report(
                    format!("mail.messages.{}.format", kind.as_str()),
                    format!("{other:?} is not one of \"text\", \"html\", \"both\""),
                );
                MailFormat::Both
            }
        };
        let subject = section
            .and_then(|s| s.subject.clone())
            .unwrap_or_else(|| kind.default_subject().to_string());
        if subject.contains(['\r', '\n']) {
            c.report(
                format!("mail.messages.{}.subject", kind.as_str()),
                "must be one line",
            );
        }
        messages.insert(
            kind,
            MessageSettings {
                enabled: section.and_then(|s| s.enabled).unwrap_or(true),
                subject,
                format,
            },
        );
    }
    MailSettings {
        transport,
        from,
        app_name: m.app_name.clone().unwrap_or_else(|| "postern".to_string()),
        templates_dir,
        max_attempts,
        retry_base,
        retry_max,
        messages,
    }
}

fn smtp_settings(c: &mut Checker, m: &MailSection) -> Option<SmtpSettings> {
    let s = &m.smtp;
    let Some(host) = s.host.clone().filter(|h| !h.is_empty()) else {
        c.report("mail.smtp.host", "is required with transport = \"smtp\"");
        return None;
    };
    let tls = match s.tls.as_deref() {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            c.report(
                "mail.smtp.tls",
                format!("{other:?} is not one of \"starttls\", \"tls\", \"none\""),
            );
            SmtpTls::StartTls
        }
    };
    let port = s.port.unwrap_or(match tls {
        SmtpTls::StartTls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    });
    let username = s.username.clone().filter(|u| !u.is_empty());
    let password = s.password.clone().filter(|p| !p.is_empty());
    if username.is_some() != password.is_some() {
        c.report(
            "mail.smtp.password",
            "mail.smtp.username and mail.smtp.password go together",
        );
    }
    if username.is_some() && tls == SmtpTls::None && !is_loopback_host(&host) {
        c.report(
            "mail.smtp.tls",
            "\"none\" would send the SMTP password in clear text to a remote host",
        );
    }
    let ca_file = s.ca_file.as_ref().map(|f| {
        let path = super::validate::absolute(Path::new(f));
        match std::fs::read(&path) {
            Ok(pem) if lettre::transport::smtp::client::Certificate::from_pem(&pem).is_ok() => {}
            Ok(_) => c.report(
                "mail.smtp.ca_file",
                format!("{} holds no PEM certificate", path.display()),
            ),
            Err(e) => c.report(
                "mail.smtp.ca_file",
                format!("cannot read {}: {e}", path.display()),
            ),
        }
        path
    });
    let timeout = c.duration(
        "mail.smtp.timeout",
        s.timeout.as_ref(),
        Duration::from_secs(30),
    );
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        c.report("mail.smtp.timeout", "must be between 1s and 5m");
    }
    Some(SmtpSettings {
        host,
        port,
        tls,
        ca_file,
        username,
        password,
        timeout,
    })
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Rules that span sections: mail is needed by verification, links need a public URL.
pub(super) fn cross_check(c: &mut Checker, accounts: &AccountSettings, mail: &MailSettings) {
    if accounts.verification_required && !mail.sends(MailKind::Verification) {
        c.report(
            "accounts.verification",
            "\"required\" needs mail (mail.transport) with the verification message enabled",
        );
    }
    if mail.is_on() && accounts.public_url.is_none() {
        c.report(
            "accounts.public_url",
            "is required when mail is on: links in mail start with it",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn problems(text: &str) -> Vec<String> {
        let base = "[[routes]]\npath = \"/\"\nkind = \"builtin\"\n";
        match parse(&format!("{text}\n{base}"), &|_| None) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn reported(problems: &[String], path: &str) -> bool {
        problems.iter().any(|p| p.starts_with(&format!("{path}:")))
    }

    #[test]
    fn account_and_mail_mistakes_name_their_keys() {
        let p = problems(
            "[accounts]\nregistration = \"maybe\"\nverification = \"yes\"\npublic_url = \"ftp://x\"\nverify_ttl = \"1s\"\n\
             [passwords]\nmin_strength = 7\nhistory = 99\nmax_age = \"5m\"\nblocklist = \"/nonexistent/list\"\nmax_length = 4\nmin_length = 8\n\
             [mail]\ntransport = \"smtp\"\nfrom = \"not an address\"\nretry_base = \"10s\"\nretry_max = \"1s\"\n\
             [mail.smtp]\ntls = \"maybe\"\n[mail.messages.newsletter]\nenabled = true\n[mail.messages.welcome]\nformat = \"pdf\"\n",
        );
        for path in [
            "accounts.registration",
            "accounts.verification",
            "accounts.public_url",
            "accounts.verify_ttl",
            "passwords.min_strength",
            "passwords.history",
            "passwords.max_age",
            "passwords.blocklist",
            "passwords.max_length",
            "mail.from",
            "mail.retry_max",
            "mail.smtp.host",
            "mail.messages.newsletter",
            "mail.messages.welcome.format",
        ] {
            assert!(reported(&p, path), "{path} not reported in {p:#?}");
        }
    }

    #[test]
    fn mail_needs_a_public_url_and_verification_needs_mail() {
        let p = problems("[mail]\ntransport = \"outbox\"\n[accounts]\n");
        assert!(reported(&p, "accounts.public_url"), "{p:#?}");
        let p = problems("[accounts]\nverification = \"required\"\n");
        assert!(reported(&p, "accounts.verification"), "{p:#?}");
        let p = problems(
            "[mail]\ntransport = \"outbox\"\n[accounts]\npublic_url = \"https://app.example.com/\"\nverification = \"required\"\n",
        );
        assert!(p.is_empty(), "{p:#?}");
    }

    #[test]
    fn smtp_password_is_never_sent_in_clear_to_a_remote_host() {
        let p = problems(
            "[accounts]\npublic_url = \"https://a.example\"\n[mail]\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"mail.example.com\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\n",
        );
        assert!(reported(&p, "mail.smtp.tls"), "{p:#?}");
        let p = problems(
            "[accounts]\npublic_url = \"https://a.example\"\n[mail]\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"mail.example.com\"\nusername = \"u\"\n",
        );
        assert!(reported(&p, "mail.smtp.password"), "{p:#?}");
    }
}
