//! `[upstreams]` and a tenant's inline `upstream` table: one rule set for both. Host names are
//! resolved by DNS here, once per load, and `ca_file` bundles are read and parsed here.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::utils::tls::{parse_x509, WrappedX509};

use super::Report;
use crate::config::names::is_valid_dns_name;
use crate::config::{UpstreamAddrs, UpstreamConfig, ValidUpstream};
use crate::upstream::UpstreamPool;

/// Every named pool that is valid, built once so each tenant naming it holds the same pool
/// (the invalid ones are reported).
pub(super) fn pools(
    upstreams: &BTreeMap<String, UpstreamConfig>,
    dir: &Path,
    main: &str,
    r: &mut Report,
) -> BTreeMap<String, Arc<UpstreamPool>> {
    upstreams
        .iter()
        .filter_map(|(name, u)| {
            let valid = upstream(u, &format!("upstreams.{name}"), dir, main, r)?;
            Some((name.clone(), Arc::new(UpstreamPool::new(name, valid))))
        })
        .collect()
}

/// One upstream table at `key` of `file`, resolved; `None` when invalid (reported).
pub(super) fn upstream(
    u: &UpstreamConfig,
    key: &str,
    dir: &Path,
    file: &str,
    r: &mut Report,
) -> Option<ValidUpstream> {
    let UpstreamConfig {
        addrs,
        tls,
        sni,
        ca_file,
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout,
    } = u;
    let mut ok = true;
    if addrs.is_empty() {
        r.at(
            file,
            format!("{key}.addrs"),
            "at least one address is required",
        );
        ok = false;
    }
    let mut resolved = Vec::with_capacity(addrs.len());
    for (i, a) in addrs.iter().enumerate() {
        match resolve(a) {
            Some(addr) => resolved.push(addr),
            None => {
                r.at(
                    file,
                    format!("{key}.addrs[{i}]"),
                    format!("not an address host:port: {a:?}"),
                );
                ok = false;
            }
        }
    }
    for (name, d) in [
        ("connect_timeout", connect_timeout),
        ("read_timeout", read_timeout),
    ] {
        if d.is_zero() {
            r.at(file, format!("{key}.{name}"), "must be greater than zero");
            ok = false;
        }
    }
    if let Some(sni) = sni {
        if !tls {
            r.at(
                file,
                format!("{key}.sni"),
                "only meaningful with tls = true",
            );
            ok = false;
        } else if !is_valid_dns_name(sni) {
            r.at(
                file,
                format!("{key}.sni"),
                format!("not a DNS name: {sni:?}"),
            );
            ok = false;
        }
    }
    let ca = match ca_file {
        Some(f) => match load_ca(&dir.join(f)) {
            Ok(ca) => Some(ca),
            Err(e) => {
                r.at(file, format!("{key}.ca_file"), e);
                ok = false;
                None
            }
        },
        None => None,
    };
    let default_sni = addrs
        .first()
        .and_then(|a| {
            a.rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        })
        .unwrap_or_default();
    // Empty only when `addrs` was (reported above).
    let addrs = UpstreamAddrs::new(resolved).filter(|_| ok)?;
    Some(ValidUpstream {
        addrs,
        tls: *tls,
        sni: sni.clone().unwrap_or(default_sni),
        ca,
        connect_timeout: *connect_timeout,
        read_timeout: *read_timeout,
        write_timeout: *write_timeout,
        idle_timeout: *idle_timeout,
    })
}

/// `ip:port`, `[v6]:port`, or `host:port` resolved by DNS (the first address).
fn resolve(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    s.to_socket_addrs().ok()?.next()
}

/// Reads a PEM bundle of CA certificates.
fn load_ca(path: &Path) -> Result<Arc<CaType>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut roots = Vec::new();
    for der in rustls_pemfile::certs(&mut &pem[..]) {
        let der = der.map_err(|e| format!("{}: {e}", path.display()))?;
        // pingora's parser panics on malformed DER, so check first.
        crate::tls::leaf_info(der.as_ref()).map_err(|e| format!("{}: {e}", path.display()))?;
        roots.push(WrappedX509::new(der.to_vec(), parse_x509));
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(Arc::from(roots))
}
