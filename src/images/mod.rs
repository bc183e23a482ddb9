//! Edge image transforms: parameters, the decode → resize → encode pipeline on a bounded worker
//! pool, and the result cache. The proxy (`proxy::assets`) fetches sources and answers.

pub mod params;
pub mod pipeline;
pub mod pool;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::ImageSettings;
use crate::metrics::Metrics;
use params::{Format, FormatRequest, Transform};
use pipeline::{ImageError, Limits};
use pool::{PoolError, WorkerPool};

/// A transformed image, as cached and sent.
#[derive(Debug)]
pub struct Rendered {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub etag: String,
}

/// What is known of a variant (an object with a parameter set and a negotiated format) without
/// asking the store: its source's ETag and the output's ETag.
#[derive(Debug, Clone)]
pub struct Variant {
    pub source_etag: String,
    pub etag: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

pub struct Images {
    pub settings: ImageSettings,
    pool: WorkerPool,
    results: moka::future::Cache<String, Arc<Rendered>>,
    /// Variants seen recently, trusted for `settings.revalidate` without asking the store.
    variants: moka::sync::Cache<String, Variant>,
    metrics: Arc<Metrics>,
}

impl Images {
    pub fn new(settings: ImageSettings, metrics: Arc<Metrics>) -> Self {
        let results = moka::future::Cache::builder()
            .max_capacity(settings.cache_size)
            .weigher(|key: &String, value: &Arc<Rendered>| {
                u32::try_from(key.len() + value.bytes.len() + 128).unwrap_or(u32::MAX)
            })
            .build();
        let variants = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(settings.revalidate)
            .build();
        let pool = WorkerPool::new(
            settings.workers,
            settings.queue,
            metrics.image_queue_depth.clone(),
        );
        Self {
            settings,
            pool,
            results,
            variants,
            metrics,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_source_pixels: self.settings.max_source_pixels,
            max_width: self.settings.bounds.max_width,
            max_height: self.settings.bounds.max_height,
        }
    }

    /// Identifies a variant: the object, the canonical parameters, and (for `fmt=auto`) whether
    /// the client takes WebP — the only part of `Accept` the answer depends on.
    pub fn variant_key(store: &str, key: &str, t: &Transform, takes_webp: bool) -> String {
        let negotiated = match t.format {
            FormatRequest::Auto if takes_webp => "+webp",
            _ => "",
        };
        format!("{store}\n{key}\n{}{negotiated}", t.canonical())
    }

    pub fn known_variant(&self, variant_key: &str) -> Option<Variant> {
        self.variants.get(variant_key)
    }

    pub fn forget_variant(&self, variant_key: &str) {
        self.variants.invalidate(variant_key);
    }

    /// The cache key of a variant of one version of its source.
    pub fn result_key(variant_key: &str, source_etag: &str) -> String {
        format!("{variant_key}\n{source_etag}")
    }

    /// A variant's ETag: the same on every instance, for the same source version.
    fn etag_of(result_key: &str) -> String {
        format!(
            "\"i-{}\"",
            URL_SAFE_NO_PAD.encode(&Sha256::digest(result_key.as_bytes())[..18])
        )
    }

    /// Takes in a variant another instance rendered (read from the shared store).
    pub async fn adopt(
        &self,
        variant_key: &str,
        source_etag: &str,
        bytes: Bytes,
        content_type: &'static str,
    ) -> Arc<Rendered> {
        let result_key = Self::result_key(variant_key, source_etag);
        let rendered = Arc::new(Rendered {
            bytes,
            content_type,
            etag: Self::etag_of(&result_key),
        });
        self.metrics
            .image_cache
            .with_label_values(&["shared"])
            .inc();
        self.results.insert(result_key, rendered.clone()).await;
        self.remember(variant_key, source_etag, &rendered);
        rendered
    }

    /// The cached output for a variant of this source, if any.
    pub async fn cached(&self, variant_key: &str, source_etag: &str) -> Option<Arc<Rendered>> {
        self.results
            .get(&Self::result_key(variant_key, source_etag))
            .await
    }

    pub fn count_cache(&self, hit: bool) {
        self.metrics
            .image_cache
            .with_label_values(&[if hit { "hit" } else { "miss" }])
            .inc();
    }

    pub fn count_rejected(&self, reason: &str) {
        self.metrics
            .image_rejected
            .with_label_values(&[reason])
            .inc();
    }

    pub fn observe(&self, phase: &str, elapsed: Duration) {
        self.metrics
            .image_transform_seconds
            .with_label_values(&[phase])
            .observe(elapsed.as_secs_f64());
    }

    /// Renders (or finds) the variant for `source`. Identical concurrent requests share one
    /// computation. With whether this call rendered it.
    pub async fn render(
        self: &Arc<Self>,
        variant_key: &str,
        source_etag: &str,
        source: Bytes,
        transform: &Transform,
        takes_webp: bool,
    ) -> Result<(Arc<Rendered>, bool), RenderError> {
        let result_key = Self::result_key(variant_key, source_etag);
        if let Some(hit) = self.results.get(&result_key).await {
            self.count_cache(true);
            self.remember(variant_key, source_etag, &hit);
            return Ok((hit, false));
        }
        self.count_cache(false);
        let this = self.clone();
        let transform = transform.clone();
        let etag = Self::etag_of(&result_key);
        let rendered_here = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = rendered_here.clone();
        let rendered = self
            .results
            .try_get_with(result_key.clone(), async move {
                let limits = this.limits();
                let (output, timings) = this
                    .pool
                    .run(move || pipeline::transform(&source, &transform, takes_webp, &limits))
                    .await??;
                flag.store(true, std::sync::atomic::Ordering::Release);
                this.observe("decode", timings.decode);
                this.observe("resize", timings.resize);
                this.observe("encode", timings.encode);
                Ok::<_, RenderError>(Arc::new(Rendered {
                    bytes: Bytes::from(output.bytes),
                    content_type: output.format.content_type(),
                    etag,
                }))
            })
            .await
            .map_err(|e: Arc<RenderError>| (*e).clone())?;
        self.remember(variant_key, source_etag, &rendered);
        Ok((
            rendered,
            rendered_here.load(std::sync::atomic::Ordering::Acquire),
        ))
    }

    /// Resizes and converts an uploaded image on the worker pool (see
    /// [`pipeline::fit_within`]); nothing is cached.
    pub async fn fit_upload(
        &self,
        source: Bytes,
        max_size: (u32, u32),
        format: Format,
        quality: u8,
    ) -> Result<pipeline::Output, RenderError> {
        let limits = self.limits();
        Ok(self
            .pool
            .run(move || pipeline::fit_within(&source, max_size, format, quality, &limits))
            .await??)
    }

    fn remember(&self, variant_key: &str, source_etag: &str, rendered: &Rendered) {
        self.variants.insert(
            variant_key.to_string(),
            Variant {
                source_etag: source_etag.to_string(),
                etag: rendered.etag.clone(),
            },
        );
    }
}
