//! The e2e harness: real child processes (the gateway, its echo upstream, Redis) on loopback,
//! the temp-dir config builder, and the clients and readers tests use on them.
//!
//! - [`process`]: one child process type (spawn, readiness, logs on failure, kill on drop);
//! - [`gateway`] / [`config`]: the gateway on port 0 (addresses from its `--ready-file`);
//! - [`echo`], [`redis`] (standalone), [`redis_cluster`]: upstream and quota stores;
//! - [`raw_http`] (httparse), [`metrics`], [`proc_net`], [`insecure_verifier`]: readers;
//! - [`poll`]: [`eventually`], polling that returns what it waited for;
//! - fixtures of some slices: [`tls`] (test CA, TLS clients and upstream), [`acme`] (Pebble and
//!   challtestsrv), [`quota`] (quota config and request helpers), [`postgres`].

// Not every helper is used by every test module.
#![allow(dead_code)]

pub mod acme;
pub mod config;
pub mod echo;
pub mod gateway;
pub mod insecure_verifier;
pub mod metrics;
pub mod poll;
pub mod postgres;
pub mod proc_net;
pub mod process;
pub mod quota;
pub mod raw_http;
pub mod redis;
pub mod redis_cluster;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

pub use config::{write_atomic, write_file_atomic, GatewayConfig, TenantToml};
pub use echo::Echo;
pub use gateway::Gateway;
pub use metrics::{family_sum, find_sample};
pub use poll::eventually;
pub use proc_net::{connection_established_to, listens_on};
pub use process::{assert_success, start_on_picked_ports, Process};
pub use raw_http::{raw_http, read_response, RawResponse};
pub use redis::Redis;
pub use redis_cluster::RedisCluster;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tenant-gateway");

/// Bearer token of the admin API in every test gateway.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// Ports handed out by [`free_port`], for servers that cannot bind port 0 and report it: below the kernel's ephemeral range (32768–60999 by
/// default), so the source port of some other test's outgoing connection can never take a
/// port between the moment it was picked and the moment a child process binds it (or binds it
/// again after a restart). Below 22000, so a Redis Cluster bus port (port + 10000) stays out of
/// both this range and the ephemeral one.
const PICKED_PORTS: std::ops::Range<u16> = 12000..22000;

/// A port that was free a moment ago. Picks walk [`PICKED_PORTS`] from a start that differs
/// per process, and each pick is checked by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PICKED_PORTS.end - PICKED_PORTS.start);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let seed = std::process::id().wrapping_mul(7919) % span;
        let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PICKED_PORTS.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A loopback address nothing listens on (connections are refused).
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Whether something accepts TCP connections on `addr` (within 500 ms).
pub async fn accepts(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// A fresh temp dir named `<prefix>…`, removed on drop.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// A reqwest client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}
