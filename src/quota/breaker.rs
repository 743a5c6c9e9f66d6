//! The circuit breaker of the Redis quota path: after `quota.breaker_failures` consecutive
//! failed decisions (errors or timeouts), or as soon as the Redis health probe fails, decisions
//! stop waiting for Redis and follow `on_backend_error` at once. Once a probe that *started
//! after* the breaker opened succeeds, one trial decision at a time goes to Redis (half-open);
//! its success closes the breaker, its failure re-opens it until the next successful probe.
//!
//! Lock-free: a closed breaker costs one atomic load of the probe state per decision.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use prometheus::IntGauge;

use crate::redis_client::{FailureKind, RedisClient};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// What a decision may do with the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Breaker closed: ask Redis.
    Call,
    /// Half-open: this decision is the one trial that asks Redis.
    Trial,
    /// Open (or a trial is in flight): decide without Redis, now.
    Skip,
}

/// See the module docs.
pub struct Breaker {
    threshold: u32,
    failures: AtomicU32,
    state: AtomicU8,
    /// When the breaker last (re-)opened, on the client's ms clock.
    opened_at_ms: AtomicU64,
    /// When the current outage began (first open since the last close).
    outage_started_ms: AtomicU64,
    /// `gateway_quota_breaker_state`: 0 closed, 1 open, 2 half-open.
    gauge: IntGauge,
}

impl Breaker {
    pub fn new(threshold: u32, gauge: IntGauge) -> Self {
        gauge.set(i64::from(CLOSED));
        Self {
            threshold: threshold.max(1),
            failures: AtomicU32::new(0),
            state: AtomicU8::new(CLOSED),
            opened_at_ms: AtomicU64::new(0),
            outage_started_ms: AtomicU64::new(0),
            gauge,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// Whether this decision may ask Redis. `settled()` tells whether everything admitted
    /// without Redis has been written back: only then may a trial close the breaker, so
    /// decisions after the close see those admissions in Redis.
    pub fn permit(&self, client: &RedisClient, settled: impl FnOnce() -> bool) -> Permit {
        match self.state.load(Ordering::Acquire) {
            CLOSED => {
                if client.is_up() {
                    Permit::Call
                } else {
                    self.open(client, "the Redis health probe fails");
                    Permit::Skip
                }
            }
            OPEN => {
                let recovered = client.is_up()
                    && client.last_ok_started_ms() > self.opened_at_ms.load(Ordering::Acquire)
                    && settled();
                if recovered
                    && self
                        .state
                        .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    self.gauge.set(i64::from(HALF_OPEN));
                    Permit::Trial
                } else {
                    Permit::Skip
                }
            }
            _ => Permit::Skip,
        }
    }

    /// Redis answered this decision. True when this closed the breaker (the outage is over).
    pub fn on_success(&self, permit: Permit, client: &RedisClient) -> bool {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if permit == Permit::Trial
            && self
                .state
                .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.gauge.set(i64::from(CLOSED));
            let started = self.outage_started_ms.swap(0, Ordering::AcqRel);
            let outage = Duration::from_millis(client.now_ms().saturating_sub(started));
            tracing::info!(outage = ?outage, "quota backend recovered: circuit breaker closed, decisions use Redis again");
            return true;
        }
        false
    }

    /// Redis failed this decision (error or deadline).
    pub fn on_failure(&self, permit: Permit, kind: FailureKind, client: &RedisClient) {
        match permit {
            Permit::Trial => {
                // Still down: wait for a newer successful probe before the next trial.
                self.opened_at_ms.store(client.now_ms(), Ordering::Release);
                self.state.store(OPEN, Ordering::Release);
                self.gauge.set(i64::from(OPEN));
            }
            Permit::Call => {
                let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= self.threshold {
                    self.open(client, kind.as_str());
                }
            }
            Permit::Skip => {}
        }
    }

    /// Closed → open, logged once per outage.
    fn open(&self, client: &RedisClient, reason: &str) {
        let now = client.now_ms();
        self.opened_at_ms.store(now, Ordering::Release);
        if self
            .state
            .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.gauge.set(i64::from(OPEN));
            self.outage_started_ms.store(now, Ordering::Release);
            self.failures.store(0, Ordering::Relaxed);
            tracing::warn!(
                reason,
                threshold = self.threshold,
                "quota backend unavailable: circuit breaker open, decisions follow on_backend_error without waiting for Redis"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_client::RedisTarget;

    fn client() -> RedisClient {
        let c = RedisClient::unregistered(RedisTarget {
            urls: vec!["redis://127.0.0.1:1".into()],
            cluster: false,
            request_deadline: Duration::from_millis(25),
            probe_interval: Duration::from_millis(250),
        });
        c.mark_probe(true);
        c
    }

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(
            threshold,
            IntGauge::new("gateway_quota_breaker_state", "test").expect("gauge"),
        )
    }

    #[tokio::test]
    async fn opens_after_n_consecutive_failures_only() {
        let c = client();
        let b = breaker(3);
        for _ in 0..2 {
            assert_eq!(b.permit(&c, || true), Permit::Call);
            b.on_failure(Permit::Call, FailureKind::Timeout, &c);
        }
        // A success in between resets the run.
        assert!(!b.on_success(Permit::Call, &c));
        for _ in 0..2 {
            b.on_failure(Permit::Call, FailureKind::Refused, &c);
        }
        assert_eq!(b.permit(&c, || true), Permit::Call);
        b.on_failure(Permit::Call, FailureKind::Refused, &c);
        assert_eq!(b.permit(&c, || true), Permit::Skip);
        assert_eq!(b.gauge.get(), 1);
    }

    #[tokio::test]
    async fn half_open_needs_a_probe_newer_than_the_opening_and_allows_one_trial() {
        let c = client();
        let b = breaker(1);
        tokio::time::sleep(Duration::from_millis(3)).await;
        b.on_failure(Permit::Call, FailureKind::Timeout, &c);
        // The probe's last success predates the opening: no trial yet.
        assert_eq!(b.permit(&c, || true), Permit::Skip);
        tokio::time::sleep(Duration::from_millis(3)).await;
        c.mark_probe(true);
        // Admissions without Redis not yet written back: no trial.
        assert_eq!(b.permit(&c, || false), Permit::Skip);
        assert_eq!(b.permit(&c, || true), Permit::Trial);
        assert_eq!(b.gauge.get(), 2);
        // Only one trial at a time.
        assert_eq!(b.permit(&c, || true), Permit::Skip);
        // A failed trial re-opens until a newer probe.
        b.on_failure(Permit::Trial, FailureKind::ClusterDown, &c);
        assert_eq!(b.permit(&c, || true), Permit::Skip);
        tokio::time::sleep(Duration::from_millis(3)).await;
        c.mark_probe(true);
        assert_eq!(b.permit(&c, || true), Permit::Trial);
        assert!(b.on_success(Permit::Trial, &c));
        assert!(b.is_closed());
        assert_eq!(b.gauge.get(), 0);
        assert_eq!(b.permit(&c, || true), Permit::Call);
    }

    #[tokio::test]
    async fn a_failing_probe_opens_a_closed_breaker_at_once() {
        let c = client();
        let b = breaker(5);
        c.mark_probe(false);
        assert_eq!(b.permit(&c, || true), Permit::Skip);
        assert!(!b.is_closed());
    }
}
