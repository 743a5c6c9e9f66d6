//! Quotas and rate limits: the model (limits, windows, keys), the [`QuotaStore`] contract both
//! backends implement, and [`QuotaEngine`], which adds the local over-limit cache, the failure
//! policy, metrics and the `RateLimit` headers.
//!
//! A decision is all-or-nothing: every resource a request consumes is checked and, only if all
//! have room, all are incremented, in ONE atomic step of the backend. Rejected requests consume
//! nothing.

mod local;
mod redis_store;
pub mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use local::LocalQuotaStore;
pub use redis_store::RedisQuotaStore;
pub use window::Window;

use crate::config::{OnBackendError, Period, QuotaBackendKind, QuotaConfig};
use crate::metrics::{Decision, Metrics, QuotaHandles};
use std::sync::atomic::{AtomicU64, Ordering};

/// The resource every request consumes one unit of, when the plan defines it.
pub const REQUESTS_RESOURCE: &str = "requests";

/// One effective limit of a tenant: at most `limit` units of a resource per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimit {
    pub limit: u64,
    pub period: Period,
}

/// What one request asks of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Built by [`window_key`].
    pub key: String,
    pub amount: u64,
    pub limit: u64,
    pub window: Window,
}

/// Counter key of a tenant's resource in `window`: `tg:{tenant}:{resource}:{label}`; the
/// `{tenant}` hash tag keeps one request's keys in one Redis Cluster slot. One allocation.
pub fn window_key(tenant: &str, resource: &str, window: &Window) -> String {
    let mut k = String::with_capacity(28 + tenant.len() + resource.len());
    k.push_str("tg:{");
    k.push_str(tenant);
    k.push_str("}:");
    k.push_str(resource);
    k.push(':');
    window.write_label(&mut k);
    k
}

/// What the backend decided for a whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Index (into the demands) of the first resource without room; `None` = admitted.
    pub rejected: Option<usize>,
    /// Counter values per demand: after the increment when admitted, unchanged when rejected.
    pub used: Vec<u64>,
}

/// Why a backend could not decide.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("quota backend timed out after {0:?}")]
    Timeout(Duration),
    #[error("quota backend not connected")]
    NotConnected,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("decision arrived after its deadline; nothing was counted")]
    Expired,
    #[error("unexpected reply from quota backend: {0}")]
    Protocol(&'static str),
}

/// The contract of a quota backend: one atomic all-or-nothing step per request.
pub trait QuotaStore: Send + Sync {
    /// Checks every demand and increments all of them only if every one has room.
    fn check(
        &self,
        demands: &[Demand],
    ) -> impl std::future::Future<Output = Result<Outcome, QuotaError>> + Send;
    /// Current counter values (0 for missing keys), for reporting.
    fn read(
        &self,
        keys: &[String],
    ) -> impl std::future::Future<Output = Result<Vec<u64>, QuotaError>> + Send;
}

/// The configured backend (static dispatch: no boxed future per request).
pub enum Backend {
    Local(LocalQuotaStore),
    Redis(Arc<RedisQuotaStore>),
}

impl Backend {
    pub fn from_config(cfg: &QuotaConfig) -> Self {
        match cfg.backend {
            QuotaBackendKind::Local => Backend::Local(LocalQuotaStore::new()),
            QuotaBackendKind::Redis => Backend::Redis(Arc::new(RedisQuotaStore::new(cfg))),
        }
    }

    async fn check(&self, demands: &[Demand]) -> Result<Outcome, QuotaError> {
        match self {
            Backend::Local(s) => s.check(demands).await,
            Backend::Redis(s) => s.check(demands).await,
        }
    }

    async fn read(&self, keys: &[String]) -> Result<Vec<u64>, QuotaError> {
        match self {
            Backend::Local(s) => s.read(keys).await,
            Backend::Redis(s) => s.read(keys).await,
        }
    }

    pub fn redis(&self) -> Option<&Arc<RedisQuotaStore>> {
        match self {
            Backend::Redis(r) => Some(r),
            Backend::Local(_) => None,
        }
    }
}

/// The result the proxy acts on.
#[derive(Debug)]
pub enum Verdict {
    /// Admitted. `headers` are the `RateLimit-Policy` / `RateLimit` values (if any quota applied).
    Allowed { headers: Option<RateLimitHeaders> },
    /// 429 for the named resource.
    Rejected {
        resource: usize,
        retry_after: u64,
        headers: RateLimitHeaders,
    },
    /// Backend failed and the policy is `deny`: 503.
    Unavailable,
}

/// Values of the IETF draft `RateLimit-Policy` and `RateLimit` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub policy: String,
    pub limit: String,
}

/// Resource names of the demands, parallel to them (for headers and metrics).
pub struct Request<'a> {
    pub tenant: &'a str,
    pub resources: &'a [&'a str],
    pub demands: &'a [Demand],
    /// Index of each demand's resource in the tenant's quota list (metric handles).
    pub quota_index: &'a [usize],
    /// The tenant's quota metric handles (by quota index); `None` resolves labels per call.
    pub handles: Option<&'a [QuotaHandles]>,
}

/// Backend + over-limit cache + failure policy + metrics.
pub struct QuotaEngine {
    pub backend: Backend,
    on_error: OnBackendError,
    timeout: Duration,
    /// Keys known to be full until their window ends: rejected without a backend round trip.
    /// Value: (window end, limit the key was full at) — a raised limit bypasses the entry.
    over_limit: moka::sync::Cache<String, (u64, u64)>,
    metrics: Metrics,
    /// Unix second of the last backend-error log line.
    last_error_log: AtomicU64,
}

impl QuotaEngine {
    pub fn new(cfg: &QuotaConfig, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            backend: Backend::from_config(cfg),
            on_error: cfg.on_backend_error,
            timeout: cfg.timeout,
            over_limit: moka::sync::Cache::builder()
                .max_capacity(100_000)
                // Month windows are the longest; entries are also checked against their window.
                .time_to_live(Duration::from_secs(32 * 86_400))
                .build(),
            metrics,
            last_error_log: AtomicU64::new(0),
        })
    }

    /// Decides one request. `now` is unix seconds (a parameter so tests can cross windows).
    pub async fn decide(&self, req: &Request<'_>, now: u64) -> Verdict {
        if req.demands.is_empty() {
            return Verdict::Allowed { headers: None };
        }
        // A known-full key rejects at once (only if that demand actually asks for something).
        for (i, d) in req.demands.iter().enumerate() {
            if d.amount == 0 {
                continue;
            }
            if let Some((end, full_at)) = self.over_limit.get(&d.key) {
                if end > now && d.limit <= full_at {
                    self.count(req, Decision::Rejected, Some(i));
                    // Only the full resource is reported: the others were not read.
                    let headers = rate_limit_headers(
                        &req.resources[i..=i],
                        &req.demands[i..=i],
                        &[d.limit],
                        now,
                    );
                    let verdict = Verdict::Rejected {
                        resource: i,
                        retry_after: d.window.end.saturating_sub(now).max(1),
                        headers,
                    };
                    return verdict;
                }
                self.over_limit.invalidate(&d.key);
            }
        }
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.backend.check(req.demands)).await;
        self.metrics
            .quota_backend_duration
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return self.backend_failed(req, &e),
            Err(_) => return self.backend_failed(req, &QuotaError::Timeout(self.timeout)),
        };
        if let Some(i) = outcome.rejected {
            self.count(req, Decision::Rejected, Some(i));
        } else {
            self.count(req, Decision::Allowed, None);
        }
        // Remember keys that are now full, and publish how close each is to its limit.
        for (i, (d, used)) in req.demands.iter().zip(&outcome.used).enumerate() {
            let ratio = *used as f64 / d.limit.max(1) as f64;
            match self.handles(req, i) {
                Some(h) => h.usage_ratio.set(ratio),
                None => self
                    .metrics
                    .quota_usage_ratio
                    .with_label_values(&[req.tenant, req.resources[i]])
                    .set(ratio),
            }
            if *used >= d.limit {
                self.over_limit
                    .insert(d.key.clone(), (d.window.end, d.limit));
            }
        }
        self.verdict(req, &outcome, now)
    }

    fn backend_failed(&self, req: &Request<'_>, e: &QuotaError) -> Verdict {
        self.metrics.quota_backend_errors.inc();
        self.count(req, Decision::BackendError, None);
        // One line per second at most: an outage must not turn into a log flood.
        let now = unix_now();
        if self.last_error_log.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(tenant = req.tenant, error = %e, policy = ?self.on_error, "quota backend error");
        }
        match self.on_error {
            OnBackendError::Allow => Verdict::Allowed { headers: None },
            OnBackendError::Deny => Verdict::Unavailable,
        }
    }

    fn handles<'r>(&self, req: &Request<'r>, i: usize) -> Option<&'r QuotaHandles> {
        req.handles?.get(*req.quota_index.get(i)?)
    }

    fn count(&self, req: &Request<'_>, decision: Decision, only: Option<usize>) {
        for (i, r) in req.resources.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            match self.handles(req, i) {
                Some(h) => h.decisions[decision as usize].inc(),
                None => self
                    .metrics
                    .quota_decisions
                    .with_label_values(&[req.tenant, r, decision.label()])
                    .inc(),
            }
        }
    }

    fn verdict(&self, req: &Request<'_>, outcome: &Outcome, now: u64) -> Verdict {
        let headers = rate_limit_headers(req.resources, req.demands, &outcome.used, now);
        match outcome.rejected {
            None => Verdict::Allowed {
                headers: Some(headers),
            },
            Some(i) => Verdict::Rejected {
                resource: i,
                retry_after: req.demands[i].window.end.saturating_sub(now).max(1),
                headers,
            },
        }
    }

    pub fn redis_arc(&self) -> Option<Arc<RedisQuotaStore>> {
        self.backend.redis().cloned()
    }

    /// Current counter values of the given keys.
    pub async fn read(&self, keys: &[String]) -> Result<Vec<u64>, QuotaError> {
        match tokio::time::timeout(
            self.timeout.max(Duration::from_secs(2)),
            self.backend.read(keys),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(QuotaError::Timeout(self.timeout)),
        }
    }
}

/// `RateLimit-Policy: "requests";q=20;w=1, …` and `RateLimit: "requests";r=19;t=1, …`.
pub fn rate_limit_headers(
    resources: &[&str],
    demands: &[Demand],
    used: &[u64],
    now: u64,
) -> RateLimitHeaders {
    use std::fmt::Write;
    let mut policy = String::with_capacity(40 * demands.len());
    let mut limit = String::with_capacity(40 * demands.len());
    for (i, d) in demands.iter().enumerate() {
        if i > 0 {
            policy.push_str(", ");
            limit.push_str(", ");
        }
        let remaining = d.limit.saturating_sub(used.get(i).copied().unwrap_or(0));
        let reset = d.window.end.saturating_sub(now).max(1);
        let _ = write!(
            policy,
            "\"{}\";q={};w={}",
            resources[i],
            d.limit,
            d.window.length()
        );
        let _ = write!(limit, "\"{}\";r={};t={}", resources[i], remaining, reset);
    }
    RateLimitHeaders { policy, limit }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
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
}
