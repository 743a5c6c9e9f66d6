//! `[server]`, `[admin]` and `[log]`: listen addresses (parsed here, once), threads, base
//! domains and reserved subdomains; and the split of these keys into start-only and
//! reloadable values.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::Report;
use crate::config::names::{is_valid_dns_name, is_valid_label};
use crate::config::startup::{StartupLog, StartupServer};
use crate::config::{GatewayConfig, ServerConfig, StartupConfig, ValidServer};

/// The parsed listen addresses.
pub(super) struct Listeners {
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    admin: SocketAddr,
}

/// The listen addresses, or `None` when one of them does not parse (reported).
pub(super) fn listeners(s: &ServerConfig, main: &str, r: &mut Report) -> Option<Listeners> {
    if s.http_listen.is_empty() && s.https_listen.is_empty() {
        r.at(
            main,
            "server.http_listen",
            "at least one listener is required",
        );
    }
    let mut parse_list = |name: &str, list: &[String]| -> Option<Vec<SocketAddr>> {
        let mut addrs = Some(Vec::with_capacity(list.len()));
        for (i, a) in list.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(addr) => addrs.iter_mut().for_each(|v| v.push(addr)),
                Err(_) => {
                    r.at(
                        main,
                        format!("server.{name}[{i}]"),
                        format!("not an address ip:port: {a:?}"),
                    );
                    addrs = None;
                }
            }
        }
        addrs
    };
    let http = parse_list("http_listen", &s.http_listen);
    let https = parse_list("https_listen", &s.https_listen);
    let admin = s.admin_listen.parse::<SocketAddr>().ok();
    if admin.is_none() {
        r.at(
            main,
            "server.admin_listen",
            format!("not an address ip:port: {:?}", s.admin_listen),
        );
    }
    if s.threads == 0 || s.threads > 1024 {
        r.at(main, "server.threads", "must be between 1 and 1024");
    }
    Some(Listeners {
        http: http?,
        https: https?,
        admin: admin?,
    })
}

pub(super) fn names(s: &ServerConfig, main: &str, r: &mut Report) {
    let mut bases = HashSet::new();
    r.each(
        main,
        "server.base_domains",
        &s.base_domains,
        |b| is_valid_dns_name(b) && b.to_ascii_lowercase() == b,
        "not a lower-case DNS name",
    );
    for (i, b) in s.base_domains.iter().enumerate() {
        if !bases.insert(b.as_str()) {
            r.at(
                main,
                format!("server.base_domains[{i}]"),
                format!("duplicate base domain {b:?}"),
            );
        }
    }
    r.each(
        main,
        "server.reserved_subdomains",
        &s.reserved_subdomains,
        is_valid_label,
        "not a DNS label",
    );
}

/// The start-only keys of a config whose listeners all parsed.
pub(super) fn startup(g: &GatewayConfig, listeners: Listeners) -> StartupConfig {
    let s = &g.server;
    StartupConfig {
        server: StartupServer {
            http_listen: listeners.http,
            https_listen: listeners.https,
            admin_listen: listeners.admin,
            threads: s.threads,
            tenants_dir: s.tenants_dir.clone(),
            grace_period: s.grace_period,
        },
        admin: g.admin.clone(),
        log: StartupLog {
            level: g.log.level.clone(),
        },
        tls: g.tls.clone(),
        acme: g.acme.clone(),
        quota: g.quota.clone(),
        limits: g.limits.clone(),
    }
}

/// The `[server]`, `[log]` and `[hardening]` switches a reload applies.
pub(super) fn reloadable(g: &GatewayConfig) -> ValidServer {
    let s = &g.server;
    ValidServer {
        base_domains: s.base_domains.clone(),
        reserved_subdomains: s.reserved_subdomains.clone(),
        trust_tenant_header: s.trust_tenant_header,
        dev_mode: s.dev_mode,
        redirect_http_to_https: s.redirect_http_to_https,
        strict_sni: s.strict_sni,
        access_log: g.log.access_log,
        hardening: g.hardening.clone(),
        latency_histogram: g.metrics.latency_histogram,
    }
}
