//! `GET /admin/v1/tenants/{id}/usage` (every quota in its current window) and
//! `GET /admin/v1/tenants/{id}/billing` (the month's usage priced by the plan).

use http::{Response, StatusCode};
use serde_json::json;

use super::respond::{error, json_response};
use super::AdminApp;
use crate::config::Period;
use crate::quota::window::rfc3339;
use crate::quota::{unix_now, window_key, Window};
use crate::snapshot::Snapshot;
use crate::tenant::Tenant;

fn round_cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl AdminApp {
    /// Counter values, or the 503 to answer when the quota backend cannot be read.
    async fn read_counters(&self, keys: &[String]) -> Result<Vec<u64>, Response<Vec<u8>>> {
        self.quota.read(keys).await.map_err(|e| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "QUOTA_BACKEND_UNAVAILABLE",
                &e.to_string(),
            )
        })
    }

    /// Used, limit, period and reset time of every quota of a tenant, in the current windows.
    pub(super) async fn usage(&self, t: &Tenant) -> Response<Vec<u8>> {
        let now = unix_now();
        let windows: Vec<Window> = t
            .quotas
            .iter()
            .map(|(_, q)| Window::of(q.period, now))
            .collect();
        let keys: Vec<String> = t
            .quotas
            .iter()
            .zip(&windows)
            .map(|((r, _), w)| window_key(&t.id, r, w))
            .collect();
        let used = match self.read_counters(&keys).await {
            Ok(u) => u,
            Err(resp) => return resp,
        };
        let mut resources = serde_json::Map::new();
        for (((r, q), w), used) in t.quotas.iter().zip(&windows).zip(used) {
            resources.insert(
                r.to_string(),
                json!({
                    "used": used,
                    "limit": q.limit,
                    "remaining": q.limit.saturating_sub(used),
                    "period": q.period,
                    "window_start": rfc3339(w.start),
                    "resets_at": rfc3339(w.end),
                }),
            );
        }
        json_response(
            StatusCode::OK,
            &json!({"success": true, "tenant": &*t.id, "usage": resources}),
        )
    }

    /// Usage of the month's monthly resources, priced by the plan: units beyond what the plan
    /// includes (a tenant override may allow more than the plan includes) cost `overage`.
    pub(super) async fn billing(
        &self,
        t: &Tenant,
        snapshot: &Snapshot,
        month: Option<&str>,
    ) -> Response<Vec<u8>> {
        let window = match month {
            None => Window::of(Period::Month, unix_now()),
            Some(m) => match Window::parse_month(m) {
                Some(w) => w,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_MONTH",
                        "month must be YYYY-MM",
                    )
                }
            },
        };
        let Some(plan) = snapshot.plans.get(&*t.plan) else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "tenant plan missing",
            );
        };
        let monthly: Vec<&(Box<str>, crate::quota::QuotaLimit)> = t
            .quotas
            .iter()
            .filter(|(_, q)| q.period == Period::Month)
            .collect();
        let label = window.label();
        let keys: Vec<String> = monthly
            .iter()
            .map(|(r, _)| window_key(&t.id, r, &window))
            .collect();
        let used = match self.read_counters(&keys).await {
            Ok(u) => u,
            Err(resp) => return resp,
        };
        let mut lines = Vec::new();
        let mut total = plan.pricing.base;
        for ((r, q), used) in monthly.iter().zip(used) {
            let included = plan.quotas.get(&**r).map_or(q.limit, |p| p.limit);
            let overage_units = used.saturating_sub(included);
            let unit_price = plan.pricing.overage.get(&**r).copied().unwrap_or(0.0);
            let cost = overage_units as f64 * unit_price;
            total += cost;
            lines.push(json!({
                "resource": &**r,
                "used": used,
                "limit": q.limit,
                "included": included,
                "overage_units": overage_units,
                "unit_price": unit_price,
                "overage_cost": round_cents(cost),
            }));
        }
        json_response(
            StatusCode::OK,
            &json!({
                "success": true,
                "tenant": &*t.id,
                "plan": &*t.plan,
                "month": label,
                "base_price": plan.pricing.base,
                "resources": lines,
                "total": round_cents(total),
            }),
        )
    }
}
