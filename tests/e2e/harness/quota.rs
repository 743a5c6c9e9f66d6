//! Quota fixtures: the quota config (plans, routes, tenants) every quota test shares, and small
//! request/usage helpers. Redis itself is in `harness::redis`.

use std::time::{Duration, Instant};

use crate::harness::{
    eventually, family_sum, Echo, Gateway, GatewayConfig, TenantToml, ADMIN_TOKEN,
};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Gateway config

/// Which quota backend a gateway uses.
#[derive(Debug, Clone)]
pub enum Store {
    Local,
    Redis(String),
    Cluster(Vec<String>),
}

/// The `[quota]` table of a test gateway.
#[derive(Debug, Clone)]
pub struct QuotaSettings {
    pub store: Store,
    /// `"allow"` or `"deny"`.
    pub on_backend_error: &'static str,
    /// Humantime, e.g. `"25ms"`.
    pub timeout: &'static str,
    /// More `[quota]` lines (`fallback_share = 0.5`, …).
    pub lines: Vec<String>,
}

impl QuotaSettings {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            on_backend_error: "allow",
            timeout: "25ms",
            lines: Vec::new(),
        }
    }

    /// One more `[quota]` line.
    pub fn line(mut self, line: &str) -> Self {
        self.lines.push(line.to_string());
        self
    }

    pub fn on_backend_error(mut self, policy: &'static str) -> Self {
        self.on_backend_error = policy;
        self
    }

    pub fn timeout(mut self, timeout: &'static str) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn to_toml(&self) -> String {
        let quote = |urls: &[String]| {
            let q: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
            format!("[{}]", q.join(", "))
        };
        let backend = match &self.store {
            Store::Local => "backend = \"local\"\n".to_string(),
            Store::Redis(url) => format!("backend = \"redis\"\nredis_url = \"{url}\"\n"),
            Store::Cluster(urls) => {
                format!(
                    "backend = \"redis\"\nredis_cluster_urls = {}\n",
                    quote(urls)
                )
            }
        };
        let mut extra = String::new();
        for l in &self.lines {
            extra.push_str(l);
            extra.push('\n');
        }
        format!(
            "[quota]\n{backend}on_backend_error = \"{}\"\ntimeout = \"{}\"\n{extra}",
            self.on_backend_error, self.timeout
        )
    }
}

/// Plans and routes of every quota test.
///
/// - `exact`: 500 requests an hour (exactness across nodes).
/// - `metered`: 100 requests an hour, 3 messages a month, 1000 storage bytes a day.
/// - `persecond`: 3 requests a second (window roll-over).
/// - `small`: 5 requests an hour (tenant override, backend outage).
/// - `billed`: base 29.0, includes 2 messages a month at 0.5 per extra message.
///
/// Routes: `POST /api/messages` consumes 1 message, `POST /api/batch` 2 messages,
/// `/api/uploads` its body size in storage bytes.
const PLANS_AND_ROUTES: &str = r#"
[plans.exact]
quotas.requests = { limit = 500, period = "hour" }

[plans.metered]
quotas.requests = { limit = 100, period = "hour" }
quotas.messages = { limit = 3, period = "month" }
quotas.storage_bytes = { limit = 1000, period = "day" }

[plans.persecond]
quotas.requests = { limit = 3, period = "second" }

[plans.small]
quotas.requests = { limit = 5, period = "hour" }

[plans.billed]
quotas.requests = { limit = 100, period = "hour" }
quotas.messages = { limit = 2, period = "month" }
pricing = { base = 29.0, overage = { messages = 0.5 } }

[[routes]]
path_prefix = "/api/messages"
methods = ["POST"]
consumes = { messages = 1 }

[[routes]]
path_prefix = "/api/batch"
methods = ["POST"]
consumes = { messages = 2 }

[[routes]]
path_prefix = "/api/uploads"
consumes = { storage_bytes = "content-length" }
"#;

/// The tenants, one per scenario: `acme` (exact), `aon` (metered), `uploads` (metered),
/// `roll` (persecond), `tight` (small, overridden to 2 an hour), `open` and `closed` (small),
/// `bill` (billed, messages overridden to 10 a month).
pub fn tenants() -> Vec<TenantToml> {
    const ON_PLAN: [(&str, &str); 6] = [
        ("acme", "exact"),
        ("aon", "metered"),
        ("uploads", "metered"),
        ("roll", "persecond"),
        ("open", "small"),
        ("closed", "small"),
    ];
    const OVERRIDDEN: [(&str, &str, &str); 2] = [
        (
            "tight",
            "small",
            "requests = { limit = 2, period = \"hour\" }",
        ),
        (
            "bill",
            "billed",
            "messages = { limit = 10, period = \"month\" }",
        ),
    ];
    let on_plan = ON_PLAN
        .iter()
        .map(|(id, plan)| TenantToml::new(id).plan(plan));
    let overridden = OVERRIDDEN
        .iter()
        .map(|(id, plan, quota)| TenantToml::new(id).plan(plan).line("[quotas]").line(quota));
    on_plan.chain(overridden).collect()
}

/// A gateway config with the quota plans, routes and tenants, in front of `echo`.
pub fn quota_config(echo: &Echo, settings: &QuotaSettings) -> GatewayConfig {
    let mut cfg = GatewayConfig::with_echo(echo)
        .extra(&settings.to_toml())
        .extra(PLANS_AND_ROUTES);
    for t in tenants() {
        cfg = cfg.tenant(t);
    }
    cfg
}

/// Starts a gateway with these settings and waits until its quota backend answers (the
/// gateway is ready before its first Redis connection; until then it follows
/// `on_backend_error`, which would spoil exact counts).
pub async fn start_gateway(echo: &Echo, settings: &QuotaSettings) -> Gateway {
    let gw = quota_config(echo, settings).start().await;
    wait_backend_connected(&gw).await;
    gw
}

/// Polls the usage endpoint until it answers 200 (it answers 503 while the backend is down).
pub async fn wait_backend_connected(gw: &Gateway) {
    eventually(
        Duration::from_secs(20),
        "quota backend connected (usage endpoint answers 200)",
        || async {
            usage_response(gw, "acme")
                .await
                .is_some_and(|(status, _)| status == 200)
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Requests

/// `gateway_quota_backend_errors_total`, all kinds.
pub async fn backend_errors(gw: &Gateway) -> f64 {
    family_sum(&gw.metrics().await, "gateway_quota_backend_errors_total")
}

/// Host of a tenant on the test base domain.
pub fn host(tenant: &str) -> String {
    format!("{tenant}.localhost")
}

/// One response, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub elapsed: Duration,
}

impl Reply {
    /// Reads `resp` completely; `elapsed` counts from `started` (before the request was sent).
    pub async fn read(resp: reqwest::Response, started: Instant) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("response body");
        Reply {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// 429 with the exact contract body for `resource`, as JSON.
    #[track_caller]
    pub fn assert_quota_exceeded(&self, resource: &str) {
        let expected = format!(
            r#"{{"success":false,"error":"Quota exceeded for {resource}","code":"QUOTA_EXCEEDED"}}"#
        );
        assert_eq!(
            (self.status, self.body.as_str()),
            (429, expected.as_str()),
            "expected a 429 for {resource}; headers {:?}",
            self.headers
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
    }

    /// `Retry-After` as seconds.
    #[track_caller]
    pub fn retry_after(&self) -> u64 {
        let v = self
            .header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After on {} {:?}", self.status, self.headers));
        v.parse()
            .unwrap_or_else(|_| panic!("Retry-After is not an integer: {v:?}"))
    }
}

/// Sends a request through the proxy listener of `gw` as `tenant`, with an optional body.
pub async fn send(
    gw: &Gateway,
    method: Method,
    tenant: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Reply {
    let mut rb = gw
        .request(method.clone(), &host(tenant), path)
        .timeout(Duration::from_secs(30));
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let started = Instant::now();
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} as {tenant}: {e}"));
    Reply::read(resp, started).await
}

/// `GET path` as `tenant`.
pub async fn get(gw: &Gateway, tenant: &str, path: &str) -> Reply {
    send(gw, Method::GET, tenant, path, None).await
}

/// `POST path` as `tenant` with a body of `len` bytes.
pub async fn post(gw: &Gateway, tenant: &str, path: &str, len: usize) -> Reply {
    send(gw, Method::POST, tenant, path, Some(vec![b'x'; len])).await
}

/// Status and JSON of an admin GET, `None` when the admin listener does not answer.
pub async fn admin_json(gw: &Gateway, path: &str) -> Option<(u16, Value)> {
    let resp = gw
        .admin(Method::GET, path, Some(ADMIN_TOKEN))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().await.ok()?;
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("admin {path} answered {status} with non-JSON ({e}): {text}"));
    Some((status, json))
}

async fn usage_response(gw: &Gateway, tenant: &str) -> Option<(u16, Value)> {
    admin_json(gw, &format!("/admin/v1/tenants/{tenant}/usage")).await
}

/// The `usage` object of `GET /admin/v1/tenants/{tenant}/usage` (which must answer 200).
pub async fn usage(gw: &Gateway, tenant: &str) -> Value {
    let (status, json) = usage_response(gw, tenant)
        .await
        .expect("usage endpoint answers");
    assert_eq!(status, 200, "usage of {tenant}: {json}");
    json["usage"].clone()
}

/// `usage.<resource>.used` of a tenant.
pub async fn used(gw: &Gateway, tenant: &str, resource: &str) -> u64 {
    let u = usage(gw, tenant).await;
    u[resource]["used"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage.{resource}.used for {tenant}: {u}"))
}

/// `GET /admin/v1/tenants/{tenant}/billing?month=…`: status and JSON.
pub async fn billing(gw: &Gateway, tenant: &str, month: &str) -> (u16, Value) {
    admin_json(
        gw,
        &format!("/admin/v1/tenants/{tenant}/billing?month={month}"),
    )
    .await
    .expect("billing endpoint answers")
}

/// Unix time now, seconds (float).
pub fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Waits out the end of the current UTC hour when less than `margin` of it is left, so that
/// hour, day and month windows cannot roll over during a test that counts exactly.
pub async fn clear_of_hour_boundary(margin: Duration) {
    let now = unix_now_f64();
    let left = 3600.0 - now.rem_euclid(3600.0);
    if left < margin.as_secs_f64() {
        tokio::time::sleep(Duration::from_secs_f64(left + 0.2)).await;
    }
}

/// Sleeps until just after the next whole unix second.
pub async fn next_second() {
    let frac = unix_now_f64().fract();
    tokio::time::sleep(Duration::from_secs_f64(1.0 - frac + 0.02)).await;
}
