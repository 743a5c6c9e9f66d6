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
//! The compiled [`Limits`] is built once at start from `[limits]` and shared by all of them.

pub mod client_abort;
pub mod connection;
mod fd;
mod h2_frames;
mod ip_block;
pub mod per_client;
pub mod request_head;

use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

pub use fd::raise_fd_limit;
pub use ip_block::IpBlock;

use crate::config::LimitsConfig;

/// `[limits]`, compiled.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request_header_bytes: usize,
    pub max_request_headers: usize,
    pub max_uri_bytes: usize,
    pub request_header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub request_body_timeout: Duration,
    pub response_send_timeout: Duration,
    pub h2_stream_send_buffer_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    pub max_requests_per_connection: u32,
    pub h2_reset_budget: u32,
    pub h2_reset_window: Duration,
    pub h2c: bool,
}

impl Limits {
    pub fn compile(cfg: &LimitsConfig) -> Self {
        let LimitsConfig {
            max_request_header_bytes,
            max_request_headers,
            max_uri_bytes,
            request_header_timeout,
            keepalive_timeout,
            request_body_timeout,
            response_send_timeout,
            h2_stream_send_buffer_bytes,
            h2_max_concurrent_streams,
            max_requests_per_connection,
            h2_reset_budget,
            h2_reset_window,
            h2c,
            per_client: _, // compiled by `per_client::ClientLimiter`
        } = cfg.clone();
        Self {
            max_request_header_bytes,
            max_request_headers,
            max_uri_bytes,
            request_header_timeout,
            keepalive_timeout,
            request_body_timeout,
            response_send_timeout,
            h2_stream_send_buffer_bytes,
            h2_max_concurrent_streams,
            max_requests_per_connection,
            h2_reset_budget,
            h2_reset_window,
            h2c,
        }
    }

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
    /// `gateway_connection_timeouts_total{kind}`: request_head, keepalive.
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
        let client_aborts = IntCounterVec::new(
            Opts::new(
                "gateway_client_aborts_total",
                "Requests the client abandoned (closed, reset or timed out) before the response ended",
            ),
            &["tenant"],
        )?;
        let connection_timeouts = IntCounterVec::new(
            Opts::new(
                "gateway_connection_timeouts_total",
                "Connections closed by a client-side deadline",
            ),
            &["kind"],
        )?;
        let h2_goaways = IntCounterVec::new(
            Opts::new(
                "gateway_h2_goaway_total",
                "GOAWAY frames the gateway sent to end an HTTP/2 connection early",
            ),
            &["reason"],
        )?;
        let reset_streams_not_proxied = IntCounter::new(
            "gateway_h2_reset_streams_not_proxied_total",
            "HTTP/2 streams the client reset before they were sent upstream",
        )?;
        let head_rejections = IntCounterVec::new(
            Opts::new(
                "gateway_request_limit_rejections_total",
                "Requests refused for the size of their head",
            ),
            &["status"],
        )?;
        let client_limit_decisions = IntCounterVec::new(
            Opts::new(
                "gateway_client_limit_decisions_total",
                "Per-client rate limit decisions",
            ),
            &["tenant", "policy", "decision"],
        )?;
        registry.register(Box::new(client_aborts.clone()))?;
        registry.register(Box::new(connection_timeouts.clone()))?;
        registry.register(Box::new(h2_goaways.clone()))?;
        registry.register(Box::new(reset_streams_not_proxied.clone()))?;
        registry.register(Box::new(head_rejections.clone()))?;
        registry.register(Box::new(client_limit_decisions.clone()))?;
        Ok(Self {
            client_aborts,
            connection_timeouts,
            h2_goaways,
            reset_streams_not_proxied,
            head_rejections,
            client_limit_decisions,
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
