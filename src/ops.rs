//! The ops listener: `/metrics`, `/healthz`, `/readyz`. Loopback by default.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::config::{Settings, StoreSettings};
use crate::metrics::Metrics;
use crate::objects::ObjectStores;
use crate::services::{ListenerState, StoreHandle};
use crate::upstream::UpstreamPool;

pub struct OpsApp {
    settings: Arc<Settings>,
    pools: Vec<Arc<UpstreamPool>>,
    metrics: Arc<Metrics>,
    store: StoreHandle,
    objects: Arc<ObjectStores>,
    /// With several instances on one database: whether revocations are heard.
    revocations: Option<Arc<ListenerState>>,
}

impl OpsApp {
    pub fn new(
        settings: Arc<Settings>,
        pools: Vec<Arc<UpstreamPool>>,
        metrics: Arc<Metrics>,
        store: StoreHandle,
        objects: Arc<ObjectStores>,
        revocations: Option<Arc<ListenerState>>,
    ) -> Self {
        Self {
            settings,
            pools,
            metrics,
            store,
            objects,
            revocations,
        }
    }

    /// What is degraded without making the instance unready: it still answers correctly.
    pub fn readiness_notes(&self) -> Vec<String> {
        match &self.revocations {
            Some(state) if !state.connected() => vec![
                "revocation listener: reconnecting; sessions are read from the database until it is back"
                    .to_string(),
            ],
            _ => Vec::new(),
        }
    }

    /// Every reason this instance should not receive traffic yet; empty when ready.
    pub async fn readiness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.store.load_full() {
            None => problems.push("database: not connected yet".to_string()),
            Some(store) => {
                let ping =
                    tokio::time::timeout(std::time::Duration::from_secs(2), store.ping()).await;
                match ping {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => problems.push(format!("database: {e}")),
                    Err(_) => problems.push("database: no answer within 2s".to_string()),
                }
            }
        }
        for pool in &self.pools {
            if !pool.is_resolved() {
                problems.push(format!(
                    "upstream {}: no backend address resolved",
                    pool.settings.name
                ));
            }
        }
        for store in &self.settings.stores {
            match store {
                StoreSettings::Filesystem { name, root } => {
                    if !root.is_dir() {
                        problems.push(format!(
                            "store {name}: {} is not a directory",
                            root.display()
                        ));
                    }
                }
                StoreSettings::S3(_) => {}
            }
        }
        for s3 in self.objects.s3() {
            if !s3.pool.is_resolved() {
                problems.push(format!(
                    "store {}: the endpoint {} has no resolved address",
                    s3.name(),
                    s3.settings.endpoint
                ));
            }
            if !s3.has_credentials() {
                problems.push(format!("store {}: no credentials yet", s3.name()));
            }
        }
        problems
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let length = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, length.into());
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

#[async_trait]
impl ServeHttp for OpsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != Method::GET && req.method != Method::HEAD {
            let body = br#"{"error":{"code":"method_not_allowed","message":"use GET"}}"#.to_vec();
            return reply(StatusCode::METHOD_NOT_ALLOWED, "application/json", body);
        }
        match req.uri.path() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            "/healthz" => reply(StatusCode::OK, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => {
                let problems = self.readiness_problems().await;
                let status = if problems.is_empty() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let body = serde_json::json!({
                    "status": if problems.is_empty() { "ready" } else { "not_ready" },
                    "problems": problems,
                    "notes": self.readiness_notes(),
                });
                reply(status, "application/json", body.to_string().into_bytes())
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "application/json",
                br#"{"error":{"code":"not_found","message":"ops endpoints: /metrics, /healthz, /readyz"}}"#.to_vec(),
            ),
        }
    }
}
