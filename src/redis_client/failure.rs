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
        let table: &[(RedisCallError, FailureKind)] = &[
            (RedisCallError::NotConnected, FailureKind::Refused),
            (RedisCallError::Down, FailureKind::Refused),
            (
                RedisCallError::Timeout(Duration::from_millis(25)),
                FailureKind::Timeout,
            ),
            (
                redis::RedisError::from((ErrorKind::ClusterDown, "CLUSTERDOWN")).into(),
                FailureKind::ClusterDown,
            ),
            (
                redis::RedisError::from((ErrorKind::MasterDown, "MASTERDOWN")).into(),
                FailureKind::ClusterDown,
            ),
            (
                redis::RedisError::from((ErrorKind::TryAgain, "TRYAGAIN")).into(),
                FailureKind::ClusterDown,
            ),
            (
                redis::RedisError::from((ErrorKind::Moved, "MOVED")).into(),
                FailureKind::Moved,
            ),
            (
                redis::RedisError::from((ErrorKind::Ask, "ASK")).into(),
                FailureKind::Moved,
            ),
            (
                redis::RedisError::from((ErrorKind::ResponseError, "ERR script")).into(),
                FailureKind::Script,
            ),
            (
                redis::RedisError::from((ErrorKind::TypeError, "type")).into(),
                FailureKind::Protocol,
            ),
            (
                redis::RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))
                .into(),
                FailureKind::Refused,
            ),
            (
                redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
                    .into(),
                FailureKind::Io,
            ),
            (
                redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)).into(),
                FailureKind::Timeout,
            ),
        ];
        for (err, kind) in table {
            assert_eq!(err.kind(), *kind, "{err:?}");
            assert!(FailureKind::ALL.contains(kind));
        }
    }
}
