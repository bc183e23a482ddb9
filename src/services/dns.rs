//! Re-resolves upstream backend names on each pool's `resolve_interval`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::upstream::UpstreamPool;

pub struct DnsRefresher {
    pools: Vec<Arc<UpstreamPool>>,
}

impl DnsRefresher {
    pub fn new(pools: Vec<Arc<UpstreamPool>>) -> Self {
        Self { pools }
    }
}

#[async_trait]
impl BackgroundService for DnsRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tick = self
            .pools
            .iter()
            .map(|p| p.settings.resolve_interval)
            .filter(|d| !d.is_zero())
            .min()
            .unwrap_or(Duration::from_secs(30));
        let mut last_refresh = vec![None::<tokio::time::Instant>; self.pools.len()];
        loop {
            let now = tokio::time::Instant::now();
            for (pool, last) in self.pools.iter().zip(last_refresh.iter_mut()) {
                let due =
                    last.is_none_or(|t| now.duration_since(t) >= pool.settings.resolve_interval);
                if due {
                    pool.refresh().await;
                    *last = Some(now);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
