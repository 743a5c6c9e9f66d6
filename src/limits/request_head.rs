//! Per-request limits, applied once the head is parsed (pingora's `early_request_filter`):
//! URI and header sizes (414 / 431, counted on the decoded header list for HTTP/2 as for
//! HTTP/1), the timeouts pingora applies to this request (body-read gap, response send), the
//! request budget of the connection, and HTTP/2 streams the client already reset (never
//! proxied).

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::connection::ConnState;
use super::{LimitMetrics, Limits, RequestLimits};
use crate::response::{send_error, ErrorFormat, GatewayError};

/// What the proxy does with a request after the head checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadVerdict {
    Proceed,
    /// Answer with this error and close the connection.
    Refuse(GatewayError),
    /// The client already reset this stream: drop it without proxying.
    ClientGone,
}

/// Size of a head as RFC 9113 §6.5.2 counts a header list (name + value + 32 per field),
/// plus the request target; the same figure for HTTP/1 and HTTP/2.
pub fn head_bytes(req: &RequestHeader) -> usize {
    let fields: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 32)
        .sum();
    req.method.as_str().len() + req.raw_path().len() + fields
}

/// Checks the sizes of a parsed head.
pub fn check_sizes(req: &RequestHeader, limits: &Limits) -> Option<GatewayError> {
    if req.raw_path().len() > limits.max_uri_bytes {
        return Some(GatewayError::UriTooLong);
    }
    if req.headers.len() > limits.max_request_headers
        || head_bytes(req) > limits.max_request_header_bytes
    {
        return Some(GatewayError::HeaderFieldsTooLarge);
    }
    None
}

/// Applies the per-request limits to `session`.
pub fn apply(
    session: &mut Session,
    limits: &Limits,
    conn: Option<&ConnState>,
    metrics: &LimitMetrics,
) -> HeadVerdict {
    let is_h2 = session.as_downstream().is_http2();
    if let Some(conn) = conn {
        let n = conn.request_started();
        if is_h2 && n >= limits.max_requests_per_connection {
            conn.request_goaway();
        }
        if is_h2 && n > limits.max_requests_per_connection {
            return HeadVerdict::ClientGone;
        }
    }
    if is_h2 {
        let closed = session
            .as_downstream_mut()
            .watch_h2_stream_close()
            .and_then(|idle| idle.now_or_never())
            .is_some();
        if closed {
            metrics.reset_streams_not_proxied.inc();
            return HeadVerdict::ClientGone;
        }
    } else {
        // No keep-alive timeout here: the connection guard closes an idle connection after
        // `keepalive_timeout` (and a slow head after `request_header_timeout`), so pingora
        // keeps its own choice from the request (`Connection`, `Keep-Alive`) and arms no
        // second timer for every request.
        session.set_read_timeout(Some(limits.request_body_timeout));
    }
    session.set_write_timeout(Some(limits.response_send_timeout));
    session.set_total_drain_timeout(Some(limits.request_body_timeout));
    if let Some(err) = check_sizes(session.req_header(), limits) {
        metrics
            .head_rejections
            .with_label_values(&[&err.status().to_string()])
            .inc();
        return HeadVerdict::Refuse(err);
    }
    HeadVerdict::Proceed
}

/// The `early_request_filter` phase: finds the connection's state (kept in `conn` for
/// [`finished`]), applies the limits, answers a refusal (JSON, connection closed) and returns
/// the error that stops pingora from proxying, if any.
pub async fn enforce(
    session: &mut Session,
    answered: &mut Option<GatewayError>,
    conn: &mut Option<Arc<ConnState>>,
    limits: &RequestLimits,
) -> pingora::Result<()> {
    *conn = limits.connections.find(session.as_downstream().digest());
    match apply(session, &limits.limits, conn.as_deref(), &limits.metrics) {
        HeadVerdict::Proceed => Ok(()),
        HeadVerdict::Refuse(err) => {
            *answered = Some(err);
            session.set_keepalive(None);
            send_error(session, err, None, &[], ErrorFormat::Json).await?;
            Err(pingora::Error::explain(
                pingora::ErrorType::HTTPStatus(err.status()),
                "request head over [limits]",
            )
            .into_down())
        }
        HeadVerdict::ClientGone => Err(pingora::Error::explain(
            pingora::ErrorType::ConnectionClosed,
            "client reset the stream before it was proxied",
        )
        .into_down()),
    }
}

/// The `logging` phase: an HTTP/1 connection is idle until its next request.
pub fn finished(session: &Session, conn: Option<&ConnState>, now: Instant) {
    if session.as_downstream().is_http2() {
        return;
    }
    if let Some(conn) = conn {
        conn.request_finished(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;

    fn req(path: &str, headers: &[(&str, String)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), v.as_str()).unwrap();
        }
        r
    }

    #[test]
    fn sizes_table() {
        let limits = LimitsConfig::default();
        let long_path = format!("/{}", "a".repeat(8 * 1024));
        let many: Vec<(&str, String)> = (0..101).map(|_| ("x-a", "1".to_string())).collect();
        let hundred: Vec<(&str, String)> = (0..100).map(|_| ("x-a", "1".to_string())).collect();
        let table: Vec<(RequestHeader, Option<GatewayError>)> = vec![
            (req("/", &[]), None),
            (req(&long_path[..8 * 1024], &[]), None),
            (req(&long_path, &[]), Some(GatewayError::UriTooLong)),
            (req("/", &hundred), None),
            (req("/", &many), Some(GatewayError::HeaderFieldsTooLarge)),
            (
                req("/", &[("x-big", "v".repeat(32 * 1024))]),
                Some(GatewayError::HeaderFieldsTooLarge),
            ),
            (req("/", &[("x-big", "v".repeat(30 * 1024))]), None),
        ];
        for (i, (r, expected)) in table.into_iter().enumerate() {
            assert_eq!(check_sizes(&r, &limits), expected, "row {i}");
        }
    }

    #[test]
    fn head_bytes_counts_names_values_and_overhead() {
        let r = req("/abc", &[("host", "a.b".into())]);
        assert_eq!(head_bytes(&r), 3 + 4 + (4 + 3 + 32));
    }
}
