//! Raises the soft open-file limit to the hard limit at start: every connection costs a
//! descriptor (two when proxied), and the default soft limit (often 1024) is reached by a few
//! hundred idle clients.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises `RLIMIT_NOFILE` and logs the result; returns the soft limit in effect.
pub fn raise_fd_limit() -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "open-file limit already at the hard limit");
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(
                from = soft,
                to = hard,
                "raised the open-file limit to the hard limit"
            );
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}
