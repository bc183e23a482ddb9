//! Upstream pools: backends with pre-resolved addresses, round-robin selection and passive health.
//!
//! Addresses are resolved at start and then by a background service, never on the request path
//! (Pingora's `HttpPeer::new` would resolve synchronously and panic on failure). A backend that
//! refuses connections or times out while connecting is skipped for `fail_timeout`; when every
//! backend is marked failed, selection falls back to plain round-robin, as nginx does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;

use crate::config::{BackendAddress, UpstreamSettings};
use crate::metrics::Metrics;

pub struct Backend {
    pub address: BackendAddress,
    /// The `Host` header for this backend (`address.authority()`), built once; `None` when the
    /// authority cannot be a header value (the request then fails, as inserting it would).
    pub host_header: Option<http::HeaderValue>,
    label: String,
    resolved: ArcSwap<Vec<SocketAddr>>,
    next_addr: AtomicUsize,
    /// Milliseconds since the pool's epoch until which this backend is skipped; 0 = healthy.
    failed_until_ms: AtomicU64,
}

impl Backend {
    fn store_lookup(&self, lookup: std::io::Result<Vec<SocketAddr>>) {
        match lookup {
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                if addrs.is_empty() {
                    tracing::warn!(backend = %self.label, "DNS returned no addresses; keeping the previous ones");
                } else if **self.resolved.load() != addrs {
                    tracing::info!(backend = %self.label, addresses = ?addrs, "backend resolved");
                    self.resolved.store(Arc::new(addrs));
                }
            }
            Err(e) => {
                tracing::warn!(backend = %self.label, error = %e, "DNS lookup failed; keeping the previous addresses");
            }
        }
    }

    fn pick_addr(&self) -> Option<SocketAddr> {
        let addrs = self.resolved.load();
        match addrs.len() {
            0 => None,
            1 => Some(addrs[0]),
            n => Some(addrs[self.next_addr.fetch_add(1, Ordering::Relaxed) % n]),
        }
    }
}

pub struct UpstreamPool {
    pub settings: UpstreamSettings,
    pub backends: Vec<Backend>,
    next: AtomicUsize,
    epoch: Instant,
    metrics: Arc<Metrics>,
}

/// The backend chosen for one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Selected {
    pub backend: usize,
    pub addr: SocketAddr,
}

impl UpstreamPool {
    /// The Pingora peer for a selected backend, with this pool's timeouts, SNI and TLS checks.
    pub fn peer(&self, selected: &Selected) -> HttpPeer {
        let s = &self.settings;
        let address = &self.backends[selected.backend].address;
        let sni = s.sni.clone().unwrap_or_else(|| address.host.clone());
        let mut peer = HttpPeer::new(selected.addr, address.tls, sni);
        peer.options.connection_timeout = Some(s.connect_timeout);
        peer.options.total_connection_timeout = Some(s.connect_timeout * 2);
        peer.options.read_timeout = Some(s.read_timeout);
        peer.options.write_timeout = Some(s.write_timeout);
        peer.options.idle_timeout = Some(s.idle_timeout);
        peer.options.verify_cert = s.tls_verify;
        peer.options.verify_hostname = s.tls_verify;
        peer
    }

    pub fn new(settings: UpstreamSettings, metrics: Arc<Metrics>) -> Self {
        let backends = settings
            .backends
            .iter()
            .map(|address| {
                let literal: Vec<SocketAddr> = address
                    .host
                    .parse::<std::net::IpAddr>()
                    .map(|ip| vec![SocketAddr::new(ip, address.port)])
                    .unwrap_or_default();
                Backend {
                    host_header: http::HeaderValue::from_str(&address.authority()).ok(),
                    label: address.to_string(),
                    address: address.clone(),
                    resolved: ArcSwap::from_pointee(literal),
                    next_addr: AtomicUsize::new(0),
                    failed_until_ms: AtomicU64::new(0),
                }
            })
            .collect();
        let pool = Self {
            settings,
            backends,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            metrics,
        };
        pool.publish_health();
        pool
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_healthy(&self, backend: &Backend, now_ms: u64) -> bool {
        backend.failed_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Round-robin over healthy, resolved backends; `exclude` skips the backends already tried
    /// for this request (a bitmask over the first 64 backends).
    pub fn select(&self, exclude: u64) -> Option<Selected> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        let now = self.now_ms();
        let tried = |i: usize| i < 64 && exclude & (1 << i) != 0;
        let candidates = (0..n).map(|k| (start + k) % n);
        let healthy = candidates
            .clone()
            .filter(|&i| !tried(i) && self.is_healthy(&self.backends[i], now))
            .find_map(|i| self.backends[i].pick_addr().map(|addr| (i, addr)));
        let fallback = || {
            candidates
                .clone()
                .filter(|&i| !tried(i))
                .find_map(|i| self.backends[i].pick_addr().map(|addr| (i, addr)))
        };
        healthy
            .or_else(fallback)
            .map(|(backend, addr)| Selected { backend, addr })
    }

    pub fn mark_failed(&self, backend: usize) {
        if let Some(b) = self.backends.get(backend) {
            let until = self.now_ms() + self.settings.fail_timeout.as_millis() as u64;
            b.failed_until_ms.store(until.max(1), Ordering::Relaxed);
            tracing::warn!(
                upstream = %self.settings.name,
                backend = %b.label,
                skip_for = ?self.settings.fail_timeout,
                "backend failed; skipping it"
            );
            self.publish_health();
        }
    }

    pub fn mark_ok(&self, backend: usize) {
        // A read first: the healthy case writes nothing to a line every worker shares.
        if let Some(b) = self.backends.get(backend)
            && b.failed_until_ms.load(Ordering::Relaxed) != 0
            && b.failed_until_ms.swap(0, Ordering::Relaxed) != 0
        {
            self.publish_health();
        }
    }

    /// True when at least one backend has an address.
    pub fn is_resolved(&self) -> bool {
        self.backends.iter().any(|b| !b.resolved.load().is_empty())
    }

    fn publish_health(&self) {
        let now = self.now_ms();
        for b in &self.backends {
            let up = !b.resolved.load().is_empty() && self.is_healthy(b, now);
            self.metrics
                .backend_up
                .with_label_values(&[self.settings.name.as_str(), b.label.as_str()])
                .set(i64::from(up));
        }
    }

    /// Resolves every backend host name (IP literals need nothing). A failed lookup keeps the
    /// previous addresses, so a DNS hiccup never takes a working backend away.
    pub async fn refresh(&self) {
        for b in self.named_backends() {
            let lookup = tokio::net::lookup_host((b.address.host.as_str(), b.address.port)).await;
            b.store_lookup(lookup.map(|found| found.collect()));
        }
        self.publish_health();
    }

    /// The same as [`Self::refresh`], blocking: used once while the server is built, before any
    /// request can arrive, so that the first requests find resolved backends.
    pub fn resolve_at_start(&self) {
        use std::net::ToSocketAddrs;
        for b in self.named_backends() {
            let lookup = (b.address.host.as_str(), b.address.port).to_socket_addrs();
            b.store_lookup(lookup.map(|found| found.collect()));
        }
        self.publish_health();
    }

    fn named_backends(&self) -> impl Iterator<Item = &Backend> {
        self.backends
            .iter()
            .filter(|b| b.address.host.parse::<std::net::IpAddr>().is_err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn pool(backends: &[&str]) -> UpstreamPool {
        let list = backends
            .iter()
            .map(|b| format!("\"{b}\""))
            .collect::<Vec<_>>()
            .join(",");
        let text = format!(
            "[upstreams.a]\nbackends = [{list}]\nfail_timeout = \"1h\"\n[[routes]]\npath = \"/\"\nupstream = \"a\"\n"
        );
        let settings = parse(&text, &|_| None).unwrap();
        UpstreamPool::new(
            settings.upstreams[0].clone(),
            Arc::new(Metrics::new().unwrap()),
        )
    }

    #[test]
    fn round_robin_skips_failed_and_falls_back() {
        let p = pool(&[
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:3",
        ]);
        let ports: Vec<u16> = (0..6).map(|_| p.select(0).unwrap().addr.port()).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
        p.mark_failed(1);
        let ports: Vec<u16> = (0..4).map(|_| p.select(0).unwrap().addr.port()).collect();
        assert!(!ports.contains(&2), "{ports:?}");
        p.mark_failed(0);
        p.mark_failed(2);
        assert!(p.select(0).is_some(), "all failed still selects one");
        p.mark_ok(1);
        assert_eq!(p.select(0).unwrap().addr.port(), 2);
    }

    #[test]
    fn exclusion_mask_avoids_retrying_the_same_backend() {
        let p = pool(&["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        for _ in 0..4 {
            assert_eq!(p.select(0b01).unwrap().addr.port(), 2);
        }
        assert!(p.select(0b11).is_none());
    }

    #[tokio::test]
    async fn names_are_resolved_by_refresh() {
        let p = pool(&["http://localhost:8081"]);
        assert!(!p.is_resolved());
        p.refresh().await;
        assert!(p.is_resolved());
        assert_eq!(p.select(0).unwrap().addr.port(), 8081);
    }
}
