//! The gateway's listening sockets before pingora starts: a configured port 0 is bound here, so
//! the real address is known and can be reported (`--ready-file`, `/readyz`); the socket is
//! handed to pingora through its listen-fd table, the table a zero-downtime upgrade fills with
//! the sockets of the old process. A non-zero port is left to pingora as before.
//!
//! On `--upgrade`, a port-0 listener takes the address the old process recorded in the runtime
//! dir, so the new process inherits that socket instead of binding a new port.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use serde::{Deserialize, Serialize};

/// The address of every listener, as bound: what `--ready-file` and `/readyz` report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerAddrs {
    pub http: Vec<String>,
    pub https: Vec<String>,
    pub admin: String,
}

/// Sockets bound here (port 0), waiting to be handed to pingora, keyed by bound address.
#[derive(Debug, Default)]
pub struct PreboundSockets(Vec<(String, TcpListener)>);

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("listen {addr}: {source}")]
pub struct BindError {
    addr: String,
    source: std::io::Error,
}

impl ListenerAddrs {
    /// Resolves the configured addresses: each port-0 address becomes a bound socket (or, on an
    /// upgrade, the address `inherited` recorded for the same listener); others stay as given.
    pub fn bind(
        http: &[String],
        https: &[String],
        admin: &str,
        inherited: Option<&ListenerAddrs>,
    ) -> Result<(ListenerAddrs, PreboundSockets), BindError> {
        let mut sockets = PreboundSockets::default();
        let mut resolve_list = |list: &[String], old: Option<&Vec<String>>| {
            list.iter()
                .enumerate()
                .map(|(i, addr)| sockets.resolve(addr, old.and_then(|o| o.get(i))))
                .collect::<Result<Vec<_>, _>>()
        };
        let http = resolve_list(http, inherited.map(|o| &o.http))?;
        let https = resolve_list(https, inherited.map(|o| &o.https))?;
        let admin = sockets.resolve(admin, inherited.map(|o| &o.admin))?;
        Ok((ListenerAddrs { http, https, admin }, sockets))
    }

    /// Loopback-reachable socket addresses of the plain proxy listeners (for the readiness
    /// probe).
    pub fn http_socket_addrs(&self) -> Vec<SocketAddr> {
        parse_all(&self.http)
    }

    /// Like [`http_socket_addrs`](Self::http_socket_addrs), for the TLS listeners.
    pub fn https_socket_addrs(&self) -> Vec<SocketAddr> {
        parse_all(&self.https)
    }

    /// The admin listener's address, if it is an `ip:port`.
    pub fn admin_socket_addr(&self) -> Option<SocketAddr> {
        parse_all(std::slice::from_ref(&self.admin)).pop()
    }

    /// The record of these addresses in the runtime dir, read by an upgrading successor.
    pub fn record_path(runtime_dir: &Path) -> PathBuf {
        runtime_dir.join("listeners.json")
    }

    /// Reads a record written by [`write`](Self::write); `None` if absent or unreadable.
    pub fn read(path: &Path) -> Option<ListenerAddrs> {
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes these addresses as JSON, atomically (readers never see half a file).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        json.push(b'\n');
        crate::atomic_file::write_atomic(path, &json, 0o644)
    }

    /// Whether any configured listener asked for port 0.
    pub fn any_port_zero(http: &[String], https: &[String], admin: &str) -> bool {
        http.iter()
            .chain(https)
            .chain(std::iter::once(&admin.to_string()))
            .any(|a| is_port_zero(a))
    }
}

impl PreboundSockets {
    fn resolve(&mut self, addr: &str, inherited: Option<&String>) -> Result<String, BindError> {
        if !is_port_zero(addr) {
            return Ok(addr.to_string());
        }
        if let Some(old) = inherited {
            return Ok(old.clone());
        }
        let bind_error = |source| BindError {
            addr: addr.to_string(),
            source,
        };
        let socket = TcpListener::bind(addr).map_err(bind_error)?;
        // pingora's listener (tokio) expects a non-blocking socket.
        socket.set_nonblocking(true).map_err(bind_error)?;
        let bound = socket.local_addr().map_err(bind_error)?.to_string();
        self.0.push((bound.clone(), socket));
        Ok(bound)
    }

    /// The sockets bound for these addresses, removed from `self` (one service's share).
    pub fn take(&mut self, addrs: &[String]) -> PreboundSockets {
        let (taken, kept) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(bound, _)| addrs.contains(bound));
        self.0 = kept;
        PreboundSockets(taken)
    }

    /// Wraps a service so that, when it starts, these sockets are in the listen-fd table under
    /// their bound address, where pingora's listener looks before binding.
    pub fn serve_with<S: ServiceWithDependents>(self, service: S) -> WithPrebound<S> {
        WithPrebound {
            inner: service,
            sockets: self,
        }
    }
}

fn is_port_zero(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| a.port() == 0)
}

fn parse_all(list: &[String]) -> Vec<SocketAddr> {
    list.iter()
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .map(loopback_for)
        .collect()
}

/// The loopback address of the same family for an unspecified (`0.0.0.0`, `::`) one.
fn loopback_for(a: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    }
}

/// A pingora service started with [`PreboundSockets`] placed in its listen-fd table.
pub struct WithPrebound<S> {
    inner: S,
    sockets: PreboundSockets,
}

#[async_trait]
impl<S: ServiceWithDependents> ServiceWithDependents for WithPrebound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let Some(table) = &fds {
            let mut table = table.lock();
            for (addr, socket) in self.sockets.0.drain(..) {
                // The table owns the descriptor from here on (and passes it on an upgrade).
                if table.get(&addr).is_none() {
                    table.add(addr, socket.into_raw_fd());
                }
            }
        }
        self.inner
            .start_service(fds, shutdown, listeners_per_fd, ready_notifier)
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_bound_and_other_ports_are_left_to_pingora() {
        let (addrs, sockets) = ListenerAddrs::bind(
            &["127.0.0.1:0".into(), "127.0.0.1:8080".into()],
            &["127.0.0.1:0".into()],
            "127.0.0.1:0",
            None,
        )
        .expect("bind");
        assert_eq!(addrs.http[1], "127.0.0.1:8080");
        assert_eq!(sockets.0.len(), 3);
        for bound in [&addrs.http[0], &addrs.https[0], &addrs.admin] {
            let a: SocketAddr = bound.parse().expect("bound address");
            assert_ne!(a.port(), 0, "{bound}");
            assert!(sockets.0.iter().any(|(k, _)| k == bound));
        }
    }

    #[test]
    fn an_upgrade_takes_the_recorded_address_of_each_port_zero_listener() {
        let old = ListenerAddrs {
            http: vec!["127.0.0.1:41001".into()],
            https: vec!["127.0.0.1:41002".into()],
            admin: "127.0.0.1:41003".into(),
        };
        let (addrs, sockets) = ListenerAddrs::bind(
            &["127.0.0.1:0".into()],
            &["127.0.0.1:0".into()],
            "127.0.0.1:0",
            Some(&old),
        )
        .expect("bind");
        assert_eq!(addrs, old);
        assert!(sockets.0.is_empty());
    }

    #[test]
    fn a_record_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = ListenerAddrs::record_path(dir.path());
        let addrs = ListenerAddrs {
            http: vec!["127.0.0.1:1".into()],
            https: vec![],
            admin: "[::1]:2".into(),
        };
        addrs.write(&path).expect("write");
        assert_eq!(ListenerAddrs::read(&path), Some(addrs));
        assert_eq!(ListenerAddrs::read(&dir.path().join("missing")), None);
    }

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        let addrs = ListenerAddrs {
            http: vec![
                "0.0.0.0:80".into(),
                "[::]:81".into(),
                "not an address".into(),
            ],
            https: vec![],
            admin: "127.0.0.1:9".into(),
        };
        assert_eq!(
            addrs.http_socket_addrs(),
            vec![
                "127.0.0.1:80".parse::<SocketAddr>().expect("v4"),
                "[::1]:81".parse().expect("v6")
            ]
        );
        assert_eq!(
            addrs.admin_socket_addr(),
            Some("127.0.0.1:9".parse().expect("admin"))
        );
    }
}
