//! Access decisions: pure functions of a route's rule and who is asking.

mod origin;

pub use origin::{CorsOrigins, CorsRule, OriginPattern, RefererRule};

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
}

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
        Principal {
            user_id: "u1".into(),
            username: "ann".into(),
            email: "ann@example.com".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            password_changed_at: None,
        }
    }

    fn roles(list: &[&str], require: RoleMatch) -> Access {
        Access::Roles {
            roles: list.iter().map(|r| r.to_string()).collect(),
            require,
        }
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
