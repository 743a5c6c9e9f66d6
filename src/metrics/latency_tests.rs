//! `[metrics] latency_histogram`: how many latency histograms each mode exports, whatever the
//! number of tenants.

use super::*;

/// Series (label sets) of the family `name` in the registry.
fn series(m: &Metrics, name: &str) -> usize {
    m.registry
        .gather()
        .iter()
        .find(|f| f.get_name() == name)
        .map_or(0, |f| f.get_metric().len())
}

/// `tenants` tenants spread over `plans` plans, one request each.
fn serve(latency: LatencyHistogram, tenants: usize, plans: usize) -> Metrics {
    let m = Metrics::register(&Registry::new()).unwrap();
    for t in 0..tenants {
        let plan = format!("plan-{}", t % plans);
        m.tenant(&format!("t{t}"), &plan, latency, &[])
            .observe(200, 0.01);
    }
    m
}

#[test]
fn per_plan_mode_has_one_histogram_per_plan_whatever_the_tenants() {
    for tenants in [1, 3, 10, 1_000, 10_000] {
        for plans in [1, 3] {
            let m = serve(LatencyHistogram::Plan, tenants, plans);
            let expected = plans.min(tenants);
            assert_eq!(
                series(&m, "gateway_plan_request_duration_seconds"),
                expected,
                "{tenants} tenants, {plans} plans"
            );
            assert_eq!(series(&m, "gateway_request_duration_seconds"), 0);
            // Request counters stay per tenant (one series per status class).
            assert_eq!(series(&m, "gateway_requests_total"), 5 * tenants);
        }
    }
}

#[test]
fn per_tenant_mode_has_one_histogram_per_tenant_with_traffic() {
    for tenants in [1, 10, 1_000] {
        let m = serve(LatencyHistogram::Tenant, tenants, 3);
        assert_eq!(series(&m, "gateway_request_duration_seconds"), tenants);
        assert_eq!(series(&m, "gateway_plan_request_duration_seconds"), 0);
    }
}

#[test]
fn off_mode_has_no_latency_histogram() {
    let m = serve(LatencyHistogram::Off, 1_000, 3);
    assert_eq!(series(&m, "gateway_request_duration_seconds"), 0);
    assert_eq!(series(&m, "gateway_plan_request_duration_seconds"), 0);
    assert_eq!(series(&m, "gateway_requests_total"), 5 * 1_000);
}

#[test]
fn the_mode_is_read_from_the_metrics_table_and_validated() {
    let parse = |toml_text: &str| toml::from_str::<crate::config::GatewayConfig>(toml_text);
    for (text, mode) in [
        ("", LatencyHistogram::Tenant),
        (
            "[metrics]\nlatency_histogram = \"tenant\"",
            LatencyHistogram::Tenant,
        ),
        (
            "[metrics]\nlatency_histogram = \"plan\"",
            LatencyHistogram::Plan,
        ),
        (
            "[metrics]\nlatency_histogram = \"off\"",
            LatencyHistogram::Off,
        ),
    ] {
        assert_eq!(
            parse(text).unwrap().metrics.latency_histogram,
            mode,
            "{text}"
        );
    }
    for bad in [
        "[metrics]\nlatency_histogram = \"route\"",
        "[metrics]\nlatency_histogram = 1",
        "[metrics]\nlatency = \"plan\"",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}
