//! The admin listener: `/metrics`, `/healthz`, `/readyz` (open) and `/admin/v1/*` (bearer
//! token). Served by pingora's HTTP app service on its own address, away from tenant traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::acme::AcmeManager;
use crate::metrics::Metrics;
use crate::quota::QuotaEngine;
use crate::reload::Reloader;
use crate::snapshot::SnapshotHolder;

mod console;
mod openapi;
mod respond;
mod router;
mod tenant_view;
mod tenants;
mod usage;
use respond::{error, json_response, text_response};
pub use tenant_view::tenant_json;

/// Shared state of the admin endpoints.
pub struct AdminApp {
    pub snapshots: Arc<SnapshotHolder>,
    pub metrics: Metrics,
    pub reloader: Arc<Reloader>,
    /// Set once the config is loaded and the proxy listeners accept connections.
    pub ready: Arc<AtomicBool>,
    /// The bound address of every listener, shown by `/readyz`.
    pub listeners: Arc<crate::gateway::ListenerAddrs>,
    /// Bearer token for `/admin/v1/*`; `None` (env var unset or empty) disables those endpoints.
    pub token: Option<String>,
    pub quota: Arc<QuotaEngine>,
    pub acme: Option<Arc<AcmeManager>>,
}

/// Largest admin request body accepted.
const MAX_BODY: usize = 1 << 20;

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "BODY_TOO_LARGE",
                        "admin request bodies are limited to 1 MiB",
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(error(StatusCode::BAD_REQUEST, "BAD_BODY", &e.to_string())),
        }
    }
}

/// Who sent an admin request, for the audit log: the client address and the request id (kept
/// when valid, else generated).
fn audit_identity(session: &ServerSession) -> (String, http::HeaderValue) {
    let client = session
        .client_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let rid = crate::request_id::keep_or_generate(session.req_header().headers.get("x-request-id"));
    (client, rid)
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
            .is_some_and(|given| bool::from(given.ct_eq(token.as_bytes())))
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
            (&Method::GET, "/ui")
            | (&Method::GET, "/ui/app.js")
            | (&Method::GET, "/ui/style.css") => console::asset(&path)
                .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")),
            (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, "/readyz") => {
                if self.ready.load(Ordering::Acquire) {
                    json_response(
                        StatusCode::OK,
                        &json!({"status": "ready", "listeners": *self.listeners}),
                    )
                } else {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"status": "starting"}),
                    )
                }
            }
            (_, p) if p.starts_with("/admin/") => {
                let (client, rid) = audit_identity(session);
                let rid = rid.to_str().unwrap_or("");
                if !self.authorized(session) {
                    tracing::warn!(target: "audit", client = %client, path = %p, reason = "invalid_admin_token", request_id = rid, "admin request rejected");
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
                tracing::info!(target: "audit", client = %client, method = %method, path = %p, request_id = rid, "admin request");
                let query = session.req_header().uri.query().map(str::to_string);
                let body = if matches!(method, Method::POST | Method::PATCH) {
                    match read_body(session).await {
                        Ok(b) => b,
                        Err(resp) => return resp,
                    }
                } else {
                    Vec::new()
                };
                self.admin_api(&method, p, query.as_deref(), &body).await
            }
            _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found"),
        }
    }
}
