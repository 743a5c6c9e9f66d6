//! Wire format of `[quota]` (the counter backend and what happens when it fails) and the quota limits plans and
//! tenants declare.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
