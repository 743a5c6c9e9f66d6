//! Wire format of `[server]`, `[admin]`, `[log]` and `[hardening]`: listeners, host names, switches read per
//! request, the admin token's variable, logging and request canonicalisation.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
