//! Upstream pools: the addresses a tenant's traffic goes to, round robin, and the pingora peer
//! built for each attempt (timeouts, keep-alive, upstream TLS).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;

use crate::config::ValidUpstream;

/// A compiled upstream pool. Named pools are shared by their tenants within one snapshot;
/// a tenant with an inline `[upstream]` table has a pool of its own.
#[derive(Debug)]
pub struct UpstreamPool {
    /// Pool name (`shared`) or `tenant:<id>` for a dedicated upstream; used in logs and metrics.
    pub name: Box<str>,
    pub addrs: Vec<SocketAddr>,
    pub tls: bool,
    pub sni: String,
    /// Roots that verify this upstream instead of the system roots (`ca_file`).
    pub ca: Option<Arc<CaType>>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    next: AtomicUsize,
}

impl UpstreamPool {
    /// The pool of a validated upstream (addresses already resolved, CA bundle loaded).
    pub fn new(name: &str, cfg: ValidUpstream) -> Self {
        let ValidUpstream {
            addrs,
            tls,
            sni,
            ca,
            connect_timeout,
            read_timeout,
            write_timeout,
            idle_timeout,
        } = cfg;
        Self {
            name: name.into(),
            addrs,
            tls,
            sni,
            ca,
            connect_timeout,
            read_timeout,
            write_timeout,
            idle_timeout,
            next: AtomicUsize::new(0),
        }
    }

    /// Index of the address for a first attempt (round robin across requests).
    pub fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.addrs.len().max(1)
    }

    /// The pingora peer for the address at `index` (modulo the pool size, so a retry can pass
    /// `first + attempt`).
    pub fn peer(&self, index: usize) -> HttpPeer {
        let addr = self.addrs[index % self.addrs.len()];
        // Plain upstreams get an empty SNI, which does not allocate.
        let sni = if self.tls {
            self.sni.clone()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(addr, self.tls, sni);
        let o = &mut peer.options;
        o.connection_timeout = Some(self.connect_timeout);
        o.read_timeout = Some(self.read_timeout);
        o.write_timeout = Some(self.write_timeout);
        o.idle_timeout = Some(self.idle_timeout);
        o.tcp_keepalive = None;
        if self.tls {
            o.ca = self.ca.clone();
            // HTTP/1.1 to upstreams: h2 multiplexing buys nothing on loopback-class links and
            // keeps connection reuse simple.
            o.alpn = pingora::protocols::ALPN::H1;
        }
        peer
    }
}
