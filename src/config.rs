//! The TOML configuration: serde wire types, file loading, and the one validation pass that
//! turns a [`RawConfig`] into a typed [`ValidConfig`].
//!
//! The wire types mirror the files one to one and are never used on the request path;
//! `snapshot` compiles a [`ValidConfig`] into the immutable model the proxy reads.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod auth;
mod limits;
pub mod names;
mod plans_routes;
mod provisioning;
mod quota;
pub mod schema;
mod secrets;
mod server;
pub mod startup;
mod tenant;
mod tls_acme;
mod upstream;
mod valid;
mod validate;
pub use auth::{AuthConfig, JwtConfig};
pub use limits::{LimitsConfig, PerClientConfig};
pub use plans_routes::{ConsumeConfig, PlanConfig, PricingConfig, RequireRoleConfig, RouteConfig};
pub use provisioning::ProvisioningConfig;
pub use quota::{OnBackendError, Period, QuotaBackendKind, QuotaConfig, QuotaLimitConfig};
pub use secrets::Secrets;
pub use server::{AdminConfig, HardeningConfig, LogConfig, ServerConfig, UnderscoreHeaders};
pub use startup::StartupConfig;
pub use tenant::{ApiKeyConfig, BrandingConfig, TenantConfig, TenantStatus, TenantUpstreamConfig};
pub use tls_acme::{AcmeConfig, TlsConfig};
pub use upstream::UpstreamConfig;
pub use valid::{
    Consume, TenantHeaders, UpstreamAddrs, ValidApiKey, ValidConfig, ValidJwt, ValidPlan,
    ValidRoute, ValidServer, ValidTenant, ValidTenantUpstream, ValidUpstream,
};

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
        ErrorList(&self.0).fmt(f)
    }
}

/// Errors one per line, as `check` prints them.
pub struct ErrorList<'a>(pub &'a [ConfigError]);

impl fmt::Display for ErrorList<'_> {
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

/// Reads `gateway.toml` and every `*.toml` in its tenants dir, then validates the whole.
pub fn load(path: &Path) -> Result<ValidConfig, ConfigErrors> {
    let (raw, earlier) = read_all(path)?;
    raw.validate_after(earlier)
}

/// Reads and validates like [`load`] but returns the wire form, for a caller that edits it
/// and validates the edit (provisioning).
pub fn read_validated(path: &Path) -> Result<RawConfig, ConfigErrors> {
    let (raw, earlier) = read_all(path)?;
    raw.clone().validate_after(earlier)?;
    Ok(raw)
}

/// Reads every file of a config; the files that cannot be read or parsed are returned as
/// errors next to the rest (a missing or broken `gateway.toml` is the only fatal one).
fn read_all(path: &Path) -> Result<(RawConfig, Vec<ConfigError>), ConfigErrors> {
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
    Ok((raw, errors))
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
