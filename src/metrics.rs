//! Prometheus metrics, registered on a registry the gateway owns (no global macros), with
//! per-tenant handles resolved once per tenant rather than per request.
//!
//! Tenant labels only ever carry configured tenant ids (or `none` for requests that resolved to
//! no tenant), never raw Host or path values, so cardinality is bounded by the config.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

use crate::config::LatencyHistogram;

/// Label value for requests that never reached a tenant (400/404).
pub const NO_TENANT: &str = "none";

/// Every metric the gateway exports.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    /// The latency histogram per plan (`[metrics] latency_histogram = "plan"`).
    pub plan_request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_successful: IntGauge,
    pub config_last_reload_timestamp: Gauge,
    /// 1 while the files change a key that only a restart applies.
    pub config_restart_required: IntGauge,
    pub tenants: IntGauge,
    pub tls_handshakes: IntCounterVec,
    pub certificate_expiry: prometheus::GaugeVec,
    pub certificates: IntGauge,
    pub quota_decisions: IntCounterVec,
    pub quota_backend_duration: Histogram,
    pub auth_failures: IntCounterVec,
    pub quota_usage_ratio: prometheus::GaugeVec,
    pub acme_orders: IntCounterVec,
    pub acme_next_attempt: prometheus::GaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Handles of one tenant, so the request path increments without hashing label values.
#[derive(Debug, Clone)]
pub struct TenantMetrics {
    /// `gateway_requests_total` by status class: index 0 = 1xx … 4 = 5xx.
    pub requests_by_class: [IntCounter; 5],
    /// `None` with `[metrics] latency_histogram = "off"`.
    pub duration: Option<Histogram>,
    /// Per quota resource of the tenant, in the order of `Tenant::quotas`.
    pub quota: Vec<QuotaHandles>,
}

/// Quota metric handles of one tenant's resource.
#[derive(Debug, Clone)]
pub struct QuotaHandles {
    /// `gateway_quota_decisions_total` for allowed, rejected, backend_error.
    pub decisions: [IntCounter; 3],
    pub usage_ratio: Gauge,
}

/// Index into [`QuotaHandles::decisions`].
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    Allowed = 0,
    Rejected = 1,
    BackendError = 2,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Rejected => "rejected",
            Decision::BackendError => "backend_error",
        }
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let on = Registrar(registry);
        let requests = on.counter_vec(
            "gateway_requests_total",
            "Requests answered, by tenant and status class (1xx … 5xx)",
            &["tenant", "status_class"],
        )?;
        let request_duration = on.add(latency_histograms(
            "gateway_request_duration_seconds",
            "Time from request start to the end of the response, by tenant",
            "tenant",
        ))?;
        let plan_request_duration = on.add(latency_histograms(
            "gateway_plan_request_duration_seconds",
            "Time from request start to the end of the response, by tenant plan",
            "plan",
        ))?;
        let upstream_errors = on.counter_vec(
            "gateway_upstream_errors_total",
            "Failed upstream attempts, by tenant and kind (connect, connect_timeout, timeout, unavailable)",
            &["tenant", "kind"],
        )?;
        let config_reloads = on.counter_vec(
            "gateway_config_reloads_total",
            "Configuration reload attempts, by result (success, failure, unchanged)",
            &["result"],
        )?;
        let config_last_reload_successful = on.add(IntGauge::new(
            "gateway_config_last_reload_successful",
            "1 if the last reload attempt succeeded (or was unchanged), 0 if it failed",
        ))?;
        let config_last_reload_timestamp = on.add(Gauge::new(
            "gateway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config swap",
        ))?;
        let config_restart_required = on.add(IntGauge::new(
            "gateway_config_restart_required",
            "1 when the config files change a start-only key (listeners, [quota], [acme], log.level, admin.token_env, tls.certs_dir) that only a restart applies",
        ))?;
        let tenants = on.add(IntGauge::new(
            "gateway_tenants",
            "Tenants in the serving config",
        ))?;
        let tls_handshakes = on.counter_vec(
            "gateway_tls_handshakes_total",
            "TLS handshakes by result (client_hello: a ClientHello was read, success: completed)",
            &["result"],
        )?;
        let certificate_expiry = on.gauge_vec(
            "gateway_certificate_expiry_timestamp_seconds",
            "notAfter of each served certificate, by name",
            &["name"],
        )?;
        let certificates = on.add(IntGauge::new(
            "gateway_certificates",
            "Certificates in the store",
        ))?;
        let quota_decisions = on.counter_vec(
            "gateway_quota_decisions_total",
            "Quota decisions by tenant, resource and decision (allowed, rejected, backend_error)",
            &["tenant", "resource", "decision"],
        )?;
        let quota_backend_duration = on.add(Histogram::with_opts(
            HistogramOpts::new(
                "gateway_quota_backend_duration_seconds",
                "Duration of one quota backend decision",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5,
                1.0,
            ]),
        ))?;
        let auth_failures = on.counter_vec(
            "gateway_auth_failures_total",
            "Rejected or invalid credentials, by tenant and reason (see AuthFailure)",
            &["tenant", "reason"],
        )?;
        let quota_usage_ratio = on.gauge_vec(
            "gateway_quota_usage_ratio",
            "Used / limit of the current window, by tenant and resource (updated on decisions)",
            &["tenant", "resource"],
        )?;
        let acme_orders = on.counter_vec(
            "gateway_acme_orders_total",
            "ACME orders by result (success, failure)",
            &["result"],
        )?;
        let acme_next_attempt = on.gauge_vec(
            "gateway_acme_next_attempt_timestamp_seconds",
            "When the next issuance or renewal attempt for a name is due (unix time)",
            &["name"],
        )?;
        register_process_metrics(registry)?;
        for result in ["success", "failure", "unchanged"] {
            config_reloads.with_label_values(&[result]);
        }
        Ok(Self {
            registry: registry.clone(),
            requests,
            request_duration,
            plan_request_duration,
            upstream_errors,
            config_reloads,
            config_last_reload_successful,
            config_last_reload_timestamp,
            config_restart_required,
            tenants,
            tls_handshakes,
            certificate_expiry,
            certificates,
            quota_decisions,
            quota_backend_duration,
            auth_failures,
            quota_usage_ratio,
            acme_orders,
            acme_next_attempt,
        })
    }

    /// Handles for one tenant label value, its plan and its quota resources; `latency` says
    /// which histogram (if any) its requests are observed in.
    pub fn tenant(
        &self,
        tenant: &str,
        plan: &str,
        latency: LatencyHistogram,
        resources: &[&str],
    ) -> TenantMetrics {
        TenantMetrics {
            requests_by_class: STATUS_CLASSES
                .map(|class| self.requests.with_label_values(&[tenant, class])),
            duration: match latency {
                LatencyHistogram::Tenant => {
                    Some(self.request_duration.with_label_values(&[tenant]))
                }
                LatencyHistogram::Plan => {
                    Some(self.plan_request_duration.with_label_values(&[plan]))
                }
                LatencyHistogram::Off => None,
            },
            quota: resources
                .iter()
                .map(|r| self.quota_handles(tenant, r))
                .collect(),
        }
    }

    pub fn quota_handles(&self, tenant: &str, resource: &str) -> QuotaHandles {
        QuotaHandles {
            decisions: [
                Decision::Allowed,
                Decision::Rejected,
                Decision::BackendError,
            ]
            .map(|d| {
                self.quota_decisions
                    .with_label_values(&[tenant, resource, d.as_str()])
            }),
            usage_ratio: self
                .quota_usage_ratio
                .with_label_values(&[tenant, resource]),
        }
    }

    /// Drops the label sets of a tenant that left the config, so /metrics does not keep
    /// reporting tenants that no longer exist.
    pub fn forget_tenant(&self, tenant: &str) {
        forget_in(&self.requests, tenant);
        forget_in(&self.request_duration, tenant);
        forget_in(&self.upstream_errors, tenant);
        forget_in(&self.quota_decisions, tenant);
        forget_in(&self.auth_failures, tenant);
        forget_in(&self.quota_usage_ratio, tenant);
    }

    /// Prometheus text exposition of the whole registry.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        buf
    }
}

/// A request latency histogram family with one label.
fn latency_histograms(name: &str, help: &str, label: &str) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        &[label],
    )
}

/// Removes every series of `vec` whose `tenant` label is `tenant`, whatever its other labels.
fn forget_in<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    tenant: &str,
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.get_name(), l.get_value()))
                .collect();
            if labels.get("tenant") == Some(&tenant) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// Creates metrics on a registry: each constructor registers what it builds, so a metric
/// cannot be created and then forgotten in the registration list.
pub struct Registrar<'a>(pub &'a Registry);

impl Registrar<'_> {
    /// Registers `metric` (the result of its constructor) and hands it back.
    pub fn add<M>(&self, metric: prometheus::Result<M>) -> prometheus::Result<M>
    where
        M: prometheus::core::Collector + Clone + 'static,
    {
        let metric = metric?;
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<prometheus::GaugeVec> {
        self.add(prometheus::GaugeVec::new(Opts::new(name, help), labels))
    }
}

/// `process_*` (CPU seconds, resident memory, open and max fds, start time; the prometheus
/// crate's collector, read from /proc at scrape time) and `gateway_build_info{version} 1`.
fn register_process_metrics(registry: &Registry) -> prometheus::Result<()> {
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let build_info = prometheus::IntGaugeVec::new(
        Opts::new(
            "gateway_build_info",
            "Always 1; the label carries the version of the running binary",
        ),
        &["version"],
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    registry.register(Box::new(build_info))
}

impl TenantMetrics {
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests_by_class[class].inc();
        if let Some(duration) = &self.duration {
            duration.observe(seconds);
        }
    }
}

#[cfg(test)]
mod forget_tests {
    use super::*;

    #[test]
    fn forgetting_a_tenant_removes_it_from_every_tenant_family() {
        let m = Metrics::register(&Registry::new()).unwrap();
        for t in ["gone", "kept"] {
            m.requests.with_label_values(&[t, "2xx"]).inc();
            m.request_duration.with_label_values(&[t]).observe(0.1);
            m.upstream_errors.with_label_values(&[t, "timeout"]).inc();
            m.auth_failures
                .with_label_values(&[t, "unknown_api_key"])
                .inc();
        }
        m.forget_tenant("gone");
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("tenant=\"gone\""), "{text}");
        for family in [
            "gateway_requests_total",
            "gateway_upstream_errors_total",
            "gateway_auth_failures_total",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(family) && l.contains("tenant=\"kept\"")),
                "{family}"
            );
        }
    }
}

#[cfg(test)]
mod latency_tests;
