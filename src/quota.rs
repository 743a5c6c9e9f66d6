//! Quotas and rate limits: the model (limits, windows, keys), the [`QuotaStore`] contract both
//! backends implement, and [`QuotaEngine`], which adds the local over-limit cache, the failure
//! policy, metrics and the `RateLimit` headers.
//!
//! A decision is all-or-nothing: every resource a request consumes is checked and, only if all
//! have room, all are incremented, in ONE atomic step of the backend. Rejected requests consume
//! nothing.

mod backend_metrics;
mod breaker;
mod fallback;
mod local;
mod reconcile;
mod redis_store;
pub mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use backend_metrics::QuotaBackendMetrics;
pub use breaker::{Breaker, Permit};
pub use fallback::LocalFallback;
pub use local::LocalQuotaStore;
pub use reconcile::{FlushReport, PendingDeltas};
pub use redis_store::RedisQuotaStore;
pub use window::Window;

use crate::config::{OnBackendError, Period, QuotaBackendKind, QuotaConfig};
use crate::metrics::{Decision, Metrics, QuotaHandles};
use crate::redis_client::{FailureKind, RedisCallError, RedisClient, RedisTarget};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest quota limit or fixed amount the stores hold exactly: Redis counters are 64-bit, but
/// the decision script compares in Lua numbers (doubles), exact up to 2^53 - 1.
pub const MAX_QUOTA_VALUE: u64 = (1 << 53) - 1;

/// Why a configured limit cannot be enforced exactly, if it cannot.
pub fn check_limit(limit: u64) -> Result<(), String> {
    match limit {
        0 => Err("must be at least 1".into()),
        l if l > MAX_QUOTA_VALUE => Err(format!(
            "must be at most {MAX_QUOTA_VALUE} (what the quota stores hold exactly), not {l}"
        )),
        _ => Ok(()),
    }
}

/// The first `(resource, limit)` that [`check_limit`] refuses, as `quotas.<resource>.limit: why`
/// (admin API bodies are refused with 400 naming the key before anything is written).
pub fn first_bad_limit<'a>(limits: impl IntoIterator<Item = (&'a str, u64)>) -> Option<String> {
    limits.into_iter().find_map(|(resource, limit)| {
        check_limit(limit)
            .err()
            .map(|why| format!("quotas.{resource}.limit: {why}"))
    })
}

/// The resource every request consumes one unit of, when the plan defines it.
pub const REQUESTS_RESOURCE: &str = "requests";

/// One effective limit of a tenant: at most `limit` units of a resource per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimit {
    pub limit: u64,
    pub period: Period,
}

/// What one request asks of one resource: the resource, the amount, the limit and window it
/// counts against, and the tenant's metric handles of that resource, together.
#[derive(Debug, Clone)]
pub struct Demand<'a> {
    /// The resource name (`requests`, a route's `consumes` key): metric label and header name.
    pub resource: &'a str,
    /// Built by [`window_key`].
    pub key: String,
    pub amount: u64,
    pub limit: u64,
    pub window: Window,
    /// The tenant's metric handles of this resource (resolved when the snapshot was compiled);
    /// `None` resolves the labels per call.
    pub handles: Option<&'a QuotaHandles>,
}

impl<'a> Demand<'a> {
    /// `amount` units of `tenant`'s `resource` in the window of `quota` that contains `now`.
    pub fn new(tenant: &str, resource: &'a str, quota: QuotaLimit, amount: u64, now: u64) -> Self {
        let window = Window::of(quota.period, now);
        Demand {
            resource,
            key: window_key(tenant, resource, &window),
            amount,
            limit: quota.limit,
            window,
            handles: None,
        }
    }

    /// The same demand, counted on the tenant's pre-resolved metric handles.
    pub fn with_handles(self, handles: Option<&'a QuotaHandles>) -> Self {
        Demand { handles, ..self }
    }
}

/// Test shorthand: `amount` units of tenant `acme`'s `resource`, `limit` per `period`.
#[cfg(test)]
pub(crate) fn test_demand(
    resource: &str,
    amount: u64,
    limit: u64,
    period: Period,
    now: u64,
) -> Demand<'_> {
    Demand::new("acme", resource, QuotaLimit { limit, period }, amount, now)
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
    #[error(transparent)]
    Backend(#[from] RedisCallError),
    #[error("decision arrived after its deadline; nothing was counted")]
    Expired,
    #[error("unexpected reply from quota backend: {0}")]
    Protocol(&'static str),
}

impl QuotaError {
    pub fn kind(&self) -> FailureKind {
        match self {
            QuotaError::Backend(e) => e.kind(),
            QuotaError::Expired => FailureKind::Timeout,
            QuotaError::Protocol(_) => FailureKind::Protocol,
        }
    }
}

/// The contract of a quota backend: one atomic all-or-nothing step per request.
pub trait QuotaStore: Send + Sync {
    /// Checks every demand and increments all of them only if every one has room.
    fn check(
        &self,
        demands: &[Demand<'_>],
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
    async fn check(&self, demands: &[Demand<'_>]) -> Result<Outcome, QuotaError> {
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
    /// 429 for the resource of `demands[resource]` (an index into the request's demands).
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

/// One request's demands on one tenant's quotas, decided all or nothing.
pub struct Request<'a> {
    pub tenant: &'a str,
    pub demands: &'a [Demand<'a>],
}

/// What the Redis backend adds to survive Redis failures: the breaker, the `local` policy's
/// counters and the write-back of decisions admitted without Redis.
struct Resilience {
    client: Arc<RedisClient>,
    breaker: Breaker,
    /// Only with `on_backend_error = "local"`.
    fallback: Option<LocalFallback>,
    pending: PendingDeltas,
    probe_interval: Duration,
}

/// Backend + over-limit cache + failure policy + metrics.
pub struct QuotaEngine {
    pub backend: Backend,
    on_error: OnBackendError,
    /// Keys known to be full until their window ends: rejected without a backend round trip.
    /// Value: (window end, limit the key was full at) — a raised limit bypasses the entry.
    over_limit: moka::sync::Cache<String, (u64, u64)>,
    metrics: Metrics,
    backend_metrics: QuotaBackendMetrics,
    resilience: Option<Resilience>,
    /// Unix second of the last backend-error log line.
    last_error_log: AtomicU64,
}

/// Registers metrics on the gateway's registry; a clash (a second engine on one registry, in
/// tests) leaves them unregistered rather than failing the start.
fn registered<T>(
    what: &str,
    register: impl FnOnce() -> prometheus::Result<T>,
    fallback: impl FnOnce() -> T,
) -> T {
    register().unwrap_or_else(|e| {
        tracing::warn!(metrics = what, error = %e, "metrics not registered");
        fallback()
    })
}

impl QuotaEngine {
    pub fn new(cfg: &QuotaConfig, metrics: Metrics) -> Arc<Self> {
        let backend_metrics = registered(
            "quota backend",
            || QuotaBackendMetrics::register(&metrics.registry),
            || QuotaBackendMetrics::unregistered().unwrap_or_else(|_| unreachable!("valid names")),
        );
        let (backend, resilience) = match cfg.backend {
            QuotaBackendKind::Local => (Backend::Local(LocalQuotaStore::new()), None),
            QuotaBackendKind::Redis => {
                let target = RedisTarget {
                    urls: if cfg.redis_cluster_urls.is_empty() {
                        vec![cfg.redis_url.clone()]
                    } else {
                        cfg.redis_cluster_urls.clone()
                    },
                    cluster: !cfg.redis_cluster_urls.is_empty(),
                    request_deadline: cfg.timeout,
                    probe_interval: cfg.probe_interval,
                };
                let client = Arc::new(registered(
                    "redis",
                    || RedisClient::new(target.clone(), &metrics.registry),
                    || RedisClient::unregistered(target.clone()),
                ));
                let resilience = Resilience {
                    client: client.clone(),
                    breaker: Breaker::new(
                        cfg.breaker_failures,
                        backend_metrics.breaker_state.clone(),
                    ),
                    fallback: (cfg.on_backend_error == OnBackendError::Local)
                        .then(|| LocalFallback::new(cfg.fallback_share, cfg.max_pending_keys)),
                    pending: PendingDeltas::new(cfg.max_pending_keys, backend_metrics.clone()),
                    probe_interval: cfg.probe_interval,
                };
                (
                    Backend::Redis(Arc::new(RedisQuotaStore::new(client))),
                    Some(resilience),
                )
            }
        };
        Arc::new(Self {
            backend,
            on_error: cfg.on_backend_error,
            over_limit: moka::sync::Cache::builder()
                .max_capacity(100_000)
                // Month windows are the longest; entries are also checked against their window.
                .time_to_live(Duration::from_secs(32 * 86_400))
                .build(),
            metrics,
            backend_metrics,
            resilience,
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
                    let headers = rate_limit_headers(&req.demands[i..=i], &[d.limit], now);
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
        let permit = match &self.resilience {
            Some(r) => r.breaker.permit(&r.client, || r.pending.is_settled()),
            None => Permit::Call,
        };
        if permit == Permit::Skip {
            // Breaker open: no waiting for a Redis known to be unavailable.
            return self.without_backend(req, now);
        }
        let started = Instant::now();
        let result = self.backend.check(req.demands).await;
        self.metrics
            .quota_backend_duration
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                let kind = e.kind();
                self.backend_metrics.error(kind);
                if let Some(r) = &self.resilience {
                    if permit == Permit::Trial {
                        // The probe says Redis is back, yet this key's node did not answer.
                        r.client.check_route_of(&req.demands[0].key);
                    }
                    r.breaker.on_failure(permit, kind, &r.client);
                }
                self.log_backend_error(req, &e);
                return self.without_backend(req, now);
            }
        };
        if let Some(r) = &self.resilience {
            if r.breaker.on_success(permit, &r.client) {
                if let Some(f) = &r.fallback {
                    f.settle();
                }
            }
            if let Some(f) = &r.fallback {
                f.observe(req.demands, &outcome.used, now);
            }
        }
        if let Some(i) = outcome.rejected {
            self.count(req, Decision::Rejected, Some(i));
        } else {
            self.count(req, Decision::Allowed, None);
        }
        // Remember keys that are now full, and publish how close each is to its limit.
        for (d, used) in req.demands.iter().zip(&outcome.used) {
            let ratio = *used as f64 / d.limit.max(1) as f64;
            match d.handles {
                Some(h) => h.usage_ratio.set(ratio),
                None => self
                    .metrics
                    .quota_usage_ratio
                    .with_label_values(&[req.tenant, d.resource])
                    .set(ratio),
            }
            if *used >= d.limit {
                self.over_limit
                    .insert(d.key.clone(), (d.window.end, d.limit));
            }
        }
        self.verdict(req, &outcome, now)
    }

    fn log_backend_error(&self, req: &Request<'_>, e: &QuotaError) {
        // One line per second at most: an outage must not turn into a log flood.
        let now = unix_now();
        if self.last_error_log.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(tenant = req.tenant, error = %e, kind = e.kind().as_str(), policy = ?self.on_error, "quota backend error");
        }
    }

    /// A decision made without Redis, by `on_backend_error`. Whatever is admitted is kept for
    /// write-back.
    fn without_backend(&self, req: &Request<'_>, now: u64) -> Verdict {
        self.count(req, Decision::BackendError, None);
        let fallback = self.resilience.as_ref().and_then(|r| r.fallback.as_ref());
        match (self.on_error, fallback) {
            (OnBackendError::Deny, _) => Verdict::Unavailable,
            (OnBackendError::Local, Some(f)) => {
                let outcome = f.check(req.demands, now);
                if outcome.rejected.is_none() {
                    self.record_unbacked(req.demands, now);
                }
                self.verdict(req, &outcome, now)
            }
            (OnBackendError::Allow | OnBackendError::Local, _) => {
                self.record_unbacked(req.demands, now);
                Verdict::Allowed { headers: None }
            }
        }
    }

    fn record_unbacked(&self, demands: &[Demand<'_>], now: u64) {
        if let Some(r) = &self.resilience {
            r.pending.record(demands, now);
        }
    }

    /// The shared Redis client (ACME and admin use it too), with the Redis backend.
    pub fn redis_client(&self) -> Option<Arc<RedisClient>> {
        self.resilience.as_ref().map(|r| r.client.clone())
    }

    /// Units admitted without Redis that still wait for write-back.
    pub fn pending_units(&self) -> u64 {
        self.resilience
            .as_ref()
            .map_or(0, |r| r.pending.pending_units())
    }

    /// The Redis backend's background work until `stop` resolves: the health probe (connects,
    /// reconnects, `gateway_redis_up`, closes the breaker) and the write-back of decisions
    /// admitted without Redis, with a last write-back attempt at shutdown.
    pub async fn maintain_backend(&self, stop: impl std::future::Future<Output = ()>) {
        let Some(r) = &self.resilience else { return };
        // A write-back pass is never cut off by `stop` (its batches would be lost): shutdown
        // is looked at between passes, then one last pass runs.
        let write_back = async {
            let mut stop = std::pin::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(r.probe_interval) => {}
                }
                // Drain: passes back to back while admissions keep arriving, so a moment with
                // nothing pending (when the breaker may close) comes soon after Redis returns.
                let mut passes = 0;
                while r.client.is_up() && !r.pending.is_empty() && passes < 20 {
                    let report = r.pending.flush(&r.client, unix_now()).await;
                    let failed = report.failed > 0;
                    log_write_back(report);
                    if failed {
                        break;
                    }
                    passes += 1;
                }
            }
            if r.client.is_up() && !r.pending.is_empty() {
                let last = tokio::time::timeout(
                    Duration::from_secs(2),
                    r.pending.flush(&r.client, unix_now()),
                );
                if let Ok(report) = last.await {
                    log_write_back(report);
                }
            }
        };
        tokio::select! {
            _ = r.client.run_health_probe() => {}
            _ = write_back => {}
        }
    }

    fn count(&self, req: &Request<'_>, decision: Decision, only: Option<usize>) {
        for (i, d) in req.demands.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            match d.handles {
                Some(h) => h.decisions[decision as usize].inc(),
                None => self
                    .metrics
                    .quota_decisions
                    .with_label_values(&[req.tenant, d.resource, decision.as_str()])
                    .inc(),
            }
        }
    }

    fn verdict(&self, req: &Request<'_>, outcome: &Outcome, now: u64) -> Verdict {
        let headers = rate_limit_headers(req.demands, &outcome.used, now);
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

    /// Current counter values of the given keys (Redis: under the background deadline).
    pub async fn read(&self, keys: &[String]) -> Result<Vec<u64>, QuotaError> {
        self.backend.read(keys).await
    }
}

fn log_write_back(report: FlushReport) {
    if report.units > 0 {
        tracing::info!(
            keys = report.keys,
            units = report.units,
            "quota backend recovered: decisions admitted without Redis written back"
        );
    }
    if report.failed > 0 {
        tracing::warn!(
            keys = report.failed,
            "quota write-back incomplete; retrying"
        );
    }
}

/// `RateLimit-Policy: "requests";q=20;w=1, …` and `RateLimit: "requests";r=19;t=1, …`.
pub fn rate_limit_headers(demands: &[Demand<'_>], used: &[u64], now: u64) -> RateLimitHeaders {
    // Numbers by itoa, not `fmt`: this runs for every request of a plan with quotas.
    let mut n = itoa::Buffer::new();
    let mut policy = String::with_capacity(40 * demands.len());
    let mut limit = String::with_capacity(40 * demands.len());
    for (i, d) in demands.iter().enumerate() {
        if i > 0 {
            policy.push_str(", ");
            limit.push_str(", ");
        }
        let remaining = d.limit.saturating_sub(used.get(i).copied().unwrap_or(0));
        let reset = d.window.end.saturating_sub(now).max(1);
        for (out, (a, x), (b, y)) in [
            (&mut policy, ("q", d.limit), ("w", d.window.length())),
            (&mut limit, ("r", remaining), ("t", reset)),
        ] {
            out.push('"');
            out.push_str(d.resource);
            out.push_str("\";");
            out.push_str(a);
            out.push('=');
            out.push_str(n.format(x));
            out.push(';');
            out.push_str(b);
            out.push('=');
            out.push_str(n.format(y));
        }
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
mod tests;
