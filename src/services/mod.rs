//! Pingora background services: work that runs beside the proxy, never on its request path.

mod database;
mod dns;

pub use database::{DatabaseConnector, StoreHandle};
pub use dns::DnsRefresher;
