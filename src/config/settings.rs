//! The validated, normalized configuration every other module is built from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Method;
use http::header::HeaderName;
use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub ops: OpsSettings,
    pub log: LogSettings,
    pub identity_headers: IdentityHeaders,
    pub database: DatabaseSettings,
    pub passwords: PasswordSettings,
    pub accounts: crate::accounts::AccountSettings,
    pub mail: crate::mail::MailSettings,
    pub sessions: SessionSettings,
    pub lockout: LockoutSettings,
    pub tokens: TokenSettings,
    pub bootstrap: BootstrapSettings,
    /// Client networks the admin API answers (besides needing the role); empty = any.
    pub admin_allow_from: Vec<IpNet>,
    pub upstreams: Vec<UpstreamSettings>,
    pub stores: Vec<StoreSettings>,
    pub links: LinkSettings,
    pub images: ImageSettings,
    pub routes: Vec<RouteSettings>,
}

/// Image transforms: the worker pool, limits, cache and presets.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    pub workers: usize,
    pub queue: usize,
    pub cache_size: u64,
    /// How long a transformed variant is served without asking the store whether its source
    /// changed.
    pub revalidate: Duration,
    pub max_source_size: u64,
    pub max_source_pixels: u64,
    pub bounds: crate::images::params::Bounds,
    pub presets: std::collections::BTreeMap<String, crate::images::params::Transform>,
    /// Transformed images shared through a store, so that N instances render each once.
    pub shared: Option<SharedVariantSettings>,
}

#[derive(Debug, Clone)]
pub struct SharedVariantSettings {
    /// The store's index in `Settings::stores`.
    pub store: usize,
    /// Key prefix, ending in `/`.
    pub prefix: String,
    /// The most bytes kept; the least recently used go first.
    pub max_size: u64,
}

impl Settings {
    pub fn summary(&self) -> String {
        let tls: Vec<String> = self
            .server
            .tls
            .iter()
            .map(|t| t.listen.to_string())
            .collect();
        format!(
            "{} route(s), {} upstream(s), {} store(s); listening on {}{}, ops on {}",
            self.routes.len(),
            self.upstreams.len(),
            self.stores.len(),
            self.server.listen,
            if tls.is_empty() {
                String::new()
            } else {
                format!(" and TLS on {}", tls.join(", "))
            },
            self.ops.listen
        )
    }
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub threads: usize,
    /// One work-stealing Tokio runtime for all worker threads, instead of one runtime per
    /// thread (per-thread measured less CPU per request on the proxy path).
    pub work_stealing: bool,
    pub data_dir: PathBuf,
    pub pid_file: PathBuf,
    pub upgrade_sock: PathBuf,
    pub error_log: Option<PathBuf>,
    pub trusted_proxies: Vec<IpNet>,
    pub max_body_size: u64,
    pub client_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub keepalive_requests: u32,
    pub shutdown_grace_period: Duration,
    pub shutdown_timeout: Duration,
    pub tls: Vec<crate::tls::TlsListener>,
    /// Plain-HTTP requests get a 308 to `https://` on this port (the first TLS listener's).
    pub https_redirect: Option<u16>,
    /// `Strict-Transport-Security` on proxied answers over TLS.
    pub hsts: Option<String>,
    /// Only for these hosts; all when empty.
    pub hsts_hosts: Vec<HostPattern>,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite:///absolute/path.db` or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// Other postern instances may use this database (PostgreSQL unless told otherwise):
    /// keys must be shared, and revocations are broadcast.
    pub shared: bool,
}

#[derive(Debug, Clone)]
pub struct PasswordSettings {
    pub hash: crate::auth::HashParams,
    pub policy: crate::accounts::PasswordPolicy,
}

/// What `serve` does on a database where nobody holds the role `admin`.
#[derive(Clone)]
pub struct BootstrapSettings {
    /// Create user `admin` with role `admin`.
    pub admin: bool,
    /// Its password; a random one, logged once, when `None`.
    pub admin_password: Option<String>,
}

impl std::fmt::Debug for BootstrapSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapSettings")
            .field("admin", &self.admin)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlgorithm {
    Hs256,
    EdDsa,
    Rs256,
}

#[derive(Clone)]
pub struct TokenSettings {
    pub algorithm: TokenAlgorithm,
    /// HS256 key; random per process when the config gives none.
    pub secret: Vec<u8>,
    pub secret_is_random: bool,
    pub private_key_pem: Vec<u8>,
    pub public_key_pem: Vec<u8>,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    pub leeway: Duration,
    /// Header carrying a signed assertion of the identity to the app; off when `None`.
    pub assertion_header: Option<HeaderName>,
    pub assertion_ttl: Duration,
    /// HS256 key for assertions: never the access-token key, which the app must not hold.
    pub assertion_secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .field("assertion_header", &self.assertion_header)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct LockoutSettings {
    /// Failed logins for one user within `window` that lock it for `lock_for`.
    pub max_failures: u32,
    pub window: Duration,
    pub lock_for: Duration,
    /// Failed logins from one address within `window` that block it for `lock_for`.
    pub ip_max_failures: u32,
    pub login_rate_per_minute: u32,
}

/// Whether postern's cookies are `Secure` (and `__Host-` prefixed by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSecurity {
    Always,
    Never,
    /// Secure on requests that came over TLS (to postern, or to a trusted proxy that says so).
    Auto,
}

/// The cookie names and flag for one request.
#[derive(Debug, Clone, Copy)]
pub struct CookieNames<'a> {
    pub session: &'a str,
    pub csrf: &'a str,
    pub secure: bool,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The session cookie over secure requests (or always, with `Always`).
    pub cookie_name: String,
    /// The login form's double-submit cookie: `__Host-` prefixed when cookies are secure.
    pub csrf_cookie_name: String,
    /// The names over plain HTTP with `Auto` (`Never`: the only names).
    pub plain_cookie_name: String,
    pub plain_csrf_cookie_name: String,
    pub cookie_security: CookieSecurity,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub cache_ttl: Duration,
    pub touch_interval: Duration,
    /// How often running responses re-check their session or token (`cut_on_revoke`).
    pub recheck_interval: Duration,
    /// Hosts (lower case) that `return_to` may point at besides same-site paths.
    pub return_to_hosts: Vec<String>,
}

impl SessionSettings {
    /// The cookies of a request that did (`secure_request`) or did not come over TLS.
    pub fn cookies(&self, secure_request: bool) -> CookieNames<'_> {
        let secure = match self.cookie_security {
            CookieSecurity::Always => true,
            CookieSecurity::Never => false,
            CookieSecurity::Auto => secure_request,
        };
        if secure {
            CookieNames {
                session: &self.cookie_name,
                csrf: &self.csrf_cookie_name,
                secure,
            }
        } else {
            CookieNames {
                session: &self.plain_cookie_name,
                csrf: &self.plain_csrf_cookie_name,
                secure,
            }
        }
    }

    /// Every name postern's cookies may have (removed from what the app receives).
    pub fn all_cookie_names(&self) -> Vec<String> {
        let mut names = vec![
            self.cookie_name.clone(),
            self.csrf_cookie_name.clone(),
            self.plain_cookie_name.clone(),
            self.plain_csrf_cookie_name.clone(),
        ];
        names.sort();
        names.dedup();
        names
    }
}

#[derive(Debug, Clone)]
pub struct OpsSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

/// Header names carrying the verified identity to the upstream app.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user_id: HeaderName,
    pub user: HeaderName,
    pub email: HeaderName,
    pub roles: HeaderName,
}

impl IdentityHeaders {
    pub fn all(&self) -> [&HeaderName; 4] {
        [&self.user_id, &self.user, &self.email, &self.roles]
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    pub backends: Vec<BackendAddress>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_verify: bool,
    pub sni: Option<String>,
    pub preserve_host: bool,
    pub retries: usize,
    pub fail_timeout: Duration,
    pub resolve_interval: Duration,
}

/// A backend as configured: `http(s)://host:port`, resolved later, off the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAddress {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BackendAddress {
    pub fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}", self.port)
    }
}

#[derive(Debug, Clone)]
pub enum StoreSettings {
    Filesystem { name: String, root: PathBuf },
    S3(S3Settings),
}

impl StoreSettings {
    pub fn name(&self) -> &str {
        match self {
            Self::Filesystem { name, .. } => name,
            Self::S3(s3) => &s3.name,
        }
    }
}

/// What a client sees when the object store refuses postern's request (403 from S3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeniedAs {
    Forbidden,
    NotFound,
}

#[derive(Clone)]
pub enum S3Credentials {
    /// Keys from the config (which only takes them through `${ENV}`).
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// The standard chain: environment, shared files and profiles, web identity, ECS, IMDSv2.
    Chain { profile: Option<String> },
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .finish_non_exhaustive(),
            Self::Chain { profile } => f.debug_struct("Chain").field("profile", profile).finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub name: String,
    pub bucket: String,
    pub region: String,
    /// Where requests go: the regional AWS endpoint, or the configured S3-compatible one
    /// (with the bucket as a subdomain in virtual-host addressing).
    pub endpoint: BackendAddress,
    /// `true`: `https://bucket.host/key`; `false` (path style): `https://host/bucket/key`.
    pub virtual_host: bool,
    pub credentials: S3Credentials,
    pub access_denied: DeniedAs,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub tls_verify: bool,
    pub resolve_interval: Duration,
}

/// Keys for postern-signed links: the first signs, all verify.
#[derive(Clone)]
pub struct LinkSettings {
    pub keys: Vec<Vec<u8>>,
    pub keys_are_random: bool,
}

impl std::fmt::Debug for LinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSettings")
            .field("keys", &self.keys.len())
            .field("keys_are_random", &self.keys_are_random)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`: stored as `.example.com`, matches any subdomain (not the apex).
    Suffix(String),
}

impl HostPattern {
    /// Whether `host` (without a port) is this one, in any letter case.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(exact) => host.eq_ignore_ascii_case(exact),
            Self::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleMatch {
    Any,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Public,
    Authenticated,
    Roles {
        roles: Vec<String>,
        require: RoleMatch,
    },
}

#[derive(Debug, Clone)]
pub enum RouteTarget {
    Upstream {
        upstream: usize,
        strip_prefix: bool,
    },
    Builtin,
    Assets(AssetRoute),
    /// A Stormpath-flavoured account API: only its endpoints' paths match the route, and a
    /// browser opening one of them is passed on to the next route (the single-page app).
    AccountApi(AccountApi),
    /// Takes uploads and serves the file API (`crate::files`).
    Uploads(Box<crate::files::UploadRoute>),
}

/// The paths (below the route's prefix) an account API serves.
pub const ACCOUNT_API_ENDPOINTS: &[&str] = &[
    "login",
    "logout",
    "me",
    "register",
    "verify",
    "forgot",
    "change",
    "oauth/token",
    "oauth/revoke",
];

#[derive(Debug, Clone)]
pub struct AccountApi {
    /// Where `href`s in account JSON start, without a trailing slash (may be empty: relative).
    pub href_base: String,
    /// Custom-data keys users may not write through `POST /me` or at registration.
    pub protected_custom_data: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetMode {
    /// postern fetches the object and streams it to the client.
    Stream,
    /// postern answers 302 to an expiring presigned (S3) or postern-signed (filesystem) URL.
    Redirect,
}

/// The longest a presigned URL may live (SigV4's limit).
pub const MAX_LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct AssetRoute {
    pub store: usize,
    /// The object key: `{path}` (the rest of the request path), `{user_id}`, `{username}`.
    pub key_template: String,
    pub mode: AssetMode,
    /// How long redirect URLs and links made for this route stay valid (and the most
    /// `?expiresIn=` may ask for).
    pub link_ttl: Duration,
    pub cache_control: String,
    /// Image transforms on this route, and which parameters they take; off when `None`.
    pub images: Option<crate::images::params::Policy>,
    /// Content types shown inline; everything else is sent as an attachment.
    pub inline_types: std::sync::Arc<crate::objects::InlineTypes>,
}

#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub name: String,
    pub host: Option<HostPattern>,
    pub path: String,
    pub methods: Option<Vec<Method>>,
    pub access: Access,
    /// Never redirect to the login page: a missing login is always 401.
    pub api: bool,
    pub referer: Option<crate::policy::RefererRule>,
    pub cors: Option<crate::policy::CorsRule>,
    pub target: RouteTarget,
    /// Refuse path spellings that servers read differently (`routing::check_unambiguous`).
    pub strict_paths: bool,
    /// Match the path prefix in any letter case (for apps on case-insensitive servers).
    pub case_insensitive: bool,
    /// A response still running when its session or bearer token ends is closed.
    pub cut_on_revoke: bool,
}
