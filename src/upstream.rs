//! Upstream pools: the addresses a tenant's traffic goes to, round robin, and the pingora peer
//! built for each attempt (timeouts, keep-alive, upstream TLS).

use std::sync::atomic::{AtomicUsize, Ordering};

use pingora::upstreams::peer::HttpPeer;

use crate::config::ValidUpstream;

/// A compiled upstream pool. Named pools are shared by their tenants within one snapshot;
/// a tenant with an inline `[upstream]` table has a pool of its own.
#[derive(Debug)]
pub struct UpstreamPool {
    /// Pool name (`shared`) or `tenant:<id>` for a dedicated upstream; used in logs and metrics.
    pub name: Box<str>,
    /// Addresses (resolved by validation), TLS and timeouts.
    pub config: ValidUpstream,
    next: AtomicUsize,
}

impl UpstreamPool {
    /// The pool of a validated upstream (addresses already resolved, CA bundle loaded).
    pub fn new(name: &str, config: ValidUpstream) -> Self {
        Self {
            name: name.into(),
            config,
            next: AtomicUsize::new(0),
        }
    }

    /// The pool's addresses, in config order.
    pub fn addrs(&self) -> &crate::config::UpstreamAddrs {
        &self.config.addrs
    }

    /// Index of the address for a first attempt (round robin across requests).
    pub fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.config.addrs.len()
    }

    /// The pingora peer for the address at `index` (modulo the pool size, so a retry can pass
    /// `first + attempt`). Boxed here, as pingora wants it, so the peer (a few hundred bytes)
    /// is moved once rather than twice.
    pub fn peer(&self, index: usize) -> Box<HttpPeer> {
        let c = &self.config;
        let addr = c.addrs.wrapping(index);
        // Plain upstreams get an empty SNI, which does not allocate.
        let sni = if c.tls { c.sni.clone() } else { String::new() };
        let mut peer = Box::new(HttpPeer::new(addr, c.tls, sni));
        let o = &mut peer.options;
        o.connection_timeout = Some(c.connect_timeout);
        o.read_timeout = Some(c.read_timeout);
        o.write_timeout = Some(c.write_timeout);
        o.idle_timeout = Some(c.idle_timeout);
        o.tcp_keepalive = None;
        if c.tls {
            o.ca = c.ca.clone();
            // HTTP/1.1 to upstreams: h2 multiplexing buys nothing on loopback-class links and
            // keeps connection reuse simple.
            o.alpn = pingora::protocols::ALPN::H1;
        }
        peer
    }
}
