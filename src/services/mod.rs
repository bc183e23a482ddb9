//! Pingora background services: work that runs beside the proxy, never on its request path.

mod dns;

pub use dns::DnsRefresher;
