//! `[quota]`: the decision timeout, circuit breaker, health probe, fallback share, pending
//! write-back bound and the Redis URLs.

use std::time::Duration;

use super::Report;
use crate::config::{QuotaBackendKind, QuotaConfig};

pub(super) fn check(q: &QuotaConfig, main: &str, r: &mut Report) {
    if q.timeout.is_zero() {
        r.at(main, "quota.timeout", "must be greater than zero");
    }
    if q.breaker_failures == 0 {
        r.at(main, "quota.breaker_failures", "must be at least 1");
    }
    if q.probe_interval < Duration::from_millis(10) || q.probe_interval > Duration::from_secs(60) {
        r.at(main, "quota.probe_interval", "must be between 10ms and 60s");
    }
    if !(q.fallback_share > 0.0 && q.fallback_share <= 1.0) {
        r.at(
            main,
            "quota.fallback_share",
            format!(
                "must be > 0 and <= 1 (e.g. 1 / expected nodes), not {}",
                q.fallback_share
            ),
        );
    }
    if q.max_pending_keys == 0 {
        r.at(main, "quota.max_pending_keys", "must be at least 1");
    }
    if q.backend == QuotaBackendKind::Redis {
        let urls: Vec<(String, &String)> = if q.redis_cluster_urls.is_empty() {
            vec![("quota.redis_url".into(), &q.redis_url)]
        } else {
            q.redis_cluster_urls
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("quota.redis_cluster_urls[{i}]"), u))
                .collect()
        };
        for (key, u) in urls {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                r.at(
                    main,
                    key,
                    format!("must start with redis:// or rediss://: {u:?}"),
                );
            }
        }
    }
}
