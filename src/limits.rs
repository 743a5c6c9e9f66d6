//! Client-side limits: what one connection or one client may cost the gateway.
//!
//! - [`connection`]: every accepted stream is wrapped, so the request head has a whole-head
//!   deadline (plain, TLS, h2c preface and HTTP/2 before its first request), keep-alive idle
//!   time is bounded, and HTTP/2 clients that reset too many streams get GOAWAY.
//! - [`request_head`]: per-request checks once the head is parsed (header and URI sizes, 414 /
//!   431) and the per-request timeouts pingora applies (body gap, response send).
//! - [`per_client`]: the rate limit per client address / credential, before tenant quotas.
//! - [`client_abort`]: a client that goes away is counted and logged at debug, never ERROR.
//!
//! [`Limits`] (`[limits]`, typed when parsed) is shared by all of them.

pub mod client_abort;
pub mod connection;
mod fd;
mod h2_frames;
mod ip_block;
pub mod per_client;
pub mod request_head;

use prometheus::{IntCounter, IntCounterVec, Registry};

pub use fd::raise_fd_limit;
pub use ip_block::IpBlock;

use crate::config::LimitsConfig;
use crate::metrics::Registrar;

/// `[limits]` as the connection and request phases read it. The config is typed when parsed
/// (sizes, `Duration`s), so there is nothing to compile: one struct, two names for its two
/// roles (`per_client` is compiled separately by [`per_client::ClientLimiter`]).
pub type Limits = LimitsConfig;

impl LimitsConfig {
    /// HTTP/2 settings of the proxy listeners: the decoded header list is bounded by
    /// `max_request_header_bytes` (h2 answers 431 itself), and a stream buffers at most
    /// `h2_stream_send_buffer_bytes` of response for a client that does not read.
    pub fn h2_options(&self) -> pingora::protocols::http::v2::server::H2Options {
        let mut o = pingora::protocols::http::v2::server::default_h2_options();
        o.max_header_list_size(u32::try_from(self.max_request_header_bytes).unwrap_or(u32::MAX));
        o.max_concurrent_streams(self.h2_max_concurrent_streams);
        o.max_send_buffer_size(self.h2_stream_send_buffer_bytes);
        o
    }

    /// pingora's per-listener HTTP options.
    pub fn server_options(&self) -> pingora::apps::HttpServerOptions {
        let mut o = pingora::apps::HttpServerOptions::default();
        o.h2c = self.h2c;
        // pingora counts reuses: a limit of N-1 reuses is N requests, the last one answered
        // with `Connection: close`.
        o.keepalive_request_limit = Some(self.max_requests_per_connection.saturating_sub(1));
        o.h2_idle_timeout = Some(self.keepalive_timeout);
        o
    }
}

/// Metrics of the limits; labels are tenants, policies and kinds, never client addresses.
#[derive(Clone)]
pub struct LimitMetrics {
    /// `gateway_client_aborts_total{tenant}`.
    pub client_aborts: IntCounterVec,
    /// `gateway_connection_timeouts_total{kind}`: request_head, keepalive, request_body.
    pub connection_timeouts: IntCounterVec,
    /// `gateway_h2_goaway_total{reason}`: reset_budget, max_requests.
    pub h2_goaways: IntCounterVec,
    /// `gateway_h2_reset_streams_not_proxied_total`.
    pub reset_streams_not_proxied: IntCounter,
    /// `gateway_request_limit_rejections_total{status}`: 414, 431.
    pub head_rejections: IntCounterVec,
    /// `gateway_client_limit_decisions_total{tenant,policy,decision}`.
    pub client_limit_decisions: IntCounterVec,
}

impl LimitMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let on = Registrar(registry);
        Ok(Self {
            client_aborts: on.counter_vec(
                "gateway_client_aborts_total",
                "Requests the client abandoned (closed, reset or timed out) before the response ended",
                &["tenant"],
            )?,
            connection_timeouts: on.counter_vec(
                "gateway_connection_timeouts_total",
                "Connections closed by a client-side deadline, by kind (request_head, keepalive, request_body)",
                &["kind"],
            )?,
            h2_goaways: on.counter_vec(
                "gateway_h2_goaway_total",
                "GOAWAY frames the gateway sent to end an HTTP/2 connection early, by reason (reset_budget, max_requests)",
                &["reason"],
            )?,
            reset_streams_not_proxied: on.add(IntCounter::new(
                "gateway_h2_reset_streams_not_proxied_total",
                "HTTP/2 streams the client reset before they were sent upstream",
            ))?,
            head_rejections: on.counter_vec(
                "gateway_request_limit_rejections_total",
                "Requests refused for the size of their head, by status (414, 431)",
                &["status"],
            )?,
            client_limit_decisions: on.counter_vec(
                "gateway_client_limit_decisions_total",
                "Per-client rate limit decisions, by tenant, policy and decision (allowed, rejected, backend_error)",
                &["tenant", "policy", "decision"],
            )?,
        })
    }
}

/// Everything the proxy phases need of the limits, built once at start.
pub struct RequestLimits {
    pub limits: std::sync::Arc<Limits>,
    pub connections: std::sync::Arc<connection::ConnRegistry>,
    pub per_client: per_client::ClientLimiter,
    pub metrics: LimitMetrics,
}
