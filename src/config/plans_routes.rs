//! Wire format of `[plans.<name>]` (features, quotas, pricing) and `[[routes]]` (path prefixes with their
//! required features, roles and consumed resources).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::QuotaLimitConfig;

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
