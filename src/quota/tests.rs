//! Unit tests of the quota engine: keys, headers, the over-limit cache, limits the stores
//! hold, and the failure policies without Redis.

use super::*;

/// `amount` units of tenant `t`'s `resource` against a per-minute `limit`.
fn demand(resource: &str, amount: u64, limit: u64, now: u64) -> Demand<'_> {
    let quota = QuotaLimit {
        limit,
        period: Period::Minute,
    };
    Demand::new("t", resource, quota, amount, now)
}

/// One request of tenant `t` asking 1 unit of `r` against `limit`, decided at the real clock
/// (the local backend reads it, so the windows must be real too).
fn one_unit(limit: u64) -> ([Demand<'static>; 1], u64) {
    let now = unix_now();
    ([demand("r", 1, limit, now)], now)
}

#[test]
fn keys_carry_the_tenant_hash_tag() {
    assert_eq!(
        window_key(
            "acme",
            "messages",
            &Window::of(Period::Month, 1_795_871_109)
        ),
        "tg:{acme}:messages:2026-11"
    );
}

#[test]
fn limits_beyond_what_the_stores_hold_are_refused_by_key() {
    for (limit, ok) in [
        (0, false),
        (1, true),
        (MAX_QUOTA_VALUE, true),
        (MAX_QUOTA_VALUE + 1, false),
        (i64::MAX as u64, false),
        (u64::MAX, false),
    ] {
        assert_eq!(check_limit(limit).is_ok(), ok, "{limit}");
    }
    let bad = first_bad_limit([("requests", 10), ("messages", u64::MAX)]).expect("refused");
    assert!(
        bad.starts_with("quotas.messages.limit: must be at most"),
        "{bad}"
    );
    assert_eq!(first_bad_limit([("requests", 10)]), None);
}

#[test]
fn headers_follow_the_draft() {
    let d = [
        demand("requests", 1, 20, 120),
        demand("messages", 1, 5, 120),
    ];
    let h = rate_limit_headers(&d, &[3, 5], 150);
    assert_eq!(h.policy, "\"requests\";q=20;w=60, \"messages\";q=5;w=60");
    assert_eq!(h.limit, "\"requests\";r=17;t=30, \"messages\";r=0;t=30");
}

#[tokio::test]
async fn engine_caches_full_keys_and_applies_policy() {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let engine = QuotaEngine::new(&QuotaConfig::default(), metrics.clone());
    let (d, now) = one_unit(2);
    let req = Request {
        tenant: "t",
        demands: &d,
    };
    for _ in 0..2 {
        assert!(matches!(
            engine.decide(&req, now).await,
            Verdict::Allowed { .. }
        ));
    }
    match engine.decide(&req, now).await {
        Verdict::Rejected {
            resource,
            retry_after,
            ..
        } => {
            assert_eq!(resource, 0);
            assert_eq!(retry_after, d[0].window.end - now);
        }
        v => panic!("{v:?}"),
    }
    // The third decision came from the cache: the backend still holds 2.
    assert_eq!(engine.read(&[d[0].key.clone()]).await.unwrap(), vec![2]);
    assert!(engine.over_limit.get(&d[0].key).is_some());
}

/// An engine on a Redis that is never reachable: the breaker opens on the first decision
/// (the probe never succeeded) and every decision follows the policy at once.
fn unreachable_redis(policy: OnBackendError, share: f64) -> Arc<QuotaEngine> {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let cfg = QuotaConfig {
        backend: QuotaBackendKind::Redis,
        redis_url: "redis://127.0.0.1:1".into(),
        on_backend_error: policy,
        fallback_share: share,
        ..QuotaConfig::default()
    };
    QuotaEngine::new(&cfg, metrics)
}

#[tokio::test]
async fn without_redis_each_policy_decides_at_once_and_keeps_admissions_for_write_back() {
    let (d, now) = one_unit(10);
    let req = Request {
        tenant: "t",
        demands: &d,
    };
    for (policy, share, admitted) in [
        (OnBackendError::Allow, 1.0, 20),
        (OnBackendError::Local, 0.5, 5),
        (OnBackendError::Local, 1.0, 10),
        (OnBackendError::Deny, 1.0, 0),
    ] {
        let engine = unreachable_redis(policy, share);
        let started = Instant::now();
        let mut n = 0;
        for _ in 0..20 {
            match engine.decide(&req, now).await {
                Verdict::Allowed { .. } => n += 1,
                Verdict::Rejected { resource, .. } => {
                    assert_eq!((policy, resource), (OnBackendError::Local, 0))
                }
                Verdict::Unavailable => assert_eq!(policy, OnBackendError::Deny),
            }
        }
        assert!(
            started.elapsed() < Duration::from_millis(20),
            "{policy:?}: 20 decisions took {:?}",
            started.elapsed()
        );
        assert_eq!(n, admitted, "{policy:?} share {share}");
        assert_eq!(engine.pending_units(), admitted, "{policy:?} pending");
        let r = engine.resilience.as_ref().unwrap();
        assert!(!r.breaker.is_closed(), "{policy:?}: breaker open");
    }
}
