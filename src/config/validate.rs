//! Cross-file validation of a loaded config: every problem reported with file and key, none
//! fatal on its own, so `check` prints them all.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::{
    parse_socket_addr, ConfigError, ConsumeConfig, QuotaBackendKind, RawConfig,
    TenantUpstreamConfig, UpstreamConfig,
};
use crate::tenant::{is_valid_dns_name, is_valid_label};

const CONSUME_FROM_CONTENT_LENGTH: &str = "content-length";

/// Cross-file validation; every problem is reported, not just the first.
pub fn validate(raw: &RawConfig) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let main = raw.main_file.as_str();
    let g = &raw.gateway;
    errs.extend(super::limits::validate(&g.limits, main));
    let mut err =
        |file: &str, key: String, msg: String| errs.push(ConfigError::new(file, key, msg));

    // [server]
    let s = &g.server;
    if s.http_listen.is_empty() && s.https_listen.is_empty() {
        err(
            main,
            "server.http_listen".into(),
            "at least one listener is required".into(),
        );
    }
    for (name, list) in [
        ("http_listen", &s.http_listen),
        ("https_listen", &s.https_listen),
    ] {
        for (i, a) in list.iter().enumerate() {
            if a.parse::<SocketAddr>().is_err() {
                err(
                    main,
                    format!("server.{name}[{i}]"),
                    format!("not an address ip:port: {a:?}"),
                );
            }
        }
    }
    if s.admin_listen.parse::<SocketAddr>().is_err() {
        err(
            main,
            "server.admin_listen".into(),
            format!("not an address ip:port: {:?}", s.admin_listen),
        );
    }
    if s.threads == 0 || s.threads > 1024 {
        err(
            main,
            "server.threads".into(),
            "must be between 1 and 1024".into(),
        );
    }
    let mut bases = HashSet::new();
    for (i, b) in s.base_domains.iter().enumerate() {
        if !is_valid_dns_name(b) || b.to_ascii_lowercase() != *b {
            err(
                main,
                format!("server.base_domains[{i}]"),
                format!("not a lower-case DNS name: {b:?}"),
            );
        }
        if !bases.insert(b.as_str()) {
            err(
                main,
                format!("server.base_domains[{i}]"),
                format!("duplicate base domain {b:?}"),
            );
        }
    }
    for (i, r) in s.reserved_subdomains.iter().enumerate() {
        if !is_valid_label(r) {
            err(
                main,
                format!("server.reserved_subdomains[{i}]"),
                format!("not a DNS label: {r:?}"),
            );
        }
    }

    // [upstreams]
    for (name, u) in &g.upstreams {
        validate_upstream(u, &format!("upstreams.{name}"), main, &mut err);
    }

    // [quota]
    let q = &g.quota;
    if q.timeout.is_zero() {
        err(
            main,
            "quota.timeout".into(),
            "must be greater than zero".into(),
        );
    }
    if q.breaker_failures == 0 {
        err(
            main,
            "quota.breaker_failures".into(),
            "must be at least 1".into(),
        );
    }
    if q.probe_interval < Duration::from_millis(10) || q.probe_interval > Duration::from_secs(60) {
        err(
            main,
            "quota.probe_interval".into(),
            "must be between 10ms and 60s".into(),
        );
    }
    if !(q.fallback_share > 0.0 && q.fallback_share <= 1.0) {
        err(
            main,
            "quota.fallback_share".into(),
            format!(
                "must be > 0 and <= 1 (e.g. 1 / expected nodes), not {}",
                q.fallback_share
            ),
        );
    }
    if q.max_pending_keys == 0 {
        err(
            main,
            "quota.max_pending_keys".into(),
            "must be at least 1".into(),
        );
    }
    if q.backend == QuotaBackendKind::Redis {
        let urls: Vec<(String, &String)> = if q.redis_cluster_urls.is_empty() {
            vec![("quota.redis_url".into(), &q.redis_url)]
        } else {
            q.redis_cluster_urls
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("quota.redis_cluster_urls[{i}]"), u))
                .collect()
        };
        for (key, u) in urls {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                err(
                    main,
                    key,
                    format!("must start with redis:// or rediss://: {u:?}"),
                );
            }
        }
    }

    // [acme]
    if !(0.0..1.0).contains(&g.acme.renew_before_ratio) || g.acme.renew_before_ratio == 0.0 {
        err(
            main,
            "acme.renew_before_ratio".into(),
            "must be in (0, 1)".into(),
        );
    }
    if g.acme.enabled {
        if !(g.acme.directory_url.starts_with("https://")
            || g.acme.directory_url.starts_with("http://"))
        {
            err(
                main,
                "acme.directory_url".into(),
                "must be an http(s) URL".into(),
            );
        }
        for (i, d) in g.acme.dns_servers.iter().enumerate() {
            if d.parse::<SocketAddr>().is_err() && d.parse::<std::net::IpAddr>().is_err() {
                err(
                    main,
                    format!("acme.dns_servers[{i}]"),
                    format!("not an ip or ip:port: {d:?}"),
                );
            }
        }
        for (i, r) in g.acme.ca_roots.iter().enumerate() {
            if !raw.dir.join(r).is_file() {
                err(
                    main,
                    format!("acme.ca_roots[{i}]"),
                    format!("no such file: {r:?}"),
                );
            }
        }
        for (key, d) in [
            ("check_interval", g.acme.check_interval),
            ("retry_base", g.acme.retry_base),
        ] {
            if d.is_zero() {
                err(
                    main,
                    format!("acme.{key}"),
                    "must be greater than zero".into(),
                );
            }
        }
        if g.acme.http_listener_needed_but_missing(&g.server) {
            err(
                main,
                "server.http_listen".into(),
                "ACME http-01 needs a plain HTTP listener".into(),
            );
        }
    }

    // Feature catalogue.
    let mut catalogue: HashSet<&str> = g.features.iter().map(String::as_str).collect();
    let explicit_catalogue = !catalogue.is_empty();
    for (i, f) in g.features.iter().enumerate() {
        if !is_valid_name(f) {
            err(
                main,
                format!("features[{i}]"),
                format!("not a valid feature name: {f:?}"),
            );
        }
    }
    if !explicit_catalogue {
        for p in g.plans.values() {
            catalogue.extend(p.features.iter().map(String::as_str));
        }
        for r in &g.routes {
            catalogue.extend(r.require_feature.as_deref());
        }
    }
    let mut known_resources: HashSet<&str> = HashSet::new();

    // [plans]
    for (name, p) in &g.plans {
        if !is_valid_name(name) {
            err(
                main,
                format!("plans.{name}"),
                "plan names are letters, digits, '-' and '_'".into(),
            );
        }
        for (i, f) in p.features.iter().enumerate() {
            if !catalogue.contains(f.as_str()) {
                err(
                    main,
                    format!("plans.{name}.features[{i}]"),
                    format!("unknown feature {f:?}"),
                );
            }
        }
        for (res, lim) in &p.quotas {
            known_resources.insert(res);
            if !is_valid_name(res) {
                err(
                    main,
                    format!("plans.{name}.quotas.{res}"),
                    "resource names are letters, digits, '-' and '_'".into(),
                );
            }
            if let Err(why) = crate::quota::check_limit(lim.limit) {
                err(main, format!("plans.{name}.quotas.{res}.limit"), why);
            }
        }
        if p.pricing.base < 0.0 || !p.pricing.base.is_finite() {
            err(
                main,
                format!("plans.{name}.pricing.base"),
                "must be a non-negative number".into(),
            );
        }
        for (res, price) in &p.pricing.overage {
            if !p.quotas.contains_key(res) {
                err(
                    main,
                    format!("plans.{name}.pricing.overage.{res}"),
                    format!("plan has no quota for resource {res:?}"),
                );
            }
            if *price < 0.0 || !price.is_finite() {
                err(
                    main,
                    format!("plans.{name}.pricing.overage.{res}"),
                    "must be a non-negative number".into(),
                );
            }
        }
    }

    // [provisioning]
    let hooks = &g.provisioning;
    for (key, argv) in [
        ("on_create", &hooks.on_create),
        ("on_update", &hooks.on_update),
        ("on_delete", &hooks.on_delete),
    ] {
        if argv.first().is_some_and(|p| p.trim().is_empty()) {
            err(
                main,
                format!("provisioning.{key}[0]"),
                "the program to run: a path or a name in PATH".into(),
            );
        }
    }
    if hooks.timeout.is_zero() {
        err(
            main,
            "provisioning.timeout".into(),
            "must be longer than 0s".into(),
        );
    }

    // [[routes]]
    for (i, r) in g.routes.iter().enumerate() {
        if !r.path_prefix.starts_with('/') {
            err(
                main,
                format!("routes[{i}].path_prefix"),
                "must start with '/'".into(),
            );
        } else {
            // Requests are matched in canonical form, so a prefix in any other spelling could
            // never match (or would match something else than it reads).
            let rules = crate::canonical_path::PathRules {
                allow_escaped_slashes: g.hardening.allow_escaped_slashes,
                allow_path_parameters: g.hardening.allow_path_parameters,
            };
            match crate::canonical_path::canonical_path(r.path_prefix.as_bytes(), rules) {
                Ok(c) if *c == *r.path_prefix => {}
                Ok(c) => err(
                    main,
                    format!("routes[{i}].path_prefix"),
                    format!("not in canonical form; write it as {c:?}"),
                ),
                Err(e) => err(
                    main,
                    format!("routes[{i}].path_prefix"),
                    format!("not a valid path ({})", e.as_str()),
                ),
            }
        }
        for (j, m) in r.methods.iter().enumerate() {
            if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                err(
                    main,
                    format!("routes[{i}].methods[{j}]"),
                    format!("not an upper-case HTTP method: {m:?}"),
                );
            }
        }
        if let Some(required) = &r.require_role {
            if required.names().is_empty() {
                err(
                    main,
                    format!("routes[{i}].require_role"),
                    "name at least one role".into(),
                );
            }
            for name in required.names() {
                if !crate::roles::is_valid_role(name) {
                    err(main, format!("routes[{i}].require_role"), bad_role(name));
                }
            }
        }
        if let Some(f) = &r.require_feature {
            if !catalogue.contains(f.as_str()) {
                err(
                    main,
                    format!("routes[{i}].require_feature"),
                    format!("unknown feature {f:?}"),
                );
            }
        }
        for (res, c) in &r.consumes {
            if let ConsumeConfig::Fixed(n) = c {
                if *n > crate::quota::MAX_QUOTA_VALUE {
                    err(
                        main,
                        format!("routes[{i}].consumes.{res}"),
                        format!("must be at most {}", crate::quota::MAX_QUOTA_VALUE),
                    );
                }
            }
            if let ConsumeConfig::FromHeader(h) = c {
                if h != CONSUME_FROM_CONTENT_LENGTH {
                    err(
                        main,
                        format!("routes[{i}].consumes.{res}"),
                        format!("expected a number or \"content-length\", got {h:?}"),
                    );
                }
            }
            if !known_resources.contains(res.as_str()) {
                err(
                    main,
                    format!("routes[{i}].consumes.{res}"),
                    format!("no plan defines a quota for resource {res:?}"),
                );
            }
        }
    }

    // Tenants.
    let mut ids: HashMap<&str, &str> = HashMap::new();
    let mut subdomains: HashMap<&str, &str> = HashMap::new();
    let mut domains: HashMap<String, &str> = HashMap::new();
    let mut key_hashes: HashMap<String, &str> = HashMap::new();
    let reserved: HashSet<&str> = s.reserved_subdomains.iter().map(String::as_str).collect();
    for tf in &raw.tenants {
        let file = tf.file.as_str();
        let t = &tf.tenant;
        if !is_valid_label(&t.id) || t.id.to_ascii_lowercase() != t.id {
            err(
                file,
                "id".into(),
                format!("tenant ids are lower-case DNS labels: {:?}", t.id),
            );
        }
        if let Some(other) = ids.insert(&t.id, file) {
            err(
                file,
                "id".into(),
                format!("duplicate tenant id {:?} (also in {other})", t.id),
            );
        }
        let sub = t.subdomain.as_deref().unwrap_or(&t.id);
        let sub_key = if t.subdomain.is_some() {
            "subdomain"
        } else {
            "id"
        };
        if !is_valid_label(sub) || sub.to_ascii_lowercase() != sub {
            err(
                file,
                sub_key.into(),
                format!("subdomain must be a lower-case DNS label: {sub:?}"),
            );
        }
        if reserved.contains(sub) {
            err(
                file,
                sub_key.into(),
                format!("subdomain {sub:?} is reserved (server.reserved_subdomains)"),
            );
        }
        if let Some(other) = subdomains.insert(sub, &t.id) {
            err(
                file,
                sub_key.into(),
                format!("subdomain {sub:?} already used by tenant {other:?}"),
            );
        }
        if !g.plans.contains_key(&t.plan) {
            err(file, "plan".into(), format!("unknown plan {:?}", t.plan));
        }
        for (i, d) in t.custom_domains.iter().enumerate() {
            let key = format!("custom_domains[{i}]");
            let norm = d.to_ascii_lowercase();
            if !is_valid_dns_name(&norm) || !norm.contains('.') {
                err(file, key.clone(), format!("not a DNS name: {d:?}"));
            }
            if s.base_domains
                .iter()
                .any(|b| norm == *b || norm.ends_with(&format!(".{b}")))
            {
                err(
                    file,
                    key.clone(),
                    format!("{d:?} is under a base domain; use subdomain instead"),
                );
            }
            if let Some(other) = domains.insert(norm, &t.id) {
                err(file, key, format!("already claimed by tenant {other:?}"));
            }
        }
        for (key, list) in [
            ("features_enabled", &t.features_enabled),
            ("features_disabled", &t.features_disabled),
        ] {
            for (i, f) in list.iter().enumerate() {
                if !catalogue.contains(f.as_str()) {
                    err(
                        file,
                        format!("{key}[{i}]"),
                        format!("unknown feature {f:?}"),
                    );
                }
            }
        }
        match &t.upstream {
            TenantUpstreamConfig::Named(n) => {
                if !g.upstreams.contains_key(n) {
                    err(
                        file,
                        "upstream".into(),
                        format!("unknown upstream pool {n:?}"),
                    );
                }
            }
            TenantUpstreamConfig::Dedicated(u) => validate_upstream(u, "upstream", file, &mut err),
        }
        if let Some(schema) = &t.schema {
            if schema.is_empty()
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                err(
                    file,
                    "schema".into(),
                    format!("schema names are letters, digits and '_': {schema:?}"),
                );
            }
        }
        for (res, lim) in &t.quotas {
            if !known_resources.contains(res.as_str()) {
                err(
                    file,
                    format!("quotas.{res}"),
                    format!("no plan defines a quota for resource {res:?}"),
                );
            }
            if let Err(why) = crate::quota::check_limit(lim.limit) {
                err(file, format!("quotas.{res}.limit"), why);
            }
        }
        for (key, c) in [
            ("branding.primary_color", &t.branding.primary_color),
            ("branding.secondary_color", &t.branding.secondary_color),
        ] {
            if let Some(c) = c {
                if !is_hex_color(c) {
                    err(file, key.into(), format!("colours are #rrggbb: {c:?}"));
                }
            }
        }
        if let Some(logo) = &t.branding.logo {
            if !logo.starts_with("https://")
                || logo.bytes().any(|b| b <= b' ' || b"\"'<>`\\".contains(&b))
            {
                err(
                    file,
                    "branding.logo".into(),
                    format!("logo must be an https:// URL without quotes or spaces: {logo:?}"),
                );
            }
        }
        for (i, k) in t.api_keys.iter().enumerate() {
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                err(
                    file,
                    format!("api_keys[{i}].sha256"),
                    "must be 64 hex characters (SHA-256 of the key)".into(),
                );
            } else if let Some(other) = key_hashes.insert(k.sha256.to_ascii_lowercase(), &t.id) {
                err(
                    file,
                    format!("api_keys[{i}].sha256"),
                    format!("key already belongs to tenant {other:?}"),
                );
            }
            for (j, role) in k.roles.iter().enumerate() {
                if !crate::roles::is_valid_role(role) {
                    err(file, format!("api_keys[{i}].roles[{j}]"), bad_role(role));
                }
            }
        }
        for (key, v) in [("organization_id", &t.organization_id), ("name", &t.name)] {
            if http::HeaderValue::from_str(v).is_err() {
                err(
                    file,
                    key.into(),
                    "must be printable text without control characters".into(),
                );
            }
        }
    }
    errs
}

fn validate_upstream(
    u: &UpstreamConfig,
    key: &str,
    file: &str,
    err: &mut impl FnMut(&str, String, String),
) {
    if u.addrs.is_empty() {
        err(
            file,
            format!("{key}.addrs"),
            "at least one address is required".into(),
        );
    }
    for (i, a) in u.addrs.iter().enumerate() {
        if parse_socket_addr(a).is_none() {
            err(
                file,
                format!("{key}.addrs[{i}]"),
                format!("not an address host:port: {a:?}"),
            );
        }
    }
    for (name, d) in [
        ("connect_timeout", u.connect_timeout),
        ("read_timeout", u.read_timeout),
    ] {
        if d.is_zero() {
            err(
                file,
                format!("{key}.{name}"),
                "must be greater than zero".into(),
            );
        }
    }
    if let Some(sni) = &u.sni {
        if !u.tls {
            err(
                file,
                format!("{key}.sni"),
                "only meaningful with tls = true".into(),
            );
        } else if !is_valid_dns_name(sni) {
            err(
                file,
                format!("{key}.sni"),
                format!("not a DNS name: {sni:?}"),
            );
        }
    }
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_hex_color(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s.bytes().skip(1).all(|b| b.is_ascii_hexdigit())
}

fn bad_role(name: &str) -> String {
    format!(
        "roles are 1 to {} of A-Z a-z 0-9 - _ . : / : {name:?}",
        crate::roles::MAX_ROLE_LEN
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_toml, GatewayConfig, TenantFile};

    fn errors(gateway: &str, tenant: Option<&str>) -> Vec<ConfigError> {
        let gateway: GatewayConfig = parse_toml("gateway.toml", gateway).expect("parses");
        let tenants = tenant
            .map(|t| TenantFile {
                file: "tenants/t.toml".into(),
                tenant: parse_toml("tenants/t.toml", t).expect("tenant parses"),
            })
            .into_iter()
            .collect();
        validate(&RawConfig {
            dir: ".".into(),
            main_file: "gateway.toml".into(),
            gateway,
            tenants,
            content_hash: 0,
        })
    }

    const PLAN: &str = "[plans.p]\nquotas.requests = { limit = 10, period = \"hour\" }\n";

    #[test]
    fn quota_failure_settings_are_range_checked_by_key() {
        for (line, key) in [
            ("fallback_share = 0.0", "quota.fallback_share"),
            ("fallback_share = 1.5", "quota.fallback_share"),
            ("fallback_share = nan", "quota.fallback_share"),
            ("breaker_failures = 0", "quota.breaker_failures"),
            ("probe_interval = \"1ms\"", "quota.probe_interval"),
            ("probe_interval = \"2m\"", "quota.probe_interval"),
            ("max_pending_keys = 0", "quota.max_pending_keys"),
        ] {
            let errs = errors(&format!("[quota]\n{line}\n{PLAN}"), None);
            assert!(errs.iter().any(|e| e.key == key), "{line}: {errs:?}");
        }
        let ok = errors(
            &format!("[quota]\non_backend_error = \"local\"\nfallback_share = 0.5\n{PLAN}"),
            None,
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn limits_and_amounts_beyond_what_the_stores_hold_name_the_key() {
        let too_big = crate::quota::MAX_QUOTA_VALUE + 1;
        let errs = errors(
            &format!("[plans.p]\nquotas.requests = {{ limit = {too_big}, period = \"hour\" }}\n[[routes]]\npath_prefix = \"/x\"\nconsumes = {{ requests = {too_big} }}\n"),
            Some(&format!("id = \"t\"\nplan = \"p\"\nupstream = \"s\"\n[quotas]\nrequests = {{ limit = {}, period = \"day\" }}\n", i64::MAX)),
        );
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "plans.p.quotas.requests.limit",
            "routes[0].consumes.requests",
            "quotas.requests.limit",
        ] {
            assert!(keys.contains(&key), "{key} not in {errs:?}");
        }
    }
}
