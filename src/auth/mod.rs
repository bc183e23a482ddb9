//! Authentication: passwords now; sessions, tokens and lockout build on it.

mod password;

pub use password::{HashParams, PasswordError, Passwords, Verified};
