//! Semantic validation: turns the file model into [`Settings`], collecting every problem.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use http::header::HeaderName;
use ipnet::IpNet;

use super::Problem;
use super::file::{CorsSection, FileConfig, RouteSection, StoreSection, UpstreamSection};
use super::settings::*;
use super::units::{SizeValue, parse_duration};
use crate::policy::{CorsOrigins, CorsRule, OriginPattern, RefererRule};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:9090";
const DEFAULT_DATA_DIR: &str = "./data";
/// The most retries an upstream may make per request.
const MAX_RETRIES: usize = 10;

pub(super) struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    pub(super) fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(text) => parse_duration(text).unwrap_or_else(|e| {
                self.report(path, e);
                default
            }),
        }
    }

    pub(super) fn size(&mut self, path: &str, value: Option<&SizeValue>, default: u64) -> u64 {
        match value {
            None => default,
            Some(v) => v.to_bytes().unwrap_or_else(|e| {
                self.report(path, e);
                default
            }),
        }
    }

    /// Each item of the list at `path` parsed by `parse`; the ones that fail are reported as
    /// `path[i]` and left out.
    pub(super) fn each<T, E: Into<String>>(
        &mut self,
        path: &str,
        items: &[String],
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Vec<T> {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                parse(item)
                    .map_err(|e| self.report(format!("{path}[{i}]"), e))
                    .ok()
            })
            .collect()
    }

    fn socket_addr(&mut self, path: &str, value: Option<&String>, default: &str) -> SocketAddr {
        let text = value.map(String::as_str).unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.report(
                path,
                format!(
                    "{text:?} is not an IP:port address (e.g. \"127.0.0.1:8080\", \"[::]:8080\")"
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn header_name(&mut self, path: &str, value: Option<&String>, default: &str) -> HeaderName {
        let text = value.map(String::as_str).unwrap_or(default);
        HeaderName::from_bytes(text.as_bytes()).unwrap_or_else(|_| {
            self.report(path, format!("{text:?} is not a valid header name"));
            HeaderName::from_static("x-invalid")
        })
    }
}

pub fn validate(file: FileConfig) -> Result<Settings, Vec<Problem>> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let server = server_settings(&mut c, &file);
    let ops = OpsSettings {
        listen: c.socket_addr("ops.listen", file.ops.listen.as_ref(), DEFAULT_OPS_LISTEN),
    };
    let log = log_settings(&mut c, &file);
    let h = &file.identity_headers;
    let identity_headers = IdentityHeaders {
        user_id: c.header_name(
            "identity_headers.user_id",
            h.user_id.as_ref(),
            "x-postern-user-id",
        ),
        user: c.header_name("identity_headers.user", h.user.as_ref(), "x-postern-user"),
        email: c.header_name(
            "identity_headers.email",
            h.email.as_ref(),
            "x-postern-email",
        ),
        roles: c.header_name(
            "identity_headers.roles",
            h.roles.as_ref(),
            "x-postern-roles",
        ),
    };

    let database = database_settings(&mut c, &file, &server.data_dir);
    let passwords = password_settings(&mut c, &file);
    let accounts = super::accounts::account_settings(&mut c, &file.accounts);
    let mail = super::accounts::mail_settings(&mut c, &file.mail, &server.data_dir);
    super::accounts::cross_check(&mut c, &accounts, &mail);
    let sessions = session_settings(&mut c, &file);
    let lockout = lockout_settings(&mut c, &file);
    let tokens = token_settings(&mut c, &file);
    let admin_allow_from = c.each("admin.allow_from", &file.admin.allow_from, parse_cidr);
    let bootstrap = BootstrapSettings {
        admin: file.bootstrap.admin.unwrap_or(true),
        admin_password: file
            .bootstrap
            .admin_password
            .clone()
            .filter(|p| !p.is_empty()),
    };
    if let Some(pw) = &bootstrap.admin_password
        && pw.chars().count() < passwords.policy.min_length
    {
        c.report(
            "bootstrap.admin_password",
            format!(
                "must be at least passwords.min_length ({}) characters",
                passwords.policy.min_length
            ),
        );
    }
    let upstreams: Vec<UpstreamSettings> = file
        .upstreams
        .iter()
        .map(|(name, section)| upstream_settings(&mut c, name, section))
        .collect();
    let stores: Vec<StoreSettings> = file
        .stores
        .iter()
        .filter_map(|(name, section)| store_settings(&mut c, name, section, &server.data_dir))
        .collect();

    if file.routes.is_empty() {
        c.report("routes", "at least one route is required");
    }
    let links = link_settings(&mut c, &file);
    if database.shared {
        shared_keys_are_set(&mut c, &tokens, &links);
    }
    let mut images = image_settings(&mut c, &file, server.threads);
    images.shared = shared_variant_settings(&mut c, &file, &stores);
    if let Some(shared) = &images.shared {
        shared_variants_apart_from_uploads(
            &mut c,
            shared,
            &routes_for_shared_check(&file, &stores),
        );
    }
    if images.shared.is_some() && links.keys_are_random {
        c.report(
            "images.shared_store",
            "needs links.keys: shared variants are named under the first link key, which must outlive the process (and be the same on every instance)",
        );
    }
    let mut names = HashSet::new();
    for (i, section) in file.routes.iter().enumerate() {
        let name = route_name(i, section);
        if !names.insert(name.clone()) {
            c.report(
                format!("routes[{i}].name"),
                format!("route name {name:?} is used twice"),
            );
        }
    }
    let routes: Vec<RouteSettings> = file
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, section)| route_settings(&mut c, i, section, &upstreams, &stores))
        .collect();
    let routes = account_api_checks(&mut c, routes, &accounts);
    if routes.len() == file.routes.len() {
        super::tls::hosts_have_certificates(&mut c, &server.tls, &routes);
        unreachable_upload_routes(&mut c, &routes);
        super::uploads::across_routes(&mut c, &routes, &images);
    }
    if c.problems.is_empty() {
        Ok(Settings {
            server,
            ops,
            log,
            identity_headers,
            database,
            passwords,
            accounts,
            mail,
            sessions,
            lockout,
            tokens,
            bootstrap,
            admin_allow_from,
            upstreams,
            stores,
            links,
            images,
            routes,
        })
    } else {
        Err(c.problems)
    }
}

/// An account API needs the built-in endpoints (its pages, and the links its mail refers to);
/// a relative `href_base` is made absolute with `accounts.public_url` when there is one.
fn account_api_checks(
    c: &mut Checker,
    mut routes: Vec<RouteSettings>,
    accounts: &crate::accounts::AccountSettings,
) -> Vec<RouteSettings> {
    let has_builtin = routes
        .iter()
        .any(|r| matches!(r.target, RouteTarget::Builtin));
    for (i, route) in routes.iter_mut().enumerate() {
        if let RouteTarget::AccountApi(api) = &mut route.target {
            if !has_builtin {
                c.report(
                    format!("routes[{i}].kind"),
                    "\"account-api\" needs a route of kind \"builtin\" as well",
                );
            }
            if let Some(base) = &accounts.public_url
                && api.href_base.starts_with('/')
            {
                api.href_base = format!("{base}{}", api.href_base);
            }
        }
    }
    routes
}

pub(super) fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut out = base;
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn server_settings(c: &mut Checker, file: &FileConfig) -> ServerSettings {
    let s = &file.server;
    let listen = c.socket_addr("server.listen", s.listen.as_ref(), DEFAULT_LISTEN);
    let threads = match s.threads {
        Some(0) => {
            c.report(
                "server.threads",
                "must be at least 1 (leave it out for one per core)",
            );
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let data_dir_text = s
        .data_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    if data_dir_text.is_empty() {
        c.report("server.data_dir", "must not be empty");
    }
    let data_dir = absolute(Path::new(&data_dir_text));
    let in_data_dir = |value: &Option<String>, file_name: &str| {
        value
            .as_ref()
            .map(|p| absolute(Path::new(p)))
            .unwrap_or_else(|| data_dir.join(file_name))
    };
    let pid_file = in_data_dir(&s.pid_file, "postern.pid");
    let upgrade_sock = in_data_dir(&s.upgrade_sock, "postern-upgrade.sock");
    let error_log = s.error_log.as_ref().map(|p| absolute(Path::new(p)));

    let trusted_proxies = c.each("server.trusted_proxies", &s.trusted_proxies, parse_cidr);

    let max_body_size = c.size("server.max_body_size", s.max_body_size.as_ref(), 10 << 20);
    let client_timeout = c.duration("server.client_timeout", s.client_timeout.as_ref(), secs(60));
    let keepalive_timeout = c.duration(
        "server.keepalive_timeout",
        s.keepalive_timeout.as_ref(),
        secs(75),
    );
    let keepalive_requests = s.keepalive_requests.unwrap_or(1000);
    if keepalive_requests == 0 {
        c.report("server.keepalive_requests", "must be at least 1");
    }
    let shutdown_grace_period = c.duration(
        "server.shutdown_grace_period",
        s.shutdown_grace_period.as_ref(),
        secs(10),
    );
    let shutdown_timeout = c.duration(
        "server.shutdown_timeout",
        s.shutdown_timeout.as_ref(),
        secs(30),
    );

    let tls = super::tls::tls_listeners(c, &s.tls);
    if tls
        .iter()
        .any(|l| l.client_auth == crate::tls::ClientAuth::Required)
        && !s.https_redirect.unwrap_or(false)
    {
        c.report(
            "server.https_redirect",
            "must be true with client certificates: the plain listener would serve every route without one",
        );
    }
    let https_redirect = match (s.https_redirect.unwrap_or(false), tls.first()) {
        (false, _) => None,
        (true, Some(first)) => Some(first.listen.port()),
        (true, None) => {
            c.report(
                "server.https_redirect",
                "needs a [[server.tls]] listener to send clients to",
            );
            None
        }
    };
    if let Some(hsts) = &s.hsts {
        if http::HeaderValue::from_str(hsts).is_err() || !hsts.contains("max-age=") {
            c.report(
                "server.hsts",
                "a Strict-Transport-Security value, e.g. \"max-age=31536000; includeSubDomains\"",
            );
        }
        if tls.is_empty() {
            c.report(
                "server.hsts",
                "is sent over TLS only: add a [[server.tls]] listener",
            );
        }
    }

    let hsts_hosts = c.each("server.hsts_hosts", &s.hsts_hosts, parse_host_pattern);
    if !hsts_hosts.is_empty() && s.hsts.is_none() {
        c.report("server.hsts_hosts", "needs server.hsts, the header to send");
    }

    ServerSettings {
        tls,
        https_redirect,
        hsts: s.hsts.clone(),
        hsts_hosts,
        listen,
        threads,
        work_stealing: s.work_stealing.unwrap_or(false),
        data_dir,
        pid_file,
        upgrade_sock,
        error_log,
        trusted_proxies,
        max_body_size,
        client_timeout,
        keepalive_timeout,
        keepalive_requests,
        shutdown_grace_period,
        shutdown_timeout,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not an IP address or CIDR (e.g. \"10.0.0.0/8\")"))
}

/// Instances on one database must accept each other's tokens and links: a key made at random
/// per process would not be.
fn shared_keys_are_set(c: &mut Checker, tokens: &TokenSettings, links: &LinkSettings) {
    const WHY: &str =
        "several instances share this database (PostgreSQL) and must accept each other's";
    if tokens.secret_is_random && tokens.algorithm == TokenAlgorithm::Hs256 {
        c.report(
            "tokens.secret",
            format!("set it (the same on every instance, at least 32 bytes): {WHY} bearer tokens (or set database.instances = \"one\")"),
        );
    }
    if links.keys_are_random {
        c.report(
            "links.keys",
            format!("set at least one (the same on every instance, at least 32 bytes): {WHY} signed links (or set database.instances = \"one\")"),
        );
    }
}

fn database_settings(c: &mut Checker, file: &FileConfig, data_dir: &Path) -> DatabaseSettings {
    let d = &file.database;
    let default_url = format!("sqlite://{}", data_dir.join("postern.db").display());
    let url = match d.url.as_deref() {
        None | Some("") => default_url,
        Some(url) if url.starts_with("sqlite:") => absolute_sqlite_url(url),
        Some(url) if crate::store::backend_of(url).is_some() => url.to_string(),
        Some(url) => {
            c.report(
                "database.url",
                format!("{url:?} is not a sqlite: or postgres:// URL"),
            );
            default_url
        }
    };
    let max_connections = d.max_connections.unwrap_or(10);
    if max_connections == 0 {
        c.report("database.max_connections", "must be at least 1");
    }
    let postgres = crate::store::backend_of(&url) == Some(crate::store::Backend::Postgres);
    let shared = match d.instances.as_deref() {
        None | Some("") => postgres,
        Some("one") => false,
        Some("several") if postgres => true,
        Some("several") => {
            c.report(
                "database.instances",
                "\"several\" needs PostgreSQL: a SQLite file serves one instance",
            );
            false
        }
        Some(other) => {
            c.report(
                "database.instances",
                format!("{other:?} is not \"one\" or \"several\""),
            );
            false
        }
    };
    DatabaseSettings {
        url,
        max_connections,
        shared,
    }
}

/// `sqlite:data/x.db` and `sqlite://./x.db` are relative to where the config is loaded; the
/// daemon changes directory, so the path is made absolute now.
fn absolute_sqlite_url(url: &str) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" {
        return url.to_string();
    }
    let path = absolute(Path::new(path));
    match query {
        Some(query) => format!("sqlite://{}?{query}", path.display()),
        None => format!("sqlite://{}", path.display()),
    }
}

fn token_settings(c: &mut Checker, file: &FileConfig) -> TokenSettings {
    let t = &file.tokens;
    let algorithm = match t.algorithm.as_deref().unwrap_or("HS256") {
        "HS256" => TokenAlgorithm::Hs256,
        "EdDSA" => TokenAlgorithm::EdDsa,
        "RS256" => TokenAlgorithm::Rs256,
        other => {
            c.report(
                "tokens.algorithm",
                format!("{other:?} is not one of \"HS256\", \"EdDSA\", \"RS256\""),
            );
            TokenAlgorithm::Hs256
        }
    };
    let secret_text = t.secret.clone().filter(|s| !s.is_empty());
    let (secret, secret_is_random) = match (&secret_text, algorithm) {
        (Some(secret), TokenAlgorithm::Hs256) => {
            if secret.len() < 32 {
                c.report("tokens.secret", "must be at least 32 bytes long");
            }
            (secret.clone().into_bytes(), false)
        }
        (Some(_), _) => {
            c.report(
                "tokens.secret",
                "only used with algorithm \"HS256\"; use private_key_file and public_key_file",
            );
            (Vec::new(), false)
        }
        (None, _) => {
            use rand::RngCore;
            let mut bytes = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            (bytes, true)
        }
    };
    let read_key = |c: &mut Checker, key: &str, path: &Option<String>| -> Vec<u8> {
        match (algorithm, path) {
            (TokenAlgorithm::Hs256, Some(_)) => {
                c.report(
                    format!("tokens.{key}"),
                    "only used with algorithm \"EdDSA\" or \"RS256\"",
                );
                Vec::new()
            }
            (TokenAlgorithm::Hs256, None) => Vec::new(),
            (_, None) => {
                c.report(
                    format!("tokens.{key}"),
                    "required for this algorithm (a PEM file)",
                );
                Vec::new()
            }
            (_, Some(path)) => std::fs::read(path).unwrap_or_else(|e| {
                c.report(format!("tokens.{key}"), format!("cannot read {path}: {e}"));
                Vec::new()
            }),
        }
    };
    let private_key_pem = read_key(c, "private_key_file", &t.private_key_file);
    let public_key_pem = read_key(c, "public_key_file", &t.public_key_file);
    let assertion_header = t
        .assertion_header
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(|h| c.header_name("tokens.assertion_header", Some(&h.to_string()), h));
    let assertion_secret_text = t.assertion_secret.clone().filter(|s| !s.is_empty());
    let assertion_secret = match (&assertion_secret_text, algorithm, &assertion_header) {
        (Some(_), TokenAlgorithm::EdDsa | TokenAlgorithm::Rs256, _) => {
            c.report(
                "tokens.assertion_secret",
                "only used with algorithm \"HS256\" (asymmetric assertions use the key pair)",
            );
            Vec::new()
        }
        (Some(key), TokenAlgorithm::Hs256, _) => {
            if key.len() < 32 {
                c.report("tokens.assertion_secret", "must be at least 32 bytes long");
            }
            if secret_text.as_deref() == Some(key.as_str()) {
                c.report(
                    "tokens.assertion_secret",
                    "must differ from tokens.secret: the app holds it and could mint access tokens",
                );
            }
            key.clone().into_bytes()
        }
        (None, TokenAlgorithm::Hs256, Some(_)) => {
            c.report(
                "tokens.assertion_secret",
                "required with assertion_header and HS256: the key the app verifies assertions with (at least 32 bytes, not tokens.secret)",
            );
            Vec::new()
        }
        (None, _, _) => Vec::new(),
    };
    let audience = t.audience.clone().unwrap_or_else(|| "postern".into());
    if audience.starts_with(crate::auth::ASSERTION_AUDIENCE_PREFIX) {
        c.report(
            "tokens.audience",
            format!(
                "must not start with {:?}, which names the audience of identity assertions",
                crate::auth::ASSERTION_AUDIENCE_PREFIX
            ),
        );
    }
    TokenSettings {
        algorithm,
        secret,
        secret_is_random,
        private_key_pem,
        public_key_pem,
        issuer: t.issuer.clone().unwrap_or_else(|| "postern".into()),
        audience,
        ttl: c.duration("tokens.ttl", t.ttl.as_ref(), secs(15 * 60)),
        leeway: c.duration("tokens.leeway", t.leeway.as_ref(), secs(30)),
        assertion_header,
        assertion_ttl: c.duration("tokens.assertion_ttl", t.assertion_ttl.as_ref(), secs(60)),
        assertion_secret,
    }
}

fn lockout_settings(c: &mut Checker, file: &FileConfig) -> LockoutSettings {
    let l = &file.lockout;
    let positive = |c: &mut Checker, key: &str, value: Option<u32>, default: u32| {
        let v = value.unwrap_or(default);
        if v == 0 {
            c.report(format!("lockout.{key}"), "must be at least 1");
        }
        v
    };
    LockoutSettings {
        max_failures: positive(c, "max_failures", l.max_failures, 5),
        window: c.duration("lockout.window", l.window.as_ref(), secs(15 * 60)),
        lock_for: c.duration("lockout.lock_for", l.lock_for.as_ref(), secs(15 * 60)),
        ip_max_failures: positive(c, "ip_max_failures", l.ip_max_failures, 20),
        login_rate_per_minute: positive(c, "login_rate_per_minute", l.login_rate_per_minute, 30),
    }
}

fn session_settings(c: &mut Checker, file: &FileConfig) -> SessionSettings {
    let s = &file.sessions;
    let cookie_security = match &s.secure_cookies {
        None | Some(toml::Value::Boolean(true)) => CookieSecurity::Always,
        Some(toml::Value::Boolean(false)) => CookieSecurity::Never,
        Some(toml::Value::String(text)) if text == "auto" => CookieSecurity::Auto,
        Some(other) => {
            c.report(
                "sessions.secure_cookies",
                format!("{other} is not one of true, false, \"auto\""),
            );
            CookieSecurity::Always
        }
    };
    let secure_cookies = cookie_security != CookieSecurity::Never;
    let cookie_name = s.cookie_name.clone().unwrap_or_else(|| {
        if secure_cookies {
            "__Host-postern".to_string()
        } else {
            "postern_session".to_string()
        }
    });
    let plain_cookie_name = match (&s.cookie_name, cookie_security) {
        (_, CookieSecurity::Always) => cookie_name.clone(),
        (Some(name), _) => name.clone(),
        (None, _) => "postern_session".to_string(),
    };
    if cookie_security == CookieSecurity::Auto && s.cookie_name.is_some() {
        c.report(
            "sessions.cookie_name",
            "with secure_cookies = \"auto\" postern names the cookies per scheme (__Host-postern over TLS, postern_session over plain HTTP), so that a cookie set over plain HTTP is never taken over TLS: leave cookie_name out",
        );
    }
    if cookie_name.starts_with("__Host-") && !secure_cookies {
        c.report(
            "sessions.cookie_name",
            "a __Host- cookie must be Secure: rename it or set secure_cookies = true",
        );
    }
    let idle_timeout = c.duration(
        "sessions.idle_timeout",
        s.idle_timeout.as_ref(),
        secs(2 * 3600),
    );
    let absolute_timeout = c.duration(
        "sessions.absolute_timeout",
        s.absolute_timeout.as_ref(),
        secs(12 * 3600),
    );
    if idle_timeout.is_zero() {
        c.report("sessions.idle_timeout", "must be longer than 0");
    }
    if absolute_timeout < idle_timeout {
        c.report(
            "sessions.absolute_timeout",
            "must not be shorter than sessions.idle_timeout",
        );
    }
    let cache_ttl = c.duration("sessions.cache_ttl", s.cache_ttl.as_ref(), secs(5));
    if cache_ttl > secs(60) {
        c.report(
            "sessions.cache_ttl",
            "must be at most 60s: it bounds how long a revoked session keeps working on other instances",
        );
    }
    let touch_interval = c.duration(
        "sessions.touch_interval",
        s.touch_interval.as_ref(),
        secs(60),
    );
    let recheck_interval = c.duration(
        "sessions.recheck_interval",
        s.recheck_interval.as_ref(),
        secs(5),
    );
    if recheck_interval < Duration::from_millis(100) || recheck_interval > secs(300) {
        c.report(
            "sessions.recheck_interval",
            "must be from 100ms to 5m: how long a response may outlive its session",
        );
    }
    let return_to_hosts = s
        .return_to_hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match parse_host_pattern(h) {
            Ok(HostPattern::Exact(host)) => Some(host),
            _ => {
                c.report(
                    format!("sessions.return_to_hosts[{i}]"),
                    format!("{h:?} must be a host name without wildcard or port"),
                );
                None
            }
        })
        .collect();
    let csrf_cookie_name = if secure_cookies {
        "__Host-postern_csrf"
    } else {
        "postern_csrf"
    }
    .to_string();
    let plain_csrf_cookie_name = if cookie_security == CookieSecurity::Always {
        csrf_cookie_name.clone()
    } else {
        "postern_csrf".to_string()
    };
    SessionSettings {
        cookie_name,
        csrf_cookie_name,
        plain_cookie_name,
        plain_csrf_cookie_name,
        cookie_security,
        idle_timeout,
        absolute_timeout,
        cache_ttl,
        touch_interval,
        recheck_interval,
        return_to_hosts,
    }
}

fn password_settings(c: &mut Checker, file: &FileConfig) -> PasswordSettings {
    let p = &file.passwords;
    let defaults = crate::auth::HashParams::default();
    let hash = crate::auth::HashParams {
        memory_kib: p.memory_kib.unwrap_or(defaults.memory_kib),
        iterations: p.iterations.unwrap_or(defaults.iterations),
        parallelism: p.parallelism.unwrap_or(defaults.parallelism),
    };
    if hash.memory_kib < 8 * hash.parallelism.max(1) {
        c.report(
            "passwords.memory_kib",
            "must be at least 8 KiB per lane of parallelism",
        );
    }
    if hash.iterations == 0 {
        c.report("passwords.iterations", "must be at least 1");
    }
    if hash.parallelism == 0 {
        c.report("passwords.parallelism", "must be at least 1");
    }
    let policy = super::accounts::password_policy(c, file);
    PasswordSettings { hash, policy }
}

fn log_settings(c: &mut Checker, file: &FileConfig) -> LogSettings {
    let l = &file.log;
    let level = l.level.clone().unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        c.report(
            "log.level",
            format!("{level:?} is not a log level or filter (e.g. \"info\", \"postern=debug\")"),
        );
    }
    let format = match l.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            c.report(
                "log.format",
                format!("{other:?} is not one of \"text\", \"json\""),
            );
            LogFormat::Text
        }
    };
    LogSettings {
        level,
        format,
        access_log: l.access_log.unwrap_or(true),
    }
}

fn upstream_settings(c: &mut Checker, name: &str, u: &UpstreamSection) -> UpstreamSettings {
    let at = |key: &str| format!("upstreams.{name}.{key}");
    if u.backends.is_empty() {
        c.report(at("backends"), "at least one backend is required");
    }
    let backends = c.each(
        &format!("upstreams.{name}.backends"),
        &u.backends,
        parse_backend,
    );
    if let Some(sni) = &u.sni
        && sni.is_empty()
    {
        c.report(
            at("sni"),
            "must not be empty (leave it out to use the backend host)",
        );
    }
    UpstreamSettings {
        name: name.to_string(),
        backends,
        connect_timeout: c.duration(&at("connect_timeout"), u.connect_timeout.as_ref(), secs(5)),
        read_timeout: c.duration(&at("read_timeout"), u.read_timeout.as_ref(), secs(60)),
        write_timeout: c.duration(&at("write_timeout"), u.write_timeout.as_ref(), secs(60)),
        idle_timeout: c.duration(&at("idle_timeout"), u.idle_timeout.as_ref(), secs(60)),
        tls_verify: u.tls_verify.unwrap_or(true),
        sni: u.sni.clone(),
        preserve_host: u.preserve_host.unwrap_or(true),
        retries: {
            let retries = u.retries.unwrap_or(1);
            if retries > MAX_RETRIES {
                c.report(
                    at("retries"),
                    format!("at most {MAX_RETRIES} (each is another connection attempt within one request)"),
                );
            }
            retries.min(MAX_RETRIES)
        },
        fail_timeout: c.duration(&at("fail_timeout"), u.fail_timeout.as_ref(), secs(10)),
        resolve_interval: c.duration(
            &at("resolve_interval"),
            u.resolve_interval.as_ref(),
            secs(30),
        ),
    }
}

pub(crate) fn parse_backend(url: &str) -> Result<BackendAddress, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{url:?} must be scheme://host[:port] with no path, query or credentials"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?} has an unclosed IPv6 bracket"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| format!("{url:?} has an invalid port"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("{url:?} has text after the IPv6 address")),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (
                host.to_string(),
                port.parse::<u16>()
                    .map_err(|_| format!("{url:?} has an invalid port"))?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() || port == 0 {
        return Err(format!("{url:?} needs a host and a non-zero port"));
    }
    Ok(BackendAddress {
        tls,
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn store_settings(
    c: &mut Checker,
    name: &str,
    s: &StoreSection,
    data_dir: &Path,
) -> Option<StoreSettings> {
    let at = |key: &str| format!("stores.{name}.{key}");
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    {
        c.report(
            format!("stores.{name}"),
            "store names are letters, digits, '-' and '_'",
        );
    }
    match s.kind.as_str() {
        "fs" => {
            for (key, present) in [
                ("bucket", s.bucket.is_some()),
                ("region", s.region.is_some()),
                ("endpoint", s.endpoint.is_some()),
                ("addressing", s.addressing.is_some()),
                ("access_key_id", s.access_key_id.is_some()),
                ("secret_access_key", s.secret_access_key.is_some()),
                ("session_token", s.session_token.is_some()),
                ("profile", s.profile.is_some()),
                ("access_denied", s.access_denied.is_some()),
                ("connect_timeout", s.connect_timeout.is_some()),
                ("read_timeout", s.read_timeout.is_some()),
                ("tls_verify", s.tls_verify.is_some()),
                ("resolve_interval", s.resolve_interval.is_some()),
            ] {
                if present {
                    c.report(at(key), "not allowed on a store of type \"fs\"");
                }
            }
            let root = s
                .root
                .as_ref()
                .map(|r| absolute(Path::new(r)))
                .unwrap_or_else(|| data_dir.join("objects"));
            Some(StoreSettings::Filesystem {
                name: name.to_string(),
                root,
            })
        }
        "s3" => s3_settings(c, name, s).map(StoreSettings::S3),
        other => {
            c.report(
                at("type"),
                format!("{other:?} is not one of \"fs\", \"s3\""),
            );
            None
        }
    }
}

fn s3_settings(c: &mut Checker, name: &str, s: &StoreSection) -> Option<S3Settings> {
    let at = |key: &str| format!("stores.{name}.{key}");
    let before = c.problems.len();
    if s.root.is_some() {
        c.report(at("root"), "not allowed on a store of type \"s3\"");
    }
    let bucket = s.bucket.clone().unwrap_or_default();
    if !valid_bucket_name(&bucket) {
        c.report(
            at("bucket"),
            format!("{bucket:?} is not a bucket name (3-63 characters: a-z, 0-9, '.', '-', '_')"),
        );
    }
    let region = s.region.clone().unwrap_or_default();
    if region.is_empty()
        || !region
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
    {
        c.report(
            at("region"),
            format!("{region:?} is not a region name (e.g. \"eu-west-3\"; S3-compatible services usually take \"us-east-1\")"),
        );
    }
    let virtual_host = match s.addressing.as_deref() {
        None => s.endpoint.is_none(),
        Some("virtual") => true,
        Some("path") => false,
        Some(other) => {
            c.report(
                at("addressing"),
                format!("{other:?} is not one of \"virtual\", \"path\""),
            );
            false
        }
    };
    if virtual_host && bucket.contains('.') {
        c.report(
            at("addressing"),
            "a bucket name with '.' does not work with virtual-host addressing over TLS: use \"path\"",
        );
    }
    let base = match &s.endpoint {
        Some(url) => parse_backend(url)
            .map_err(|e| c.report(at("endpoint"), e))
            .ok(),
        None => Some(BackendAddress {
            tls: true,
            host: format!("s3.{region}.amazonaws.com"),
            port: 443,
        }),
    };
    let endpoint = base.map(|b| BackendAddress {
        host: if virtual_host {
            format!("{bucket}.{}", b.host)
        } else {
            b.host
        },
        ..b
    });
    let credentials = match (&s.access_key_id, &s.secret_access_key) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
            if s.profile.is_some() {
                c.report(at("profile"), "not used when static keys are given");
            }
            S3Credentials::Static {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: s.session_token.clone().filter(|t| !t.is_empty()),
            }
        }
        (Some(id), Some(secret)) if id.is_empty() && secret.is_empty() => S3Credentials::Chain {
            profile: s.profile.clone().filter(|p| !p.is_empty()),
        },
        (None, None) => {
            if s.session_token.is_some() {
                c.report(
                    at("session_token"),
                    "only used with access_key_id and secret_access_key",
                );
            }
            S3Credentials::Chain {
                profile: s.profile.clone().filter(|p| !p.is_empty()),
            }
        }
        _ => {
            c.report(
                at("access_key_id"),
                "access_key_id and secret_access_key go together: set both (or neither, for the standard credential chain)",
            );
            S3Credentials::Chain { profile: None }
        }
    };
    let access_denied = match s.access_denied.as_deref().unwrap_or("forbidden") {
        "forbidden" => DeniedAs::Forbidden,
        "not_found" => DeniedAs::NotFound,
        other => {
            c.report(
                at("access_denied"),
                format!("{other:?} is not one of \"forbidden\" (403), \"not_found\" (404)"),
            );
            DeniedAs::Forbidden
        }
    };
    let connect_timeout = c.duration(&at("connect_timeout"), s.connect_timeout.as_ref(), secs(5));
    let read_timeout = c.duration(&at("read_timeout"), s.read_timeout.as_ref(), secs(30));
    let resolve_interval = c.duration(
        &at("resolve_interval"),
        s.resolve_interval.as_ref(),
        secs(30),
    );
    if c.problems.len() > before {
        return None;
    }
    Some(S3Settings {
        name: name.to_string(),
        bucket,
        region,
        endpoint: endpoint?,
        virtual_host,
        credentials,
        access_denied,
        connect_timeout,
        read_timeout,
        tls_verify: s.tls_verify.unwrap_or(true),
        resolve_interval,
    })
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.chars().all(|ch| {
            ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.' || ch == '-' || ch == '_'
        })
        && name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && name.ends_with(|ch: char| ch.is_ascii_alphanumeric())
}

/// The upload routes' (store, key template) pairs, from the file as written.
fn routes_for_shared_check(file: &FileConfig, stores: &[StoreSettings]) -> Vec<(usize, String)> {
    file.routes
        .iter()
        .filter(|r| r.kind.as_deref() == Some("uploads"))
        .filter_map(|r| {
            let store = stores
                .iter()
                .position(|s| Some(s.name()) == r.store.as_deref())?;
            let template = r
                .key
                .clone()
                .unwrap_or_else(|| crate::files::DEFAULT_KEY_TEMPLATE.to_string());
            Some((store, template))
        })
        .collect()
}

/// Uploads must not be able to write under the shared variants' prefix (they would be served
/// as another instance's render): a template that starts with a placeholder, or whose fixed
/// start overlaps the prefix, is refused on that store.
fn shared_variants_apart_from_uploads(
    c: &mut Checker,
    shared: &SharedVariantSettings,
    uploads: &[(usize, String)],
) {
    for (_, template) in uploads.iter().filter(|(s, _)| *s == shared.store) {
        let head = template.split('{').next().unwrap_or("");
        if head.is_empty() || head.starts_with(&shared.prefix) || shared.prefix.starts_with(head) {
            c.report(
                "images.shared_prefix",
                format!(
                    "upload keys {template:?} on the same store could be written under {:?}: use another prefix or store",
                    shared.prefix
                ),
            );
        }
    }
}

fn shared_variant_settings(
    c: &mut Checker,
    file: &FileConfig,
    stores: &[StoreSettings],
) -> Option<SharedVariantSettings> {
    let s = &file.images;
    let Some(name) = s.shared_store.as_deref().filter(|n| !n.is_empty()) else {
        if s.shared_prefix.is_some() || s.shared_max_size.is_some() {
            c.report(
                "images.shared_store",
                "required with shared_prefix or shared_max_size",
            );
        }
        return None;
    };
    let Some(store) = stores.iter().position(|st| st.name() == name) else {
        c.report(
            "images.shared_store",
            format!("{name:?} is not a store in [stores]"),
        );
        return None;
    };
    let prefix = s
        .shared_prefix
        .clone()
        .unwrap_or_else(|| "postern-variants/".to_string());
    let plain = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if !plain || !prefix.ends_with('/') || prefix.starts_with('/') || prefix.contains("..") {
        c.report(
            "images.shared_prefix",
            "must be a relative key prefix of letters, digits, '.', '_', '-' and '/', ending in '/'",
        );
    }
    let max_size = c.size(
        "images.shared_max_size",
        s.shared_max_size.as_ref(),
        1 << 30,
    );
    if max_size == 0 {
        c.report("images.shared_max_size", "must be more than 0");
    }
    Some(SharedVariantSettings {
        store,
        prefix,
        max_size,
    })
}

fn image_settings(c: &mut Checker, file: &FileConfig, threads: usize) -> ImageSettings {
    use crate::images::params::{self, Bounds, Policy};
    let s = &file.images;
    let positive = |c: &mut Checker, key: &str, value: Option<u32>, default: u32| match value {
        Some(0) => {
            c.report(format!("images.{key}"), "must be at least 1");
            default
        }
        Some(v) => v,
        None => default,
    };
    let quality = match s.quality {
        Some(q) if !(1..=100).contains(&q) => {
            c.report("images.quality", "must be from 1 to 100");
            80
        }
        Some(q) => q,
        None => 80,
    };
    let bounds = Bounds {
        max_width: positive(c, "max_width", s.max_width, 4096),
        max_height: positive(c, "max_height", s.max_height, 4096),
        default_quality: quality,
    };
    let workers = match s.workers {
        Some(0) => {
            c.report("images.workers", "must be at least 1");
            1
        }
        Some(n) => n,
        None => threads.max(1),
    };
    let mut presets = std::collections::BTreeMap::new();
    for (name, p) in &s.presets {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("w", p.w.map(|v| v.to_string())),
            ("h", p.h.map(|v| v.to_string())),
            ("fit", p.fit.clone()),
            ("fmt", p.fmt.clone()),
            ("q", p.q.map(|v| v.to_string())),
        ] {
            if let Some(value) = value {
                query.append_pair(key, &value);
            }
        }
        let query = query.finish();
        match params::parse(Some(&query), Policy::Open, &bounds, &Default::default()) {
            Ok(Some((transform, _))) => {
                presets.insert(name.clone(), transform);
            }
            Ok(None) => c.report(format!("images.presets.{name}"), "sets no parameter"),
            Err(e) => c.report(format!("images.presets.{name}.{}", e.param), e.message),
        }
    }
    ImageSettings {
        workers,
        queue: s.queue.unwrap_or(64),
        cache_size: c.size("images.cache_size", s.cache_size.as_ref(), 256 << 20),
        revalidate: c.duration("images.revalidate", s.revalidate.as_ref(), secs(60)),
        max_source_size: c.size(
            "images.max_source_size",
            s.max_source_size.as_ref(),
            32 << 20,
        ),
        max_source_pixels: match s.max_source_pixels {
            Some(0) => {
                c.report("images.max_source_pixels", "must be at least 1");
                1
            }
            Some(n) => n,
            None => 50_000_000,
        },
        bounds,
        presets,
        shared: None,
    }
}

/// Keys for postern-signed links. Without any, a random key lives as long as the process.
fn link_settings(c: &mut Checker, file: &FileConfig) -> LinkSettings {
    let keys: Vec<Vec<u8>> = file
        .links
        .keys
        .iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .filter_map(|(i, key)| {
            if key.len() < 32 {
                c.report(format!("links.keys[{i}]"), "must be at least 32 bytes long");
                return None;
            }
            Some(key.as_bytes().to_vec())
        })
        .collect();
    if keys.is_empty() {
        let mut random = vec![0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        return LinkSettings {
            keys: vec![random],
            keys_are_random: true,
        };
    }
    LinkSettings {
        keys,
        keys_are_random: false,
    }
}

/// The store a route of `kind` names (required).
fn store_index(
    c: &mut Checker,
    i: usize,
    r: &RouteSection,
    stores: &[StoreSettings],
    kind: &str,
) -> Option<usize> {
    let at = format!("routes[{i}].store");
    match &r.store {
        None => {
            c.report(at, format!("required for kind {kind:?}"));
            None
        }
        Some(s) => {
            let found = stores.iter().position(|x| x.name() == s);
            if found.is_none() {
                c.report(at, format!("no store named {s:?} in [stores]"));
            }
            found
        }
    }
}

/// How a route serves objects: asset routes, and the content of uploaded files.
pub(super) struct ObjectPresentation {
    pub mode: AssetMode,
    pub link_ttl: Duration,
    pub inline_types: crate::objects::InlineTypes,
    pub cache_control: String,
}

/// `mode`, `link_ttl` (default `default_ttl`), `inline_types` and `cache_control` of route `i`.
pub(super) fn object_presentation(
    c: &mut Checker,
    i: usize,
    r: &RouteSection,
    default_ttl: Duration,
) -> ObjectPresentation {
    let at = |key: &str| format!("routes[{i}].{key}");
    let mode = match r.mode.as_deref().unwrap_or("stream") {
        "stream" => AssetMode::Stream,
        "redirect" => AssetMode::Redirect,
        other => {
            c.report(
                at("mode"),
                format!("{other:?} is not one of \"stream\", \"redirect\""),
            );
            AssetMode::Stream
        }
    };
    let link_ttl = c.duration(&at("link_ttl"), r.link_ttl.as_ref(), default_ttl);
    if link_ttl.is_zero() || link_ttl > MAX_LINK_TTL {
        c.report(at("link_ttl"), "must be more than 0 and at most 7 days");
    }
    let inline_types = match &r.inline_types {
        None => crate::objects::InlineTypes::default(),
        Some(list) => crate::objects::InlineTypes::parse(list).unwrap_or_else(|e| {
            c.report(at("inline_types"), e);
            crate::objects::InlineTypes::default()
        }),
    };
    let cache_control = r
        .cache_control
        .clone()
        .unwrap_or_else(|| "private".to_string());
    if http::HeaderValue::from_str(&cache_control).is_err() {
        c.report(at("cache_control"), "is not a valid header value");
    }
    ObjectPresentation {
        mode,
        link_ttl,
        inline_types,
        cache_control,
    }
}

/// An upload route behind an earlier route that takes all of its paths (the default config's
/// `/_postern/files` after the built-in `/_postern/`) would never be reached.
fn unreachable_upload_routes(c: &mut Checker, routes: &[RouteSettings]) {
    let covers = |earlier: &str, path: &str| match earlier.strip_suffix('/') {
        Some(base) => path.starts_with(earlier) || path == base,
        None => path == earlier || path.starts_with(&format!("{earlier}/")),
    };
    for (i, route) in routes.iter().enumerate() {
        if !matches!(route.target, RouteTarget::Uploads(_)) {
            continue;
        }
        let shadow = routes[..i].iter().position(|earlier| {
            earlier.methods.is_none()
                && (earlier.host.is_none() || earlier.host == route.host)
                && covers(&earlier.path, &route.path)
        });
        if let Some(j) = shadow {
            c.report(
                format!("routes[{i}].path"),
                format!(
                    "routes[{j}] ({:?}) comes first and takes every path of this route: move this route before it",
                    routes[j].path
                ),
            );
        }
    }
}

fn route_name(i: usize, r: &RouteSection) -> String {
    r.name.clone().unwrap_or_else(|| format!("route{i}"))
}

fn route_settings(
    c: &mut Checker,
    i: usize,
    r: &RouteSection,
    upstreams: &[UpstreamSettings],
    stores: &[StoreSettings],
) -> Option<RouteSettings> {
    let at = |key: &str| format!("routes[{i}].{key}");
    let problems_before = c.problems.len();

    let name = route_name(i, r);
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.')
    {
        c.report(
            at("name"),
            format!("{name:?} must be letters, digits, '-', '_' or '.'"),
        );
    }
    if name == crate::metrics::NO_ROUTE {
        c.report(
            at("name"),
            format!("{name:?} is reserved for requests that match no route"),
        );
    }
    if !r.path.starts_with('/') {
        c.report(at("path"), format!("{:?} must start with '/'", r.path));
    }
    let host = r.host.as_ref().and_then(|h| match parse_host_pattern(h) {
        Ok(p) => Some(p),
        Err(e) => {
            c.report(at("host"), e);
            None
        }
    });
    let methods = r.methods.as_ref().map(|list| {
        if list.is_empty() {
            c.report(
                at("methods"),
                "must list at least one method (leave it out for all)",
            );
        }
        list.iter()
            .enumerate()
            .filter_map(|(j, m)| {
                let upper = m.to_ascii_uppercase();
                Method::from_bytes(upper.as_bytes())
                    .map_err(|_| {
                        c.report(
                            format!("routes[{i}].methods[{j}]"),
                            format!("{m:?} is not an HTTP method"),
                        )
                    })
                    .ok()
            })
            .collect::<Vec<_>>()
    });
    let access = match &r.access {
        None => Access::Authenticated,
        Some(value) => parse_access(c, &at("access"), value),
    };

    let referer = r.referer.as_ref().map(|section| RefererRule {
        allow: section
            .allow
            .iter()
            .enumerate()
            .filter_map(|(j, p)| {
                OriginPattern::parse(p)
                    .map_err(|e| c.report(format!("routes[{i}].referer.allow[{j}]"), e))
                    .ok()
            })
            .collect(),
        allow_missing: section.allow_missing.unwrap_or(false),
    });
    let cors = r.cors.as_ref().map(|section| cors_rule(c, i, section));

    let kind = r.kind.as_deref().unwrap_or("upstream");
    if kind != "uploads" && r.upload.is_some() {
        c.report(
            at("upload"),
            format!("not allowed on a route of kind {kind:?}"),
        );
    }
    if kind != "account-api" {
        for (key, present) in [
            ("flavor", r.flavor.is_some()),
            ("href_base", r.href_base.is_some()),
            ("protected_custom_data", r.protected_custom_data.is_some()),
        ] {
            if present {
                c.report(at(key), format!("not allowed on a route of kind {kind:?}"));
            }
        }
    }
    let mut forbid = |key: &str, present: bool| {
        if present {
            c.report(at(key), format!("not allowed on a route of kind {kind:?}"));
        }
    };
    let target = match kind {
        "upstream" => {
            forbid("store", r.store.is_some());
            forbid("key", r.key.is_some());
            forbid("mode", r.mode.is_some());
            forbid("link_ttl", r.link_ttl.is_some());
            forbid("cache_control", r.cache_control.is_some());
            forbid("images", r.images.is_some());
            forbid("inline_types", r.inline_types.is_some());
            match &r.upstream {
                None => {
                    c.report(at("upstream"), "required for kind \"upstream\"");
                    None
                }
                Some(u) => match upstreams.iter().position(|x| x.name == *u) {
                    Some(upstream) => Some(RouteTarget::Upstream {
                        upstream,
                        strip_prefix: r.strip_prefix.unwrap_or(false),
                    }),
                    None => {
                        c.report(
                            at("upstream"),
                            format!("no upstream named {u:?} in [upstreams]"),
                        );
                        None
                    }
                },
            }
        }
        "builtin" => {
            forbid("upstream", r.upstream.is_some());
            forbid("store", r.store.is_some());
            forbid("key", r.key.is_some());
            forbid("strip_prefix", r.strip_prefix.is_some());
            forbid("mode", r.mode.is_some());
            forbid("link_ttl", r.link_ttl.is_some());
            forbid("cache_control", r.cache_control.is_some());
            forbid("inline_types", r.inline_types.is_some());
            forbid("strict_paths", r.strict_paths.is_some());
            if r.access.is_some() {
                c.report(
                    at("access"),
                    "built-in endpoints set their own access rules",
                );
            }
            Some(RouteTarget::Builtin)
        }
        "assets" => {
            forbid("upstream", r.upstream.is_some());
            forbid("strip_prefix", r.strip_prefix.is_some());
            forbid("strict_paths", r.strict_paths.is_some());
            let store = store_index(c, i, r, stores, kind);
            let key_template = r.key.clone().unwrap_or_else(|| "{path}".into());
            if let Err(e) = crate::objects::KeyTemplate::check(&key_template) {
                c.report(at("key"), e);
            }
            if key_template.contains("{user") && access == Access::Public {
                c.report(
                    at("key"),
                    "uses the user in the key, so access cannot be \"public\"",
                );
            }
            let ObjectPresentation {
                mode,
                link_ttl,
                inline_types,
                cache_control,
            } = object_presentation(c, i, r, secs(3600));
            let images = match r.images.as_deref().unwrap_or("off") {
                "off" => None,
                "on" => Some(crate::images::params::Policy::Open),
                "presets" => Some(crate::images::params::Policy::PresetsOnly),
                "signed" => Some(crate::images::params::Policy::Signed),
                other => {
                    c.report(
                        at("images"),
                        format!("{other:?} is not one of \"off\", \"on\", \"presets\", \"signed\""),
                    );
                    None
                }
            };
            if images.is_some() && mode == AssetMode::Redirect {
                c.report(at("images"), "transforms need mode = \"stream\"");
            }
            store.map(|store| {
                RouteTarget::Assets(AssetRoute {
                    store,
                    key_template,
                    mode,
                    link_ttl,
                    cache_control,
                    images,
                    inline_types: std::sync::Arc::new(inline_types),
                })
            })
        }
        "uploads" => {
            forbid("upstream", r.upstream.is_some());
            forbid("strip_prefix", r.strip_prefix.is_some());
            forbid("strict_paths", r.strict_paths.is_some());
            forbid("images", r.images.is_some());
            if access == Access::Public {
                c.report(
                    at("access"),
                    "uploads belong to a user, so access cannot be \"public\"",
                );
            }
            let store = store_index(c, i, r, stores, kind);
            super::uploads::upload_route(c, i, r, stores, store)
                .map(|u| RouteTarget::Uploads(Box::new(u)))
        }
        "account-api" => {
            forbid("upstream", r.upstream.is_some());
            forbid("store", r.store.is_some());
            forbid("key", r.key.is_some());
            forbid("strip_prefix", r.strip_prefix.is_some());
            forbid("mode", r.mode.is_some());
            forbid("link_ttl", r.link_ttl.is_some());
            forbid("cache_control", r.cache_control.is_some());
            forbid("images", r.images.is_some());
            forbid("inline_types", r.inline_types.is_some());
            forbid("strict_paths", r.strict_paths.is_some());
            forbid("methods", r.methods.is_some());
            if r.access.is_some() {
                c.report(
                    at("access"),
                    "account API endpoints set their own access rules",
                );
            }
            match r.flavor.as_deref().unwrap_or("stormpath") {
                "stormpath" => {}
                other => c.report(
                    at("flavor"),
                    format!(
                        "{other:?} is not a flavour postern serves (\"stormpath\"; postern's own JSON is kind = \"builtin\")"
                    ),
                ),
            }
            let href_base = r
                .href_base
                .clone()
                .unwrap_or_else(|| r.path.trim_end_matches('/').to_string());
            if href_base.contains(['?', '#', ' ']) {
                c.report(
                    at("href_base"),
                    "must be a URL or path without query or fragment",
                );
            }
            Some(RouteTarget::AccountApi(AccountApi {
                href_base: href_base.trim_end_matches('/').to_string(),
                protected_custom_data: r.protected_custom_data.clone().unwrap_or_default(),
            }))
        }
        other => {
            c.report(
                at("kind"),
                format!(
                    "{other:?} is not one of \"upstream\", \"builtin\", \"assets\", \"uploads\", \"account-api\""
                ),
            );
            None
        }
    };

    if c.problems.len() > problems_before {
        return None;
    }
    Some(RouteSettings {
        name,
        host,
        path: r.path.clone(),
        methods,
        access,
        api: r.api.unwrap_or(false),
        referer,
        cors,
        target: target?,
        strict_paths: r.strict_paths.unwrap_or(true),
        case_insensitive: r.case_insensitive.unwrap_or(false),
        cut_on_revoke: r.cut_on_revoke.unwrap_or(true),
    })
}

fn cors_rule(c: &mut Checker, i: usize, s: &CorsSection) -> CorsRule {
    let at = |key: &str| format!("routes[{i}].cors.{key}");
    let credentials = s.credentials.unwrap_or(false);
    let origins = if s.origins.iter().any(|o| o == "*") {
        if credentials {
            c.report(
                at("origins"),
                "\"*\" cannot be combined with credentials = true; list the origins",
            );
        }
        CorsOrigins::Any
    } else {
        if s.origins.is_empty() {
            c.report(at("origins"), "list at least one origin");
        }
        CorsOrigins::List(
            s.origins
                .iter()
                .enumerate()
                .filter_map(|(j, o)| {
                    OriginPattern::parse(o)
                        .map_err(|e| c.report(format!("routes[{i}].cors.origins[{j}]"), e))
                        .ok()
                })
                .collect(),
        )
    };
    let methods: Vec<String> = s
        .methods
        .clone()
        .unwrap_or_else(|| vec!["GET".into(), "HEAD".into(), "POST".into()])
        .into_iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    for (j, m) in methods.iter().enumerate() {
        if Method::from_bytes(m.as_bytes()).is_err() {
            c.report(
                format!("routes[{i}].cors.methods[{j}]"),
                format!("{m:?} is not an HTTP method"),
            );
        }
    }
    let lower = |list: &Option<Vec<String>>, default: &[&str]| -> Vec<String> {
        list.clone()
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect()
    };
    let headers = lower(&s.headers, &["content-type"]);
    let expose_headers = lower(&s.expose_headers, &[]);
    for (key, list) in [("headers", &headers), ("expose_headers", &expose_headers)] {
        for (j, h) in list.iter().enumerate() {
            if HeaderName::from_bytes(h.as_bytes()).is_err() {
                c.report(
                    format!("routes[{i}].cors.{key}[{j}]"),
                    format!("{h:?} is not a header name"),
                );
            }
        }
    }
    CorsRule {
        origins,
        methods,
        headers,
        expose_headers,
        credentials,
        max_age: c.duration(&at("max_age"), s.max_age.as_ref(), secs(600)),
    }
}

fn parse_host_pattern(h: &str) -> Result<HostPattern, String> {
    let lower = h.to_ascii_lowercase();
    let valid_label = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    if let Some(suffix) = lower.strip_prefix("*.") {
        if valid_label(suffix) {
            return Ok(HostPattern::Suffix(format!(".{suffix}")));
        }
    } else if valid_label(&lower) {
        return Ok(HostPattern::Exact(lower));
    }
    Err(format!(
        "{h:?} must be a host name (\"app.example.com\") or a wildcard (\"*.example.com\"), without port"
    ))
}

fn parse_access(c: &mut Checker, at: &str, value: &toml::Value) -> Access {
    match value {
        toml::Value::String(mode) => match mode.as_str() {
            "public" => Access::Public,
            "authenticated" => Access::Authenticated,
            other => {
                c.report(
                    at,
                    format!(
                        "{other:?} is not \"public\", \"authenticated\" or {{ roles = [...] }}"
                    ),
                );
                Access::Authenticated
            }
        },
        toml::Value::Table(table) => {
            for key in table.keys() {
                if key != "roles" && key != "match" {
                    c.report(
                        format!("{at}.{key}"),
                        "unknown key (expected \"roles\" or \"match\")",
                    );
                }
            }
            let roles: Vec<String> = match table.get("roles") {
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(j, item)| match item {
                        toml::Value::String(role) if !role.trim().is_empty() => Some(role.clone()),
                        _ => {
                            c.report(format!("{at}.roles[{j}]"), "must be a non-empty role name");
                            None
                        }
                    })
                    .collect(),
                Some(_) => {
                    c.report(format!("{at}.roles"), "must be a list of role names");
                    Vec::new()
                }
                None => {
                    c.report(format!("{at}.roles"), "required when access is a table");
                    Vec::new()
                }
            };
            if table
                .get("roles")
                .is_some_and(|r| r.as_array().is_some_and(|a| a.is_empty()))
            {
                c.report(format!("{at}.roles"), "must name at least one role");
            }
            let require = match table.get("match") {
                None => RoleMatch::Any,
                Some(toml::Value::String(m)) if m == "any" => RoleMatch::Any,
                Some(toml::Value::String(m)) if m == "all" => RoleMatch::All,
                Some(_) => {
                    c.report(format!("{at}.match"), "must be \"any\" or \"all\"");
                    RoleMatch::Any
                }
            };
            Access::Roles { roles, require }
        }
        _ => {
            c.report(
                at,
                "must be \"public\", \"authenticated\" or { roles = [...] }",
            );
            Access::Authenticated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_urls() {
        let b = parse_backend("http://127.0.0.1:3000").unwrap();
        assert_eq!((b.tls, b.host.as_str(), b.port), (false, "127.0.0.1", 3000));
        let b = parse_backend("https://API.example.com/").unwrap();
        assert_eq!(
            (b.tls, b.host.as_str(), b.port),
            (true, "api.example.com", 443)
        );
        let b = parse_backend("http://[::1]:8081").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 8081));
        assert_eq!(b.to_string(), "http://[::1]:8081");
        assert!(parse_backend("ftp://x").is_err());
        assert!(parse_backend("http://x/path").is_err());
        assert!(parse_backend("http://x:notaport").is_err());
        assert!(parse_backend("http://user@x").is_err());
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            parse_host_pattern("App.Example.com").unwrap(),
            HostPattern::Exact("app.example.com".into())
        );
        assert_eq!(
            parse_host_pattern("*.example.com").unwrap(),
            HostPattern::Suffix(".example.com".into())
        );
        assert!(parse_host_pattern("example.com:8080").is_err());
        assert!(parse_host_pattern("a.*.com").is_err());
        assert!(parse_host_pattern("").is_err());
    }

    fn problems(text: &str) -> Vec<String> {
        crate::config::parse(text, &|_| None)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn assert_reported(problems: &[String], expected: &[&str]) {
        for e in expected {
            assert!(
                problems.iter().any(|x| x.starts_with(e)),
                "missing {e} in {problems:#?}"
            );
        }
    }

    #[test]
    fn upload_routes_are_checked_key_by_key() {
        let p = problems(
            r#"
            [stores.local]
            type = "fs"
            root = "/tmp/postern-test"
            [stores.bucket]
            type = "s3"
            bucket = "uploads-bucket"
            region = "us-east-1"
            endpoint = "https://s3.internal"
            tls_verify = false
            [[routes]]
            path = "/_postern/"
            kind = "builtin"
            [[routes]]
            path = "/_postern/files"
            kind = "uploads"
            store = "local"
            access = "public"
            key = "users/{user_id}/{name}"
            [routes.upload]
            max_file_size = "0"
            max_files = 0
            allowed_types = ["text/html", "image/*"]
            acl = ["public-read", "world-writable"]
            folders = ["ok", "../up"]
            part_size = "1MiB"
            [routes.upload.variant]
            format = "avif"
            quality = 0
            [[routes]]
            path = "/up2"
            kind = "uploads"
            store = "bucket"
            key = "fixed/name.jpg"
            [[routes]]
            path = "/up3"
            kind = "upstream"
            upload = { max_files = 2 }
            "#,
        );
        assert_reported(
            &p,
            &[
                "routes[1].access: uploads belong to a user",
                "routes[1].key: {name} puts the client's file name",
                "routes[1].upload.max_file_size: must be more than 0",
                "routes[1].upload.max_files: must be 1 to 1000",
                "routes[1].upload.allowed_types[0]: \"text/html\" is not a type",
                "routes[1].upload.acl[1]: \"world-writable\" is not one of",
                "routes[1].upload.acl: a filesystem store has no ACLs",
                "routes[1].upload.folders[1]: a folder is one key segment",
                "routes[1].key: folders are listed, so the key needs {folder}",
                "routes[1].upload.part_size: must be 5MiB to 5GiB",
                "routes[1].upload.variant.format: \"avif\" is not one of",
                "routes[1].upload.variant.quality: must be 1 to 100",
                "routes[2].key: must contain {uuid}",
                "routes[2].store: uploads to store \"bucket\" need tls_verify = true",
                "routes[3].upload: not allowed on a route of kind \"upstream\"",
            ],
        );
        let p = problems(
            r#"
            [stores.local]
            type = "fs"
            root = "/tmp/postern-test"
            [[routes]]
            path = "/_postern/"
            kind = "builtin"
            [[routes]]
            path = "/_postern/files"
            kind = "uploads"
            store = "local"
            "#,
        );
        assert_reported(
            &p,
            &["routes[1].path: routes[0] (\"/_postern/\") comes first"],
        );
    }

    #[test]
    fn route_names_and_kind_specific_keys() {
        let p = problems(
            r#"
            [upstreams.a]
            backends = ["http://127.0.0.1:1"]
            [[routes]]
            name = "none"
            path = "/"
            upstream = "a"
            [[routes]]
            name = "dup"
            path = "/x"
            upstream = "a"
            store = "s"
            [[routes]]
            name = "dup"
            path = "/y"
            upstream = "a"
            [[routes]]
            path = "/_p/"
            kind = "builtin"
            upstream = "a"
            access = "public"
            [[routes]]
            path = "/z"
            kind = "mystery"
            "#,
        );
        let expected = [
            "routes[0].name: \"none\" is reserved",
            "routes[1].store: not allowed on a route of kind \"upstream\"",
            "routes[2].name: route name \"dup\" is used twice",
            "routes[3].upstream: not allowed on a route of kind \"builtin\"",
            "routes[3].access: built-in endpoints set their own access rules",
            "routes[4].kind: \"mystery\" is not one of",
        ];
        assert_reported(&p, &expected);
    }

    #[test]
    fn several_instances_must_share_their_keys_and_say_how_many_they_are() {
        let routes = "[[routes]]\npath = \"/\"\nkind = \"builtin\"\n";
        let postgres = format!("[database]\nurl = \"postgres://db/x\"\n{routes}");
        assert_reported(
            &problems(&postgres),
            &[
                "tokens.secret: set it (the same on every instance",
                "links.keys: set at least one",
            ],
        );
        let one = format!("[database]\nurl = \"postgres://db/x\"\ninstances = \"one\"\n{routes}");
        assert_eq!(problems(&one), Vec::<String>::new());
        let env = |name: &str| {
            (name == "KEY").then(|| "a-link-key-of-at-least-thirty-two-bytes".to_string())
        };
        let shared = format!(
            "[database]\nurl = \"postgres://db/x\"\n[tokens]\nsecret = \"a-jwt-secret-of-at-least-thirty-two-bytes\"\n[links]\nkeys = [\"${{KEY}}\"]\n{routes}"
        );
        let settings = crate::config::parse(&shared, &env).unwrap();
        assert!(settings.database.shared);
        let sqlite = format!("[database]\ninstances = \"several\"\n{routes}");
        assert_reported(
            &problems(&sqlite),
            &["database.instances: \"several\" needs PostgreSQL"],
        );
        assert_reported(
            &problems(&format!("[database]\ninstances = \"many\"\n{routes}")),
            &["database.instances: \"many\" is not"],
        );
        assert_reported(
            &problems(&format!(
                "[sessions]\nrecheck_interval = \"10ms\"\n{routes}"
            )),
            &["sessions.recheck_interval: must be from 100ms to 5m"],
        );
    }

    #[test]
    fn shared_variants_need_a_store_a_plain_prefix_and_a_lasting_key() {
        let routes = "[[routes]]\npath = \"/\"\nkind = \"builtin\"\n";
        assert_reported(
            &problems(&format!("[images]\nshared_store = \"nowhere\"\n{routes}")),
            &["images.shared_store: \"nowhere\" is not a store"],
        );
        let store = "[stores.local]\ntype = \"fs\"\nroot = \"/tmp\"\n";
        assert_reported(
            &problems(&format!(
                "[images]\nshared_store = \"local\"\nshared_prefix = \"../up\"\n{store}{routes}"
            )),
            &[
                "images.shared_prefix: must be a relative key prefix",
                "images.shared_store: needs links.keys",
            ],
        );
        assert_reported(
            &problems(&format!("[images]\nshared_prefix = \"v/\"\n{routes}")),
            &["images.shared_store: required with shared_prefix"],
        );
        let uploads = "[[routes]]\nname = \"up\"\npath = \"/up\"\nkind = \"uploads\"\nstore = \"local\"\nkey = \"{username}/{uuid}.{ext}\"\n";
        assert_reported(
            &problems(&format!(
                "[images]\nshared_store = \"local\"\n{store}{uploads}{routes}"
            )),
            &["images.shared_prefix: upload keys \"{username}/{uuid}.{ext}\" on the same store"],
        );
    }

    #[test]
    fn an_empty_config_needs_routes() {
        assert_eq!(problems(""), ["routes: at least one route is required"]);
    }

    #[test]
    fn object_stores_and_asset_routes() {
        let p = problems(
            r#"
            [stores.inline]
            type = "s3"
            bucket = "media"
            region = "eu-west-3"
            access_key_id = "AKIAINLINE"
            secret_access_key = "written-in-the-file"
            [links]
            keys = ["plain-text-key"]
            "#,
        );
        let expected = [
            "stores.inline.access_key_id: keys are read from the environment only",
            "stores.inline.secret_access_key: keys are read from the environment only",
            "links.keys[0]: keys are read from the environment only",
        ];
        assert_reported(&p, &expected);

        let p = problems(
            r#"
            [stores.bad]
            type = "s3"
            bucket = "No_Such Bucket"
            region = ""
            endpoint = "ftp://x"
            access_key_id = "${ID:-id}"
            access_denied = "maybe"
            [stores.local]
            type = "fs"
            bucket = "x"
            [[routes]]
            path = "/a/"
            kind = "assets"
            store = "local"
            key = "u/{user_id}/{nope}"
            access = "public"
            mode = "teleport"
            link_ttl = "8d"
            [[routes]]
            path = "/b/"
            kind = "assets"
            store = "local"
            key = "u/{user_id}/{path}"
            access = "public"
            "#,
        );
        let expected = [
            "stores.bad.bucket: \"No_Such Bucket\" is not a bucket name",
            "stores.bad.region: \"\" is not a region name",
            "stores.bad.endpoint:",
            "stores.bad.access_key_id: access_key_id and secret_access_key go together",
            "stores.bad.access_denied: \"maybe\" is not one of",
            "stores.local.bucket: not allowed on a store of type \"fs\"",
            "routes[0].key: {nope} is not one of",
            "routes[0].mode: \"teleport\" is not one of",
            "routes[0].link_ttl: must be more than 0 and at most 7 days",
            "routes[1].key: uses the user in the key",
        ];
        assert_reported(&p, &expected);
    }

    #[test]
    fn image_settings_and_routes() {
        let p = problems(
            r#"
            [images]
            workers = 0
            quality = 101
            cache_size = "lots"
            [images.presets.bad]
            w = 99999
            [images.presets.odd]
            fit = "crop"
            [stores.local]
            type = "fs"
            [[routes]]
            path = "/a/"
            kind = "assets"
            store = "local"
            images = "sometimes"
            [[routes]]
            path = "/b/"
            kind = "assets"
            store = "local"
            mode = "redirect"
            images = "on"
            "#,
        );
        let expected = [
            "images.workers: must be at least 1",
            "images.quality: must be from 1 to 100",
            "images.cache_size:",
            "images.presets.bad.w: must be a whole number from 1 to 4096",
            "images.presets.odd.fit: must be cover, contain, fill, inside or outside",
            "routes[0].images: \"sometimes\" is not one of",
            "routes[1].images: transforms need mode = \"stream\"",
        ];
        assert_reported(&p, &expected);
    }

    #[test]
    fn s3_endpoints_and_addressing() {
        let text = |extra: &str| {
            format!(
                "[stores.m]\ntype = \"s3\"\nbucket = \"media\"\nregion = \"eu-west-3\"\n{extra}\n\
                 [[routes]]\npath = \"/\"\nkind = \"assets\"\nstore = \"m\"\n"
            )
        };
        let s3 = |extra: &str| match crate::config::parse(&text(extra), &|_| None)
            .expect("valid")
            .stores
            .remove(0)
        {
            StoreSettings::S3(s3) => s3,
            other => panic!("{other:?}"),
        };
        let aws = s3("");
        assert!(aws.virtual_host);
        assert_eq!(
            aws.endpoint.to_string(),
            "https://media.s3.eu-west-3.amazonaws.com:443"
        );
        assert!(matches!(
            aws.credentials,
            S3Credentials::Chain { profile: None }
        ));
        let minio = s3("endpoint = \"http://127.0.0.1:9000\"");
        assert!(!minio.virtual_host);
        assert_eq!(minio.endpoint.to_string(), "http://127.0.0.1:9000");
        let hosted = s3(
            "endpoint = \"https://objects.example.com\"\naddressing = \"virtual\"\nprofile = \"media\"",
        );
        assert_eq!(hosted.endpoint.host, "media.objects.example.com");
        assert!(
            matches!(hosted.credentials, S3Credentials::Chain { profile: Some(ref p) } if p == "media")
        );
    }

    #[test]
    fn cidrs() {
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("::1").is_ok());
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }
}
