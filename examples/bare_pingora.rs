//! The smallest Pingora reverse proxy: the baseline the load script measures postern against, so
//! that postern's own per-request cost can be told apart from Pingora's.
//!
//!   cargo run --release --example bare_pingora -- LISTEN_ADDR UPSTREAM_ADDR THREADS
//!
//! It runs with postern's allocator (mimalloc). `BARE_WORK_STEALING=false` runs one Tokio
//! runtime per thread instead of one work-stealing runtime; `BARE_KEEPALIVE_POOL=N` sizes the
//! upstream connection pool (Pingora's defaults: work stealing on, 128 connections);
//! `BARE_TIMEOUTS=true` sets the client and upstream timeouts postern sets by default.
//! `benches/load/pingora-settings.sh` compares them.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

// The allocator postern runs with, so that the comparison is of the proxy code alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: SocketAddr,
    /// Client and upstream timeouts as postern sets them (its defaults).
    timeouts: bool,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<()> {
        if self.timeouts {
            session.set_keepalive(Some(75));
            session.set_read_timeout(Some(Duration::from_secs(60)));
            session.set_write_timeout(Some(Duration::from_secs(60)));
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        if self.timeouts {
            peer.options.connection_timeout = Some(Duration::from_secs(5));
            peer.options.total_connection_timeout = Some(Duration::from_secs(10));
            peer.options.read_timeout = Some(Duration::from_secs(60));
            peer.options.write_timeout = Some(Duration::from_secs(60));
            peer.options.idle_timeout = Some(Duration::from_secs(60));
        }
        Ok(Box::new(peer))
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            eprintln!("bare_pingora: {name}={value:?} cannot be read");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2).and_then(|u| u.parse().ok()))
    else {
        eprintln!("usage: bare_pingora LISTEN_ADDR UPSTREAM_ADDR [THREADS]");
        std::process::exit(2);
    };
    let defaults = ServerConf::default();
    let conf = ServerConf {
        threads: args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1),
        work_stealing: env("BARE_WORK_STEALING").unwrap_or(defaults.work_stealing),
        upstream_keepalive_pool_size: env("BARE_KEEPALIVE_POOL")
            .unwrap_or(defaults.upstream_keepalive_pool_size),
        // A benchmark's proxy: SIGTERM ends it at once.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..defaults
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let bare = Bare {
        upstream,
        timeouts: env("BARE_TIMEOUTS").unwrap_or(false),
    };
    let mut proxy = http_proxy_service(&server.configuration, bare);
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
