//! Pingora background services: work that runs beside the proxy, never on its request path.

mod database;
mod dns;
mod janitor;

pub use database::{DatabaseConnector, StoreHandle};
pub use dns::DnsRefresher;
pub use janitor::SessionJanitor;
