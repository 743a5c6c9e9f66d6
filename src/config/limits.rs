//! Wire format of `[limits]`: client-side limits and timeouts of the proxy listeners
//! (request head, body and response timeouts, header and URI sizes, HTTP/2 stream budgets) and
//! `[limits.per_client]`, the rate limit per client checked before a tenant's plan quotas.
//!
//! The table is read once at start (listener options cannot change under open connections);
//! a reload that changes it keeps the values the process started with.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, QuotaLimitConfig};

/// `[limits]`. Every default is the safe one; tests shorten the timeouts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Request line + header fields (HTTP/1 bytes, or the decoded HTTP/2 list) → 431.
    pub max_request_header_bytes: usize,
    /// Number of header fields → 431.
    pub max_request_headers: usize,
    /// Request target bytes → 414.
    pub max_uri_bytes: usize,
    /// The whole request head must arrive within this, from accept (after the TLS handshake)
    /// or from the first byte of a request on a reused connection; then the connection is
    /// closed (408 when nothing of a response was sent yet on HTTP/1).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub request_header_timeout: Duration,
    /// Idle time allowed between requests of a keep-alive connection (HTTP/1 and HTTP/2).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub keepalive_timeout: Duration,
    /// Longest gap between two reads of a request body; then the connection is closed and the
    /// upstream connection released.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub request_body_timeout: Duration,
    /// Longest time a write to the client may make no progress (nginx `send_timeout`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub response_send_timeout: Duration,
    /// Response bytes buffered per HTTP/2 stream for a client that does not read.
    pub h2_stream_send_buffer_bytes: usize,
    /// Concurrent HTTP/2 streams per connection (more are refused with REFUSED_STREAM).
    pub h2_max_concurrent_streams: u32,
    /// Requests per connection; then `Connection: close` (HTTP/1) or GOAWAY (HTTP/2).
    pub max_requests_per_connection: u32,
    /// Streams a client may reset within `h2_reset_window`; one more → GOAWAY
    /// ENHANCE_YOUR_CALM and the connection is closed.
    pub h2_reset_budget: u32,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub h2_reset_window: Duration,
    /// Accept HTTP/2 with prior knowledge (h2c) on the plain listeners.
    pub h2c: bool,
    pub per_client: PerClientConfig,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_header_bytes: 32 * 1024,
            max_request_headers: 100,
            max_uri_bytes: 8 * 1024,
            request_header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            request_body_timeout: Duration::from_secs(30),
            response_send_timeout: Duration::from_secs(60),
            h2_stream_send_buffer_bytes: 64 * 1024,
            h2_max_concurrent_streams: 100,
            max_requests_per_connection: 1000,
            h2_reset_budget: 200,
            h2_reset_window: Duration::from_secs(10),
            h2c: true,
            per_client: PerClientConfig::default(),
        }
    }
}

/// `[limits.per_client]`: requests per client, per tenant, counted in the quota engine before
/// the tenant's plan quotas. A client is its verified credential when it presents one, else its
/// address. Absent limits are unlimited.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PerClientConfig {
    /// Per client address, for requests without a verified credential.
    pub anonymous: Option<QuotaLimitConfig>,
    /// Per verified credential (API key name or JWT subject).
    pub authenticated: Option<QuotaLimitConfig>,
    /// Peers (addresses or CIDR blocks) whose `X-Forwarded-For` is believed: the client is then
    /// the first hop, from the right, that is not in this list. `server.trust_tenant_header`
    /// trusts every peer.
    pub trusted_proxies: Vec<String>,
}

/// Smallest sensible values: below them a normal client on a slow link fails.
const MIN_HEADER_BYTES: usize = 1024;
const MIN_URI_BYTES: usize = 256;
/// h2's header-list setting is a u32; pingora's HTTP/1 reader stops at 1 MiB.
const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Problems in `[limits]`, keyed `limits.<key>`.
pub fn validate(l: &LimitsConfig, file: &str) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut err = |key: &str, msg: String| {
        errs.push(ConfigError::new(file, format!("limits.{key}"), msg));
    };
    if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&l.max_request_header_bytes) {
        err(
            "max_request_header_bytes",
            format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"),
        );
    }
    if !(1..=10_000).contains(&l.max_request_headers) {
        err("max_request_headers", "must be between 1 and 10000".into());
    }
    if !(MIN_URI_BYTES..=l.max_request_header_bytes.max(MIN_URI_BYTES)).contains(&l.max_uri_bytes) {
        err(
            "max_uri_bytes",
            format!("must be between {MIN_URI_BYTES} and max_request_header_bytes"),
        );
    }
    for (key, d) in [
        ("request_header_timeout", l.request_header_timeout),
        ("keepalive_timeout", l.keepalive_timeout),
        ("request_body_timeout", l.request_body_timeout),
        ("response_send_timeout", l.response_send_timeout),
        ("h2_reset_window", l.h2_reset_window),
    ] {
        if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
            err(key, "must be between 100ms and 1h".into());
        }
    }
    if l.keepalive_timeout.subsec_nanos() != 0 {
        err(
            "keepalive_timeout",
            "must be whole seconds (HTTP/1 keep-alive is set in seconds)".into(),
        );
    }
    if !(16 * 1024..=16 * 1024 * 1024).contains(&l.h2_stream_send_buffer_bytes) {
        err(
            "h2_stream_send_buffer_bytes",
            "must be between 16384 and 16777216".into(),
        );
    }
    if !(1..=10_000).contains(&l.h2_max_concurrent_streams) {
        err(
            "h2_max_concurrent_streams",
            "must be between 1 and 10000".into(),
        );
    }
    if l.max_requests_per_connection == 0 {
        err("max_requests_per_connection", "must be at least 1".into());
    }
    if l.h2_reset_budget == 0 {
        err("h2_reset_budget", "must be at least 1".into());
    }
    let pc = &l.per_client;
    for (key, limit) in [
        ("per_client.anonymous", &pc.anonymous),
        ("per_client.authenticated", &pc.authenticated),
    ] {
        if limit.as_ref().is_some_and(|q| q.limit == 0) {
            err(
                key,
                "limit must be at least 1 (omit the key for no limit)".into(),
            );
        }
    }
    for (i, p) in pc.trusted_proxies.iter().enumerate() {
        if crate::limits::IpBlock::parse(p).is_none() {
            err(
                &format!("per_client.trusted_proxies[{i}]"),
                format!("not an address or CIDR block: {p:?}"),
            );
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&LimitsConfig::default(), "gateway.toml"), vec![]);
    }

    #[test]
    fn each_bad_value_names_its_key() {
        type Breaker = Box<dyn Fn(&mut LimitsConfig)>;
        let cases: Vec<(&str, Breaker)> = vec![
            (
                "limits.max_request_header_bytes",
                Box::new(|l| l.max_request_header_bytes = 4 << 20),
            ),
            (
                "limits.max_request_headers",
                Box::new(|l| l.max_request_headers = 0),
            ),
            (
                "limits.max_uri_bytes",
                Box::new(|l| l.max_uri_bytes = 1 << 30),
            ),
            (
                "limits.request_header_timeout",
                Box::new(|l| l.request_header_timeout = Duration::ZERO),
            ),
            (
                "limits.keepalive_timeout",
                Box::new(|l| l.keepalive_timeout = Duration::from_millis(1500)),
            ),
            (
                "limits.request_body_timeout",
                Box::new(|l| l.request_body_timeout = Duration::from_secs(7200)),
            ),
            (
                "limits.response_send_timeout",
                Box::new(|l| l.response_send_timeout = Duration::ZERO),
            ),
            (
                "limits.h2_stream_send_buffer_bytes",
                Box::new(|l| l.h2_stream_send_buffer_bytes = 1),
            ),
            (
                "limits.h2_max_concurrent_streams",
                Box::new(|l| l.h2_max_concurrent_streams = 0),
            ),
            (
                "limits.max_requests_per_connection",
                Box::new(|l| l.max_requests_per_connection = 0),
            ),
            (
                "limits.h2_reset_budget",
                Box::new(|l| l.h2_reset_budget = 0),
            ),
            (
                "limits.h2_reset_window",
                Box::new(|l| l.h2_reset_window = Duration::ZERO),
            ),
            (
                "limits.per_client.anonymous",
                Box::new(|l| {
                    l.per_client.anonymous = Some(QuotaLimitConfig {
                        limit: 0,
                        period: super::super::Period::Second,
                    })
                }),
            ),
            (
                "limits.per_client.trusted_proxies[0]",
                Box::new(|l| l.per_client.trusted_proxies = vec!["10.0.0.0/33".into()]),
            ),
        ];
        for (key, break_it) in cases {
            let mut l = LimitsConfig::default();
            break_it(&mut l);
            let errs = validate(&l, "gateway.toml");
            assert_eq!(errs.len(), 1, "{key}: {errs:?}");
            assert_eq!(errs[0].key, key);
        }
    }
}
