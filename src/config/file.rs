//! The configuration file as written: strings stay strings here; `validate` turns them into
//! typed [`super::Settings`] and reports every problem with its key path.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::units::SizeValue;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub ops: OpsSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub identity_headers: IdentityHeadersSection,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub passwords: PasswordsSection,
    #[serde(default)]
    pub accounts: AccountsSection,
    #[serde(default)]
    pub mail: MailSection,
    #[serde(default)]
    pub sessions: SessionsSection,
    #[serde(default)]
    pub lockout: LockoutSection,
    #[serde(default)]
    pub tokens: TokensSection,
    #[serde(default)]
    pub bootstrap: BootstrapSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamSection>,
    #[serde(default)]
    pub stores: BTreeMap<String, StoreSection>,
    #[serde(default)]
    pub links: LinksSection,
    #[serde(default)]
    pub images: ImagesSection,
    #[serde(default)]
    pub routes: Vec<RouteSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesSection {
    pub workers: Option<usize>,
    pub queue: Option<usize>,
    pub cache_size: Option<SizeValue>,
    pub revalidate: Option<String>,
    pub max_source_size: Option<SizeValue>,
    pub max_source_pixels: Option<u64>,
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub quality: Option<u8>,
    #[serde(default)]
    pub presets: BTreeMap<String, PresetSection>,
    /// A store transformed images are written back to and read from, for every instance.
    pub shared_store: Option<String>,
    pub shared_prefix: Option<String>,
    pub shared_max_size: Option<SizeValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetSection {
    pub w: Option<u32>,
    pub h: Option<u32>,
    pub fit: Option<String>,
    pub fmt: Option<String>,
    pub q: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksSection {
    #[serde(default)]
    pub keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub threads: Option<usize>,
    pub work_stealing: Option<bool>,
    pub data_dir: Option<String>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub error_log: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub max_body_size: Option<SizeValue>,
    pub client_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub keepalive_requests: Option<u32>,
    pub shutdown_grace_period: Option<String>,
    pub shutdown_timeout: Option<String>,
    /// TLS listeners (`[[server.tls]]`).
    #[serde(default)]
    pub tls: Vec<super::tls::TlsSection>,
    /// Answer every plain-HTTP request with a 308 to HTTPS.
    pub https_redirect: Option<bool>,
    /// `Strict-Transport-Security` on answers over TLS.
    pub hsts: Option<String>,
    /// Only for these hosts (exact or `*.suffix`).
    #[serde(default)]
    pub hsts_hosts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSection {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub level: Option<String>,
    pub format: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
    /// `"one"` or `"several"` postern instances on this database.
    pub instances: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordsSection {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub parallelism: Option<u32>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub min_uppers: Option<usize>,
    pub min_lowers: Option<usize>,
    pub min_digits: Option<usize>,
    pub min_specials: Option<usize>,
    pub not_like_identity: Option<bool>,
    /// `true`/`false` for the built-in list, or a file of refused passwords.
    pub blocklist: Option<toml::Value>,
    pub min_strength: Option<u8>,
    pub history: Option<usize>,
    pub max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsSection {
    pub registration: Option<String>,
    pub verification: Option<String>,
    pub public_url: Option<String>,
    pub verify_ttl: Option<String>,
    pub reset_ttl: Option<String>,
    pub rate_per_minute: Option<u32>,
    pub mails_per_hour: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    pub transport: Option<String>,
    pub from: Option<String>,
    pub app_name: Option<String>,
    pub templates_dir: Option<String>,
    pub outbox_dir: Option<String>,
    pub max_attempts: Option<u32>,
    pub retry_base: Option<String>,
    pub retry_max: Option<String>,
    #[serde(default)]
    pub smtp: SmtpSection,
    #[serde(default)]
    pub messages: BTreeMap<String, MailMessageSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub ca_file: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailMessageSection {
    pub enabled: Option<bool>,
    pub subject: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    #[serde(default)]
    pub allow_from: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSection {
    pub admin: Option<bool>,
    pub admin_password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensSection {
    pub algorithm: Option<String>,
    pub secret: Option<String>,
    pub private_key_file: Option<String>,
    pub public_key_file: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub ttl: Option<String>,
    pub leeway: Option<String>,
    pub assertion_header: Option<String>,
    pub assertion_ttl: Option<String>,
    pub assertion_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutSection {
    pub max_failures: Option<u32>,
    pub window: Option<String>,
    pub lock_for: Option<String>,
    pub ip_max_failures: Option<u32>,
    pub login_rate_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    pub cookie_name: Option<String>,
    /// `true`, `false` or `"auto"`; read by `validate`.
    pub secure_cookies: Option<toml::Value>,
    pub idle_timeout: Option<String>,
    pub absolute_timeout: Option<String>,
    pub cache_ttl: Option<String>,
    pub touch_interval: Option<String>,
    pub recheck_interval: Option<String>,
    #[serde(default)]
    pub return_to_hosts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeadersSection {
    pub user_id: Option<String>,
    pub user: Option<String>,
    pub email: Option<String>,
    pub roles: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub backends: Vec<String>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub tls_verify: Option<bool>,
    pub sni: Option<String>,
    pub preserve_host: Option<bool>,
    pub retries: Option<usize>,
    pub fail_timeout: Option<String>,
    pub resolve_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    #[serde(rename = "type")]
    pub kind: String,
    pub root: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub addressing: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub profile: Option<String>,
    pub access_denied: Option<String>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub tls_verify: Option<bool>,
    pub resolve_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path: String,
    pub methods: Option<Vec<String>>,
    pub kind: Option<String>,
    /// `"public"`, `"authenticated"` or `{ roles = [..], match = "any" | "all" }`;
    /// read by `validate` so that each mistake gets its own message.
    pub access: Option<toml::Value>,
    pub upstream: Option<String>,
    pub strip_prefix: Option<bool>,
    pub api: Option<bool>,
    pub referer: Option<RefererSection>,
    pub cors: Option<CorsSection>,
    pub store: Option<String>,
    pub key: Option<String>,
    pub mode: Option<String>,
    pub link_ttl: Option<String>,
    pub cache_control: Option<String>,
    pub images: Option<String>,
    pub inline_types: Option<Vec<String>>,
    pub strict_paths: Option<bool>,
    pub case_insensitive: Option<bool>,
    /// Close a response that is still running when its session or token ends.
    pub cut_on_revoke: Option<bool>,
    /// `account-api` routes: `"stormpath"`.
    pub flavor: Option<String>,
    /// `account-api` routes: the base of the `href`s in account JSON.
    pub href_base: Option<String>,
    /// `account-api` routes: custom-data keys only administrators may write.
    pub protected_custom_data: Option<Vec<String>>,
    /// `uploads` routes: limits, types, ACLs, folders, variants.
    pub upload: Option<super::uploads::UploadSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefererSection {
    pub allow: Vec<String>,
    pub allow_missing: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    pub origins: Vec<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub credentials: Option<bool>,
    pub max_age: Option<String>,
}
