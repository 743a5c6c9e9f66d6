//! Why a Redis call failed, and the bounded set of kinds the gateway counts failures by
//! (`gateway_quota_backend_errors_total{kind}`).

use std::time::Duration;

use redis::ErrorKind;

/// A failed Redis call.
#[derive(Debug, thiserror::Error)]
pub enum RedisCallError {
    #[error("redis not connected yet")]
    NotConnected,
    #[error("redis is down (its health probe fails)")]
    Down,
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The kinds failures are counted by. Bounded: one label value each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The call's deadline passed (a stalled or overloaded Redis, or a late script).
    Timeout,
    /// Nothing to talk to: connection refused, not connected yet, or the probe sees Redis down.
    Refused,
    /// An established connection broke mid-call, or another I/O error.
    Io,
    /// The cluster cannot serve the slot: CLUSTERDOWN, MASTERDOWN, TRYAGAIN, no node for it.
    ClusterDown,
    /// Redirections (MOVED/ASK) did not settle within the client's retries.
    Moved,
    /// The script failed on the server (error reply, NOSCRIPT that EVAL could not fix, …).
    Script,
    /// A reply the gateway did not expect.
    Protocol,
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 8] = [
        FailureKind::Timeout,
        FailureKind::Refused,
        FailureKind::Io,
        FailureKind::ClusterDown,
        FailureKind::Moved,
        FailureKind::Script,
        FailureKind::Protocol,
        FailureKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Refused => "refused",
            FailureKind::Io => "io",
            FailureKind::ClusterDown => "cluster_down",
            FailureKind::Moved => "moved",
            FailureKind::Script => "script",
            FailureKind::Protocol => "protocol",
            FailureKind::Other => "other",
        }
    }
}

impl RedisCallError {
    pub fn kind(&self) -> FailureKind {
        match self {
            RedisCallError::NotConnected | RedisCallError::Down => FailureKind::Refused,
            RedisCallError::Timeout(_) => FailureKind::Timeout,
            RedisCallError::Redis(e) => classify(e),
        }
    }
}

fn classify(e: &redis::RedisError) -> FailureKind {
    if e.is_timeout() {
        return FailureKind::Timeout;
    }
    if e.is_connection_refusal() {
        return FailureKind::Refused;
    }
    match e.kind() {
        ErrorKind::ClusterDown
        | ErrorKind::MasterDown
        | ErrorKind::TryAgain
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::BusyLoadingError => FailureKind::ClusterDown,
        ErrorKind::Moved | ErrorKind::Ask => FailureKind::Moved,
        ErrorKind::ResponseError
        | ErrorKind::NoScriptError
        | ErrorKind::ExecAbortError
        | ErrorKind::ExtensionError
        | ErrorKind::ReadOnly => FailureKind::Script,
        ErrorKind::TypeError | ErrorKind::ParseError => FailureKind::Protocol,
        ErrorKind::IoError => FailureKind::Io,
        _ => FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_maps_to_one_bounded_label() {
        let own = [
            (RedisCallError::NotConnected, FailureKind::Refused),
            (RedisCallError::Down, FailureKind::Refused),
            (
                RedisCallError::Timeout(Duration::from_millis(25)),
                FailureKind::Timeout,
            ),
        ];
        let replies = [
            (ErrorKind::ClusterDown, FailureKind::ClusterDown),
            (ErrorKind::MasterDown, FailureKind::ClusterDown),
            (ErrorKind::TryAgain, FailureKind::ClusterDown),
            (ErrorKind::Moved, FailureKind::Moved),
            (ErrorKind::Ask, FailureKind::Moved),
            (ErrorKind::ResponseError, FailureKind::Script),
            (ErrorKind::TypeError, FailureKind::Protocol),
        ]
        .map(|(k, want)| (redis::RedisError::from((k, "reply")).into(), want));
        let sockets = [
            (std::io::ErrorKind::ConnectionRefused, FailureKind::Refused),
            (std::io::ErrorKind::BrokenPipe, FailureKind::Io),
            (std::io::ErrorKind::TimedOut, FailureKind::Timeout),
        ]
        .map(|(k, want)| {
            let io = std::io::Error::from(k);
            (redis::RedisError::from(io).into(), want)
        });
        for (err, kind) in own.into_iter().chain(replies).chain(sockets) {
            assert_eq!(err.kind(), kind, "{err:?}");
            assert!(FailureKind::ALL.contains(&kind));
        }
    }
}
