//! Wire format of `tenants/<id>.toml`: one tenant's plan, names, upstream, overrides, branding and API keys.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{QuotaLimitConfig, UpstreamConfig};

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
