//! The connection guard: every accepted stream (plain or after the TLS handshake) is wrapped
//! before pingora reads from it, because pingora 0.9 has per-read timeouts only — a client that
//! sends one header line every few seconds, a partial h2c preface, or nothing at all after TLS
//! would otherwise hold the connection forever.
//!
//! Per connection, a [`ConnState`] holds the phase and its deadline:
//!
//! ```text
//! accept ──▶ HEAD (deadline = accept + request_header_timeout)
//!              │ head parsed (early_request_filter → request_started)
//!              ▼
//!           REQUEST (no guard deadline: pingora's body-read and send timeouts apply)
//!              │ response done (logging → request_finished, HTTP/1 only)
//!              ▼
//!           IDLE (deadline = end of response + keepalive_timeout)
//!              │ first byte of the next request → HEAD (deadline = that byte + request_header_timeout)
//! ```
//!
//! A passed deadline closes the connection (HTTP/1 with part of a head received first gets
//! `408`). On HTTP/2 the guard also follows the frame headers: client `RST_STREAM`s are counted
//! and over `h2_reset_budget` per `h2_reset_window` the guard writes GOAWAY ENHANCE_YOUR_CALM
//! between two of h2's frames and closes; after `max_requests_per_connection` streams it writes
//! GOAWAY NO_ERROR. The hooks find the state of their connection through [`ConnRegistry`].

mod guarded_stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::SocketDigest;
use pingora::server::ShutdownWatch;

pub use guarded_stream::GuardedStream;

use super::{LimitMetrics, Limits};

const PHASE_HEAD: u8 = 0;
const PHASE_REQUEST: u8 = 1;
const PHASE_IDLE: u8 = 2;
const NO_DEADLINE: u64 = u64::MAX;
const GOAWAY_NONE: u8 = 0;
const GOAWAY_NO_ERROR: u8 = 1;

/// What the hooks of one connection share with its guarded stream, and what they compute once
/// per connection rather than per request.
pub struct ConnState {
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds since `epoch`, or [`NO_DEADLINE`].
    deadline_ms: AtomicU64,
    requests: AtomicU32,
    goaway: AtomicU8,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    /// The client's address as a header value (`X-Forwarded-For`), made on first use.
    client_ip: OnceLock<http::HeaderValue>,
}

impl ConnState {
    fn new(limits: &Limits) -> Self {
        let s = Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(PHASE_HEAD),
            deadline_ms: AtomicU64::new(NO_DEADLINE),
            requests: AtomicU32::new(0),
            goaway: AtomicU8::new(GOAWAY_NONE),
            header_timeout: limits.request_header_timeout,
            keepalive_timeout: limits.keepalive_timeout,
            client_ip: OnceLock::new(),
        };
        s.set_deadline(s.header_timeout);
        s
    }

    fn set_deadline(&self, from_now: Duration) {
        self.set_deadline_at(Instant::now(), from_now);
    }

    /// Sets the deadline `after` past `now` (a clock reading the caller already has).
    fn set_deadline_at(&self, now: Instant, after: Duration) {
        let at = now.saturating_duration_since(self.epoch) + after;
        self.deadline_ms.store(
            u64::try_from(at.as_millis()).unwrap_or(NO_DEADLINE - 1),
            Ordering::Release,
        );
    }

    /// The head of a request was parsed: the head deadline no longer applies. Returns how many
    /// requests this connection has carried, this one included.
    pub fn request_started(&self) -> u32 {
        self.phase.store(PHASE_REQUEST, Ordering::Release);
        self.deadline_ms.store(NO_DEADLINE, Ordering::Release);
        self.requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// An HTTP/1 response is complete (at `now`): the connection is idle until the next
    /// request.
    pub fn request_finished(&self, now: Instant) {
        self.phase.store(PHASE_IDLE, Ordering::Release);
        self.set_deadline_at(now, self.keepalive_timeout);
    }

    /// The client's address as a header value: `make` runs for the first request of the
    /// connection, later ones share its value.
    pub fn client_ip_header(&self, make: impl FnOnce() -> http::HeaderValue) -> http::HeaderValue {
        self.client_ip.get_or_init(make).clone()
    }

    /// Ask the guard to send GOAWAY NO_ERROR (no new streams) at the next frame boundary.
    pub fn request_goaway(&self) {
        self.goaway.store(GOAWAY_NO_ERROR, Ordering::Release);
    }
}

/// Connection states by the address of their socket digest: pingora hands the same
/// `Arc<SocketDigest>` to every session of a connection, and it lives as long as the socket.
/// Keys are heap addresses, not client input: a fast hash is safe.
type ByAddress = HashMap<usize, Arc<ConnState>, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct ConnRegistry {
    shards: [Mutex<ByAddress>; 16],
}

impl ConnRegistry {
    fn key(digest: &Arc<SocketDigest>) -> usize {
        Arc::as_ptr(digest) as usize
    }

    fn shard(&self, key: usize) -> &Mutex<ByAddress> {
        // Heap addresses are 16-byte aligned: use the bits above.
        &self.shards[(key >> 4) % self.shards.len()]
    }

    fn insert(&self, key: usize, state: Arc<ConnState>) {
        if let Ok(mut m) = self.shard(key).lock() {
            m.insert(key, state);
        }
    }

    fn remove(&self, key: usize) {
        if let Ok(mut m) = self.shard(key).lock() {
            m.remove(&key);
        }
    }

    /// The state of the connection a session runs on.
    pub fn find(&self, digest: Option<&pingora::protocols::Digest>) -> Option<Arc<ConnState>> {
        let key = Self::key(digest?.socket_digest.as_ref()?);
        self.shard(key).lock().ok()?.get(&key).cloned()
    }
}

/// A [`ServerApp`] that wraps each accepted stream in a [`GuardedStream`] and hands it on.
pub struct ConnectionGuard<A> {
    inner: Arc<A>,
    limits: Arc<Limits>,
    registry: Arc<ConnRegistry>,
    metrics: LimitMetrics,
}

impl<A> ConnectionGuard<A> {
    pub fn new(
        inner: A,
        limits: Arc<Limits>,
        registry: Arc<ConnRegistry>,
        metrics: LimitMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(inner),
            limits,
            registry,
            metrics,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionGuard<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora::protocols::Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        let state = Arc::new(ConnState::new(&self.limits));
        let key = stream.get_socket_digest().map(|d| ConnRegistry::key(&d));
        if let Some(k) = key {
            self.registry.insert(k, state.clone());
        }
        let guarded = GuardedStream::new(stream, state, &self.limits, self.metrics.clone());
        let reused = self.inner.process_new(Box::new(guarded), shutdown).await;
        if let Some(k) = key {
            self.registry.remove(k);
        }
        reused
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
