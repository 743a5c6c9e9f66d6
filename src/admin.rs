//! The admin listener: `/metrics`, `/healthz`, `/readyz` (open) and `/admin/v1/*` (bearer
//! token). Served by pingora's HTTP app service on its own address, away from tenant traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::reload::{ReloadOutcome, Reloader};
use crate::snapshot::{Snapshot, SnapshotHolder};
use crate::tenant::Tenant;

/// Shared state of the admin endpoints.
pub struct AdminApp {
    pub snapshots: Arc<SnapshotHolder>,
    pub metrics: Metrics,
    pub reloader: Arc<Reloader>,
    /// Set once the config is loaded and the proxy listeners accept connections.
    pub ready: Arc<AtomicBool>,
    /// Bearer token for `/admin/v1/*`; `None` (env var unset or empty) disables those endpoints.
    pub token: Option<String>,
}

fn json_response(status: StatusCode, body: &Value) -> Response<Vec<u8>> {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, bytes.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(bytes)
        .unwrap_or_default()
}

fn text_response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Vec<u8>> {
    json_response(
        status,
        &json!({"success": false, "error": message, "code": code}),
    )
}

/// Compares in time independent of where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin view of one tenant: effective plan, features, quotas, domains.
pub fn tenant_json(t: &Tenant, snapshot: &Snapshot) -> Value {
    let quotas: serde_json::Map<String, Value> = t
        .quotas
        .iter()
        .map(|(r, q)| (r.to_string(), json!({"limit": q.limit, "period": q.period})))
        .collect();
    let mut hosts: Vec<String> = snapshot
        .config
        .server
        .base_domains
        .iter()
        .map(|b| format!("{}.{}", t.subdomain, b))
        .collect();
    hosts.extend(t.custom_domains.iter().map(|d| d.to_string()));
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
        "upstream": {"name": &*t.upstream.name, "addrs": t.upstream.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>()},
        "file": &*t.file,
    })
}

impl AdminApp {
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = self.token.as_deref() else {
            return false;
        };
        session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|given| constant_time_eq(given, token.as_bytes()))
    }

    async fn admin_api(&self, method: &Method, path: &str) -> Response<Vec<u8>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::POST, ["admin", "v1", "reload"]) => {
                let reloader = self.reloader.clone();
                let outcome =
                    tokio::task::spawn_blocking(move || reloader.reload_now("admin")).await;
                match outcome {
                    Ok(ReloadOutcome::Swapped { tenants }) => json_response(
                        StatusCode::OK,
                        &json!({"success": true, "result": "swapped", "tenants": tenants}),
                    ),
                    Ok(ReloadOutcome::Unchanged) => json_response(
                        StatusCode::OK,
                        &json!({"success": true, "result": "unchanged"}),
                    ),
                    Ok(ReloadOutcome::Failed(errors)) => json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &json!({"success": false, "code": "CONFIG_INVALID", "error": "config rejected; previous config keeps serving", "errors": errors.0}),
                    ),
                    Err(_) => error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "INTERNAL",
                        "reload task failed",
                    ),
                }
            }
            (&Method::GET, ["admin", "v1", "tenants"]) => {
                let snap = self.snapshots.load();
                let mut tenants: Vec<&Arc<Tenant>> = snap.hosts.tenants().collect();
                tenants.sort_by(|a, b| a.id.cmp(&b.id));
                let list: Vec<Value> = tenants.iter().map(|t| tenant_json(t, &snap)).collect();
                json_response(StatusCode::OK, &json!({"success": true, "tenants": list}))
            }
            (&Method::GET, ["admin", "v1", "tenants", id]) => {
                let snap = self.snapshots.load();
                match snap.hosts.by_id(id) {
                    Some(t) => json_response(
                        StatusCode::OK,
                        &json!({"success": true, "tenant": tenant_json(t, &snap)}),
                    ),
                    None => error(
                        StatusCode::NOT_FOUND,
                        "TENANT_NOT_FOUND",
                        "Tenant not found",
                    ),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such admin endpoint"),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (&method, path.as_str()) {
            (&Method::GET, "/metrics") => text_response(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.encode(),
            ),
            (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, "/readyz") => {
                if self.ready.load(Ordering::Acquire) {
                    json_response(StatusCode::OK, &json!({"status": "ready"}))
                } else {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"status": "starting"}),
                    )
                }
            }
            (_, p) if p.starts_with("/admin/") => {
                if !self.authorized(session) {
                    let client = session
                        .client_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    tracing::warn!(target: "audit", client = %client, path = %p, reason = "invalid_admin_token", "admin request rejected");
                    let mut resp = error(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "missing or invalid admin token",
                    );
                    resp.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer realm=\"tenant-gateway-admin\""),
                    );
                    return resp;
                }
                let client = session
                    .client_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tracing::info!(target: "audit", client = %client, method = %method, path = %p, "admin request");
                self.admin_api(&method, p).await
            }
            _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found"),
        }
    }
}
