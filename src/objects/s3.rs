//! An S3 (or S3-compatible) bucket: where its requests go, how they are signed, and the cached
//! credentials they are signed with. Streaming itself is Pingora's (see `proxy::assets`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;

use super::key::encode_key;
use super::sigv4::{self, SignError, SignInput};
use crate::config::{S3Credentials, S3Settings, UpstreamSettings};
use crate::metrics::Metrics;
use crate::upstream::UpstreamPool;

pub struct S3Store {
    pub settings: S3Settings,
    /// The endpoint, resolved off the request path like any upstream.
    pub pool: Arc<UpstreamPool>,
    /// The host (and port, when not the scheme's default) requests are sent to and signed for.
    authority: String,
    credentials: Arc<ArcSwapOption<Credentials>>,
    /// Uploads, deletes and listings.
    pub client: super::s3_client::S3Client,
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("no credentials for store {0} yet")]
    NoCredentials(String),
    #[error(transparent)]
    Sign(#[from] SignError),
}

impl S3Store {
    pub fn new(settings: S3Settings, metrics: Arc<Metrics>) -> Self {
        let upstream = UpstreamSettings {
            name: format!("store:{}", settings.name),
            backends: vec![settings.endpoint.clone()],
            connect_timeout: settings.connect_timeout,
            read_timeout: settings.read_timeout,
            write_timeout: settings.read_timeout,
            idle_timeout: Duration::from_secs(60),
            tls_verify: settings.tls_verify,
            sni: None,
            preserve_host: false,
            retries: 1,
            fail_timeout: Duration::from_secs(10),
            resolve_interval: settings.resolve_interval,
        };
        let credentials = match &settings.credentials {
            S3Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => Some(Arc::new(Credentials::new(
                access_key_id,
                secret_access_key,
                session_token.clone(),
                None,
                "postern config",
            ))),
            S3Credentials::Chain { .. } => None,
        };
        let credentials = Arc::new(ArcSwapOption::new(credentials));
        Self {
            pool: Arc::new(UpstreamPool::new(upstream, metrics)),
            authority: settings.endpoint.authority(),
            client: super::s3_client::S3Client::new(settings.clone(), credentials.clone()),
            settings,
            credentials,
        }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The encoded request path of `key`.
    pub fn object_path(&self, key: &str) -> String {
        if self.settings.virtual_host {
            format!("/{}", encode_key(key))
        } else {
            format!("/{}/{}", self.settings.bucket, encode_key(key))
        }
    }

    fn current_credentials(&self) -> Result<Arc<Credentials>, S3Error> {
        self.credentials
            .load_full()
            .ok_or_else(|| S3Error::NoCredentials(self.settings.name.clone()))
    }

    /// What signing a bodiless request for `path` to this store takes.
    fn sign_input<'a>(
        &'a self,
        credentials: &'a Credentials,
        method: &'a str,
        path: &'a str,
        time: SystemTime,
    ) -> SignInput<'a> {
        SignInput {
            credentials,
            region: &self.settings.region,
            method,
            authority: &self.authority,
            path_and_query: path,
            extra_headers: &[],
            payload: None,
            time,
        }
    }

    /// Headers that authenticate a GET or HEAD of `path` (from [`Self::object_path`]).
    pub fn sign_headers(
        &self,
        method: &str,
        path: &str,
        time: SystemTime,
    ) -> Result<Vec<(&'static str, String)>, S3Error> {
        let credentials = self.current_credentials()?;
        Ok(sigv4::sign_headers(&self.sign_input(
            &credentials,
            method,
            path,
            time,
        ))?)
    }

    /// A presigned GET URL for `key`, valid for `expires_in` from `time`.
    pub fn presign(
        &self,
        key: &str,
        expires_in: Duration,
        time: SystemTime,
    ) -> Result<String, S3Error> {
        let credentials = self.current_credentials()?;
        let path = self.object_path(key);
        let query = sigv4::presign_query(
            &self.sign_input(&credentials, "GET", &path, time),
            expires_in,
        )?;
        let authority = &self.authority;
        let scheme = if self.settings.endpoint.tls {
            "https"
        } else {
            "http"
        };
        Ok(format!("{scheme}://{authority}{path}?{query}"))
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.load().is_some()
    }

    pub fn uses_credential_chain(&self) -> bool {
        matches!(self.settings.credentials, S3Credentials::Chain { .. })
    }

    /// Builds the standard credential chain for this store (environment, shared config and
    /// credentials files with the store's profile, web identity, ECS, IMDSv2).
    pub async fn credential_chain(
        &self,
    ) -> aws_config::default_provider::credentials::DefaultCredentialsChain {
        let profile = match &self.settings.credentials {
            S3Credentials::Chain { profile } => profile.clone(),
            S3Credentials::Static { .. } => None,
        };
        let mut builder =
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .region(aws_config::Region::new(self.settings.region.clone()));
        if let Some(profile) = profile {
            builder = builder.profile_name(&profile);
        }
        builder.build().await
    }

    /// Fetches credentials from `chain` and keeps them; returns when they expire, if they do.
    pub async fn refresh_credentials(
        &self,
        chain: &(impl ProvideCredentials + ?Sized),
    ) -> Result<Option<SystemTime>, String> {
        let credentials = chain
            .provide_credentials()
            .await
            .map_err(|e| e.to_string())?;
        let expiry = credentials.expiry();
        self.credentials.store(Some(Arc::new(credentials)));
        Ok(expiry)
    }
}

/// A whole object read into memory (for transforms).
pub struct Fetched {
    pub bytes: bytes::Bytes,
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no such object")]
    NotFound,
    #[error("the store refused access (status {0})")]
    Denied(u16),
    #[error("the object is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the store failed: {0}")]
    Failed(String),
}

impl S3Store {
    /// GETs `key` whole, at most `max_bytes`, through Pingora's connector (pooled connections to
    /// the pre-resolved endpoint).
    pub async fn fetch(
        &self,
        connector: &pingora::connectors::http::Connector,
        key: &str,
        max_bytes: u64,
        time: SystemTime,
    ) -> Result<Fetched, FetchError> {
        use pingora::http::RequestHeader;
        let failed = |e: &dyn std::fmt::Display| FetchError::Failed(e.to_string());
        let selected = self
            .pool
            .select(0)
            .ok_or_else(|| FetchError::Failed("no resolved address".into()))?;
        let peer = self.pool.peer(&selected);
        let path = self.object_path(key);
        let mut req =
            RequestHeader::build("GET", path.as_bytes(), Some(8)).map_err(|e| failed(&e))?;
        req.insert_header("host", self.authority.as_str())
            .map_err(|e| failed(&e))?;
        for (name, value) in self
            .sign_headers("GET", &path, time)
            .map_err(|e| failed(&e))?
        {
            req.insert_header(name, value).map_err(|e| failed(&e))?;
        }
        let (mut session, _reused) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| failed(&e))?;
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| failed(&e))?;
        session
            .finish_request_body()
            .await
            .map_err(|e| failed(&e))?;
        session
            .read_response_header()
            .await
            .map_err(|e| failed(&e))?;
        let (status, etag) = match session.response_header() {
            Some(resp) => (
                resp.status.as_u16(),
                resp.headers
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
            ),
            None => return Err(FetchError::Failed("no response".into())),
        };
        let outcome = match status {
            200 => {
                let mut body = bytes::BytesMut::new();
                while let Some(chunk) =
                    session.read_response_body().await.map_err(|e| failed(&e))?
                {
                    if (body.len() + chunk.len()) as u64 > max_bytes {
                        return Err(FetchError::TooLarge(max_bytes));
                    }
                    body.extend_from_slice(&chunk);
                }
                Fetched {
                    bytes: body.freeze(),
                    etag,
                }
            }
            404 => Err(FetchError::NotFound)?,
            403 => Err(FetchError::Denied(403))?,
            other => Err(FetchError::Failed(format!("status {other}")))?,
        };
        connector
            .release_http_session(session, &peer, Some(self.pool.settings.idle_timeout))
            .await;
        Ok(outcome)
    }
}
