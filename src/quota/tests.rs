//! Unit tests of the quota engine: keys, headers, the over-limit cache, limits the stores
//! hold, and the failure policies without Redis.

use super::*;

fn demand_at(key: &str, amount: u64, limit: u64, now: u64) -> Demand {
    Demand {
        key: key.into(),
        amount,
        limit,
        window: Window::of(Period::Minute, now),
    }
}

fn demand(key: &str, amount: u64, limit: u64) -> Demand {
    demand_at(key, amount, limit, 120)
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
    let d = [demand("a", 1, 20), demand("b", 1, 5)];
    let h = rate_limit_headers(&["requests", "messages"], &d, &[3, 5], 150);
    assert_eq!(h.policy, "\"requests\";q=20;w=60, \"messages\";q=5;w=60");
    assert_eq!(h.limit, "\"requests\";r=17;t=30, \"messages\";r=0;t=30");
}

#[tokio::test]
async fn engine_caches_full_keys_and_applies_policy() {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let engine = QuotaEngine::new(&QuotaConfig::default(), metrics.clone());
    // The local backend reads the real clock, so the windows must be real too.
    let now = unix_now();
    let d = [demand_at("tg:{t}:r:x", 1, 2, now)];
    let req = Request {
        tenant: "t",
        resources: &["r"],
        demands: &d,
        quota_index: &[0],
        handles: None,
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
    assert_eq!(engine.read(&["tg:{t}:r:x".into()]).await.unwrap(), vec![2]);
    assert!(engine.over_limit.get("tg:{t}:r:x").is_some());
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
    let now = unix_now();
    let d = [demand_at("tg:{t}:r:x", 1, 10, now)];
    let req = Request {
        tenant: "t",
        resources: &["r"],
        demands: &d,
        quota_index: &[0],
        handles: None,
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
