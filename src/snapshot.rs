//! The compiled, immutable configuration the proxy serves from, and the one `ArcSwap` that
//! holds it. A request loads the snapshot once and keeps the `Arc`, so it is routed entirely by
//! the old or entirely by the new config, never a mix.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::Method;

use crate::auth::{ApiKeyIndex, JwtVerifier};
use crate::canonical_path::{has_prefix, PathRules};
use crate::config::{
    PricingConfig, QuotaLimitConfig, ValidConfig, ValidPlan, ValidRoute, ValidTenant,
    ValidTenantUpstream,
};
use crate::quota::QuotaLimit;
use crate::request_view::RequestRules;
use crate::roles::{RoleRequirement, Roles};
use crate::tenant::{Branding, HostIndex, Tenant};
use crate::upstream::UpstreamPool;

pub use crate::config::Consume;

#[derive(Debug)]
pub struct Route {
    pub path_prefix: Box<str>,
    /// Empty: every method.
    pub methods: Vec<Method>,
    pub consumes: Vec<(Box<str>, Consume)>,
    pub require_feature: Option<Box<str>>,
    pub require_auth: bool,
    /// Match the prefix byte for byte (else ignoring ASCII case).
    pub case_sensitive: bool,
    /// Any of these roles admits; a request without a verified credential is a 401.
    pub require_role: Option<RoleRequirement>,
}

impl Route {
    /// `path` is canonical (see [`crate::canonical_path`]); so is the prefix (validated).
    fn matches(&self, method: &Method, path: &str) -> bool {
        has_prefix(path, &self.path_prefix, self.case_sensitive)
            && (self.methods.is_empty() || self.methods.contains(method))
    }
}

#[derive(Debug)]
pub struct Plan {
    pub name: Box<str>,
    pub features: Vec<Box<str>>,
    pub quotas: BTreeMap<String, QuotaLimit>,
    pub pricing: Pricing,
}

/// What a plan costs: the monthly base price and the price per unit beyond a quota.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricing {
    pub base: f64,
    /// Price per unit consumed beyond the quota, by resource.
    pub overage: BTreeMap<String, f64>,
}

impl From<PricingConfig> for Pricing {
    fn from(p: PricingConfig) -> Self {
        let PricingConfig { base, overage } = p;
        Self { base, overage }
    }
}

/// Server switches read per request.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub trust_tenant_header: bool,
    pub dev_mode: bool,
    pub redirect_http_to_https: bool,
    pub strict_sni: bool,
    pub access_log: bool,
    /// How requests are canonicalised (`[hardening]`).
    pub request_rules: RequestRules,
    /// Port of the first HTTPS listener (as bound, when serving), for redirects.
    pub https_port: Option<u16>,
    /// What the request latency histogram is kept per (`[metrics] latency_histogram`).
    pub latency_histogram: crate::config::LatencyHistogram,
}

/// One complete, validated configuration.
#[derive(Debug)]
pub struct Snapshot {
    pub hosts: HostIndex,
    /// Longest prefix first, so the first match is the most specific.
    pub routes: Vec<Route>,
    pub plans: BTreeMap<String, Plan>,
    pub pools: BTreeMap<String, Arc<UpstreamPool>>,
    pub settings: ServerSettings,
    pub content_hash: u64,
    pub loaded_at: SystemTime,
    /// Every tenant's API keys, by hash.
    pub api_keys: ApiKeyIndex,
    /// JWT verification, when `[auth.jwt]` is configured.
    pub jwt: Option<JwtVerifier>,
}

impl Snapshot {
    /// The most specific route for a request, if any.
    pub fn route(&self, method: &Method, path: &str) -> Option<&Route> {
        self.route_index(method, path).map(|i| &self.routes[i])
    }

    /// Index of [`Snapshot::route`] in `routes`; `path` must be canonical
    /// ([`crate::request_view::canonicalize`] makes it so).
    pub fn route_index(&self, method: &Method, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(method, path))
    }

    /// Compiles a validated config whose plain-HTTP redirect names the configured HTTPS port
    /// (`tenant-gateway check`, tests). Cannot fail: everything fallible (addresses, keys,
    /// files, header values) was checked and converted by validation.
    pub fn compile(valid: ValidConfig) -> Snapshot {
        let configured = valid.startup.server.https_listen.first().map(|a| a.port());
        Self::compile_serving(valid, configured)
    }

    /// [`Snapshot::compile`] for a running gateway: `https_port` is the port its first HTTPS
    /// listener is bound to, which differs from the configured one when that is port 0.
    pub fn compile_serving(valid: ValidConfig, https_port: Option<u16>) -> Snapshot {
        let ValidConfig {
            dir: _,
            main_file: _,
            content_hash,
            startup: _,
            secrets: _,
            server,
            upstreams,
            plans,
            routes,
            tenants,
            jwt,
        } = valid;
        let pools = upstreams;
        let plans: BTreeMap<String, Plan> = plans
            .into_iter()
            .map(|(name, p)| {
                let plan = compile_plan(&name, p);
                (name, plan)
            })
            .collect();
        let mut routes: Vec<Route> = routes.into_iter().map(compile_route).collect();
        // Stable sort keeps file order among equal prefixes.
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));

        let mut hosts = HostIndex::new(&server.base_domains, &server.reserved_subdomains)
            .with_capacity(tenants.len());
        let mut api_keys = ApiKeyIndex::default();
        for t in tenants {
            let t = compile_tenant(t);
            for (hash, name, roles) in &t.api_keys {
                api_keys.insert(*hash, &t.id, name, roles.clone());
            }
            hosts.insert(Arc::new(t));
        }
        Snapshot {
            hosts,
            routes,
            plans,
            pools,
            settings: ServerSettings {
                trust_tenant_header: server.trust_tenant_header,
                dev_mode: server.dev_mode,
                redirect_http_to_https: server.redirect_http_to_https,
                strict_sni: server.strict_sni,
                access_log: server.access_log,
                latency_histogram: server.latency_histogram,
                request_rules: RequestRules {
                    path: PathRules {
                        allow_escaped_slashes: server.hardening.allow_escaped_slashes,
                        allow_path_parameters: server.hardening.allow_path_parameters,
                    },
                    underscore_headers: server.hardening.underscore_headers,
                },
                https_port,
            },
            content_hash,
            loaded_at: SystemTime::now(),
            api_keys,
            jwt: jwt.map(JwtVerifier::compile),
        }
    }
}

fn compile_plan(name: &str, p: ValidPlan) -> Plan {
    let ValidPlan {
        features,
        quotas,
        pricing,
    } = p;
    Plan {
        name: name.into(),
        features: boxed(features),
        quotas: quotas
            .into_iter()
            .map(|(r, q)| (r, quota_limit(q)))
            .collect(),
        pricing: pricing.into(),
    }
}

fn compile_route(r: ValidRoute) -> Route {
    let require_role = r
        .require_role
        .map(|names| RoleRequirement::any_of(names.iter().map(String::as_str)));
    Route {
        path_prefix: r.path_prefix.into_boxed_str(),
        methods: r.methods,
        consumes: r
            .consumes
            .into_iter()
            .map(|(res, c)| (res.into_boxed_str(), c))
            .collect(),
        require_feature: r.require_feature.map(String::into_boxed_str),
        require_auth: r.require_auth,
        case_sensitive: r.case_sensitive,
        require_role,
    }
}

fn quota_limit(q: QuotaLimitConfig) -> QuotaLimit {
    QuotaLimit {
        limit: q.limit,
        period: q.period,
    }
}

fn boxed(list: Vec<String>) -> Vec<Box<str>> {
    list.into_iter().map(String::into_boxed_str).collect()
}

/// The compiled tenant: validation already merged its plan's quotas into its own and handed
/// it the named pool it uses, so nothing here is looked up.
fn compile_tenant(t: ValidTenant) -> Tenant {
    let upstream = match t.upstream {
        ValidTenantUpstream::Named(pool) => pool,
        ValidTenantUpstream::Dedicated(u) => {
            Arc::new(UpstreamPool::new(&format!("tenant:{}", t.id), u))
        }
    };
    let api_keys = t
        .api_keys
        .into_iter()
        .map(|k| {
            let roles = Arc::new(Roles::new(k.roles.iter().map(String::as_str)));
            (k.hash, k.name.into_boxed_str(), roles)
        })
        .collect();
    Tenant {
        id: t.id.into_boxed_str(),
        organization_id: t.organization_id.into_boxed_str(),
        name: t.name.into_boxed_str(),
        plan: t.plan.into_boxed_str(),
        status: t.status,
        subdomain: t.subdomain.into_boxed_str(),
        custom_domains: boxed(t.custom_domains),
        features: boxed(t.features),
        schema: t.schema.map(String::into_boxed_str),
        upstream,
        quotas: t
            .quotas
            .into_iter()
            .map(|(r, q)| (r.into_boxed_str(), quota_limit(q)))
            .collect(),
        branding: Branding::from(t.branding),
        api_keys,
        headers: t.headers,
        file: t.file.into_boxed_str(),
        metrics: OnceLock::new(),
    }
}

/// The single swap point of the serving config.
#[derive(Debug)]
pub struct SnapshotHolder {
    current: ArcSwap<Snapshot>,
}

impl SnapshotHolder {
    pub fn new(initial: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// The snapshot a request keeps for its whole life.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Installs a new snapshot; returns the previous one.
    pub fn swap(&self, next: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(next))
    }
}

#[cfg(test)]
mod tests;
