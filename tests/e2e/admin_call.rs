//! One call of the gateway's admin API with the admin token, answered as (status, JSON), shared
//! by the test modules that drive tenants through the API.

use reqwest::Method;
use serde_json::Value;

use crate::harness::{Gateway, ADMIN_TOKEN};

/// `method path` with the admin token and an optional JSON body; the status and the JSON
/// answer (`Null` when the answer is not JSON).
pub async fn admin(gw: &Gateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = gw.admin(method, path, Some(ADMIN_TOKEN));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("admin request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST /admin/v1/tenants` with `body`: creates a tenant.
pub async fn create_tenant(gw: &Gateway, body: Value) -> (u16, Value) {
    admin(gw, Method::POST, "/admin/v1/tenants", Some(body)).await
}
