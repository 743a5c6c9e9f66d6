//! Wire format of the TOML configuration: serde types, file loading and validation.
//!
//! These types mirror the files one to one and are never used on the request path; `snapshot`
//! compiles a validated [`RawConfig`] into the typed, immutable model the proxy reads.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod limits;
pub mod schema;
mod validate;
pub use limits::{LimitsConfig, PerClientConfig};
pub use validate::validate;

/// One problem found in the configuration, located by file and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// Path of the file, relative to the directory of `gateway.toml`.
    pub file: String,
    /// Dotted key inside the file (`server.threads`, `custom_domains[0]`), or `-` for the file.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.message)
    }
}

/// Every error of one load attempt; a config is either wholly valid or rejected.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// `gateway.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub tls: TlsConfig,
    pub acme: AcmeConfig,
    pub quota: QuotaConfig,
    pub auth: AuthConfig,
    pub hardening: HardeningConfig,
    /// Catalogue of feature names. When empty, the catalogue is every feature a plan grants or a
    /// route requires; when set, every reference must be in it.
    pub features: Vec<String>,
    pub plans: BTreeMap<String, PlanConfig>,
    pub routes: Vec<RouteConfig>,
    /// Client-side limits and timeouts (`[limits]`, see `config/limits.rs`).
    pub limits: LimitsConfig,
    pub provisioning: ProvisioningConfig,
    pub metrics: MetricsConfig,
}

/// `[metrics]`: how the Prometheus families are labelled.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Labels of the request latency histogram: `tenant` (default), `plan` (one histogram per
    /// plan whatever the number of tenants) or `off`.
    pub latency_histogram: LatencyHistogram,
}

/// What `gateway_request_duration_seconds` is kept per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LatencyHistogram {
    /// `gateway_request_duration_seconds{tenant}`: one per tenant that receives traffic.
    #[default]
    Tenant,
    /// `gateway_plan_request_duration_seconds{plan}`: one per plan.
    Plan,
    /// No latency histogram (request counters stay per tenant).
    Off,
}

/// `[provisioning]`: programs run when a tenant is created, deleted or changes plan or status
/// (argv lists, never a shell; see `provision::hooks`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisioningConfig {
    /// `["/path/to/program", "arg", …]`; empty: no hook.
    pub on_create: Vec<String>,
    pub on_delete: Vec<String>,
    /// Run when a change touches the plan or the status.
    pub on_update: Vec<String>,
    /// A hook still running after this is killed and counts as failed.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        Self {
            on_create: Vec::new(),
            on_delete: Vec::new(),
            on_update: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub http_listen: Vec<String>,
    pub https_listen: Vec<String>,
    pub admin_listen: String,
    pub threads: usize,
    pub base_domains: Vec<String>,
    pub reserved_subdomains: Vec<String>,
    pub tenants_dir: String,
    pub trust_tenant_header: bool,
    pub dev_mode: bool,
    pub redirect_http_to_https: bool,
    pub strict_sni: bool,
    /// How long SIGTERM waits for in-flight requests before the process exits.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub grace_period: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen: vec!["0.0.0.0:8080".into()],
            https_listen: vec![],
            admin_listen: "127.0.0.1:9090".into(),
            threads: 2,
            base_domains: vec!["localhost".into()],
            reserved_subdomains: vec!["www".into(), "api".into()],
            tenants_dir: "tenants".into(),
            trust_tenant_header: false,
            dev_mode: false,
            redirect_http_to_https: false,
            strict_sni: true,
            grace_period: Duration::from_secs(10),
        }
    }
}

/// What the gateway does with client header names that contain `_` (CGI, WSGI, PHP and Rack
/// backends read `X_Tenant_Id` as `X-Tenant-Id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoreHeaders {
    /// Remove them before forwarding (nginx's `underscores_in_headers off`).
    #[default]
    Drop,
    /// Refuse the request with 400 BAD_HEADER.
    Reject,
    /// Forward them (identity headers are still removed under every spelling).
    Allow,
}

/// `[hardening]`: how strictly requests are canonicalised before any decision. Every default
/// is the strict choice; each key relaxes one rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HardeningConfig {
    /// Keep `%2F`, `%5C` and `\` in paths (as encoded data) instead of answering 400.
    pub allow_escaped_slashes: bool,
    /// Keep `;` path parameters instead of answering 400.
    pub allow_path_parameters: bool,
    /// Match route prefixes byte for byte; by default they match ignoring ASCII case, so a
    /// gate over-applies rather than under-applies. A route's own `case_sensitive` wins.
    pub case_sensitive_routes: bool,
    /// Client header names containing `_`: `drop` (default), `reject` (400) or `allow`.
    pub underscore_headers: UnderscoreHeaders,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Environment variable holding the bearer token for `/admin/v1/*`.
    pub token_env: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token_env: "GATEWAY_ADMIN_TOKEN".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// One JSON line per request on stdout.
    pub access_log: bool,
    /// tracing filter for the diagnostic log (`info`, `tenant_gateway=debug`, …).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            access_log: true,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub addrs: Vec<String>,
    pub tls: bool,
    /// SNI and verification name for `tls = true`; defaults to the address host.
    pub sni: Option<String>,
    /// Extra CA bundle (PEM) for `tls = true`.
    pub ca_file: Option<String>,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub write_timeout: Duration,
    /// How long an idle keep-alive connection to this upstream is kept for reuse.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            addrs: vec![],
            tls: false,
            sni: None,
            ca_file: None,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub certs_dir: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            certs_dir: "../certs".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    pub enabled: bool,
    pub issue_for_subdomains: bool,
    pub directory_url: String,
    pub contact: Vec<String>,
    pub ca_roots: Vec<String>,
    pub renew_before_ratio: f64,
    pub dns_servers: Vec<String>,
    pub verification_secret_env: String,
    /// How often names are checked for issuance, renewal and certificates published by peers.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub check_interval: Duration,
    /// First wait after a failed order; doubles up to `retry_max`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_max: Duration,
    /// How often verified custom domains are checked again for their TXT record.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub domain_recheck_interval: Duration,
    /// How long a domain whose TXT record disappeared keeps routing before it stops.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub domain_failure_grace: Duration,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            issue_for_subdomains: false,
            directory_url: "https://acme-v02.api.letsencrypt.org/directory".into(),
            contact: vec![],
            ca_roots: vec![],
            renew_before_ratio: 0.33,
            dns_servers: vec![],
            verification_secret_env: "GATEWAY_DOMAIN_SECRET".into(),
            check_interval: Duration::from_secs(60),
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            domain_recheck_interval: Duration::from_secs(3600),
            domain_failure_grace: Duration::from_secs(24 * 3600),
        }
    }
}

impl AcmeConfig {
    /// http-01 is answered on the plain listener, so ACME without one cannot work.
    fn http_listener_needed_but_missing(&self, server: &ServerConfig) -> bool {
        self.enabled && server.http_listen.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuotaBackendKind {
    Local,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// Admit (counted locally and written back to Redis when it returns).
    Allow,
    /// 503 `QUOTA_BACKEND_UNAVAILABLE`.
    Deny,
    /// Enforce against an in-process counter: this node's `fallback_share` of the room it last
    /// saw in Redis (admissions written back when Redis returns).
    Local,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    pub backend: QuotaBackendKind,
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster; when set, `redis_url` is ignored.
    pub redis_cluster_urls: Vec<String>,
    pub on_backend_error: OnBackendError,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Consecutive failed decisions (errors or timeouts) that open the circuit breaker.
    pub breaker_failures: u32,
    /// How often the Redis health probe pings (it closes the breaker and reconnects).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub probe_interval: Duration,
    /// With `on_backend_error = "local"`: the share (0 < s <= 1) of a key's remaining room this
    /// node may admit while Redis is unavailable; `1 / expected_nodes` bounds the total.
    pub fallback_share: f64,
    /// Most distinct counter keys whose admissions-without-Redis wait for write-back; beyond
    /// it, new ones are dropped (counted in `gateway_quota_pending_dropped_total`).
    pub max_pending_keys: usize,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            backend: QuotaBackendKind::Local,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_cluster_urls: vec![],
            on_backend_error: OnBackendError::Allow,
            timeout: Duration::from_millis(25),
            breaker_failures: 3,
            probe_interval: Duration::from_millis(250),
            fallback_share: 1.0,
            max_pending_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub jwt: Option<JwtConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    pub hs256_secret_env: String,
    pub public_key_files: Vec<String>,
    pub jwks_file: String,
    pub issuer: String,
    pub audience: String,
    pub tenant_claim: String,
    /// Claim with the caller's roles: a list of strings, or one space-separated string.
    pub roles_claim: String,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub leeway: Duration,
    /// Forward a verified JWT upstream in `Authorization` (default); `false` removes it.
    pub forward: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hs256_secret_env: "GATEWAY_JWT_SECRET".into(),
            public_key_files: vec![],
            jwks_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            tenant_claim: "tenant_id".into(),
            roles_claim: "roles".into(),
            leeway: Duration::from_secs(30),
            forward: true,
        }
    }
}

/// Length of a quota window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimitConfig {
    pub limit: u64,
    pub period: Period,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// Monthly base price of the plan.
    pub base: f64,
    /// Price per unit consumed beyond the quota, per resource.
    pub overage: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    pub features: Vec<String>,
    pub quotas: BTreeMap<String, QuotaLimitConfig>,
    pub pricing: PricingConfig,
}

/// How much of a resource one request consumes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ConsumeConfig {
    Fixed(u64),
    /// Only `"content-length"` is accepted: the request body size in bytes.
    FromHeader(String),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub path_prefix: String,
    /// Empty: every method.
    pub methods: Vec<String>,
    pub consumes: BTreeMap<String, ConsumeConfig>,
    pub require_feature: Option<String>,
    pub require_auth: bool,
    /// Overrides `hardening.case_sensitive_routes` for this route.
    pub case_sensitive: Option<bool>,
    /// `"admin"` or `["admin", "owner"]` (any of them); implies `require_auth`.
    pub require_role: Option<RequireRoleConfig>,
}

/// One role, or a list of which any admits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RequireRoleConfig {
    One(String),
    AnyOf(Vec<String>),
}

impl RequireRoleConfig {
    pub fn names(&self) -> &[String] {
        match self {
            RequireRoleConfig::One(r) => std::slice::from_ref(r),
            RequireRoleConfig::AnyOf(list) => list,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    #[default]
    Active,
    Suspended,
}

/// A tenant's upstream: the name of a pool in `[upstreams]`, or its own inline table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TenantUpstreamConfig {
    Named(String),
    Dedicated(UpstreamConfig),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BrandingConfig {
    pub logo: Option<String>,
    pub primary_color: Option<String>,
    pub secondary_color: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Hex SHA-256 of the key; the key itself is never stored.
    pub sha256: String,
    pub name: String,
    /// Roles of the caller holding this key (`X-User-Roles`, `require_role`).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `tenants/<id>.toml`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    #[serde(default)]
    pub organization_id: String,
    #[serde(default)]
    pub name: String,
    pub plan: String,
    #[serde(default)]
    pub status: TenantStatus,
    /// Defaults to `id`.
    #[serde(default)]
    pub subdomain: Option<String>,
    #[serde(default)]
    pub custom_domains: Vec<String>,
    #[serde(default)]
    pub features_enabled: Vec<String>,
    #[serde(default)]
    pub features_disabled: Vec<String>,
    pub upstream: TenantUpstreamConfig,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaLimitConfig>,
    #[serde(default)]
    pub branding: BrandingConfig,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
}

/// A tenant file as loaded: its path relative to the config dir and its content.
#[derive(Debug, Clone)]
pub struct TenantFile {
    pub file: String,
    pub tenant: TenantConfig,
}

/// Everything read from disk for one load, before compilation.
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// Directory of `gateway.toml`; relative paths in the config are resolved against it.
    pub dir: PathBuf,
    /// Name of the main file relative to `dir` (for error messages).
    pub main_file: String,
    pub gateway: GatewayConfig,
    pub tenants: Vec<TenantFile>,
    /// Hash of every byte read, so a reload of identical content does not swap.
    pub content_hash: u64,
}

impl RawConfig {
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join(&self.gateway.tls.certs_dir)
    }
}

/// Reads `gateway.toml` and every `*.toml` in its tenants dir, then validates the whole.
pub fn load(path: &Path) -> Result<RawConfig, ConfigErrors> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
        .to_path_buf();
    let main_file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "gateway.toml".into());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut errors = Vec::new();

    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            path.display().to_string(),
            "-",
            format!("cannot read: {e}"),
        )])
    })?;
    text.hash(&mut hasher);
    let gateway: GatewayConfig =
        parse_toml(&main_file, &text).map_err(|e| ConfigErrors(vec![e]))?;

    let tenants_dir = dir.join(&gateway.server.tenants_dir);
    let mut tenants = Vec::new();
    match list_tenant_files(&tenants_dir) {
        Ok(files) => {
            for file_path in files {
                let rel = format!(
                    "{}/{}",
                    gateway.server.tenants_dir.trim_end_matches('/'),
                    file_path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                );
                match std::fs::read_to_string(&file_path) {
                    Ok(text) => {
                        rel.hash(&mut hasher);
                        text.hash(&mut hasher);
                        match parse_toml::<TenantConfig>(&rel, &text) {
                            Ok(tenant) => tenants.push(TenantFile { file: rel, tenant }),
                            Err(e) => errors.push(e),
                        }
                    }
                    Err(e) => errors.push(ConfigError::new(rel, "-", format!("cannot read: {e}"))),
                }
            }
        }
        Err(e) => errors.push(ConfigError::new(
            main_file.clone(),
            "server.tenants_dir",
            format!("cannot list {}: {e}", tenants_dir.display()),
        )),
    }

    let raw = RawConfig {
        dir,
        main_file,
        gateway,
        tenants,
        content_hash: hasher.finish(),
    };
    errors.extend(validate(&raw));
    if errors.is_empty() {
        Ok(raw)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `*.toml` files of the tenants dir in name order; hidden files and sub-directories (such as
/// `.deleted/`) are not tenants.
pub fn list_tenant_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".toml") || !entry.file_type()?.is_file() {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// Parses one TOML document, naming the failing key path in the error.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let mut message = inner.message().to_string();
        if let Some(span) = inner.span() {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            message = format!("{message} (line {line})");
        }
        let key = if key == "." || key.is_empty() {
            "-".to_string()
        } else {
            key
        };
        ConfigError::new(file, key, message)
    })
}

/// Parses a listen or upstream address (`host:port`, `[v6]:port`).
pub fn parse_socket_addr(s: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    // Names such as `localhost:3000` resolve once at compile time.
    s.to_socket_addrs().ok()?.next()
}
