//! Access decisions: pure functions of a route's rule and who is asking.

mod origin;

pub use origin::{CorsOrigins, CorsRule, OriginPattern, RefererRule};

use std::sync::OnceLock;

use http::HeaderValue;

use crate::config::{Access, RoleMatch};

/// A verified identity, as the identity layer establishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub email: String,
    pub roles: Vec<String>,
    /// When the password was last set (Unix seconds): a session past the password's maximum
    /// age is restricted to changing it.
    pub password_changed_at: Option<i64>,
    header_values: IdentityValues,
}

impl Principal {
    pub fn new(
        user_id: String,
        username: String,
        email: String,
        roles: Vec<String>,
        password_changed_at: Option<i64>,
    ) -> Self {
        Self {
            user_id,
            username,
            email,
            roles,
            password_changed_at,
            header_values: IdentityValues::default(),
        }
    }

    /// The identity headers' values — user id, username, email, roles joined by commas — made
    /// on first use and kept: a cached session's principal serves many requests. `None` when
    /// one of them cannot be a header value.
    pub fn header_values(&self) -> Option<&[HeaderValue; 4]> {
        self.header_values
            .0
            .get_or_init(|| {
                let value = |s: &str| HeaderValue::from_str(s).ok();
                Some([
                    value(&self.user_id)?,
                    value(&self.username)?,
                    value(&self.email)?,
                    value(&self.roles.join(","))?,
                ])
            })
            .as_ref()
    }
}

/// A cache of what the other fields say: equal whenever they are.
#[derive(Debug, Clone, Default)]
struct IdentityValues(OnceLock<Option<[HeaderValue; 4]>>);

impl PartialEq for IdentityValues {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for IdentityValues {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Unauthenticated,
    Forbidden,
}

pub fn decide(access: &Access, principal: Option<&Principal>) -> Decision {
    let principal = match (access, principal) {
        (Access::Public, _) => return Decision::Allow,
        (_, None) => return Decision::Unauthenticated,
        (_, Some(p)) => p,
    };
    match access {
        Access::Public | Access::Authenticated => Decision::Allow,
        Access::Roles { roles, require } => {
            let has = |role: &String| principal.roles.iter().any(|r| r == role);
            let ok = match require {
                RoleMatch::Any => roles.iter().any(has),
                RoleMatch::All => roles.iter().all(has),
            };
            if ok {
                Decision::Allow
            } else {
                Decision::Forbidden
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(roles: &[&str]) -> Principal {
        Principal::new(
            "u1".into(),
            "ann".into(),
            "ann@example.com".into(),
            roles.iter().map(|r| r.to_string()).collect(),
            None,
        )
    }

    fn roles(list: &[&str], require: RoleMatch) -> Access {
        Access::Roles {
            roles: list.iter().map(|r| r.to_string()).collect(),
            require,
        }
    }

    #[test]
    fn identity_values_are_made_once_from_the_fields() {
        let ann = Principal::new(
            "u1".into(),
            "ann".into(),
            "ann@example.com".into(),
            vec!["staff".into(), "admin".into()],
            None,
        );
        let values = ann.header_values().unwrap();
        assert_eq!(values[0], "u1");
        assert_eq!(values[1], "ann");
        assert_eq!(values[2], "ann@example.com");
        assert_eq!(values[3], "staff,admin");
        assert!(std::ptr::eq(values, ann.header_values().unwrap()));
        let broken = Principal::new("u2".into(), "a\nb".into(), String::new(), vec![], None);
        assert!(broken.header_values().is_none());
    }

    #[test]
    fn public_allows_everyone() {
        assert_eq!(decide(&Access::Public, None), Decision::Allow);
        assert_eq!(decide(&Access::Public, Some(&user(&[]))), Decision::Allow);
    }

    #[test]
    fn everything_else_denies_anonymous() {
        assert_eq!(
            decide(&Access::Authenticated, None),
            Decision::Unauthenticated
        );
        assert_eq!(
            decide(&roles(&["admin"], RoleMatch::Any), None),
            Decision::Unauthenticated
        );
        assert_eq!(
            decide(&Access::Authenticated, Some(&user(&[]))),
            Decision::Allow
        );
    }

    #[test]
    fn roles_any_and_all() {
        let any = roles(&["admin", "ops"], RoleMatch::Any);
        let all = roles(&["admin", "ops"], RoleMatch::All);
        assert_eq!(decide(&any, Some(&user(&["ops"]))), Decision::Allow);
        assert_eq!(decide(&any, Some(&user(&["dev"]))), Decision::Forbidden);
        assert_eq!(decide(&all, Some(&user(&["ops"]))), Decision::Forbidden);
        assert_eq!(
            decide(&all, Some(&user(&["ops", "admin"]))),
            Decision::Allow
        );
    }
}
