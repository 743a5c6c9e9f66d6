//! Errors caused by the client (it closed, reset, stalled, or sent garbage) are not faults of
//! the gateway: they are counted (`gateway_client_aborts_total{tenant}`) and logged at debug
//! (aborts) or info (malformed input), one short line without the request summary — so a
//! hostile client cannot make the gateway write more than a few hundred bytes of log per
//! request, and ERROR stays for the gateway's own faults.

use pingora::{Error, ErrorSource, ErrorType};

use super::LimitMetrics;

/// How a downstream error is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The client went away or stopped reading/sending.
    Abort,
    /// The client sent something the gateway refused.
    Malformed,
}

/// `None` for errors that are the gateway's or the upstream's.
pub fn classify(e: &Error) -> Option<ClientFault> {
    if !matches!(e.esource(), ErrorSource::Downstream) {
        return None;
    }
    Some(match e.etype() {
        ErrorType::ConnectionClosed
        | ErrorType::ReadError
        | ErrorType::WriteError
        | ErrorType::H2Error
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout => ClientFault::Abort,
        _ => ClientFault::Malformed,
    })
}

/// Counts and logs a failed request; true when pingora must not log it at ERROR.
pub fn record(metrics: &LimitMetrics, tenant: &str, e: &Error) -> bool {
    match classify(e) {
        Some(ClientFault::Abort) => {
            metrics.client_aborts.with_label_values(&[tenant]).inc();
            tracing::debug!(
                tenant,
                kind = e.etype().as_str(),
                "client aborted the request"
            );
            true
        }
        Some(ClientFault::Malformed) => {
            tracing::info!(tenant, kind = e.etype().as_str(), "client request refused");
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_downstream_errors_are_the_clients() {
        use ClientFault::{Abort, Malformed};
        use ErrorSource::{Downstream, Internal, Upstream};
        let table = [
            (ErrorType::ConnectionClosed, Downstream, Some(Abort)),
            (ErrorType::H2Error, Downstream, Some(Abort)),
            (ErrorType::WriteTimedout, Downstream, Some(Abort)),
            (ErrorType::ReadTimedout, Downstream, Some(Abort)),
            (ErrorType::InvalidHTTPHeader, Downstream, Some(Malformed)),
            (ErrorType::ConnectionClosed, Upstream, None),
            (ErrorType::ReadTimedout, Upstream, None),
            (ErrorType::InternalError, Internal, None),
        ];
        for (etype, source, expected) in table {
            let e = Error::create(etype.clone(), source.clone(), None, None);
            assert_eq!(classify(&e), expected, "{etype:?} {source:?}");
        }
    }
}
