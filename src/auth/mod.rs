//! Authentication: passwords, sessions and the clock they run on.

mod bootstrap;
mod clock;
mod lockout;
mod password;
mod sessions;
mod tokens;

pub use bootstrap::{ADMIN_ROLE, Bootstrap, BootstrapError, bootstrap_admin};
pub use clock::{Clock, ManualClock, SystemClock};
pub use lockout::{Admission, Lockout, RateLimiter, WindowCounter};
pub use password::{HashParams, PasswordError, Passwords, Verified};
pub use sessions::{NewSession, SessionError, Sessions, principal_of};
pub use tokens::{
    ACCESS_TYP, ASSERTION_AUDIENCE_PREFIX, ASSERTION_TYP, Claims, IssuedToken, TokenError, Tokens,
    VerifiedToken,
};
