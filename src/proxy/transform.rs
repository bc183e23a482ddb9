//! Transformed images on asset routes: a variant known to be current is answered from memory
//! (`304` or the cached bytes) without touching the store; otherwise the source is fetched,
//! rendered on the image pool (or found in the cache by its ETag) and cached.

use crate::objects::disposition::SANDBOX_POLICY;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{StatusCode, header};
use pingora::connectors::http::Connector;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use tokio::io::AsyncReadExt;

use super::assets::{Assets, store_denied};
use crate::auth::Clock;
use crate::error::GatewayError;
use crate::images::params::{Transform, takes_webp};
use crate::images::pipeline::ImageError;
use crate::images::pool::PoolError;
use crate::images::shared::SharedVariants;
use crate::images::{Images, RenderError, Rendered};
use crate::objects::ObjectStore;
use crate::objects::conditional::none_match_hits;
use crate::objects::s3::{FetchError, Fetched};

/// One image request, as the proxy resolved it.
pub struct ImageRequest<'a> {
    pub store: usize,
    pub key: &'a str,
    pub transform: Transform,
    pub cache_control: &'a str,
    pub head: bool,
}

/// What a request for a variant gets.
enum Answer {
    /// The client's `If-None-Match` names the current variant.
    NotModified(String),
    Image(Arc<Rendered>),
}

pub struct ImageServer {
    images: Arc<Images>,
    connector: Connector,
    clock: Arc<dyn Clock>,
    shared: Option<Arc<SharedVariants>>,
}

impl ImageServer {
    pub fn new(
        images: Arc<Images>,
        clock: Arc<dyn Clock>,
        shared: Option<Arc<SharedVariants>>,
    ) -> Self {
        Self {
            images,
            connector: Connector::new(None),
            clock,
            shared,
        }
    }

    /// The variant as another instance rendered it, from the shared store.
    async fn shared_variant(
        &self,
        assets: &Assets,
        variant_key: &str,
        source_etag: &str,
        object_key: &str,
    ) -> Option<Arc<Rendered>> {
        let shared = self.shared.as_ref()?;
        if self.images.cached(variant_key, source_etag).await.is_some() {
            return None;
        }
        let found = self.fetch(assets, shared.store(), object_key).await.ok()?;
        let (content_type, bytes) = crate::images::shared::decode(&found.bytes)?;
        shared.used(object_key).await;
        Some(
            self.images
                .adopt(variant_key, source_etag, bytes, content_type)
                .await,
        )
    }

    /// Counts a refused image request by its reason and hands the error back.
    pub fn rejected(&self, err: GatewayError) -> GatewayError {
        let reason = match &err {
            GatewayError::ImageParam { .. } => "bad_param",
            GatewayError::BadSignature => "bad_signature",
            GatewayError::ImageTooLarge(_) => "too_large",
            GatewayError::UnsupportedImage => "unsupported",
            GatewayError::CorruptImage => "corrupt",
            GatewayError::ImageBusy => "busy",
            _ => return err,
        };
        self.images.count_rejected(reason);
        err
    }

    async fn fetch(
        &self,
        assets: &Assets,
        store: usize,
        key: &str,
    ) -> Result<Fetched, GatewayError> {
        let max = self.images.settings.max_source_size;
        let too_large =
            || GatewayError::ImageTooLarge(format!("the source image is larger than {max} bytes"));
        match assets.store(store) {
            Some(ObjectStore::Fs(_)) => {
                let mut object = assets.open_file(store, key).await?;
                if object.size > max {
                    return Err(too_large());
                }
                let mut bytes = Vec::with_capacity(object.size as usize);
                (&mut object.file)
                    .take(max + 1)
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|_| GatewayError::StoreUnavailable)?;
                if bytes.len() as u64 > max {
                    return Err(too_large());
                }
                Ok(Fetched {
                    bytes: Bytes::from(bytes),
                    etag: object.etag,
                })
            }
            Some(ObjectStore::S3(s3)) => s3
                .fetch(&self.connector, key, max, self.clock.system_time())
                .await
                .map_err(|e| match e {
                    FetchError::NotFound => GatewayError::ObjectNotFound,
                    FetchError::Denied(_) => store_denied(s3.settings.access_denied),
                    FetchError::TooLarge(_) => too_large(),
                    FetchError::Failed(reason) => {
                        tracing::warn!(store = s3.name(), %reason, "cannot fetch an image source");
                        GatewayError::StoreUnavailable
                    }
                }),
            None => Err(GatewayError::Internal),
        }
    }

    /// The variant, from memory when it is known to be current.
    async fn answer(
        &self,
        assets: &Assets,
        req: &ImageRequest<'_>,
        variant_key: &str,
        webp: bool,
        if_none_match: Option<&str>,
    ) -> Result<Answer, GatewayError> {
        if let Some(known) = self.images.known_variant(variant_key) {
            if none_match_hits(if_none_match, &known.etag) {
                self.images.count_cache(true);
                return Ok(Answer::NotModified(known.etag));
            }
            if let Some(hit) = self.images.cached(variant_key, &known.source_etag).await {
                self.images.count_cache(true);
                return Ok(Answer::Image(hit));
            }
        }
        let started = Instant::now();
        let Fetched {
            bytes: source,
            etag: source_etag,
        } = match self.fetch(assets, req.store, req.key).await {
            Ok(fetched) => fetched,
            Err(err) => {
                self.images.forget_variant(variant_key);
                return Err(err);
            }
        };
        self.images.observe("fetch", started.elapsed());
        let shared_key = self.shared.as_ref().map(|shared| {
            shared.object_key(&Images::result_key(variant_key, &source_etag), &source)
        });
        if let Some(key) = &shared_key
            && let Some(rendered) = self
                .shared_variant(assets, variant_key, &source_etag, key)
                .await
        {
            return Ok(if none_match_hits(if_none_match, &rendered.etag) {
                Answer::NotModified(rendered.etag.clone())
            } else {
                Answer::Image(rendered)
            });
        }
        let (rendered, rendered_here) = self
            .images
            .render(variant_key, &source_etag, source, &req.transform, webp)
            .await
            .map_err(|e| match e {
                RenderError::Pool(PoolError::Busy) => GatewayError::ImageBusy,
                RenderError::Pool(PoolError::Failed) => GatewayError::Internal,
                RenderError::Image(ImageError::Unsupported) => GatewayError::UnsupportedImage,
                RenderError::Image(ImageError::Corrupt(reason)) => {
                    tracing::debug!(%reason, "an image could not be decoded");
                    GatewayError::CorruptImage
                }
                RenderError::Image(
                    e @ (ImageError::TooLarge { .. } | ImageError::OutputTooLarge { .. }),
                ) => GatewayError::ImageTooLarge(e.to_string()),
                RenderError::Image(ImageError::Encode(reason)) => {
                    tracing::error!(%reason, "an image could not be encoded");
                    GatewayError::Internal
                }
            })?;
        if let (true, Some(shared), Some(key)) = (rendered_here, &self.shared, shared_key) {
            let shared = shared.clone();
            let copy = rendered.clone();
            let running = crate::services::drain::job();
            tokio::spawn(async move {
                shared.save(&key, &copy).await;
                drop(running);
            });
        }
        Ok(if none_match_hits(if_none_match, &rendered.etag) {
            Answer::NotModified(rendered.etag.clone())
        } else {
            Answer::Image(rendered)
        })
    }

    /// Answers with the transformed image. Inner `Err`: an error still answerable.
    pub async fn serve(
        &self,
        session: &mut Session,
        assets: &Assets,
        req: ImageRequest<'_>,
        extra_headers: &[(&'static str, String)],
    ) -> pingora::Result<Result<u16, GatewayError>> {
        let headers = &session.req_header().headers;
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let if_none_match = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let webp = takes_webp(accept);
        let store_name = assets.store(req.store).map_or("", ObjectStore::name);
        let variant_key = Images::variant_key(store_name, req.key, &req.transform, webp);
        let outcome = self
            .answer(assets, &req, &variant_key, webp, if_none_match.as_deref())
            .await;
        let answer = match outcome {
            Ok(answer) => answer,
            Err(err) => return Ok(Err(self.rejected(err))),
        };
        let (status, etag, body, content_type) = match answer {
            Answer::NotModified(etag) => (StatusCode::NOT_MODIFIED, etag, None, None),
            Answer::Image(r) => (
                StatusCode::OK,
                r.etag.clone(),
                Some(r.bytes.clone()),
                Some(r.content_type),
            ),
        };
        let mut resp = ResponseHeader::build(status, Some(8))?;
        resp.insert_header(header::ETAG, etag)?;
        resp.insert_header(header::CACHE_CONTROL, req.cache_control)?;
        resp.insert_header(header::VARY, "Accept")?;
        resp.insert_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
        resp.insert_header(header::CONTENT_SECURITY_POLICY, SANDBOX_POLICY)?;
        if let (Some(body), Some(content_type)) = (&body, content_type) {
            resp.insert_header(header::CONTENT_TYPE, content_type)?;
            resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
        }
        for (name, value) in extra_headers {
            resp.append_header(*name, value.as_str())?;
        }
        let send_body = body.filter(|_| !req.head);
        crate::services::drain::close_if_leaving(session);
        session
            .write_response_header(Box::new(resp), send_body.is_none())
            .await?;
        if let Some(body) = send_body {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(Ok(status.as_u16()))
    }
}
