//! The validated configuration: what [`RawConfig::validate`](super::RawConfig::validate)
//! returns. Every value is typed and checked (addresses parsed and resolved, methods parsed,
//! key hashes decoded, JWT keys and CA bundles loaded), so compiling it into a
//! [`Snapshot`](crate::snapshot::Snapshot) cannot fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method};
use jsonwebtoken::{Algorithm, DecodingKey};
use pingora::protocols::tls::CaType;

use super::{
    BrandingConfig, HardeningConfig, PricingConfig, QuotaLimitConfig, Secrets, StartupConfig,
    TenantStatus,
};
use crate::upstream::UpstreamPool;

/// A whole configuration that passed validation.
#[derive(Clone)]
pub struct ValidConfig {
    /// Directory of `gateway.toml`; relative paths were resolved against it.
    pub dir: PathBuf,
    /// Name of the main file relative to `dir`.
    pub main_file: String,
    /// Hash of every byte read, so a reload of identical content does not swap.
    pub content_hash: u64,
    /// The keys a running process reads once at start.
    pub startup: StartupConfig,
    /// Secrets named by the config, read from the environment once for this load.
    pub secrets: Secrets,
    /// Reloadable server switches and host names.
    pub server: ValidServer,
    pub upstreams: BTreeMap<String, Arc<UpstreamPool>>,
    pub plans: BTreeMap<String, ValidPlan>,
    /// In file order.
    pub routes: Vec<ValidRoute>,
    /// In file order.
    pub tenants: Vec<ValidTenant>,
    pub jwt: Option<ValidJwt>,
}

impl std::fmt::Debug for ValidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidConfig")
            .field("dir", &self.dir)
            .field("tenants", &self.tenants.len())
            .finish_non_exhaustive()
    }
}

impl ValidConfig {
    /// `tls.certs_dir`, resolved against the config dir.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join(&self.startup.tls.certs_dir)
    }
}

/// `[server]` keys a reload applies, with `[log].access_log` and `[hardening]`.
#[derive(Debug, Clone)]
pub struct ValidServer {
    pub base_domains: Vec<String>,
    pub reserved_subdomains: Vec<String>,
    pub trust_tenant_header: bool,
    pub dev_mode: bool,
    pub redirect_http_to_https: bool,
    pub strict_sni: bool,
    pub access_log: bool,
    pub hardening: HardeningConfig,
    pub latency_histogram: crate::config::LatencyHistogram,
}

/// An upstream pool with its addresses resolved (once, by validation) and its CA bundle read.
#[derive(Debug, Clone)]
pub struct ValidUpstream {
    pub addrs: UpstreamAddrs,
    pub tls: bool,
    /// `sni`, or the host of the first address.
    pub sni: String,
    pub ca: Option<Arc<CaType>>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

/// An upstream's addresses, in config order: never empty (validation rejects an empty list),
/// so picking one by index cannot fail.
#[derive(Debug, Clone)]
pub struct UpstreamAddrs(Vec<SocketAddr>);

impl UpstreamAddrs {
    /// `None` for an empty list.
    pub fn new(addrs: Vec<SocketAddr>) -> Option<Self> {
        (!addrs.is_empty()).then_some(Self(addrs))
    }

    /// The address at `index` modulo the count (a retry passes `first + attempt`).
    pub fn wrapping(&self, index: usize) -> SocketAddr {
        self.0[index % self.0.len()]
    }
}

impl std::ops::Deref for UpstreamAddrs {
    type Target = [SocketAddr];

    fn deref(&self) -> &[SocketAddr] {
        &self.0
    }
}

/// A tenant's upstream: a named pool of `[upstreams]` (the one validation built, so it exists)
/// or its own.
#[derive(Debug, Clone)]
pub enum ValidTenantUpstream {
    Named(Arc<UpstreamPool>),
    Dedicated(ValidUpstream),
}

#[derive(Debug, Clone)]
pub struct ValidPlan {
    /// Sorted, without duplicates.
    pub features: Vec<String>,
    pub quotas: BTreeMap<String, QuotaLimitConfig>,
    pub pricing: PricingConfig,
}

/// How much of a resource a route consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    Fixed(u64),
    /// The request's `Content-Length` (0 when absent).
    ContentLength,
}

#[derive(Debug, Clone)]
pub struct ValidRoute {
    /// Canonical (see [`crate::canonical_path`]).
    pub path_prefix: String,
    /// Empty: every method.
    pub methods: Vec<Method>,
    pub consumes: Vec<(String, Consume)>,
    pub require_feature: Option<String>,
    pub require_auth: bool,
    /// The route's own `case_sensitive`, else `hardening.case_sensitive_routes`.
    pub case_sensitive: bool,
    /// Any of these roles admits; never empty when set.
    pub require_role: Option<Vec<String>>,
}

/// An API key of a tenant: the decoded SHA-256 of the key.
#[derive(Debug, Clone)]
pub struct ValidApiKey {
    pub hash: [u8; 32],
    pub name: String,
    pub roles: Vec<String>,
}

/// Values of the injected `X-Tenant-*` headers, checked once so a request copies no strings.
#[derive(Debug, Clone)]
pub struct TenantHeaders {
    pub id: HeaderValue,
    pub organization_id: HeaderValue,
    pub plan: HeaderValue,
    pub features: HeaderValue,
    pub schema: Option<HeaderValue>,
}

#[derive(Debug, Clone)]
pub struct ValidTenant {
    /// Tenant file, relative to the config dir.
    pub file: String,
    pub id: String,
    pub organization_id: String,
    /// `name`, or the id when empty.
    pub name: String,
    pub plan: String,
    pub status: TenantStatus,
    /// `subdomain`, or the id.
    pub subdomain: String,
    /// Lower-cased.
    pub custom_domains: Vec<String>,
    /// Effective features (plan + enabled − disabled), sorted.
    pub features: Vec<String>,
    pub schema: Option<String>,
    pub upstream: ValidTenantUpstream,
    /// Effective quotas: the plan's, overridden by the tenant's own.
    pub quotas: BTreeMap<String, QuotaLimitConfig>,
    pub branding: BrandingConfig,
    pub api_keys: Vec<ValidApiKey>,
    pub headers: TenantHeaders,
}

/// `[auth.jwt]` with every verification key loaded.
#[derive(Clone)]
pub struct ValidJwt {
    pub keys: Vec<(Algorithm, Option<String>, DecodingKey)>,
    pub issuer: String,
    pub audience: String,
    pub tenant_claim: String,
    pub roles_claim: String,
    pub leeway: Duration,
    pub forward: bool,
}

impl std::fmt::Debug for ValidJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidJwt")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}
