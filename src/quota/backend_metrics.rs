//! Metrics of the quota backend's failure handling: errors by kind, the circuit breaker, and
//! the write-back of decisions admitted without Redis. Registered by the quota engine on the
//! gateway's registry; label handles resolved once.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::redis_client::FailureKind;

#[derive(Clone)]
pub struct QuotaBackendMetrics {
    /// `gateway_quota_backend_errors_total{kind}`.
    errors_by_kind: IntCounterVec,
    /// Its handles, indexed like [`FailureKind::ALL`].
    errors: Vec<IntCounter>,
    /// `gateway_quota_breaker_state`: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGauge,
    /// `gateway_quota_pending_keys`: counter keys with admissions waiting for write-back.
    pub pending_keys: IntGauge,
    /// `gateway_quota_pending_dropped_total`: units admitted without Redis that could not be
    /// kept for write-back (pending memory full).
    pub pending_dropped: IntCounter,
    /// `gateway_quota_reconciled_total`: units written back to Redis after an outage.
    pub reconciled: IntCounter,
}

impl QuotaBackendMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.errors_by_kind.clone()))?;
        registry.register(Box::new(m.breaker_state.clone()))?;
        registry.register(Box::new(m.pending_keys.clone()))?;
        registry.register(Box::new(m.pending_dropped.clone()))?;
        registry.register(Box::new(m.reconciled.clone()))?;
        Ok(m)
    }

    /// The same metrics on no registry (unit tests, or when registration failed).
    pub fn unregistered() -> prometheus::Result<Self> {
        let errors_by_kind = IntCounterVec::new(
            Opts::new(
                "gateway_quota_backend_errors_total",
                "Quota decisions the backend failed, by kind of failure",
            ),
            &["kind"],
        )?;
        Ok(Self {
            errors: FailureKind::ALL
                .iter()
                .map(|k| errors_by_kind.with_label_values(&[k.as_str()]))
                .collect(),
            errors_by_kind,
            breaker_state: IntGauge::new(
                "gateway_quota_breaker_state",
                "Circuit breaker of the Redis quota path: 0 closed, 1 open, 2 half-open",
            )?,
            pending_keys: IntGauge::new(
                "gateway_quota_pending_keys",
                "Counter keys with decisions admitted without Redis, waiting for write-back",
            )?,
            pending_dropped: IntCounter::new(
                "gateway_quota_pending_dropped_total",
                "Units admitted without Redis that were dropped because pending memory was full",
            )?,
            reconciled: IntCounter::new(
                "gateway_quota_reconciled_total",
                "Units admitted without Redis that were written back to Redis",
            )?,
        })
    }

    pub fn error(&self, kind: FailureKind) {
        let i = FailureKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(FailureKind::ALL.len() - 1);
        self.errors[i].inc();
    }
}
