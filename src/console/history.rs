//! The last minutes of postern's own metrics, for the console's overview: a sample of the
//! counters every few seconds in a ring, turned into per-interval rates on demand. Sampling
//! reads the metric handles (no scrape, no parsing) in a background service.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::core::Collector;

use crate::auth::Clock;
use crate::metrics::Metrics;

/// How often the overview's metrics are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: 15 minutes at the interval above.
pub const SAMPLES_KEPT: usize = 180;

/// Counter totals at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    pub requests: f64,
    pub server_errors: f64,
    /// Request-duration histogram over all routes: (upper bound, cumulative count).
    pub duration_buckets: Vec<(f64, f64)>,
    pub sessions_active: f64,
    pub login_failures: f64,
    pub image_hits: f64,
    pub image_misses: f64,
    pub store_errors: f64,
}

/// One point of each overview series: the interval ending at `at`. `None` where the interval
/// had nothing to compute from (no requests for an error rate, no lookups for a hit ratio).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    pub at: i64,
    pub requests_per_second: f64,
    pub error_ratio: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub sessions_active: f64,
    pub login_failures: f64,
    pub image_hit_ratio: Option<f64>,
    pub store_errors: f64,
}

fn label<'a>(metric: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// The sum of a counter family's values whose label `name` is one of `values` (any, if empty).
fn counter_sum(collector: &dyn Collector, name: &str, values: &[&str]) -> f64 {
    collector
        .collect()
        .iter()
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| values.is_empty() || label(m, name).is_some_and(|v| values.contains(&v)))
        .map(|m| m.get_counter().get_value())
        .sum()
}

impl Sample {
    pub fn take(metrics: &Metrics, at: i64) -> Self {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for family in metrics.request_duration.collect() {
            for metric in family.get_metric() {
                for (i, bucket) in metric.get_histogram().get_bucket().iter().enumerate() {
                    let count = bucket.cumulative_count() as f64;
                    match buckets.get_mut(i) {
                        Some(slot) => slot.1 += count,
                        None => buckets.push((bucket.upper_bound(), count)),
                    }
                }
            }
        }
        Self {
            at,
            requests: counter_sum(&metrics.requests, "", &[]),
            server_errors: counter_sum(&metrics.requests, "status_class", &["5xx"]),
            duration_buckets: buckets,
            sessions_active: metrics.sessions_active.get() as f64,
            login_failures: counter_sum(&metrics.auth_attempts, "result", &["failure", "locked"]),
            image_hits: counter_sum(&metrics.image_cache, "result", &["hit"]),
            image_misses: counter_sum(&metrics.image_cache, "result", &["miss"]),
            store_errors: counter_sum(&metrics.store_requests, "status_class", &["5xx"]),
        }
    }
}

/// The smallest bucket bound below which `quantile` of the interval's observations fell,
/// interpolated linearly inside the bucket (as Prometheus's `histogram_quantile` does).
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], quantile: f64) -> Option<f64> {
    let deltas: Vec<(f64, f64)> = after
        .iter()
        .enumerate()
        .map(|(i, (bound, count))| {
            let earlier = before.get(i).map_or(0.0, |b| b.1);
            (*bound, (count - earlier).max(0.0))
        })
        .collect();
    // Cumulative buckets: the total is the count of the last (+Inf is not listed, so the
    // largest bound's count stands for everything under it).
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = quantile * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (bound, count) in deltas {
        if count >= rank {
            let in_bucket = count - lower_count;
            let fraction = if in_bucket > 0.0 {
                (rank - lower_count) / in_bucket
            } else {
                1.0
            };
            return Some(lower_bound + (bound - lower_bound) * fraction);
        }
        lower_bound = bound;
        lower_count = count;
    }
    Some(lower_bound)
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

/// Rates between two samples.
pub fn point(before: &Sample, after: &Sample) -> Point {
    let seconds = ((after.at - before.at) as f64).max(1.0);
    let requests = (after.requests - before.requests).max(0.0);
    let hits = (after.image_hits - before.image_hits).max(0.0);
    let misses = (after.image_misses - before.image_misses).max(0.0);
    Point {
        at: after.at,
        requests_per_second: requests / seconds,
        error_ratio: ratio(
            (after.server_errors - before.server_errors).max(0.0),
            requests,
        ),
        p99_seconds: quantile(&before.duration_buckets, &after.duration_buckets, 0.99),
        sessions_active: after.sessions_active,
        login_failures: (after.login_failures - before.login_failures).max(0.0),
        image_hit_ratio: ratio(hits, hits + misses),
        store_errors: (after.store_errors - before.store_errors).max(0.0),
    }
}

pub struct MetricsHistory {
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    samples: Mutex<VecDeque<Sample>>,
}

impl MetricsHistory {
    pub fn new(metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Self {
            metrics,
            clock,
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES_KEPT)),
        }
    }

    /// Takes a sample now.
    pub fn sample(&self) {
        let sample = Sample::take(&self.metrics, self.clock.now());
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() == SAMPLES_KEPT {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }

    /// The series, oldest first, with a point from the last sample to this moment so that the
    /// overview is current however recently the sampler ran.
    pub fn points(&self) -> Vec<Point> {
        let now = Sample::take(&self.metrics, self.clock.now());
        let Ok(samples) = self.samples.lock() else {
            return Vec::new();
        };
        let mut points: Vec<Point> = samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| point(a, b))
            .collect();
        if let Some(last) = samples.back().filter(|last| now.at > last.at) {
            points.push(point(last, &now));
        }
        points
    }
}

/// Samples the metrics for the console's overview.
pub struct HistorySampler {
    history: Arc<MetricsHistory>,
}

impl HistorySampler {
    pub fn new(history: Arc<MetricsHistory>) -> Self {
        Self { history }
    }
}

#[async_trait]
impl BackgroundService for HistorySampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.history.sample(),
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ManualClock;

    #[test]
    fn rates_error_ratio_p99_and_hit_ratio_between_samples() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let clock = ManualClock::new(1_000);
        let history = MetricsHistory::new(metrics.clone(), Arc::new(clock.clone()));
        history.sample();
        for _ in 0..98 {
            metrics.observe_request("app", 200, 0.002);
        }
        metrics.observe_request("app", 502, 0.2);
        metrics.observe_request("files", 500, 0.2);
        metrics.auth_attempts.with_label_values(&["failure"]).inc();
        metrics.auth_attempts.with_label_values(&["success"]).inc();
        metrics.image_cache.with_label_values(&["hit"]).inc_by(3);
        metrics.image_cache.with_label_values(&["miss"]).inc();
        clock.advance(10);
        history.sample();
        let points = history.points();
        assert_eq!(points.len(), 1, "{points:?}");
        let p = &points[0];
        assert_eq!(p.at, 1_010);
        assert!((p.requests_per_second - 10.0).abs() < 1e-9);
        assert_eq!(p.error_ratio, Some(0.02));
        assert_eq!(p.login_failures, 1.0);
        assert_eq!(p.image_hit_ratio, Some(0.75));
        let p99 = p.p99_seconds.unwrap();
        assert!((0.1..=0.25).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn a_quiet_interval_has_no_ratio_and_the_ring_is_bounded() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let clock = ManualClock::new(0);
        let history = MetricsHistory::new(metrics, Arc::new(clock.clone()));
        for _ in 0..SAMPLES_KEPT + 20 {
            history.sample();
            clock.advance(5);
        }
        let points = history.points();
        assert_eq!(
            points.len(),
            SAMPLES_KEPT,
            "the kept samples plus the live point"
        );
        assert!(
            points
                .iter()
                .all(|p| p.error_ratio.is_none() && p.p99_seconds.is_none())
        );
        assert!(points.iter().all(|p| p.requests_per_second == 0.0));
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        let before = vec![(0.1, 0.0), (1.0, 0.0)];
        let after = vec![(0.1, 50.0), (1.0, 100.0)];
        let q = quantile(&before, &after, 0.99).unwrap();
        assert!((q - 0.982).abs() < 1e-9, "{q}");
        assert_eq!(quantile(&after, &after, 0.99), None);
    }
}
