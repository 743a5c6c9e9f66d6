//! Reconciliation: every decision admitted without Redis (policy `allow` or `local`) is kept
//! here per counter key and window, and written back to Redis when it answers again, so usage
//! and billing count every admitted request.
//!
//! - Idempotent: each write-back batch carries an id; the script increments only if its marker
//!   key (same `{tenant}` slot) did not exist, so a batch retried after an ambiguous failure
//!   (deadline passed, connection lost) is never counted twice.
//! - Expiry kept: the counter's `EXPIREAT` is the one the decision script would have set.
//! - A window that ended meanwhile (a second, minute, hour or day) is written to the month
//!   counter of that resource, the key billing reads.
//! - Bounded: at most `max_pending_keys` keys wait; beyond that new admissions are dropped,
//!   counted in `gateway_quota_pending_dropped_total` and logged (once a second at most).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::backend_metrics::QuotaBackendMetrics;
use super::{window_key, Demand, Window};
use crate::config::Period;
use crate::redis_client::{RedisClient, BACKGROUND_DEADLINE};

/// KEYS[1] = counter, KEYS[2] = batch marker; ARGV = amount, expire_at (unix s), marker TTL (s).
/// Reply: the counter after the increment, or -1 when this batch was already applied.
pub const WRITE_BACK: &str = r#"
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  local v = redis.call('INCRBY', KEYS[1], ARGV[1])
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
  return v
end
return -1
"#;

/// How long a batch marker outlives its write-back (retries happen within seconds).
const MARKER_TTL_SECS: u64 = 2 * 86_400;

#[derive(Debug, Clone, Copy)]
struct Delta {
    amount: u64,
    window: Window,
}

/// One key's admissions handed to write-back, under a fixed id.
#[derive(Debug, Clone)]
struct Batch {
    id: u64,
    key: String,
    delta: Delta,
}

#[derive(Default)]
struct Pending {
    fresh: HashMap<String, Delta>,
    /// Batches whose write-back failed or whose outcome is unknown: retried with the same id.
    retry: Vec<Batch>,
    next_id: u64,
}

/// What one write-back pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub keys: usize,
    pub units: u64,
    pub failed: usize,
}

/// See the module docs.
pub struct PendingDeltas {
    max_keys: usize,
    /// Distinguishes this process's batch markers from other nodes'.
    node: String,
    inner: Mutex<Pending>,
    script: redis::Script,
    metrics: QuotaBackendMetrics,
    last_drop_log: AtomicU64,
    /// A write-back pass is running (its batches are neither pending nor in Redis yet).
    flushing: AtomicBool,
}

/// `tg:{tenant}:resource:label` → (tenant, resource).
fn tenant_and_resource(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("tg:{")?;
    let (tenant, rest) = rest.split_once("}:")?;
    let (resource, _label) = rest.split_once(':')?;
    Some((tenant, resource))
}

/// Where a delta goes at `now`: its own counter while the window lasts (months always), else
/// the month counter billing reads. (key, expire_at).
fn target(key: &str, w: &Window, now: u64) -> Option<(String, u64)> {
    if w.period == Period::Month || w.end > now {
        return Some((key.to_string(), w.expire_at()));
    }
    let (tenant, resource) = tenant_and_resource(key)?;
    let month = Window::of(Period::Month, w.start);
    Some((window_key(tenant, resource, &month), month.expire_at()))
}

impl PendingDeltas {
    pub fn new(max_keys: usize, metrics: QuotaBackendMetrics) -> Self {
        let node = uuid::Uuid::new_v4().simple().to_string();
        Self {
            max_keys: max_keys.max(1),
            node,
            inner: Mutex::new(Pending::default()),
            script: redis::Script::new(WRITE_BACK),
            metrics,
            last_drop_log: AtomicU64::new(0),
            flushing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps one admitted decision's demands for write-back.
    pub fn record(&self, demands: &[Demand], now: u64) {
        let mut dropped = 0;
        {
            let mut p = self.lock();
            for d in demands.iter().filter(|d| d.amount > 0) {
                if let Some(e) = p.fresh.get_mut(d.key.as_str()) {
                    e.amount = e.amount.saturating_add(d.amount);
                } else if p.fresh.len() + p.retry.len() < self.max_keys {
                    p.fresh.insert(
                        d.key.clone(),
                        Delta {
                            amount: d.amount,
                            window: d.window,
                        },
                    );
                } else {
                    dropped += d.amount;
                }
            }
            self.metrics
                .pending_keys
                .set((p.fresh.len() + p.retry.len()) as i64);
        }
        if dropped > 0 {
            self.metrics.pending_dropped.inc_by(dropped);
            if self.last_drop_log.swap(now, Ordering::Relaxed) != now {
                tracing::error!(
                    max_pending_keys = self.max_keys,
                    "quota write-back memory full: admissions without Redis are no longer recorded and will be missing from usage"
                );
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        let p = self.lock();
        p.fresh.is_empty() && p.retry.is_empty()
    }

    /// Nothing pending and no write-back in flight: Redis holds every admission.
    pub fn is_settled(&self) -> bool {
        !self.flushing.load(Ordering::Acquire) && self.is_empty()
    }

    /// Units waiting for write-back, per key (tests and the admin view).
    pub fn pending_units(&self) -> u64 {
        let p = self.lock();
        p.fresh.values().map(|d| d.amount).sum::<u64>()
            + p.retry.iter().map(|b| b.delta.amount).sum::<u64>()
    }

    /// Writes everything pending to Redis, one idempotent script call per key. Failed batches
    /// stay for the next pass, under the same id.
    pub async fn flush(&self, client: &RedisClient, now: u64) -> FlushReport {
        self.flushing.store(true, Ordering::Release);
        let report = self.flush_batches(client, now).await;
        self.flushing.store(false, Ordering::Release);
        report
    }

    async fn flush_batches(&self, client: &RedisClient, now: u64) -> FlushReport {
        let batches: Vec<Batch> = {
            let mut p = self.lock();
            let mut batches = std::mem::take(&mut p.retry);
            let fresh = std::mem::take(&mut p.fresh);
            for (key, delta) in fresh {
                let id = p.next_id;
                p.next_id += 1;
                batches.push(Batch { id, key, delta });
            }
            batches
        };
        let mut report = FlushReport::default();
        let mut failed = Vec::new();
        for b in batches {
            let Some((counter, expire_at)) = target(&b.key, &b.delta.window, now) else {
                tracing::warn!(key = %b.key, "not a quota counter key; write-back skipped");
                continue;
            };
            let Some((tenant, _)) = tenant_and_resource(&b.key) else {
                continue;
            };
            let marker = format!("tg:{{{tenant}}}:writeback:{}:{}", self.node, b.id);
            let mut inv = self.script.prepare_invoke();
            inv.key(&counter)
                .key(&marker)
                .arg(b.delta.amount)
                .arg(expire_at)
                .arg(MARKER_TTL_SECS);
            match client.invoke::<i64>(&inv, BACKGROUND_DEADLINE).await {
                Ok(_) => {
                    report.keys += 1;
                    report.units += b.delta.amount;
                }
                Err(e) => {
                    tracing::debug!(key = %b.key, error = %e, "write-back failed; retrying later");
                    report.failed += 1;
                    failed.push(b);
                }
            }
        }
        self.metrics.reconciled.inc_by(report.units);
        let mut p = self.lock();
        p.retry.extend(failed);
        self.metrics
            .pending_keys
            .set((p.fresh.len() + p.retry.len()) as i64);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::test_demand;

    const NOW: u64 = 1_795_871_109; // 2026-11-28T13:05:09Z

    fn demand(resource: &str, period: Period, amount: u64, at: u64) -> Demand<'_> {
        test_demand(resource, amount, 100, period, at)
    }

    #[test]
    fn live_windows_keep_their_key_and_ended_ones_go_to_the_month() {
        let hour = demand("requests", Period::Hour, 1, NOW);
        assert_eq!(
            target(&hour.key, &hour.window, NOW),
            Some((hour.key.clone(), hour.window.expire_at()))
        );
        let second = demand("requests", Period::Second, 1, NOW);
        let month = Window::of(Period::Month, NOW);
        assert_eq!(
            target(&second.key, &second.window, NOW + 5),
            Some(("tg:{acme}:requests:2026-11".into(), month.expire_at()))
        );
        // A month that ended is still its own (billing) counter.
        let nov = demand("messages", Period::Month, 1, NOW);
        assert_eq!(
            target(&nov.key, &nov.window, NOW + 40 * 86_400),
            Some((nov.key.clone(), nov.window.expire_at()))
        );
        assert_eq!(
            tenant_and_resource("tg:{a-b}:storage_bytes:2026-11-28T13:05:09"),
            Some(("a-b", "storage_bytes"))
        );
        assert_eq!(tenant_and_resource("tg:acme:http01:x"), None);
    }

    #[test]
    fn deltas_add_up_per_key_and_memory_is_bounded() {
        let metrics = QuotaBackendMetrics::unregistered().expect("metrics");
        let p = PendingDeltas::new(2, metrics.clone());
        let a = demand("requests", Period::Hour, 1, NOW);
        let b = demand("messages", Period::Month, 2, NOW);
        let c = demand("storage_bytes", Period::Day, 7, NOW);
        for _ in 0..3 {
            p.record(&[a.clone(), b.clone()], NOW);
        }
        assert_eq!(p.pending_units(), 9);
        assert_eq!(metrics.pending_keys.get(), 2);
        // A third key does not fit: dropped and counted, the others still add up.
        p.record(&[a.clone(), c], NOW);
        assert_eq!(p.pending_units(), 10);
        assert_eq!(metrics.pending_dropped.get(), 7);
    }
}
