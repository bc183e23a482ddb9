//! The one `ProxyHttp` implementation. Each phase stays thin and calls into the modules that own
//! the decision: routing, policy, headers, upstream pools, handlers, metrics.

pub mod assets;
pub mod body;
pub mod cut;
pub mod headers;
pub mod respond;
pub mod transform;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::ErrorType;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::auth::{SessionError, Sessions, TokenError, Tokens};
use crate::config::{AssetMode, AssetRoute, RouteTarget, Settings};
use crate::error::GatewayError;
use crate::handlers::{Builtin, Caller};
use crate::metrics::{Metrics, NO_ROUTE, RouteMetrics};
use crate::objects::InlineTypes;
use crate::objects::ObjectStore;
use crate::policy::{self, Decision, Principal};
use crate::routing::{Match, PathError, Route, RouteTable, check_unambiguous, normalize_path};
use crate::services::{InFlight, InFlightGuard, drain};
use crate::upstream::UpstreamPool;

use crate::files::UploadRoute;
use crate::handlers::files::{FileApi, FileOutcome, FileRequest};
use assets::{AssetRequest, Assets};

/// How long the redirect for a file's content lives on a `mode = "redirect"` upload route.
const DEFAULT_FILE_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
use body::BodyLimit;
use transform::{ImageRequest, ImageServer};

pub struct Gateway {
    settings: Arc<Settings>,
    routes: RouteTable,
    pools: Vec<Arc<UpstreamPool>>,
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
    tokens: Arc<Tokens>,
    watches: Arc<cut::Watches>,
    disconnect_log: DisconnectLog,
    /// Request metrics per route (by index), and for requests no route matched.
    route_metrics: Vec<RouteMetrics>,
    unrouted_metrics: RouteMetrics,
    in_flight: Arc<InFlight>,
    builtin: Option<Builtin>,
    assets: Assets,
    images: ImageServer,
    /// Identity headers (and the assertion header) removed from every client request.
    owned_headers: Vec<header::HeaderName>,
    /// Cookies that are postern's alone: the session and the CSRF cookie (under each name).
    owned_cookies: Vec<String>,
    identity_names: headers::IdentityNames,
    /// For objects served outside an asset route (signed links).
    default_inline_types: Arc<InlineTypes>,
    /// The file API of upload routes.
    files: Option<FileApi>,
    /// ACME challenges pass the HTTPS redirect (not when client certificates are required: the
    /// plain listener would serve those paths without one).
    acme_over_http: bool,
}

/// What serves objects: asset routes and signed links, image transforms, and upload routes.
pub struct ObjectServing {
    pub assets: Assets,
    pub images: ImageServer,
    pub files: Option<FileApi>,
}

/// How an object is sent: its caching and which types are shown inline.
struct Presentation {
    cache_control: String,
    inline_types: Arc<InlineTypes>,
}

/// Per-request state carried across phases.
pub struct RequestCtx {
    started: Instant,
    route: Option<usize>,
    /// Path and query to send upstream when they differ from what the client sent.
    upstream_uri: Option<String>,
    /// For built-in and asset routes: the path below the route's prefix.
    rest: Option<String>,
    /// The object an asset route or a signed link resolved to.
    asset: Option<AssetRequest>,
    principal: Option<Arc<Principal>>,
    /// The client's address: the peer, or what trusted proxies say it is.
    client: Option<IpAddr>,
    /// The direct peer is one of `server.trusted_proxies`.
    peer_trusted: bool,
    /// The request authenticated with a bearer token, which the app must not see.
    bearer_consumed: bool,
    /// The session the bearer token was issued from (its id hash), if any.
    bearer_session: Option<String>,
    /// CORS headers for the response to an allowed cross-origin request.
    cors_headers: Vec<(&'static str, String)>,
    body: BodyLimit,
    tried_backends: u64,
    attempts: usize,
    current_backend: Option<usize>,
    /// Set when postern itself decided the request's fate before or instead of the upstream.
    failure: Option<GatewayError>,
    /// The bearer token's user epoch and expiry, when a token let the request in.
    bearer_grant: Option<(i64, i64)>,
    /// A running response watched for the end of its login (`cut_on_revoke`).
    watch: Option<cut::WatchGuard>,
    _in_flight: InFlightGuard,
}

/// The least time between two warnings about connections that went away.
const DISCONNECT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Which side went away, when an error is only that: the client (closed, reset or timed out
/// while postern read or wrote), the upstream (closed or reset mid-response), or postern itself
/// cutting a request whose login ended.
fn disconnect_side(error: &pingora::Error, cut: bool) -> Option<&'static str> {
    use pingora::ErrorSource;
    if cut {
        return Some("cut");
    }
    let gone = matches!(
        error.etype(),
        ErrorType::ConnectionClosed
            | ErrorType::ReadError
            | ErrorType::WriteError
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
    );
    match error.esource() {
        ErrorSource::Downstream if gone => Some("client"),
        ErrorSource::Upstream
            if matches!(
                error.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError
            ) =>
        {
            Some("upstream")
        }
        _ => None,
    }
}

/// A warning about disconnects, at most once per interval, with how many there were.
#[derive(Default)]
struct DisconnectLog {
    last: std::sync::Mutex<Option<std::time::Instant>>,
    since: std::sync::atomic::AtomicU64,
}

impl DisconnectLog {
    fn note(&self, side: &str, error: &pingora::Error) {
        let count = self
            .since
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < DISCONNECT_LOG_INTERVAL) {
            return;
        }
        *last = Some(std::time::Instant::now());
        self.since.store(0, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            side,
            count,
            error = %error,
            "connections went away mid-request (counted in postern_disconnects_total)"
        );
    }
}

/// How logins are checked: sessions, bearer tokens, and the watch on running responses.
pub struct Logins {
    pub sessions: Arc<Sessions>,
    pub tokens: Arc<Tokens>,
    pub watches: Arc<cut::Watches>,
}

impl Gateway {
    pub fn new(
        settings: Arc<Settings>,
        pools: Vec<Arc<UpstreamPool>>,
        metrics: Arc<Metrics>,
        logins: Logins,
        builtin: Option<Builtin>,
        objects: ObjectServing,
    ) -> Self {
        let ObjectServing {
            assets,
            images,
            files,
        } = objects;
        let Logins {
            sessions,
            tokens,
            watches,
        } = logins;
        let routes = RouteTable::new(&settings.routes);
        let mut owned_headers: Vec<header::HeaderName> = settings
            .identity_headers
            .all()
            .into_iter()
            .cloned()
            .collect();
        owned_headers.extend(settings.tokens.assertion_header.clone());
        let owned_cookies = settings.sessions.all_cookie_names();
        let acme_over_http = settings
            .server
            .tls
            .iter()
            .all(|l| l.client_auth != crate::tls::ClientAuth::Required);
        let route_metrics = routes
            .routes()
            .iter()
            .map(|route| metrics.route(&route.name))
            .collect();
        let unrouted_metrics = metrics.route(NO_ROUTE);
        Self {
            identity_names: headers::IdentityNames::new(&settings.identity_headers),
            owned_cookies,
            route_metrics,
            unrouted_metrics,
            default_inline_types: Arc::new(InlineTypes::default()),
            settings,
            routes,
            pools,
            metrics,
            sessions,
            tokens,
            watches,
            disconnect_log: DisconnectLog::default(),
            in_flight: Arc::new(InFlight::default()),
            builtin,
            assets,
            images,
            owned_headers,
            files,
            acme_over_http,
        }
    }

    /// The requests in progress, for a graceful stop that ends when they are done.
    pub fn in_flight(&self) -> Arc<InFlight> {
        self.in_flight.clone()
    }

    fn route(&self, ctx: &RequestCtx) -> Option<&Route> {
        ctx.route.and_then(|i| self.routes.routes().get(i))
    }

    fn pool(&self, ctx: &RequestCtx) -> Option<&Arc<UpstreamPool>> {
        if let Some(asset) = &ctx.asset {
            return match self.assets.store(asset.store)? {
                ObjectStore::S3(s3) => Some(&s3.pool),
                ObjectStore::Fs(_) => None,
            };
        }
        match self.route(ctx)?.target {
            RouteTarget::Upstream { upstream, .. } => self.pools.get(upstream),
            _ => None,
        }
    }

    fn route_label(&self, ctx: &RequestCtx) -> &str {
        self.route(ctx).map_or(NO_ROUTE, |r| r.name.as_str())
    }

    /// Answers locally with postern's error and records it as the request's outcome.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GatewayError,
    ) -> pingora::Result<bool> {
        respond::error(session, &err).await?;
        ctx.failure = Some(err);
        Ok(true)
    }

    /// Finds the route and prepares what later phases need; nothing here depends on who asks.
    fn route_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let peer = Self::peer_ip(session).map(|ip| ip.to_canonical());
        let trusted_proxies = &self.settings.server.trusted_proxies;
        ctx.peer_trusted = headers::is_trusted(peer, trusted_proxies);
        ctx.client = headers::client_address(session.req_header(), peer, trusted_proxies);
        let req = session.req_header_mut();
        headers::strip_identity_headers(req, &self.owned_headers);
        headers::strip_client_claims(req, ctx.peer_trusted);

        let req = session.req_header();
        if !req.raw_path_is_utf8() {
            // The URI then holds a lossy copy while the raw bytes would go upstream unchecked.
            return Err(GatewayError::BadPath(
                "the request target is not valid UTF-8",
            ));
        }
        let raw_path = req.uri.path();
        let path = normalize_path(raw_path).map_err(path_error)?;
        let host = headers::request_host(req);
        let mut found = self.routes.find(host, &path, &req.method);
        // An account API answers scripts; a browser opening one of its paths (a single-page
        // app's own /login or /verify page) goes on to the next route.
        let mut page_of_account_api = false;
        if let Match::Found(r) | Match::MethodNotAllowed(r) = &found
            && matches!(r.target, RouteTarget::AccountApi(_))
            && respond::is_navigation(req)
        {
            found = self.routes.find_from(r.index + 1, host, &path, &req.method);
            page_of_account_api = true;
        }
        let route = match found {
            Match::Found(route) => route,
            // A CORS preflight is answered by the route's CORS rule, whatever its methods.
            Match::MethodNotAllowed(route)
                if route.cors.is_some()
                    && req.method == http::Method::OPTIONS
                    && req
                        .headers
                        .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) =>
            {
                route
            }
            Match::MethodNotAllowed(route) => {
                ctx.route = Some(route.index);
                return Err(GatewayError::MethodNotAllowed);
            }
            Match::None => return Err(GatewayError::NoRoute),
        };
        ctx.route = Some(route.index);
        // Only an upstream app can read the path differently from postern: built-in and asset
        // routes decode it themselves (asset keys refuse encoded slashes and control characters).
        if route.strict_paths && matches!(route.target, RouteTarget::Upstream { .. }) {
            check_unambiguous(&path).map_err(path_error)?;
        }

        let declared = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let RouteTarget::Uploads(upload) = &route.target {
            // The route's own limits (checked while streaming) replace server.max_body_size.
            ctx.body = BodyLimit::new(upload.max_request_body());
        }
        ctx.body.check_declared(declared)?;

        match route.target {
            RouteTarget::Builtin
            | RouteTarget::Assets(_)
            | RouteTarget::AccountApi(_)
            | RouteTarget::Uploads(_) => {
                ctx.rest = Some(route.strip_prefix(&path).to_string());
            }
            RouteTarget::Upstream { strip_prefix, .. } => {
                let upstream_path = if strip_prefix {
                    route.strip_prefix(&path)
                } else {
                    &path
                };
                // The app's page reads a mailed link's token in the browser; the app's server,
                // its logs and whatever sits in front of it never need it.
                let query = match req.uri.query() {
                    Some(q) if page_of_account_api => Some(without_link_tokens(q)),
                    other => other.map(str::to_owned),
                };
                if upstream_path != raw_path || query.as_deref() != req.uri.query() {
                    let uri = match query.filter(|q| !q.is_empty()) {
                        Some(q) => format!("{upstream_path}?{q}"),
                        None => upstream_path.to_string(),
                    };
                    ctx.upstream_uri = Some(uri);
                }
            }
        }
        Ok(())
    }

    /// The principal behind a bearer token; a token that does not verify is an error.
    /// With the id hash of the session the token was issued from, if any.
    async fn authenticate_bearer(
        &self,
        token: &str,
    ) -> Result<(Arc<Principal>, Option<String>, (i64, i64)), GatewayError> {
        let verified = match self.tokens.verify(token).await {
            Ok(verified) => verified,
            Err(TokenError::Invalid) => return Err(GatewayError::InvalidToken),
            Err(TokenError::Unavailable) => {
                return Err(GatewayError::Unavailable("the user database"));
            }
            Err(e) => {
                tracing::error!(error = %e, "token check failed");
                return Err(GatewayError::Unavailable("the user database"));
            }
        };
        let grant = (verified.epoch, verified.expires_at);
        let Some(session) = verified.session else {
            return Ok((verified.principal, None, grant));
        };
        match self.sessions.is_live(&session).await {
            Ok(true) => Ok((verified.principal, Some(session), grant)),
            Ok(false) => Err(GatewayError::InvalidToken),
            Err(SessionError::Unavailable) => Err(GatewayError::Unavailable("the user database")),
            Err(SessionError::Store(e)) => {
                tracing::error!(error = %e, "session lookup for a token failed");
                Err(GatewayError::Unavailable("the user database"))
            }
        }
    }

    /// Watches the request for the end of the login it came in on (`cut_on_revoke`).
    fn watch(
        &self,
        ctx: &RequestCtx,
        principal: &Principal,
        session_id: Option<String>,
    ) -> Option<cut::WatchGuard> {
        let grant = match ctx.bearer_grant {
            Some((epoch, expires_at)) => cut::Grant::Token {
                user_id: principal.user_id.clone(),
                epoch,
                expires_at,
                session: ctx.bearer_session.clone(),
            },
            None => cut::Grant::Session(session_id?),
        };
        self.watches.watch(grant)
    }

    /// The principal behind the session cookie (given as its id), if any.
    async fn authenticate(
        &self,
        session_id: Option<&str>,
    ) -> Result<Option<Arc<Principal>>, GatewayError> {
        let Some(session_id) = session_id else {
            return Ok(None);
        };
        match self.sessions.authenticate_id(session_id).await {
            Ok(principal) => Ok(principal),
            Err(SessionError::Unavailable) => Err(GatewayError::Unavailable("the user database")),
            Err(SessionError::Store(e)) => {
                tracing::error!(error = %e, "session lookup failed");
                Err(GatewayError::Unavailable("the user database"))
            }
        }
    }

    /// The route's Referer and CORS rules. `Ok(true)`: a preflight was answered.
    async fn origin_rules(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool, GatewayError> {
        let Some(route) = self.route(ctx) else {
            return Ok(false);
        };
        let text = |name: header::HeaderName| {
            session
                .req_header()
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let origin = text(header::ORIGIN);
        if let (Some(cors), Some(origin)) = (&route.cors, &origin)
            && session.req_header().method == http::Method::OPTIONS
            && let Some(method) = text(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            let asked = text(header::ACCESS_CONTROL_REQUEST_HEADERS);
            let headers = cors
                .preflight(origin, &method, asked.as_deref())
                .ok_or(GatewayError::CorsDenied)?;
            let headers: Vec<(header::HeaderName, String)> = headers
                .into_iter()
                .map(|(name, value)| (header::HeaderName::from_static(name), value))
                .collect();
            respond::send(
                session,
                http::StatusCode::NO_CONTENT,
                "text/plain",
                Bytes::new(),
                &headers,
            )
            .await
            .map_err(|_| GatewayError::Internal)?;
            return Ok(true);
        }
        if let Some(rule) = &route.referer
            && !rule.allows(origin.as_deref(), text(header::REFERER).as_deref())
        {
            return Err(GatewayError::RefererDenied);
        }
        if let (Some(cors), Some(origin)) = (&route.cors, &origin)
            && cors.allows_origin(origin)
        {
            ctx.cors_headers = cors.response_headers(origin);
        }
        Ok(false)
    }

    /// A missing login: browsers go to the login page, API clients get 401.
    async fn login_required(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let api_route = self.route(ctx).is_some_and(|r| r.api);
        let login = self
            .builtin
            .as_ref()
            .filter(|_| !api_route)
            .map(Builtin::login_path);
        match login {
            Some(login) if respond::wants_html(session) => {
                let original = session
                    .req_header()
                    .uri
                    .path_and_query()
                    .map_or("/", |pq| pq.as_str());
                let target: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", original)
                    .finish();
                respond::redirect(session, format!("{login}?{target}")).await?;
                ctx.failure = Some(GatewayError::Unauthenticated);
                Ok(true)
            }
            _ => {
                self.reject(session, ctx, GatewayError::Unauthenticated)
                    .await
            }
        }
    }

    /// Who asks, for a built-in handler.
    fn caller(
        ctx: &RequestCtx,
        principal: Option<Arc<Principal>>,
        token: Option<String>,
    ) -> Caller {
        Caller {
            principal,
            session_token: token,
            via_bearer: ctx.bearer_consumed,
            bearer_session: ctx.bearer_session.clone(),
            ip: ctx.client,
            origin_allowed: !ctx.cors_headers.is_empty(),
        }
    }

    /// Whether `p`'s password is older than `passwords.max_age`.
    fn password_expired(&self, p: &Principal) -> bool {
        crate::accounts::password_expired(
            self.settings.passwords.policy.max_age,
            p.password_changed_at,
            self.sessions.now(),
        )
    }

    /// A session whose password expired: browsers go to the change page, API clients get 403.
    async fn password_change_required(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let api_route = self.route(ctx).is_some_and(|r| r.api);
        let Some(builtin) = self.builtin.as_ref() else {
            let err = GatewayError::PasswordExpired("the password change page".into());
            return self.reject(session, ctx, err).await;
        };
        if !api_route && respond::wants_html(session) {
            let original = session
                .req_header()
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string();
            respond::redirect(session, builtin.expired_page_for(&original)).await?;
            ctx.failure = Some(GatewayError::PasswordExpired(String::new()));
            return Ok(true);
        }
        let err = GatewayError::PasswordExpired(builtin.expired_page_for("/"));
        self.reject(session, ctx, err).await
    }

    /// Answers an error found while admitting the request.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GatewayError,
    ) -> pingora::Result<bool> {
        if let GatewayError::MethodNotAllowed = err
            && let Some(methods) = self.route(ctx).and_then(|r| r.methods.as_ref())
        {
            let allow = methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Self::method_not_allowed(session, ctx, allow).await;
        }
        self.reject(session, ctx, err).await
    }

    /// `405 method_not_allowed` with the methods that are.
    async fn method_not_allowed(
        session: &mut Session,
        ctx: &mut RequestCtx,
        allow: String,
    ) -> pingora::Result<bool> {
        let err = GatewayError::MethodNotAllowed;
        respond::send(
            session,
            err.status(),
            "application/json",
            Bytes::from(respond::json_body(&err)),
            &[(header::ALLOW, allow)],
        )
        .await?;
        ctx.failure = Some(err);
        Ok(true)
    }

    /// An asset route the caller may use: the object streamed, transformed, or redirected to.
    async fn asset_route(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        asset_route: &AssetRoute,
        principal: Option<&Principal>,
    ) -> pingora::Result<bool> {
        if !Self::is_read(session) {
            return self.read_only(session, ctx).await;
        }
        let rest = ctx.rest.take().unwrap_or_default();
        let key = match Assets::key_for(asset_route, &rest, principal) {
            Ok(key) => key,
            Err(err) => return self.answer(session, ctx, err).await,
        };
        if asset_route.mode == AssetMode::Redirect {
            let query = session.req_header().uri.query();
            let link = Assets::expires_in(query, asset_route.link_ttl)
                .and_then(|ttl| self.assets.link(asset_route.store, &key, ttl));
            return match link {
                Ok((url, _)) => {
                    respond::redirect(session, url).await?;
                    Ok(true)
                }
                Err(err) => self.answer(session, ctx, err).await,
            };
        }
        if let Some(policy) = asset_route.images {
            match self.requested_transform(session, policy) {
                Ok(None) => {}
                Ok(Some(transform)) => {
                    let request = ImageRequest {
                        store: asset_route.store,
                        key: &key,
                        transform,
                        cache_control: &asset_route.cache_control,
                        head: session.req_header().method == http::Method::HEAD,
                    };
                    let served = self
                        .images
                        .serve(session, &self.assets, request, &ctx.cors_headers)
                        .await?;
                    return match served {
                        Ok(_) => Ok(true),
                        Err(err) => self.answer(session, ctx, err).await,
                    };
                }
                Err(err) => {
                    let err = self.images.rejected(err);
                    return self.answer(session, ctx, err).await;
                }
            }
        }
        let presentation = Presentation {
            cache_control: asset_route.cache_control.clone(),
            inline_types: asset_route.inline_types.clone(),
        };
        self.serve_object(session, ctx, asset_route.store, key, presentation)
            .await
    }

    /// The transform the query asks for on an image route; a signed parameter set is checked
    /// against the request path.
    fn requested_transform(
        &self,
        session: &Session,
        policy: crate::images::params::Policy,
    ) -> Result<Option<crate::images::params::Transform>, GatewayError> {
        let settings = &self.settings.images;
        let req = session.req_header();
        let parsed = crate::images::params::parse(
            req.uri.query(),
            policy,
            &settings.bounds,
            &settings.presets,
        )
        .map_err(|e| GatewayError::ImageParam {
            param: e.param,
            message: e.message,
        })?;
        let Some((transform, signature)) = parsed else {
            return Ok(None);
        };
        if let Some(signature) = signature {
            let path = normalize_path(req.uri.path()).map_err(|_| GatewayError::BadSignature)?;
            if !self
                .assets
                .verify_transform(&path, &transform.canonical(), &signature)
            {
                return Err(GatewayError::BadSignature);
            }
        }
        Ok(Some(transform))
    }

    fn is_read(session: &Session) -> bool {
        matches!(
            session.req_header().method,
            http::Method::GET | http::Method::HEAD
        )
    }

    /// Objects are read with GET and HEAD only.
    async fn read_only(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        Self::method_not_allowed(session, ctx, "GET, HEAD".to_string()).await
    }

    /// Streams an object: from the filesystem here, or from S3 through the upstream phases.
    async fn serve_object(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        store: usize,
        key: String,
        presentation: Presentation,
    ) -> pingora::Result<bool> {
        let mut asset = AssetRequest {
            cut: ctx.watch.as_ref().map(cut::WatchGuard::signal),
            store,
            key,
            cache_control: presentation.cache_control,
            inline_types: presentation.inline_types,
            head: session.req_header().method == http::Method::HEAD,
            replacement: None,
            error_sample: Vec::new(),
            upstream_status: 0,
            bytes: 0,
        };
        match self.assets.store(store) {
            Some(ObjectStore::S3(s3)) => {
                if !s3.has_credentials() {
                    return self
                        .answer(
                            session,
                            ctx,
                            GatewayError::Unavailable("the object store's credentials"),
                        )
                        .await;
                }
                ctx.asset = Some(asset);
                Ok(false)
            }
            Some(ObjectStore::Fs(_)) => {
                let outcome = self
                    .assets
                    .serve_file(session, &mut asset, &ctx.cors_headers)
                    .await;
                ctx.asset = Some(asset);
                match outcome? {
                    Ok(_) => Ok(true),
                    Err(err) => self.answer(session, ctx, err).await,
                }
            }
            None => self.answer(session, ctx, GatewayError::Internal).await,
        }
    }

    /// An upload route's file API; a file's content is streamed like an asset route's objects.
    async fn upload_route(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Route,
        upload_route: &UploadRoute,
        principal: Option<Arc<Principal>>,
        has_cookie: bool,
    ) -> pingora::Result<bool> {
        let (Some(api), Some(principal)) = (&self.files, principal.as_deref()) else {
            return self
                .answer(session, ctx, GatewayError::Unauthenticated)
                .await;
        };
        let rest = ctx.rest.take().unwrap_or_default();
        let request = FileRequest {
            route_name: &route.name,
            prefix: &route.path,
            route: upload_route,
            principal,
            by_cookie: has_cookie && !ctx.bearer_consumed,
            origin_allowed: !ctx.cors_headers.is_empty(),
            csrf_cookie: self.cookies(session).csrf,
            ip: ctx.client.map(|ip| ip.to_string()),
            body_timeout: self.settings.server.client_timeout,
        };
        match api.handle(session, &rest, request, &self.assets).await {
            Ok(FileOutcome::Done) => Ok(true),
            Ok(FileOutcome::Serve { store, key }) if upload_route.mode == AssetMode::Redirect => {
                let ttl = DEFAULT_FILE_LINK_TTL.min(upload_route.link_ttl);
                match self.assets.link(store, &key, ttl) {
                    Ok((url, _)) => {
                        respond::redirect(session, url).await?;
                        Ok(true)
                    }
                    Err(err) => self.answer(session, ctx, err).await,
                }
            }
            Ok(FileOutcome::Serve { store, key }) => {
                let presentation = Presentation {
                    cache_control: upload_route.cache_control.clone(),
                    inline_types: upload_route.inline_types.clone(),
                };
                self.serve_object(session, ctx, store, key, presentation)
                    .await
            }
            Err(err) => self.answer(session, ctx, err).await,
        }
    }

    /// `/_postern/signed/STORE/KEY?expires=…&signature=…`: no login, the signature is the grant.
    async fn signed_link(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        rest: &str,
    ) -> pingora::Result<bool> {
        if !Self::is_read(session) {
            return self.read_only(session, ctx).await;
        }
        let req = session.req_header();
        match self
            .assets
            .verify_signed(&req.method, rest, req.uri.query())
        {
            Ok((store, key)) => {
                let presentation = Presentation {
                    cache_control: "private".to_string(),
                    inline_types: self.default_inline_types.clone(),
                };
                self.serve_object(session, ctx, store, key, presentation)
                    .await
            }
            Err(err) => self.answer(session, ctx, err).await,
        }
    }

    /// `GET /_postern/assets/url?path=/me/files/a.jpg&expiresIn=300` → `{"url","expires_at"}`,
    /// for the caller as the asset route would admit them.
    async fn asset_url(
        &self,
        session: &mut Session,
        principal: Option<&Principal>,
    ) -> Result<(), GatewayError> {
        let req = session.req_header();
        if !Self::is_read(session) {
            return Err(GatewayError::MethodNotAllowed);
        }
        let query = req.uri.query();
        let path = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "path")
            .map(|(_, v)| v.into_owned())
            .ok_or(GatewayError::Validation {
                field: "path",
                message: "send the asset's path, e.g. ?path=/assets/a.jpg".into(),
            })?;
        let raw_path = path.split(['?', '#']).next().unwrap_or("");
        let normalized = normalize_path(raw_path).map_err(|_| GatewayError::Validation {
            field: "path",
            message: "not a valid absolute path".into(),
        })?;
        let host = headers::request_host(req);
        let route = match self.routes.find(host, &normalized, &http::Method::GET) {
            Match::Found(route) => route,
            _ => return Err(GatewayError::ObjectNotFound),
        };
        let RouteTarget::Assets(asset_route) = &route.target else {
            return Err(GatewayError::Validation {
                field: "path",
                message: "is not on an asset route".into(),
            });
        };
        match policy::decide(&route.access, principal) {
            Decision::Allow => {}
            Decision::Unauthenticated => return Err(GatewayError::Unauthenticated),
            Decision::Forbidden => return Err(GatewayError::Forbidden),
        }
        let key = Assets::key_for(asset_route, route.strip_prefix(&normalized), principal)?;
        let ttl = Assets::expires_in(query, asset_route.link_ttl)?;
        let (url, expires_at) = self.assets.link(asset_route.store, &key, ttl)?;
        let body = serde_json::json!({
            "url": url,
            "expires_at": expires_at,
            "expires_in": ttl.as_secs(),
        });
        respond::json(session, http::StatusCode::OK, &body, &[])
            .await
            .map_err(|_| GatewayError::Internal)
    }

    /// Whether `server.hsts` applies to this request's host (`hsts_hosts`; all when empty).
    fn hsts_for(&self, session: &Session) -> bool {
        let hosts = &self.settings.server.hsts_hosts;
        hosts.is_empty()
            || headers::request_host(session.req_header())
                .map(crate::routing::host_without_port)
                .is_some_and(|host| hosts.iter().any(|pattern| pattern.matches(host)))
    }

    /// postern's cookie names for this request (they follow the scheme with `"auto"`).
    fn cookies(&self, session: &Session) -> crate::config::CookieNames<'_> {
        self.settings.sessions.cookies(secure_request(
            session,
            &self.settings.server.trusted_proxies,
        ))
    }

    fn peer_ip(session: &Session) -> Option<IpAddr> {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }

    fn count_upstream_error(&self, ctx: &RequestCtx, kind: &str) {
        self.metrics
            .upstream_errors
            .with_label_values(&[self.route_label(ctx), kind])
            .inc();
    }
}

/// ACME http-01 challenges are answered over plain HTTP (certificate authorities fetch them there).
const ACME_CHALLENGES: &str = "/.well-known/acme-challenge/";

/// Whether the client reached postern over TLS.
fn is_tls(session: &Session) -> bool {
    session
        .digest()
        .is_some_and(|digest| digest.ssl_digest.is_some())
}

/// A trusted proxy in front terminated TLS and says so (`X-Forwarded-Proto: https`).
fn forwarded_https(session: &Session, trusted: &[ipnet::IpNet]) -> bool {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical());
    headers::is_trusted(peer, trusted)
        && session
            .req_header()
            .headers
            .get(&headers::X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Whether the client's request came over TLS: to postern, or to a trusted proxy that says so.
/// With `sessions.secure_cookies = "auto"`, it decides the cookies' `Secure` flag and names.
pub fn secure_request(session: &Session, trusted: &[ipnet::IpNet]) -> bool {
    is_tls(session) || forwarded_https(session, trusted)
}

/// The `https://` URL of a plain-HTTP request: same host and path, the TLS listener's port.
fn https_location(req: &pingora::http::RequestHeader, port: u16) -> Option<String> {
    let host = headers::request_host(req)?;
    // Only a host name or address may go into the URL (no userinfo, path or spaces).
    if host.is_empty() || host.contains(['/', '@', ' ', '\\', '?', '#']) {
        return None;
    }
    let bare = match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    };
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    Some(format!("https://{bare}{port}{path}"))
}

fn upstream_error_kind(etype: &ErrorType) -> &'static str {
    match etype {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            "timeout"
        }
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::SocketError => "connect",
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => "tls",
        ErrorType::InvalidHTTPHeader
        | ErrorType::H1Error
        | ErrorType::H2Error
        | ErrorType::InvalidH2 => "protocol",
        _ => "other",
    }
}

/// A query without the `sptoken` and `token` parameters of mailed account links.
fn without_link_tokens(query: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !name.eq_ignore_ascii_case("sptoken") && !name.eq_ignore_ascii_case("token")
        })
        .collect();
    kept.join("&")
}

fn path_error(e: PathError) -> GatewayError {
    match e {
        PathError::DotSegment => GatewayError::BadPath("'.' and '..' segments are not allowed"),
        PathError::BadEncoding => GatewayError::BadPath("invalid percent-encoding or NUL byte"),
        PathError::NotAbsolute => GatewayError::BadPath("the path must start with '/'"),
        PathError::Ambiguous(what) => GatewayError::AmbiguousPath(what),
    }
}

/// What a failed proxy attempt means for the client.
fn gateway_error_for(e: &pingora::Error) -> Option<GatewayError> {
    use pingora::ErrorSource;
    match e.etype() {
        ErrorType::HTTPStatus(413) => return Some(GatewayError::PayloadTooLarge { limit: 0 }),
        ErrorType::HTTPStatus(code) if *code >= 400 => {
            return Some(match code {
                400 => GatewayError::BadRequest("the request could not be read"),
                _ => GatewayError::Internal,
            });
        }
        _ => {}
    }
    match e.esource() {
        ErrorSource::Upstream => Some(match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                GatewayError::UpstreamTimeout
            }
            ErrorType::InvalidHTTPHeader
            | ErrorType::H1Error
            | ErrorType::H2Error
            | ErrorType::InvalidH2 => GatewayError::UpstreamProtocol,
            _ => GatewayError::UpstreamUnavailable,
        }),
        ErrorSource::Downstream => match e.etype() {
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => None,
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => None,
            _ => Some(GatewayError::BadRequest("the request could not be read")),
        },
        ErrorSource::Internal | ErrorSource::Unset => Some(GatewayError::Internal),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            route: None,
            upstream_uri: None,
            rest: None,
            asset: None,
            principal: None,
            client: None,
            peer_trusted: false,
            bearer_consumed: false,
            bearer_session: None,
            cors_headers: Vec::new(),
            body: BodyLimit::new(self.settings.server.max_body_size),
            tried_backends: 0,
            attempts: 0,
            current_backend: None,
            failure: None,
            bearer_grant: None,
            watch: None,
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let server = &self.settings.server;
        session.set_keepalive(Some(server.keepalive_timeout.as_secs().max(1)));
        drain::close_if_leaving(session);
        session.set_read_timeout(Some(server.client_timeout));
        session.set_write_timeout(Some(server.client_timeout));
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        if let Some(port) = self.settings.server.https_redirect
            && !is_tls(session)
            && !forwarded_https(session, &self.settings.server.trusted_proxies)
            && !(self.acme_over_http
                && session.req_header().uri.path().starts_with(ACME_CHALLENGES))
        {
            return match https_location(session.req_header(), port) {
                Some(location) => {
                    respond::send(
                        session,
                        http::StatusCode::PERMANENT_REDIRECT,
                        "text/plain; charset=utf-8",
                        Bytes::new(),
                        &[(header::LOCATION, location)],
                    )
                    .await?;
                    Ok(true)
                }
                None => {
                    let err = GatewayError::BadRequest("the request names no host");
                    self.answer(session, ctx, err).await
                }
            };
        }
        if let Err(err) = self.route_request(session, ctx) {
            return self.answer(session, ctx, err).await;
        }
        match self.origin_rules(session, ctx).await {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(err) => return self.answer(session, ctx, err).await,
        }
        let token = headers::cookie_value(session.req_header(), self.cookies(session).session)
            .map(str::to_owned);
        let bearer = headers::bearer_token(session.req_header()).map(str::to_owned);
        // The cookie's session id, hashed once for the check and the watch on the response.
        let session_id = match &bearer {
            None => token.as_deref().and_then(|t| self.sessions.id_of(t)),
            Some(_) => None,
        };
        let principal = match &bearer {
            Some(bearer) => match self.authenticate_bearer(bearer).await {
                Ok((principal, from_session, grant)) => {
                    ctx.bearer_consumed = true;
                    ctx.bearer_session = from_session;
                    ctx.bearer_grant = Some(grant);
                    Some(principal)
                }
                Err(err) => return self.answer(session, ctx, err).await,
            },
            None => match self.authenticate(session_id.as_deref()).await {
                Ok(principal) => principal,
                Err(err) => return self.answer(session, ctx, err).await,
            },
        };
        let Some(route) = self.route(ctx) else {
            return self.answer(session, ctx, GatewayError::Internal).await;
        };
        if let Some(p) = principal.as_deref()
            && self.password_expired(p)
        {
            // An account API's own handlers refuse what a restricted session may not do.
            let open = match route.target {
                RouteTarget::Builtin => ctx
                    .rest
                    .as_deref()
                    .is_some_and(crate::handlers::open_while_expired),
                RouteTarget::AccountApi(_) => true,
                _ => false,
            };
            if !open {
                return self.password_change_required(session, ctx).await;
            }
        }
        match route.target {
            RouteTarget::Builtin => {
                let rest = ctx.rest.take().unwrap_or_default();
                if rest.starts_with("/signed/") {
                    return self.signed_link(session, ctx, &rest).await;
                }
                if rest == "/assets/url" {
                    return match self.asset_url(session, principal.as_deref()).await {
                        Ok(()) => Ok(true),
                        Err(err) => self.answer(session, ctx, err).await,
                    };
                }
                let Some(builtin) = &self.builtin else {
                    return self
                        .answer(session, ctx, GatewayError::UnknownEndpoint)
                        .await;
                };
                let caller = Self::caller(ctx, principal, token);
                return match builtin.handle(session, &rest, caller).await {
                    Ok(()) => Ok(true),
                    Err(err) => self.answer(session, ctx, err).await,
                };
            }
            RouteTarget::AccountApi(ref api) => {
                let rest = ctx.rest.take().unwrap_or_default();
                let Some(builtin) = &self.builtin else {
                    return self
                        .answer(session, ctx, GatewayError::UnknownEndpoint)
                        .await;
                };
                let caller = Self::caller(ctx, principal, token);
                return match builtin.stormpath(session, &rest, caller, api).await {
                    Ok(()) => Ok(true),
                    Err(err) => self.answer(session, ctx, err).await,
                };
            }
            RouteTarget::Assets(_) | RouteTarget::Upstream { .. } | RouteTarget::Uploads(_) => {}
        }
        match policy::decide(&route.access, principal.as_deref()) {
            Decision::Allow => {}
            Decision::Unauthenticated => return self.login_required(session, ctx).await,
            Decision::Forbidden => return self.answer(session, ctx, GatewayError::Forbidden).await,
        }
        if route.cut_on_revoke
            && let Some(p) = principal.as_deref()
        {
            ctx.watch = self.watch(ctx, p, session_id);
        }
        if let RouteTarget::Assets(asset_route) = &route.target {
            return self
                .asset_route(session, ctx, asset_route, principal.as_deref())
                .await;
        }
        if let RouteTarget::Uploads(upload_route) = &route.target {
            return self
                .upload_route(
                    session,
                    ctx,
                    route,
                    upload_route,
                    principal,
                    token.is_some(),
                )
                .await;
        }
        ctx.principal = principal;
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if ctx.watch.as_ref().is_some_and(cut::WatchGuard::is_cut) {
            return Err(pingora::Error::explain(
                ErrorType::ConnectionClosed,
                "the login this request came in on has ended",
            ));
        }
        // After a protocol upgrade (WebSocket) the "body" is the connection's traffic, which the
        // request body limit does not apply to.
        if let Some(chunk) = body
            && !session.was_upgraded()
            && let Err(err) = ctx.body.admit(chunk.len())
        {
            ctx.failure = Some(err);
            return Err(pingora::Error::explain(
                ErrorType::HTTPStatus(413),
                "request body larger than server.max_body_size",
            ));
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let pool = self.pool(ctx).ok_or_else(|| {
            pingora::Error::explain(ErrorType::InternalError, "route has no upstream")
        })?;
        let Some(selected) = pool.select(ctx.tried_backends) else {
            self.count_upstream_error(ctx, "no_backend");
            ctx.failure = Some(GatewayError::UpstreamUnavailable);
            return Err(pingora::Error::explain(
                ErrorType::ConnectNoRoute,
                "no backend of this upstream has a resolved address",
            ));
        };
        ctx.attempts += 1;
        // With one backend, a retry goes to it again; with several, to one not tried yet.
        if selected.backend < 64 && pool.backends.len() > 1 {
            ctx.tried_backends |= 1 << selected.backend;
        }
        ctx.current_backend = Some(selected.backend);

        Ok(Box::new(pool.peer(&selected)))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let (Some(pool), Some(backend)) = (self.pool(ctx), ctx.current_backend) {
            pool.mark_ok(backend);
        }
        // An HTTP/2 upstream connection carries other requests: it is never shut down.
        if let Some(watch) = &ctx.watch
            && peer.options.alpn == pingora::protocols::ALPN::H1
        {
            watch.attach_upstream(fd);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<pingora::Error>,
    ) -> Box<pingora::Error> {
        self.count_upstream_error(ctx, upstream_error_kind(e.etype()));
        let Some(pool) = self.pool(ctx) else {
            return e;
        };
        if let Some(backend) = ctx.current_backend {
            pool.mark_failed(backend);
        }
        // Nothing reached the upstream, so another attempt is safe for any method: on another
        // backend while one is left untried, or on the only one there is.
        let another = pool.backends.len() == 1
            || pool.backends.len() > ctx.tried_backends.count_ones() as usize;
        e.set_retry(ctx.attempts <= pool.settings.retries && another);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(asset) = &ctx.asset {
            *upstream_request = self.assets.s3_request(asset, session.req_header())?;
            return Ok(());
        }
        if let Some(uri) = &ctx.upstream_uri {
            let uri = uri.parse::<http::Uri>().map_err(|e| {
                pingora::Error::because(ErrorType::InternalError, "rewritten URI", e)
            })?;
            upstream_request.set_uri(uri);
        }
        let websocket =
            session.is_upgrade_req() && headers::is_websocket_upgrade(session.req_header());
        headers::strip_hop_by_hop_request(upstream_request, websocket);

        // HTTP/2 requests carry the host as `:authority`, often without `Host`.
        let forwarded = headers::ForwardedFor {
            peer: Self::peer_ip(session),
            client: ctx.client,
            trusted: ctx.peer_trusted,
            scheme: if is_tls(session) { "https" } else { "http" },
            host: headers::request_host(session.req_header()),
        };
        headers::set_forwarded(upstream_request, &forwarded)?;
        headers::strip_cookies(upstream_request, &self.owned_cookies)?;
        if ctx.bearer_consumed {
            upstream_request.remove_header(&header::AUTHORIZATION);
        }
        if let Some(principal) = &ctx.principal {
            headers::set_identity(upstream_request, &self.identity_names, principal)?;
            if let Some(name) = &self.settings.tokens.assertion_header {
                let audience = self.route_label(ctx);
                match self.tokens.assertion(principal, audience) {
                    Ok(assertion) => upstream_request.insert_header(name.clone(), assertion)?,
                    Err(e) => tracing::error!(error = %e, "could not sign the identity assertion"),
                }
            }
        }

        if let (Some(pool), Some(backend)) = (self.pool(ctx), ctx.current_backend)
            && !pool.settings.preserve_host
        {
            let host = pool.backends[backend].host_header.clone().ok_or_else(|| {
                pingora::Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "the backend's address is not a Host value",
                )
            })?;
            upstream_request.insert_header(header::HOST, host)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        // A request that began before a stop or an upgrade still ends its connection.
        drain::close_if_leaving(session);
        // A response without a body ends here: its upstream socket may go back to the pool.
        let no_body = session.req_header().method == http::Method::HEAD
            || matches!(upstream_response.status.as_u16(), 204 | 304)
            || upstream_response
                .headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        if no_body && let Some(watch) = &ctx.watch {
            watch.detach_upstream();
        }
        if let Some(asset) = &mut ctx.asset {
            let html = respond::wants_html(session);
            self.assets
                .s3_response(asset, upstream_response, html, &ctx.cors_headers)?;
        } else {
            headers::strip_hop_by_hop_response(upstream_response);
            for (name, value) in &ctx.cors_headers {
                if *name == "vary" {
                    upstream_response.append_header(*name, value.as_str())?;
                } else {
                    upstream_response.insert_header(*name, value.as_str())?;
                }
            }
        }
        if let Some(hsts) = &self.settings.server.hsts
            && is_tls(session)
            && self.hsts_for(session)
        {
            upstream_response.insert_header(header::STRICT_TRANSPORT_SECURITY, hsts.as_str())?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        if let Some(watch) = &ctx.watch {
            if watch.is_cut() {
                return Err(pingora::Error::explain(
                    ErrorType::ConnectionClosed,
                    "the login this response started under has ended",
                ));
            }
            if end_of_stream {
                watch.detach_upstream();
            }
        }
        if let Some(asset) = &mut ctx.asset {
            self.assets.s3_body(asset, body, end_of_stream);
        }
        Ok(None)
    }

    /// Connections that go away are normal traffic: counted, and logged as a warning at most
    /// once per [`DISCONNECT_LOG_INTERVAL`], instead of Pingora's error line each time.
    fn suppress_error_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        error: &pingora::Error,
    ) -> bool {
        let cut = ctx.watch.as_ref().is_some_and(cut::WatchGuard::is_cut);
        let Some(side) = disconnect_side(error, cut) else {
            return false;
        };
        self.metrics.disconnects.with_label_values(&[side]).inc();
        self.disconnect_log.note(side, error);
        true
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = match ctx.failure.take() {
            Some(err) => Some(err),
            None if ctx.watch.as_ref().is_some_and(cut::WatchGuard::is_cut) => {
                Some(GatewayError::Unauthenticated)
            }
            None => gateway_error_for(e),
        };
        let err = match err {
            Some(GatewayError::UpstreamTimeout) if ctx.asset.is_some() => {
                Some(GatewayError::StoreTimeout)
            }
            Some(GatewayError::UpstreamUnavailable | GatewayError::UpstreamProtocol)
                if ctx.asset.is_some() =>
            {
                Some(GatewayError::StoreUnavailable)
            }
            other => other,
        };
        if let Some(GatewayError::UpstreamTimeout | GatewayError::UpstreamProtocol) = err
            && !matches!(e.etype(), ErrorType::ConnectTimedout)
        {
            self.count_upstream_error(ctx, upstream_error_kind(e.etype()));
        }
        let err = err.map(|err| match err {
            GatewayError::PayloadTooLarge { .. } => GatewayError::PayloadTooLarge {
                limit: self.settings.server.max_body_size,
            },
            other => other,
        });
        let code = match &err {
            Some(err) if session.response_written().is_none() => {
                // Pingora closes the connection after a failed proxy attempt: say so.
                session.set_keepalive(None);
                if let Err(write_err) = respond::error(session, err).await {
                    tracing::debug!(error = %write_err, "could not send the error response");
                }
                err.status().as_u16()
            }
            Some(err) => err.status().as_u16(),
            None => 0,
        };
        ctx.failure = err;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(
        &self,
        session: &mut Session,
        e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        if let Some(watch) = &ctx.watch {
            watch.detach_upstream();
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or_else(|| ctx.failure.as_ref().map(|f| f.status().as_u16()))
            .unwrap_or(0);
        let route = self.route_label(ctx);
        let elapsed = ctx.started.elapsed();
        if let Some(asset) = &ctx.asset {
            self.assets.record(asset, status);
        }
        ctx.route
            .and_then(|i| self.route_metrics.get(i))
            .unwrap_or(&self.unrouted_metrics)
            .observe(status, elapsed.as_secs_f64());
        if self.settings.log.access_log {
            let req = session.req_header();
            tracing::info!(
                target: "postern::access",
                method = %req.method,
                path = %req.uri.path(),
                status,
                route,
                client = ctx.client.map(tracing::field::display),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                error = e.map(|e| e.etype().as_str()),
                "request"
            );
        }
    }
}
