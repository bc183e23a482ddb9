//! The password policy: length, character classes, identity, a blocklist and an optional zxcvbn
//! strength score. History is checked by the workflow (it needs the stored hashes).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

/// Characters that count as "special": ASCII punctuation and symbols, and anything that is not
/// a letter, digit or whitespace.
fn is_special(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace()
}

const BUILTIN_BLOCKLIST: &str = include_str!("common-passwords.txt");

/// Passwords refused whatever else they satisfy, compared case-insensitively.
#[derive(Clone, Default)]
pub struct Blocklist {
    words: Arc<HashSet<String>>,
}

impl std::fmt::Debug for Blocklist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocklist")
            .field("entries", &self.words.len())
            .finish()
    }
}

impl Blocklist {
    /// One password per line; empty lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Self {
        let words = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase)
            .collect();
        Self {
            words: Arc::new(words),
        }
    }

    /// The built-in list, parsed once per process and shared.
    pub fn builtin() -> Self {
        static BUILTIN: std::sync::LazyLock<Blocklist> =
            std::sync::LazyLock::new(|| Blocklist::parse(BUILTIN_BLOCKLIST));
        BUILTIN.clone()
    }

    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn contains(&self, password: &str) -> bool {
        !self.words.is_empty() && self.words.contains(&password.to_lowercase())
    }
}

#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    pub min_uppers: usize,
    pub min_lowers: usize,
    pub min_digits: usize,
    pub min_specials: usize,
    pub not_like_identity: bool,
    pub blocklist: Blocklist,
    /// zxcvbn score (0–4) a password must reach; off when `None`.
    pub min_strength: Option<u8>,
    /// How many recent passwords (the current one included) a new one must differ from.
    pub history: usize,
    /// Passwords older than this must be changed before anything else; off when `None`.
    pub max_age: Option<Duration>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            max_length: 256,
            min_uppers: 0,
            min_lowers: 0,
            min_digits: 0,
            min_specials: 0,
            not_like_identity: true,
            blocklist: Blocklist::builtin(),
            min_strength: None,
            history: 0,
            max_age: None,
        }
    }
}

/// The rule a password broke, named as in the config and in `/password-policy`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyViolation {
    pub rule: &'static str,
    pub message: String,
}

impl PolicyViolation {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

/// Who the password is for: what it must not resemble.
#[derive(Debug, Clone, Default)]
pub struct Identity<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub given_name: &'a str,
    pub surname: &'a str,
}

impl PasswordPolicy {
    /// Every rule that does not need the password hashes. The zxcvbn score is left to
    /// [`PasswordPolicy::check_strength`], which is CPU-heavy and runs on the worker pool.
    pub fn check(&self, password: &str, identity: &Identity<'_>) -> Result<(), PolicyViolation> {
        let length = password.chars().count();
        if length < self.min_length {
            return Err(PolicyViolation::new(
                "min_length",
                format!(
                    "the password must be at least {} characters",
                    self.min_length
                ),
            ));
        }
        if length > self.max_length {
            return Err(PolicyViolation::new(
                "max_length",
                format!(
                    "the password must be at most {} characters",
                    self.max_length
                ),
            ));
        }
        let count = |f: fn(char) -> bool| password.chars().filter(|&c| f(c)).count();
        let classes: [(&'static str, usize, usize, &str); 4] = [
            (
                "min_uppers",
                self.min_uppers,
                count(char::is_uppercase),
                "upper-case letter(s)",
            ),
            (
                "min_lowers",
                self.min_lowers,
                count(char::is_lowercase),
                "lower-case letter(s)",
            ),
            (
                "min_digits",
                self.min_digits,
                count(|c| c.is_ascii_digit()),
                "digit(s)",
            ),
            (
                "min_specials",
                self.min_specials,
                count(is_special),
                "special character(s)",
            ),
        ];
        for (rule, wanted, found, what) in classes {
            if found < wanted {
                return Err(PolicyViolation::new(
                    rule,
                    format!("the password must contain at least {wanted} {what}"),
                ));
            }
        }
        if self.not_like_identity && resembles_identity(password, identity) {
            return Err(PolicyViolation::new(
                "not_like_identity",
                "the password must not contain the username or the email address",
            ));
        }
        if self.blocklist.contains(password) {
            return Err(PolicyViolation::new(
                "blocklist",
                "this password is too common: choose another",
            ));
        }
        Ok(())
    }

    /// The zxcvbn score rule (when configured). Call it off the proxy threads.
    pub fn check_strength(
        &self,
        password: &str,
        identity: &Identity<'_>,
    ) -> Result<(), PolicyViolation> {
        let Some(min) = self.min_strength else {
            return Ok(());
        };
        let inputs: Vec<&str> = [
            identity.username,
            identity.email,
            identity.given_name,
            identity.surname,
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
        let score = zxcvbn::zxcvbn(password, &inputs).score() as u8;
        if score < min {
            return Err(PolicyViolation::new(
                "min_strength",
                format!("the password is too easy to guess (strength {score} of 4, {min} needed)"),
            ));
        }
        Ok(())
    }

    /// [`PasswordPolicy::check`], then the strength score on the password pool (never on the
    /// proxy threads). The outer error is the pool's.
    pub async fn check_with_strength(
        &self,
        passwords: &crate::auth::Passwords,
        password: &str,
        who: &Identity<'_>,
    ) -> Result<Result<(), PolicyViolation>, crate::auth::PasswordError> {
        if let Err(violation) = self.check(password, who) {
            return Ok(Err(violation));
        }
        if self.min_strength.is_none() {
            return Ok(Ok(()));
        }
        let policy = self.clone();
        let password = password.to_string();
        let inputs = [who.username, who.email, who.given_name, who.surname].map(str::to_string);
        passwords
            .compute(move || {
                let who = Identity {
                    username: &inputs[0],
                    email: &inputs[1],
                    given_name: &inputs[2],
                    surname: &inputs[3],
                };
                policy.check_strength(&password, &who)
            })
            .await
    }

    /// The policy as a UI shows it (`GET /password-policy`).
    pub fn describe(&self) -> Value {
        json!({
            "min_length": self.min_length,
            "max_length": self.max_length,
            "min_uppers": self.min_uppers,
            "min_lowers": self.min_lowers,
            "min_digits": self.min_digits,
            "min_specials": self.min_specials,
            "not_like_identity": self.not_like_identity,
            "blocklist": !self.blocklist.is_empty(),
            "min_strength": self.min_strength,
            "history": self.history,
            "max_age_seconds": self.max_age.map(|d| d.as_secs()),
        })
    }
}

/// Equal to, or containing, the username or the email's local part (at least 3 characters, so
/// that a user called "al" may still use "metal"), in any case.
fn resembles_identity(password: &str, identity: &Identity<'_>) -> bool {
    let password = password.to_lowercase();
    let local = identity.email.split('@').next().unwrap_or("");
    [identity.username, local]
        .into_iter()
        .map(str::to_lowercase)
        .filter(|part| part.chars().count() >= 3)
        .any(|part| password.contains(&part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity<'static> {
        Identity {
            username: "alice",
            email: "alice.smith@example.com",
            given_name: "Alice",
            surname: "Smith",
        }
    }

    fn rule_of(policy: &PasswordPolicy, password: &str) -> Option<&'static str> {
        policy.check(password, &identity()).err().map(|v| v.rule)
    }

    #[test]
    fn each_rule_names_itself() {
        let policy = PasswordPolicy {
            min_length: 10,
            max_length: 20,
            min_uppers: 1,
            min_lowers: 1,
            min_digits: 2,
            min_specials: 1,
            ..PasswordPolicy::default()
        };
        assert_eq!(rule_of(&policy, "Short1!"), Some("min_length"));
        assert_eq!(rule_of(&policy, &"Aa1!".repeat(6)), Some("max_length"));
        assert_eq!(rule_of(&policy, "lowercase12!x"), Some("min_uppers"));
        assert_eq!(rule_of(&policy, "UPPERCASE12!X"), Some("min_lowers"));
        assert_eq!(rule_of(&policy, "Mixedcase1!x"), Some("min_digits"));
        assert_eq!(rule_of(&policy, "Mixedcase12x"), Some("min_specials"));
        assert_eq!(rule_of(&policy, "xxALICExx12!"), Some("not_like_identity"));
        assert_eq!(
            rule_of(&policy, "Alice.Smith12!"),
            Some("not_like_identity")
        );
        assert_eq!(rule_of(&policy, "Kettle-Drum-42"), None);
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        let policy = PasswordPolicy::default();
        assert_eq!(rule_of(&policy, "password123"), Some("blocklist"));
        assert_eq!(rule_of(&policy, "PASSWORD123"), Some("blocklist"));
        assert_eq!(rule_of(&policy, "qwertyuiop"), Some("blocklist"));
        assert!(Blocklist::builtin().contains("trustno1"));
        let off = PasswordPolicy {
            blocklist: Blocklist::none(),
            ..PasswordPolicy::default()
        };
        assert_eq!(rule_of(&off, "password123"), None);
    }

    #[test]
    fn identity_rule_ignores_very_short_names() {
        let policy = PasswordPolicy::default();
        let short = Identity {
            username: "al",
            email: "al@example.com",
            ..Identity::default()
        };
        assert!(policy.check("heavy-metal-band", &short).is_ok());
    }

    #[test]
    fn strength_score_is_enforced() {
        let policy = PasswordPolicy {
            min_strength: Some(3),
            blocklist: Blocklist::none(),
            ..PasswordPolicy::default()
        };
        assert_eq!(
            policy
                .check_strength("abcdefgh", &identity())
                .err()
                .map(|v| v.rule),
            Some("min_strength")
        );
        assert!(
            policy
                .check_strength("correct horse battery staple 9!", &identity())
                .is_ok()
        );
    }
}
