//! Tenant files: ids, subdomains and custom domains (unique across files), plan, features,
//! upstream, schema, quota overrides, branding, API keys (hex decoded here) and the values of
//! the `X-Tenant-*` headers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use std::sync::Arc;

use http::HeaderValue;

use super::plans_routes::{bad_role, Catalogue};
use super::{upstreams, Report};
use crate::config::names::{is_hex_color, is_valid_dns_name, is_valid_label};
use crate::config::{
    BrandingConfig, RawConfig, TenantConfig, TenantHeaders, TenantUpstreamConfig, ValidApiKey,
    ValidPlan, ValidTenant, ValidTenantUpstream,
};
use crate::upstream::UpstreamPool;

/// Names already taken by an earlier tenant file of the same load.
#[derive(Default)]
struct Claims<'a> {
    ids: HashMap<&'a str, &'a str>,
    subdomains: HashMap<&'a str, &'a str>,
    domains: HashMap<String, &'a str>,
    key_hashes: HashMap<[u8; 32], &'a str>,
}

pub(super) fn tenants(
    raw: &RawConfig,
    catalogue: &Catalogue,
    plans: &BTreeMap<String, ValidPlan>,
    pools: &BTreeMap<String, Arc<UpstreamPool>>,
    r: &mut Report,
) -> Vec<ValidTenant> {
    let mut claims = Claims::default();
    let reserved: HashSet<&str> = raw
        .gateway
        .server
        .reserved_subdomains
        .iter()
        .map(String::as_str)
        .collect();
    let mut out = Vec::with_capacity(raw.tenants.len());
    for tf in &raw.tenants {
        let file = tf.file.as_str();
        let ctx = Context {
            raw,
            catalogue,
            plans,
            pools,
            reserved: &reserved,
            file,
        };
        if let Some(t) = ctx.tenant(&tf.tenant, &mut claims, r) {
            out.push(t);
        }
    }
    out
}

struct Context<'a> {
    raw: &'a RawConfig,
    catalogue: &'a Catalogue,
    plans: &'a BTreeMap<String, ValidPlan>,
    pools: &'a BTreeMap<String, Arc<UpstreamPool>>,
    reserved: &'a HashSet<&'a str>,
    file: &'a str,
}

impl<'a> Context<'a> {
    fn tenant(
        &self,
        t: &'a TenantConfig,
        claims: &mut Claims<'a>,
        r: &mut Report,
    ) -> Option<ValidTenant> {
        let file = self.file;
        let before = r.errors.len();
        // Exhaustive on purpose: a new TenantConfig field must be validated here.
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
        } = t;
        if !is_valid_label(id) || id.to_ascii_lowercase() != *id {
            r.at(
                file,
                "id",
                format!("tenant ids are lower-case DNS labels: {id:?}"),
            );
        }
        if let Some(other) = claims.ids.insert(id, file) {
            r.at(
                file,
                "id",
                format!("duplicate tenant id {id:?} (also in {other})"),
            );
        }
        let sub = subdomain.as_deref().unwrap_or(id);
        let sub_key = if subdomain.is_some() {
            "subdomain"
        } else {
            "id"
        };
        if !is_valid_label(sub) || sub.to_ascii_lowercase() != sub {
            r.at(
                file,
                sub_key,
                format!("subdomain must be a lower-case DNS label: {sub:?}"),
            );
        }
        if self.reserved.contains(sub) {
            r.at(
                file,
                sub_key,
                format!("subdomain {sub:?} is reserved (server.reserved_subdomains)"),
            );
        }
        if let Some(other) = claims.subdomains.insert(sub, id) {
            r.at(
                file,
                sub_key,
                format!("subdomain {sub:?} already used by tenant {other:?}"),
            );
        }
        let plan_c = self.plans.get(plan);
        if plan_c.is_none() {
            r.at(file, "plan", format!("unknown plan {plan:?}"));
        }
        let domains = self.custom_domains(id, custom_domains, claims, r);
        for (key, list) in [
            ("features_enabled", features_enabled),
            ("features_disabled", features_disabled),
        ] {
            for (i, f) in list.iter().enumerate() {
                if !self.catalogue.has_feature(f) {
                    r.at(
                        file,
                        format!("{key}[{i}]"),
                        format!("unknown feature {f:?}"),
                    );
                }
            }
        }
        let upstream = match upstream {
            TenantUpstreamConfig::Named(n) => {
                // A pool that is configured but invalid was reported with its own keys.
                if !self.raw.gateway.upstreams.contains_key(n) {
                    r.at(file, "upstream", format!("unknown upstream pool {n:?}"));
                }
                self.pools.get(n).cloned().map(ValidTenantUpstream::Named)
            }
            TenantUpstreamConfig::Dedicated(u) => {
                upstreams::upstream(u, "upstream", &self.raw.dir, file, r)
                    .map(ValidTenantUpstream::Dedicated)
            }
        };
        if let Some(schema) = schema {
            if schema.is_empty()
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                r.at(
                    file,
                    "schema",
                    format!("schema names are letters, digits and '_': {schema:?}"),
                );
            }
        }
        for (res, lim) in quotas {
            if !self.catalogue.has_resource(res) {
                r.at(
                    file,
                    format!("quotas.{res}"),
                    format!("no plan defines a quota for resource {res:?}"),
                );
            }
            if let Err(why) = crate::quota::check_limit(lim.limit) {
                r.at(file, format!("quotas.{res}.limit"), why);
            }
        }
        self.branding(branding, r);
        let keys = self.api_keys(id, api_keys, claims, r);
        for (key, v) in [("organization_id", organization_id), ("name", name)] {
            if HeaderValue::from_str(v).is_err() {
                r.at(
                    file,
                    key,
                    "must be printable text without control characters",
                );
            }
        }
        if r.errors.len() > before {
            return None;
        }
        let (plan_c, upstream) = (plan_c?, upstream?);
        let mut features: BTreeSet<&str> = plan_c.features.iter().map(String::as_str).collect();
        features.extend(features_enabled.iter().map(String::as_str));
        for f in features_disabled {
            features.remove(f.as_str());
        }
        let features: Vec<String> = features.into_iter().map(str::to_string).collect();
        let mut effective_quotas = plan_c.quotas.clone();
        effective_quotas.extend(quotas.iter().map(|(res, q)| (res.clone(), *q)));
        let header = |key: &str, v: &str, r: &mut Report| {
            let value = HeaderValue::from_str(v);
            if value.is_err() {
                r.at(file, key, "cannot be sent as an HTTP header value");
            }
            value.ok()
        };
        let headers = TenantHeaders {
            id: header("id", id, r)?,
            organization_id: header("organization_id", organization_id, r)?,
            plan: header("plan", plan, r)?,
            features: header("features_enabled", &features.join(","), r)?,
            schema: match schema {
                Some(s) => Some(header("schema", s, r)?),
                None => None,
            },
        };
        Some(ValidTenant {
            file: file.to_string(),
            id: id.clone(),
            organization_id: organization_id.clone(),
            name: if name.is_empty() { id } else { name }.clone(),
            plan: plan.clone(),
            status: *status,
            subdomain: sub.to_string(),
            custom_domains: domains,
            features,
            schema: schema.clone(),
            upstream,
            quotas: effective_quotas,
            branding: branding.clone(),
            api_keys: keys,
            headers,
        })
    }

    /// The tenant's custom domains, lower-cased.
    fn custom_domains(
        &self,
        id: &'a str,
        list: &[String],
        claims: &mut Claims<'a>,
        r: &mut Report,
    ) -> Vec<String> {
        let bases = &self.raw.gateway.server.base_domains;
        let mut out = Vec::with_capacity(list.len());
        for (i, d) in list.iter().enumerate() {
            let key = format!("custom_domains[{i}]");
            let norm = d.to_ascii_lowercase();
            if !is_valid_dns_name(&norm) || !norm.contains('.') {
                r.at(self.file, &key, format!("not a DNS name: {d:?}"));
            }
            if bases
                .iter()
                .any(|b| norm == *b || norm.ends_with(&format!(".{b}")))
            {
                r.at(
                    self.file,
                    &key,
                    format!("{d:?} is under a base domain; use subdomain instead"),
                );
            }
            if let Some(other) = claims.domains.insert(norm.clone(), id) {
                r.at(
                    self.file,
                    key,
                    format!("already claimed by tenant {other:?}"),
                );
            }
            out.push(norm);
        }
        out
    }

    fn branding(&self, b: &BrandingConfig, r: &mut Report) {
        for (key, c) in [
            ("branding.primary_color", &b.primary_color),
            ("branding.secondary_color", &b.secondary_color),
        ] {
            if let Some(c) = c {
                if !is_hex_color(c) {
                    r.at(self.file, key, format!("colours are #rrggbb: {c:?}"));
                }
            }
        }
        if let Some(logo) = &b.logo {
            if !logo.starts_with("https://")
                || logo.bytes().any(|b| b <= b' ' || b"\"'<>`\\".contains(&b))
            {
                r.at(
                    self.file,
                    "branding.logo",
                    format!("logo must be an https:// URL without quotes or spaces: {logo:?}"),
                );
            }
        }
    }

    /// The tenant's API keys with their hashes decoded.
    fn api_keys(
        &self,
        id: &'a str,
        keys: &[crate::config::ApiKeyConfig],
        claims: &mut Claims<'a>,
        r: &mut Report,
    ) -> Vec<ValidApiKey> {
        let mut out = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let key = format!("api_keys[{i}].sha256");
            let mut hash = [0u8; 32];
            if k.sha256.len() != 64 || hex::decode_to_slice(&k.sha256, &mut hash).is_err() {
                r.at(
                    self.file,
                    key,
                    "must be 64 hex characters (SHA-256 of the key)",
                );
            } else if let Some(other) = claims.key_hashes.insert(hash, id) {
                r.at(
                    self.file,
                    key,
                    format!("key already belongs to tenant {other:?}"),
                );
            }
            for (j, role) in k.roles.iter().enumerate() {
                if !crate::roles::is_valid_role(role) {
                    r.at(
                        self.file,
                        format!("api_keys[{i}].roles[{j}]"),
                        bad_role(role),
                    );
                }
            }
            out.push(ValidApiKey {
                hash,
                name: k.name.clone(),
                roles: k.roles.clone(),
            });
        }
        out
    }
}
