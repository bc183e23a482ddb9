//! Prometheus metric handles. Label values are bounded: route and upstream names from the
//! config, status classes, and fixed error kinds; never raw paths or hosts.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The label used when no route matched.
pub const NO_ROUTE: &str = "none";

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub backend_up: IntGaugeVec,
    pub auth_attempts: IntCounterVec,
    pub sessions_active: IntGauge,
    pub session_cache: IntCounterVec,
    pub store_requests: IntCounterVec,
    pub store_bytes: IntCounterVec,
    pub presigned: IntCounterVec,
    pub image_transform_seconds: HistogramVec,
    pub image_cache: IntCounterVec,
    pub image_queue_depth: IntGauge,
    pub image_rejected: IntCounterVec,
    pub mail: IntCounterVec,
    pub mail_queue_depth: IntGauge,
    pub account_tokens: IntCounterVec,
    pub uploads: IntCounterVec,
    pub upload_bytes: IntCounter,
    pub tls_certificate_expiry: IntGaugeVec,
    pub revocation_listener_up: IntGauge,
    pub revocation_listener_reconnects: IntCounter,
    pub revocations_received: IntCounter,
    pub streams_cut: IntCounterVec,
    pub disconnects: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "postern_requests_total",
                "Requests answered, by route and status class",
            ),
            &["route", "status_class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "postern_request_duration_seconds",
                "Time from request start to the end of the response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "postern_upstream_errors_total",
                "Failures talking to upstreams, by route and kind (connect, timeout, protocol, tls, other)",
            ),
            &["route", "kind"],
        )?;
        let backend_up = IntGaugeVec::new(
            Opts::new(
                "postern_backend_up",
                "1 when a backend is resolved and not marked failed, else 0",
            ),
            &["upstream", "backend"],
        )?;
        let auth_attempts = IntCounterVec::new(
            Opts::new(
                "postern_auth_attempts_total",
                "Login attempts by result (success, failure, locked, rate_limited)",
            ),
            &["result"],
        )?;
        let sessions_active = IntGauge::new(
            "postern_sessions_active",
            "Unexpired sessions in the database (refreshed every minute)",
        )?;
        let session_cache = IntCounterVec::new(
            Opts::new(
                "postern_session_cache_total",
                "Session checks answered from memory (hit) or the database (miss)",
            ),
            &["result"],
        )?;
        let store_requests = IntCounterVec::new(
            Opts::new(
                "postern_store_requests_total",
                "Object reads by store, operation (get, head) and status class of the answer",
            ),
            &["store", "op", "status_class"],
        )?;
        let store_bytes = IntCounterVec::new(
            Opts::new(
                "postern_store_bytes_total",
                "Object bytes sent to clients, by store",
            ),
            &["store"],
        )?;
        let presigned = IntCounterVec::new(
            Opts::new(
                "postern_presigned_total",
                "Presigned URLs and postern-signed links issued, by store",
            ),
            &["store"],
        )?;
        let image_transform_seconds = HistogramVec::new(
            HistogramOpts::new(
                "postern_image_transform_seconds",
                "Time spent per image transform phase (fetch, decode, resize, encode)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["phase"],
        )?;
        let image_cache = IntCounterVec::new(
            Opts::new(
                "postern_image_cache_total",
                "Transformed images served from the result cache (hit), read from the shared store (shared) or computed (miss)",
            ),
            &["result"],
        )?;
        let image_queue_depth = IntGauge::new(
            "postern_image_queue_depth",
            "Image transforms waiting for a worker",
        )?;
        let image_rejected = IntCounterVec::new(
            Opts::new(
                "postern_image_rejected_total",
                "Image requests refused, by reason (bad_param, bad_signature, too_large, unsupported, corrupt, busy)",
            ),
            &["reason"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "postern_build_info",
                "Always 1; labels carry the build version",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(backend_up.clone()))?;
        registry.register(Box::new(auth_attempts.clone()))?;
        registry.register(Box::new(sessions_active.clone()))?;
        registry.register(Box::new(session_cache.clone()))?;
        registry.register(Box::new(store_requests.clone()))?;
        registry.register(Box::new(store_bytes.clone()))?;
        registry.register(Box::new(presigned.clone()))?;
        registry.register(Box::new(image_transform_seconds.clone()))?;
        registry.register(Box::new(image_cache.clone()))?;
        registry.register(Box::new(image_queue_depth.clone()))?;
        registry.register(Box::new(image_rejected.clone()))?;
        let mail = IntCounterVec::new(
            Opts::new(
                "postern_mail_total",
                "Mail delivery attempts, by message kind and result (sent, retry, failed)",
            ),
            &["kind", "result"],
        )?;
        let mail_queue_depth = IntGauge::new(
            "postern_mail_queue_depth",
            "Messages waiting in the mail queue (not yet sent, not failed)",
        )?;
        let account_tokens = IntCounterVec::new(
            Opts::new(
                "postern_account_tokens_total",
                "Account tokens by purpose (verify, reset) and result (issued, used, expired, invalid)",
            ),
            &["purpose", "result"],
        )?;
        registry.register(Box::new(mail.clone()))?;
        registry.register(Box::new(mail_queue_depth.clone()))?;
        registry.register(Box::new(account_tokens.clone()))?;
        let uploads = IntCounterVec::new(
            Opts::new(
                "postern_uploads_total",
                "Upload requests by route and result (stored, too_large, too_many, type_refused, refused, aborted, failed)",
            ),
            &["route", "result"],
        )?;
        let upload_bytes = IntCounter::new(
            "postern_upload_bytes_total",
            "Bytes of uploaded files written to object stores",
        )?;
        let tls_certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "postern_tls_certificate_expiry_seconds",
                "When each loaded TLS certificate expires (Unix seconds), by name",
            ),
            &["name"],
        )?;
        registry.register(Box::new(tls_certificate_expiry.clone()))?;
        let revocation_listener_up = IntGauge::new(
            "postern_revocation_listener_up",
            "1 while this instance hears revocations from other instances (PostgreSQL), else 0",
        )?;
        let revocation_listener_reconnects = IntCounter::new(
            "postern_revocation_listener_reconnects_total",
            "Times the revocation listener lost its connection (the session cache was flushed)",
        )?;
        let revocations_received = IntCounter::new(
            "postern_revocations_received_total",
            "Revocation notifications received from the database",
        )?;
        let streams_cut = IntCounterVec::new(
            Opts::new(
                "postern_streams_cut_total",
                "Open responses closed because their session or token ended, by reason (revoked, expired)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(revocation_listener_up.clone()))?;
        registry.register(Box::new(revocation_listener_reconnects.clone()))?;
        registry.register(Box::new(revocations_received.clone()))?;
        registry.register(Box::new(streams_cut.clone()))?;
        let disconnects = IntCounterVec::new(
            Opts::new(
                "postern_disconnects_total",
                "Requests that ended because a connection went away, by side (client, upstream, cut): normal traffic, logged at most as a rate-limited warning",
            ),
            &["side"],
        )?;
        registry.register(Box::new(disconnects.clone()))?;
        registry.register(Box::new(uploads.clone()))?;
        registry.register(Box::new(upload_bytes.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Self {
            registry,
            requests,
            request_duration,
            upstream_errors,
            backend_up,
            auth_attempts,
            sessions_active,
            session_cache,
            store_requests,
            store_bytes,
            presigned,
            image_transform_seconds,
            image_cache,
            image_queue_depth,
            image_rejected,
            mail,
            mail_queue_depth,
            account_tokens,
            uploads,
            upload_bytes,
            tls_certificate_expiry,
            revocation_listener_up,
            revocation_listener_reconnects,
            revocations_received,
            streams_cut,
            disconnects,
        })
    }

    /// Text exposition format, as `/metrics` serves it.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "failed to encode metrics");
        }
        out
    }

    /// The proxy observes through its per-route handles; this resolves them per call.
    #[cfg(test)]
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        self.route(route).observe(status, seconds);
    }

    /// The request counters and duration histogram of one route, looked up once (a label
    /// lookup hashes and locks; the proxy keeps these per route instead).
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            requests: STATUS_CLASSES.map(|class| self.requests.with_label_values(&[route, class])),
            duration: self.request_duration.with_label_values(&[route]),
        }
    }
}

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn status_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// A route's request metrics, resolved (see [`Metrics::route`]).
#[derive(Clone)]
pub struct RouteMetrics {
    requests: [IntCounter; 6],
    duration: prometheus::Histogram,
}

impl RouteMetrics {
    pub fn observe(&self, status: u16, seconds: f64) {
        self.requests[status_class_index(status)].inc();
        self.duration.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_requests_and_build_info() {
        let m = Metrics::new().unwrap();
        m.observe_request("public", 200, 0.01);
        m.observe_request("public", 404, 0.01);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(r#"postern_requests_total{route="public",status_class="2xx"} 1"#));
        assert!(text.contains(r#"postern_requests_total{route="public",status_class="4xx"} 1"#));
        assert!(text.contains(r#"postern_build_info{version=""#));
        assert!(text.contains("postern_request_duration_seconds_bucket"));
    }

    /// The metric names the shipped Grafana dashboard queries, each as one of postern's.
    #[test]
    fn the_grafana_dashboard_queries_only_metrics_postern_exports() {
        use prometheus::core::Collector;
        let m = Metrics::new().unwrap();
        let collectors: Vec<&dyn Collector> = vec![
            &m.requests,
            &m.request_duration,
            &m.upstream_errors,
            &m.backend_up,
            &m.auth_attempts,
            &m.sessions_active,
            &m.session_cache,
            &m.store_requests,
            &m.store_bytes,
            &m.presigned,
            &m.image_transform_seconds,
            &m.image_cache,
            &m.image_queue_depth,
            &m.image_rejected,
            &m.mail,
            &m.mail_queue_depth,
            &m.account_tokens,
            &m.uploads,
            &m.upload_bytes,
            &m.tls_certificate_expiry,
            &m.revocation_listener_up,
            &m.revocation_listener_reconnects,
            &m.revocations_received,
            &m.streams_cut,
            &m.disconnects,
        ];
        let mut known: Vec<String> = collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| d.fq_name.clone())
            .collect();
        known.push("postern_build_info".into());
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../conf/grafana/postern.json")).unwrap();
        let mut queried = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                for (i, _) in expr.match_indices("postern_") {
                    let name: String = expr[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .filter(|b| known.iter().any(|k| k == b))
                        .unwrap_or(&name);
                    assert!(
                        known.iter().any(|k| k == base),
                        "panel {:?} queries {name}, which postern does not export",
                        panel["title"]
                    );
                    queried += 1;
                }
            }
        }
        assert!(queried > 20, "{queried}");
        for name in &known {
            assert!(
                dashboard.to_string().contains(name.as_str()),
                "the dashboard has no panel for {name}"
            );
        }
    }
}
