//! `[acme]` (with the plain listener http-01 needs): directory URL, DNS servers, CA roots,
//! renewal ratio and intervals.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::Report;
use crate::config::{AcmeConfig, ServerConfig};

pub(super) fn check(a: &AcmeConfig, server: &ServerConfig, dir: &Path, main: &str, r: &mut Report) {
    if !(0.0..1.0).contains(&a.renew_before_ratio) || a.renew_before_ratio == 0.0 {
        r.at(main, "acme.renew_before_ratio", "must be in (0, 1)");
    }
    if !a.enabled {
        return;
    }
    if !(a.directory_url.starts_with("https://") || a.directory_url.starts_with("http://")) {
        r.at(main, "acme.directory_url", "must be an http(s) URL");
    }
    for (i, d) in a.dns_servers.iter().enumerate() {
        if d.parse::<SocketAddr>().is_err() && d.parse::<IpAddr>().is_err() {
            r.at(
                main,
                format!("acme.dns_servers[{i}]"),
                format!("not an ip or ip:port: {d:?}"),
            );
        }
    }
    for (i, root) in a.ca_roots.iter().enumerate() {
        if !dir.join(root).is_file() {
            r.at(
                main,
                format!("acme.ca_roots[{i}]"),
                format!("no such file: {root:?}"),
            );
        }
    }
    for (key, d) in [
        ("check_interval", a.check_interval),
        ("retry_base", a.retry_base),
    ] {
        if d.is_zero() {
            r.at(main, format!("acme.{key}"), "must be greater than zero");
        }
    }
    // http-01 is answered on the plain listener, so ACME without one cannot work.
    if server.http_listen.is_empty() {
        r.at(
            main,
            "server.http_listen",
            "ACME http-01 needs a plain HTTP listener",
        );
    }
}
