//! Writes, deletes and listings on an S3 store through `aws-sdk-s3`: uploads (single PUT and
//! multipart), removal, and what a sync reads back. Proxied GETs stay on Pingora (`s3.rs`); this
//! client is for the requests that are not a streamed read, where a maintained client's
//! handling of multipart, retries and S3's XML beats writing one.
//! It signs with the store's own credentials (static or from the refreshed chain).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectCannedAcl};
use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::config::S3Settings;

#[derive(Debug, thiserror::Error)]
pub enum S3ClientError {
    #[error("no such object")]
    NotFound,
    #[error("the store failed: {0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> S3ClientError {
    S3ClientError::Failed(e.to_string())
}

/// The store's current credentials, as the SDK asks for them.
#[derive(Debug)]
struct StoreCredentials(Arc<ArcSwapOption<Credentials>>);

impl ProvideCredentials for StoreCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(self.0.load_full().map(|c| (*c).clone()).ok_or_else(
            || {
                aws_credential_types::provider::error::CredentialsError::not_loaded(
                    "the store has no credentials yet",
                )
            },
        ))
    }
}

/// An object as a listing reports it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: i64,
    pub etag: Option<String>,
}

pub struct S3Client {
    settings: S3Settings,
    credentials: Arc<ArcSwapOption<Credentials>>,
    /// Built on first use, inside the server's runtime.
    client: OnceCell<aws_sdk_s3::Client>,
}

impl S3Client {
    pub(super) fn new(settings: S3Settings, credentials: Arc<ArcSwapOption<Credentials>>) -> Self {
        Self {
            settings,
            credentials,
            client: OnceCell::new(),
        }
    }

    /// Where the SDK sends requests: the endpoint without the bucket (it adds the bucket itself,
    /// as a subdomain or as the first path segment).
    fn endpoint_url(&self) -> String {
        let endpoint = &self.settings.endpoint;
        let scheme = if endpoint.tls { "https" } else { "http" };
        let authority = endpoint.authority();
        let bucket_prefix = format!("{}.", self.settings.bucket);
        let base = if self.settings.virtual_host {
            authority
                .strip_prefix(&bucket_prefix)
                .unwrap_or(&authority)
                .to_string()
        } else {
            authority
        };
        format!("{scheme}://{base}")
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| async {
                use aws_config::timeout::TimeoutConfig;
                let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.settings.region.clone()))
                    .credentials_provider(StoreCredentials(self.credentials.clone()))
                    .endpoint_url(self.endpoint_url())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(self.settings.connect_timeout)
                            .read_timeout(self.settings.read_timeout)
                            .build(),
                    )
                    .load()
                    .await;
                let config = aws_sdk_s3::config::Builder::from(&shared)
                    .force_path_style(!self.settings.virtual_host)
                    // Checksums only where S3 requires them: S3-compatible stores vary in
                    // what they accept, and SigV4 already covers each body's SHA-256.
                    .request_checksum_calculation(
                        aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                    )
                    .response_checksum_validation(
                        aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                    )
                    .build();
                aws_sdk_s3::Client::from_conf(config)
            })
            .await
    }

    fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// One PUT of a whole (small) object; its ETag.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        acl: &str,
    ) -> Result<Option<String>, S3ClientError> {
        let out = self
            .client()
            .await
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_type(content_type)
            .acl(ObjectCannedAcl::from(acl))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(out.e_tag)
    }

    /// Starts a multipart upload; its id.
    pub async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
        acl: &str,
    ) -> Result<String, S3ClientError> {
        let out = self
            .client()
            .await
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .content_type(content_type)
            .acl(ObjectCannedAcl::from(acl))
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        out.upload_id
            .ok_or_else(|| failed("the store answered without an upload id"))
    }

    /// Uploads part `number` (from 1); its ETag, which completing the upload needs.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String, S3ClientError> {
        let out = self
            .client()
            .await
            .upload_part()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        out.e_tag
            .ok_or_else(|| failed("the store answered a part without an ETag"))
    }

    /// Completes a multipart upload from its parts' ETags (in order); the object's ETag.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<Option<String>, S3ClientError> {
        let parts = etags
            .iter()
            .enumerate()
            .map(|(i, etag)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(etag)
                    .build()
            })
            .collect();
        let out = self
            .client()
            .await
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(out.e_tag)
    }

    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3ClientError> {
        self.client()
            .await
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    /// The ids of multipart uploads in progress for exactly `key`.
    pub async fn multipart_uploads_of(&self, key: &str) -> Result<Vec<String>, S3ClientError> {
        let out = self
            .client()
            .await
            .list_multipart_uploads()
            .bucket(self.bucket())
            .prefix(key)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(out
            .uploads
            .unwrap_or_default()
            .into_iter()
            .filter(|u| u.key.as_deref() == Some(key))
            .filter_map(|u| u.upload_id)
            .collect())
    }

    /// Removes `key`; removing what is not there succeeds (S3's own rule).
    pub async fn delete(&self, key: &str) -> Result<(), S3ClientError> {
        self.client()
            .await
            .delete_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, S3ClientError> {
        match self
            .client()
            .await
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(e) => Err(failed(aws_sdk_s3::error::DisplayErrorContext(e))),
        }
    }

    /// Every object whose key starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, S3ClientError> {
        let mut pages = self
            .client()
            .await
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(e)))?;
            for object in page.contents.unwrap_or_default() {
                if let Some(key) = object.key {
                    listed.push(Listed {
                        key,
                        size: object.size.unwrap_or(0),
                        etag: object.e_tag,
                    });
                }
            }
        }
        Ok(listed)
    }

    /// The first `len` bytes of `key` (to sniff its type).
    pub async fn read_head(&self, key: &str, len: usize) -> Result<Bytes, S3ClientError> {
        let out = self
            .client()
            .await
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .range(format!("bytes=0-{}", len.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                    S3ClientError::NotFound
                } else {
                    failed(aws_sdk_s3::error::DisplayErrorContext(e))
                }
            })?;
        let body = out.body.collect().await.map_err(failed)?;
        let bytes = body.into_bytes();
        Ok(bytes.slice(..bytes.len().min(len)))
    }
}
