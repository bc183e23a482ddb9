//! Pingora background services: work that runs beside the proxy, never on its request path.

mod credentials;
mod database;
mod dns;
pub mod drain;
mod janitor;
mod revocations;

pub use credentials::CredentialRefresher;
pub use database::{DatabaseConnector, StoreHandle};
pub use dns::DnsRefresher;
pub use drain::{DrainWatcher, InFlight, InFlightGuard};
pub use janitor::SessionJanitor;
pub use revocations::{ListenerState, RevocationListener};
