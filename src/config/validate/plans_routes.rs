//! The feature catalogue, `[plans]` (features, quotas, pricing) and `[[routes]]` (canonical
//! prefixes, methods parsed as [`http::Method`], consumed resources, required features and
//! roles).

use std::collections::{BTreeMap, HashSet};

use http::Method;

use super::Report;
use crate::config::names::is_valid_name;
use crate::config::{
    Consume, ConsumeConfig, GatewayConfig, PlanConfig, RouteConfig, ValidPlan, ValidRoute,
};

const CONSUME_FROM_CONTENT_LENGTH: &str = "content-length";

/// The names references are checked against: features (`features`, or every feature a plan
/// grants or a route requires when that is empty) and resources (every plan quota).
pub(super) struct Catalogue {
    features: HashSet<String>,
    resources: HashSet<String>,
}

impl Catalogue {
    pub(super) fn of(g: &GatewayConfig, main: &str, r: &mut Report) -> Catalogue {
        r.each(
            main,
            "features",
            &g.features,
            is_valid_name,
            "not a valid feature name",
        );
        let mut features: HashSet<String> = g.features.iter().cloned().collect();
        if features.is_empty() {
            for p in g.plans.values() {
                features.extend(p.features.iter().cloned());
            }
            for route in &g.routes {
                features.extend(route.require_feature.iter().cloned());
            }
        }
        let resources = g
            .plans
            .values()
            .flat_map(|p| p.quotas.keys().cloned())
            .collect();
        Catalogue {
            features,
            resources,
        }
    }

    pub(super) fn has_feature(&self, f: &str) -> bool {
        self.features.contains(f)
    }

    pub(super) fn has_resource(&self, res: &str) -> bool {
        self.resources.contains(res)
    }
}

pub(super) fn plans(
    plans: &BTreeMap<String, PlanConfig>,
    catalogue: &Catalogue,
    main: &str,
    r: &mut Report,
) -> BTreeMap<String, ValidPlan> {
    plans
        .iter()
        .map(|(name, p)| (name.clone(), plan(name, p, catalogue, main, r)))
        .collect()
}

fn plan(
    name: &str,
    p: &PlanConfig,
    catalogue: &Catalogue,
    main: &str,
    r: &mut Report,
) -> ValidPlan {
    if !is_valid_name(name) {
        r.at(
            main,
            format!("plans.{name}"),
            "plan names are letters, digits, '-' and '_'",
        );
    }
    for (i, f) in p.features.iter().enumerate() {
        if !catalogue.has_feature(f) {
            r.at(
                main,
                format!("plans.{name}.features[{i}]"),
                format!("unknown feature {f:?}"),
            );
        }
    }
    for (res, lim) in &p.quotas {
        if !is_valid_name(res) {
            r.at(
                main,
                format!("plans.{name}.quotas.{res}"),
                "resource names are letters, digits, '-' and '_'",
            );
        }
        if let Err(why) = crate::quota::check_limit(lim.limit) {
            r.at(main, format!("plans.{name}.quotas.{res}.limit"), why);
        }
    }
    let pricing = &p.pricing;
    if pricing.base < 0.0 || !pricing.base.is_finite() {
        r.at(
            main,
            format!("plans.{name}.pricing.base"),
            "must be a non-negative number",
        );
    }
    for (res, price) in &pricing.overage {
        let key = format!("plans.{name}.pricing.overage.{res}");
        if !p.quotas.contains_key(res) {
            r.at(
                main,
                &key,
                format!("plan has no quota for resource {res:?}"),
            );
        }
        if *price < 0.0 || !price.is_finite() {
            r.at(main, key, "must be a non-negative number");
        }
    }
    let mut features = p.features.clone();
    features.sort();
    features.dedup();
    ValidPlan {
        features,
        quotas: p.quotas.clone(),
        pricing: pricing.clone(),
    }
}

pub(super) fn routes(
    g: &GatewayConfig,
    catalogue: &Catalogue,
    main: &str,
    r: &mut Report,
) -> Vec<ValidRoute> {
    g.routes
        .iter()
        .enumerate()
        .map(|(i, route)| self::route(i, route, g, catalogue, main, r))
        .collect()
}

fn route(
    i: usize,
    route: &RouteConfig,
    g: &GatewayConfig,
    catalogue: &Catalogue,
    main: &str,
    r: &mut Report,
) -> ValidRoute {
    let RouteConfig {
        path_prefix,
        methods,
        consumes,
        require_feature,
        require_auth,
        case_sensitive,
        require_role,
    } = route;
    let prefix_key = format!("routes[{i}].path_prefix");
    if !path_prefix.starts_with('/') {
        r.at(main, prefix_key, "must start with '/'");
    } else {
        // Requests are matched in canonical form, so a prefix in any other spelling could
        // never match (or would match something else than it reads).
        let rules = crate::canonical_path::PathRules {
            allow_escaped_slashes: g.hardening.allow_escaped_slashes,
            allow_path_parameters: g.hardening.allow_path_parameters,
        };
        match crate::canonical_path::canonical_path(path_prefix.as_bytes(), rules) {
            Ok(c) if *c == **path_prefix => {}
            Ok(c) => r.at(
                main,
                prefix_key,
                format!("not in canonical form; write it as {c:?}"),
            ),
            Err(e) => r.at(
                main,
                prefix_key,
                format!("not a valid path ({})", e.as_str()),
            ),
        }
    }
    let mut parsed_methods = Vec::with_capacity(methods.len());
    for (j, m) in methods.iter().enumerate() {
        match Method::from_bytes(m.as_bytes()) {
            Ok(method) if m.to_ascii_uppercase() == *m => parsed_methods.push(method),
            _ => r.at(
                main,
                format!("routes[{i}].methods[{j}]"),
                format!("not an upper-case HTTP method: {m:?}"),
            ),
        }
    }
    if let Some(required) = require_role {
        if required.names().is_empty() {
            r.at(
                main,
                format!("routes[{i}].require_role"),
                "name at least one role",
            );
        }
        for name in required.names() {
            if !crate::roles::is_valid_role(name) {
                r.at(main, format!("routes[{i}].require_role"), bad_role(name));
            }
        }
    }
    if let Some(f) = require_feature {
        if !catalogue.has_feature(f) {
            r.at(
                main,
                format!("routes[{i}].require_feature"),
                format!("unknown feature {f:?}"),
            );
        }
    }
    let mut consumed = Vec::with_capacity(consumes.len());
    for (res, c) in consumes {
        let key = format!("routes[{i}].consumes.{res}");
        match c {
            ConsumeConfig::Fixed(n) if *n > crate::quota::MAX_QUOTA_VALUE => r.at(
                main,
                &key,
                format!("must be at most {}", crate::quota::MAX_QUOTA_VALUE),
            ),
            ConsumeConfig::Fixed(n) => consumed.push((res.clone(), Consume::Fixed(*n))),
            ConsumeConfig::FromHeader(h) if h == CONSUME_FROM_CONTENT_LENGTH => {
                consumed.push((res.clone(), Consume::ContentLength))
            }
            ConsumeConfig::FromHeader(h) => r.at(
                main,
                &key,
                format!("expected a number or \"content-length\", got {h:?}"),
            ),
        }
        if !catalogue.has_resource(res) {
            r.at(
                main,
                key,
                format!("no plan defines a quota for resource {res:?}"),
            );
        }
    }
    ValidRoute {
        path_prefix: path_prefix.clone(),
        methods: parsed_methods,
        consumes: consumed,
        require_feature: require_feature.clone(),
        require_auth: *require_auth,
        case_sensitive: case_sensitive.unwrap_or(g.hardening.case_sensitive_routes),
        require_role: require_role.as_ref().map(|req| req.names().to_vec()),
    }
}

/// The message for a role name that is not one.
pub(super) fn bad_role(name: &str) -> String {
    format!(
        "roles are 1 to {} of A-Z a-z 0-9 - _ . : / : {name:?}",
        crate::roles::MAX_ROLE_LEN
    )
}
