//! Built-in endpoints under the `builtin` route (by default `/_postern/`).
//!
//! The account, admin and file endpoints of the contract are answered with 501
//! `not_implemented` until the parts behind them exist, so that clients get a clear answer
//! instead of a request passed to the app.

use crate::error::GatewayError;

/// Endpoints the contract names, each with the first path segment that introduces it.
const PLANNED: &[(&str, &str)] = &[
    ("login", "login"),
    ("logout", "logout"),
    ("me", "the current-user endpoint"),
    ("token", "token issuing"),
    ("verify", "account verification"),
    ("forgot", "password reset"),
    ("change", "password change"),
    ("expired", "expired-password change"),
    ("password-policy", "the password policy endpoint"),
    ("admin", "the admin API"),
    ("files", "the file API"),
    ("assets", "asset links"),
];

/// What a built-in path resolves to. `rest` is the path below the route prefix, starting with `/`.
pub fn dispatch(rest: &str) -> GatewayError {
    let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    match PLANNED.iter().find(|(segment, _)| *segment == first) {
        Some((_, what)) => GatewayError::NotImplemented(what),
        None => GatewayError::UnknownEndpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_endpoints_are_501_others_404() {
        assert_eq!(dispatch("/login").code(), "not_implemented");
        assert_eq!(dispatch("/admin/users/1").code(), "not_implemented");
        assert_eq!(dispatch("/nothing").code(), "not_found");
        assert_eq!(dispatch("/").code(), "not_found");
    }
}
