//! The compiled, immutable configuration the proxy serves from, and the one `ArcSwap` that
//! holds it. A request loads the snapshot once and keeps the `Arc`, so it is routed entirely by
//! the old or entirely by the new config, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method};

use crate::auth::{ApiKeyIndex, JwtVerifier};
use crate::canonical_path::{has_prefix, PathRules};
use crate::config::{
    ConfigError, ConfigErrors, ConsumeConfig, GatewayConfig, PricingConfig, RawConfig, RouteConfig,
    TenantConfig, TenantFile, TenantUpstreamConfig,
};
use crate::quota::QuotaLimit;
use crate::request_view::RequestRules;
use crate::roles::{RoleRequirement, Roles};
use crate::tenant::{HostIndex, Tenant, TenantHeaders};
use crate::upstream::UpstreamPool;

/// How much of a resource a route consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    Fixed(u64),
    /// The request's `Content-Length` (0 when absent).
    ContentLength,
}

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
    pub pricing: PricingConfig,
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
    /// First HTTPS listen port, for redirects.
    pub https_port: Option<u16>,
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
    /// The wire config it was compiled from (for the admin API and components that start once).
    pub config: GatewayConfig,
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

    /// Compiles a validated raw config. Errors here mean validation missed something (or an
    /// address stopped resolving between validation and compile); they are reported the same way.
    pub fn compile(raw: &RawConfig) -> Result<Snapshot, ConfigErrors> {
        let g = &raw.gateway;
        let main = raw.main_file.as_str();
        let mut errors = Vec::new();

        let mut pools = BTreeMap::new();
        for (name, u) in &g.upstreams {
            match UpstreamPool::compile(name, u, &raw.dir) {
                Ok(p) => {
                    pools.insert(name.clone(), Arc::new(p));
                }
                Err((key, message)) => errors.push(ConfigError::new(
                    main,
                    format!("upstreams.{name}.{key}"),
                    message,
                )),
            }
        }

        let plans: BTreeMap<String, Plan> = g
            .plans
            .iter()
            .map(|(name, p)| {
                let mut features: Vec<Box<str>> =
                    p.features.iter().map(|f| f.as_str().into()).collect();
                features.sort();
                features.dedup();
                let quotas = p
                    .quotas
                    .iter()
                    .map(|(r, q)| {
                        (
                            r.clone(),
                            QuotaLimit {
                                limit: q.limit,
                                period: q.period,
                            },
                        )
                    })
                    .collect();
                let plan = Plan {
                    name: name.as_str().into(),
                    features,
                    quotas,
                    pricing: p.pricing.clone(),
                };
                (name.clone(), plan)
            })
            .collect();

        let mut routes: Vec<Route> = g
            .routes
            .iter()
            .map(|r| compile_route(r, g.hardening.case_sensitive_routes))
            .collect();
        // Stable sort keeps file order among equal prefixes.
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));

        let mut hosts = HostIndex::new(&g.server.base_domains, &g.server.reserved_subdomains)
            .with_capacity(raw.tenants.len());
        for tf in &raw.tenants {
            match compile_tenant(tf, &plans, &pools, &raw.dir) {
                Ok(t) => hosts.insert(Arc::new(t)),
                Err(e) => errors.push(e),
            }
        }
        let mut api_keys = ApiKeyIndex::default();
        for t in hosts.tenants() {
            for (hash, name, roles) in &t.api_keys {
                api_keys.insert(*hash, &t.id, name, roles.clone());
            }
        }
        let jwt = match &g.auth.jwt {
            Some(cfg) => match JwtVerifier::compile(cfg, &raw.dir, main) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }

        let https_port = g
            .server
            .https_listen
            .first()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port());
        Ok(Snapshot {
            hosts,
            routes,
            plans,
            pools,
            settings: ServerSettings {
                trust_tenant_header: g.server.trust_tenant_header,
                dev_mode: g.server.dev_mode,
                redirect_http_to_https: g.server.redirect_http_to_https,
                strict_sni: g.server.strict_sni,
                access_log: g.log.access_log,
                request_rules: RequestRules {
                    path: PathRules {
                        allow_escaped_slashes: g.hardening.allow_escaped_slashes,
                        allow_path_parameters: g.hardening.allow_path_parameters,
                    },
                    underscore_headers: g.hardening.underscore_headers,
                },
                https_port,
            },
            config: g.clone(),
            content_hash: raw.content_hash,
            loaded_at: SystemTime::now(),
            api_keys,
            jwt,
        })
    }
}

fn compile_route(r: &RouteConfig, case_sensitive_default: bool) -> Route {
    let RouteConfig {
        path_prefix,
        methods,
        consumes,
        require_feature,
        require_auth,
        case_sensitive,
        require_role,
    } = r;
    Route {
        path_prefix: path_prefix.as_str().into(),
        methods: methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect(),
        consumes: consumes
            .iter()
            .map(|(res, c)| {
                let c = match c {
                    ConsumeConfig::Fixed(n) => Consume::Fixed(*n),
                    ConsumeConfig::FromHeader(_) => Consume::ContentLength,
                };
                (res.as_str().into(), c)
            })
            .collect(),
        require_feature: require_feature.as_deref().map(Into::into),
        require_auth: *require_auth,
        case_sensitive: case_sensitive.unwrap_or(case_sensitive_default),
        require_role: require_role
            .as_ref()
            .map(|r| RoleRequirement::any_of(r.names().iter().map(String::as_str))),
    }
}

fn header_value(file: &str, key: &str, v: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(v)
        .map_err(|_| ConfigError::new(file, key, "cannot be sent as an HTTP header value"))
}

fn compile_tenant(
    tf: &TenantFile,
    plans: &BTreeMap<String, Plan>,
    pools: &BTreeMap<String, Arc<UpstreamPool>>,
    base_dir: &std::path::Path,
) -> Result<Tenant, ConfigError> {
    let file = tf.file.as_str();
    // Exhaustive on purpose: a new TenantConfig field must be handled here.
    let TenantConfig {
        id,
        organization_id,
        name,
        plan,
        status,
        subdomain,
        custom_domains,
        features_enabled,
        features_disabled,
        upstream,
        schema,
        quotas,
        branding,
        api_keys,
    } = &tf.tenant;
    let plan_c = plans
        .get(plan)
        .ok_or_else(|| ConfigError::new(file, "plan", format!("unknown plan {plan:?}")))?;

    let mut features: BTreeSet<&str> = plan_c.features.iter().map(|f| &**f).collect();
    features.extend(features_enabled.iter().map(String::as_str));
    for f in features_disabled {
        features.remove(f.as_str());
    }
    let features: Vec<Box<str>> = features.into_iter().map(Into::into).collect();

    let mut effective = plan_c.quotas.clone();
    for (r, q) in quotas {
        effective.insert(
            r.clone(),
            QuotaLimit {
                limit: q.limit,
                period: q.period,
            },
        );
    }
    let quotas: Vec<(Box<str>, QuotaLimit)> = effective
        .into_iter()
        .map(|(r, q)| (r.into_boxed_str(), q))
        .collect();

    let upstream = match upstream {
        TenantUpstreamConfig::Named(n) => pools
            .get(n)
            .cloned()
            .ok_or_else(|| ConfigError::new(file, "upstream", format!("unknown upstream {n:?}")))?,
        TenantUpstreamConfig::Dedicated(u) => Arc::new(
            UpstreamPool::compile(&format!("tenant:{id}"), u, base_dir).map_err(
                |(key, message)| ConfigError::new(file, format!("upstream.{key}"), message),
            )?,
        ),
    };

    let mut keys = Vec::with_capacity(api_keys.len());
    for (i, k) in api_keys.iter().enumerate() {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&k.sha256, &mut hash).map_err(|_| {
            ConfigError::new(
                file,
                format!("api_keys[{i}].sha256"),
                "not 64 hex characters",
            )
        })?;
        let roles = Arc::new(Roles::new(k.roles.iter().map(String::as_str)));
        keys.push((hash, k.name.as_str().into(), roles));
    }

    let headers = TenantHeaders {
        id: header_value(file, "id", id)?,
        organization_id: header_value(file, "organization_id", organization_id)?,
        plan: header_value(file, "plan", plan)?,
        features: header_value(file, "features_enabled", &features.join(","))?,
        schema: schema
            .as_deref()
            .map(|s| header_value(file, "schema", s))
            .transpose()?,
    };

    Ok(Tenant {
        id: id.as_str().into(),
        organization_id: organization_id.as_str().into(),
        name: if name.is_empty() {
            id.as_str()
        } else {
            name.as_str()
        }
        .into(),
        plan: plan.as_str().into(),
        status: *status,
        subdomain: subdomain.as_deref().unwrap_or(id).into(),
        custom_domains: custom_domains
            .iter()
            .map(|d| d.to_ascii_lowercase().into_boxed_str())
            .collect(),
        features,
        schema: schema.as_deref().map(Into::into),
        upstream,
        quotas,
        branding: branding.clone(),
        api_keys: keys,
        headers,
        file: file.into(),
        metrics: OnceLock::new(),
    })
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
