//! The admin API's JSON view of one tenant: the compiled tenant (effective plan, features,
//! quotas, hosts, upstream, branding, API key names) plus its request counts from the metrics.

use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::tenant::Tenant;

/// `gateway_requests_total` of one tenant by status class (the series of configured tenants
/// only, so label cardinality stays bounded by the config).
fn request_counts(metrics: &Metrics, tenant: &str) -> Value {
    let counts: serde_json::Map<String, Value> = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|class| {
            let n = metrics.requests.with_label_values(&[tenant, class]).get();
            (class.to_string(), json!(n))
        })
        .collect();
    Value::Object(counts)
}

/// The admin view of one tenant: effective plan, features, quotas, domains, branding, API key
/// names and request counts by status class.
pub fn tenant_json(t: &Tenant, snapshot: &Snapshot, metrics: &Metrics) -> Value {
    let quotas: serde_json::Map<String, Value> = t
        .quotas
        .iter()
        .map(|(r, q)| (r.to_string(), json!({"limit": q.limit, "period": q.period})))
        .collect();
    let hosts: Vec<String> = snapshot.hosts.hosts_of(t).collect();
    json!({
        "id": &*t.id,
        "organization_id": &*t.organization_id,
        "name": &*t.name,
        "plan": &*t.plan,
        "status": t.status,
        "subdomain": &*t.subdomain,
        "custom_domains": t.custom_domains.iter().map(|d| &**d).collect::<Vec<_>>(),
        "hosts": hosts,
        "features": t.features.iter().map(|f| &**f).collect::<Vec<_>>(),
        "quotas": quotas,
        "schema": t.schema.as_deref(),
        "upstream": {"name": &*t.upstream.name, "addrs": t.upstream.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>()},
        "file": &*t.file,
        "branding": &t.branding,
        "api_keys": t.api_keys.iter().map(|(_, name, _)| &**name).collect::<Vec<_>>(),
        "requests": request_counts(metrics, &t.id),
    })
}
