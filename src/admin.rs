//! The admin listener: `/metrics`, `/healthz`, `/readyz` (open) and `/admin/v1/*` (bearer
//! token). Served by pingora's HTTP app service on its own address, away from tenant traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::acme::AcmeManager;
use crate::config::Period;
use crate::metrics::Metrics;
use crate::provision::{self, NewTenant, ProvisionError, TenantPatch};
use crate::quota::window::rfc3339;
use crate::quota::{unix_now, window_key, QuotaEngine, Window};
use crate::reload::{ReloadOutcome, ReloadTrigger, Reloader};
use crate::snapshot::{Snapshot, SnapshotHolder};
use crate::tenant::Tenant;

mod console;
mod openapi;
mod tenant_view;
pub use tenant_view::tenant_json;

/// Shared state of the admin endpoints.
pub struct AdminApp {
    pub snapshots: Arc<SnapshotHolder>,
    pub metrics: Metrics,
    pub reloader: Arc<Reloader>,
    /// Set once the config is loaded and the proxy listeners accept connections.
    pub ready: Arc<AtomicBool>,
    /// Bearer token for `/admin/v1/*`; `None` (env var unset or empty) disables those endpoints.
    pub token: Option<String>,
    pub quota: Arc<QuotaEngine>,
    pub acme: Option<Arc<AcmeManager>>,
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

/// `true`, or the errors of a reload that kept the previous config.
fn reloaded_json(reload: &ReloadOutcome) -> Value {
    match reload {
        ReloadOutcome::Swapped { .. } | ReloadOutcome::Unchanged => json!(true),
        ReloadOutcome::Failed(e) => json!({"errors": e.0}),
    }
}

/// The answer to a refused provisioning change.
fn provision_error(e: ProvisionError) -> Response<Vec<u8>> {
    match e {
        ProvisionError::Invalid(errors) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"success": false, "code": "INVALID_TENANT", "error": "the change would make the config invalid; nothing was written", "errors": errors}),
        ),
        e @ ProvisionError::NotFound { .. } => {
            error(StatusCode::NOT_FOUND, "TENANT_NOT_FOUND", &e.to_string())
        }
        e @ ProvisionError::Exists { .. } => {
            error(StatusCode::CONFLICT, "TENANT_EXISTS", &e.to_string())
        }
        ProvisionError::Hook(failure) => provisioning_failed(&failure),
        e @ ProvisionError::Io { .. } => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            &e.to_string(),
        ),
    }
}

/// 502 PROVISIONING_FAILED: a `[provisioning]` hook failed and the change was rolled back.
fn provisioning_failed(failure: &provision::hooks::HookFailure) -> Response<Vec<u8>> {
    json_response(
        StatusCode::BAD_GATEWAY,
        &json!({
            "success": false,
            "code": "PROVISIONING_FAILED",
            "error": failure.to_string(),
            "stderr": failure.stderr_tail,
        }),
    )
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

fn round_cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
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
    async fn usage(&self, t: &Tenant) -> Response<Vec<u8>> {
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
    async fn billing(
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

    /// Runs a provisioning change, then reloads so it serves at once. The file watcher would
    /// reload too; the reload lock makes that second pass an "unchanged". `Err` is the answer
    /// for a change that was refused.
    async fn change_and_reload<T: Send + 'static>(
        &self,
        change: impl FnOnce(&std::path::Path) -> Result<T, ProvisionError> + Send + 'static,
    ) -> Result<(T, ReloadOutcome), Response<Vec<u8>>> {
        let reloader = self.reloader.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let done = change(reloader.config_path())?;
            let reload = reloader.reload_now(ReloadTrigger::Admin);
            Ok::<_, ProvisionError>((done, reload))
        })
        .await;
        match outcome {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(provision_error(e)),
            Err(_) => Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "provisioning task failed",
            )),
        }
    }

    /// [`Self::change_and_reload`], answered with `describe`'s JSON plus `success` and
    /// `reloaded`.
    async fn provision<T: Send + 'static>(
        &self,
        change: impl FnOnce(&std::path::Path) -> Result<T, ProvisionError> + Send + 'static,
        ok_status: StatusCode,
        describe: impl FnOnce(T) -> Value,
    ) -> Response<Vec<u8>> {
        match self.change_and_reload(change).await {
            Ok((done, reload)) => {
                let mut body = describe(done);
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("success".into(), json!(true));
                    obj.insert("reloaded".into(), reloaded_json(&reload));
                }
                json_response(ok_status, &body)
            }
            Err(resp) => resp,
        }
    }

    /// Moves the tenant file away and reloads, so the tenant stops routing; only then runs
    /// `on_delete`. A failing hook cannot bring the tenant back: the answer is still 200, with
    /// the hook's error under `deprovisioned`.
    async fn delete_tenant(&self, id: &str) -> Response<Vec<u8>> {
        let owned = id.to_string();
        let (moved, reload) = match self
            .change_and_reload(move |cfg| provision::delete(cfg, &owned))
            .await
        {
            Ok(done) => done,
            Err(resp) => return resp,
        };
        let deprovisioned = match reload {
            // The old config still serves, and with it the tenant: deprovisioning now would
            // pull its data from under live traffic.
            ReloadOutcome::Failed(_) => {
                json!({"error": "on_delete not run: the reload failed and the tenant may still route; fix the config, reload, then run the hook by hand"})
            }
            ReloadOutcome::Swapped { .. } | ReloadOutcome::Unchanged => {
                let reloader = self.reloader.clone();
                let file = moved.clone();
                let hook = tokio::task::spawn_blocking(move || {
                    provision::run_delete_hook(reloader.config_path(), &file)
                })
                .await;
                match hook {
                    Ok(Ok(())) => json!(true),
                    Ok(Err(ProvisionError::Hook(f))) => {
                        json!({"error": f.to_string(), "stderr": f.stderr_tail})
                    }
                    Ok(Err(e)) => json!({"error": e.to_string()}),
                    Err(_) => json!({"error": "provisioning task failed"}),
                }
            }
        };
        json_response(
            StatusCode::OK,
            &json!({
                "success": true,
                "tenant": id,
                "moved_to": moved.display().to_string(),
                "reloaded": reloaded_json(&reload),
                "deprovisioned": deprovisioned,
            }),
        )
    }

    async fn admin_api(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::POST, ["admin", "v1", "reload"]) => {
                let reloader = self.reloader.clone();
                let outcome =
                    tokio::task::spawn_blocking(move || reloader.reload_now(ReloadTrigger::Admin))
                        .await;
                match outcome {
                    Ok(ReloadOutcome::Swapped {
                        tenants,
                        restart_required,
                    }) => json_response(
                        StatusCode::OK,
                        &json!({"success": true, "result": "swapped", "tenants": tenants, "restart_required": restart_required}),
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
            (&Method::GET, ["admin", "v1", "openapi.json"]) => text_response(
                StatusCode::OK,
                "application/json",
                openapi::OPENAPI_JSON.as_bytes().to_vec(),
            ),
            (&Method::GET, ["admin", "v1", "reload"]) => {
                let loaded_at = self.snapshots.load().loaded_at;
                json_response(
                    StatusCode::OK,
                    &json!({"success": true, "reload": self.reloader.status.to_json(loaded_at)}),
                )
            }
            (&Method::GET, ["admin", "v1", "tenants"]) => {
                let snap = self.snapshots.load();
                let mut tenants: Vec<&Arc<Tenant>> = snap.hosts.tenants().collect();
                tenants.sort_by(|a, b| a.id.cmp(&b.id));
                let list: Vec<Value> = tenants
                    .iter()
                    .map(|t| tenant_json(t, &snap, &self.metrics))
                    .collect();
                json_response(StatusCode::OK, &json!({"success": true, "tenants": list}))
            }
            (&Method::GET, ["admin", "v1", "tenants", id]) => {
                let snap = self.snapshots.load();
                match snap.hosts.by_id(id) {
                    Some(t) => json_response(
                        StatusCode::OK,
                        &json!({"success": true, "tenant": tenant_json(t, &snap, &self.metrics)}),
                    ),
                    None => error(
                        StatusCode::NOT_FOUND,
                        "TENANT_NOT_FOUND",
                        "Tenant not found",
                    ),
                }
            }
            (&Method::POST, ["admin", "v1", "tenants"]) => {
                let new: NewTenant = match serde_json::from_slice(body) {
                    Ok(t) => t,
                    Err(e) => {
                        return error(StatusCode::BAD_REQUEST, "INVALID_JSON", &e.to_string())
                    }
                };
                if let Some(why) = crate::quota::first_bad_limit(
                    new.quotas.iter().map(|(r, q)| (r.as_str(), q.limit)),
                ) {
                    return error(StatusCode::BAD_REQUEST, "INVALID_QUOTA", &why);
                }
                let id = new.id.clone();
                self.provision(
                    move |cfg| provision::create(cfg, new),
                    StatusCode::CREATED,
                    |file| json!({"tenant": id, "file": file.display().to_string()}),
                )
                .await
            }
            (&Method::PATCH, ["admin", "v1", "tenants", id]) => {
                let patch: TenantPatch = match serde_json::from_slice(body) {
                    Ok(p) => p,
                    Err(e) => {
                        return error(StatusCode::BAD_REQUEST, "INVALID_JSON", &e.to_string())
                    }
                };
                if patch.is_empty() {
                    return error(StatusCode::BAD_REQUEST, "EMPTY_PATCH", "nothing to change");
                }
                if let Some(why) = crate::quota::first_bad_limit(
                    patch
                        .quotas
                        .iter()
                        .flatten()
                        .filter_map(|(r, q)| q.as_ref().map(|q| (r.as_str(), q.limit))),
                ) {
                    return error(StatusCode::BAD_REQUEST, "INVALID_QUOTA", &why);
                }
                let id = id.to_string();
                let id2 = id.clone();
                self.provision(
                    move |cfg| provision::update(cfg, &id, patch),
                    StatusCode::OK,
                    |file| json!({"tenant": id2, "file": file.display().to_string()}),
                )
                .await
            }
            (&Method::DELETE, ["admin", "v1", "tenants", id]) => self.delete_tenant(id).await,
            (&Method::GET, ["admin", "v1", "tenants", id, "usage"]) => {
                let snap = self.snapshots.load();
                match snap.hosts.by_id(id) {
                    Some(t) => self.usage(t).await,
                    None => error(
                        StatusCode::NOT_FOUND,
                        "TENANT_NOT_FOUND",
                        "Tenant not found",
                    ),
                }
            }
            (&Method::GET, ["admin", "v1", "tenants", id, "billing"]) => {
                let snap = self.snapshots.load();
                let month =
                    query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("month=")));
                match snap.hosts.by_id(id) {
                    Some(t) => self.billing(t, &snap, month).await,
                    None => error(
                        StatusCode::NOT_FOUND,
                        "TENANT_NOT_FOUND",
                        "Tenant not found",
                    ),
                }
            }
            (&Method::GET, ["admin", "v1", "domains"]) => match &self.acme {
                Some(acme) => json_response(
                    StatusCode::OK,
                    &json!({"success": true, "acme_enabled": true, "domains": acme.report()}),
                ),
                None => {
                    // Without ACME, custom domains are not verified: they route as configured.
                    let snap = self.snapshots.load();
                    let mut domains: Vec<Value> = snap
                        .hosts
                        .tenants()
                        .flat_map(|t| {
                            t.custom_domains.iter().map(
                                |d| json!({"domain": &**d, "tenant": &*t.id, "state": "unmanaged", "txt_record": null}),
                            )
                        })
                        .collect();
                    domains.sort_by(|a, b| a["domain"].as_str().cmp(&b["domain"].as_str()));
                    json_response(
                        StatusCode::OK,
                        &json!({"success": true, "acme_enabled": false, "domains": domains}),
                    )
                }
            },
            (&Method::POST, ["admin", "v1", "domains", domain, "verify"]) => match &self.acme {
                Some(acme) => match acme.verify_now(&domain.to_ascii_lowercase()).await {
                    Some(rec) => json_response(
                        StatusCode::OK,
                        &json!({"success": true, "domain": acme.report_one(&rec)}),
                    ),
                    None => error(
                        StatusCode::NOT_FOUND,
                        "DOMAIN_NOT_FOUND",
                        "no tenant claims this domain",
                    ),
                },
                None => error(
                    StatusCode::CONFLICT,
                    "ACME_DISABLED",
                    "domain verification needs acme.enabled = true",
                ),
            },
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
            (&Method::GET, "/ui")
            | (&Method::GET, "/ui/app.js")
            | (&Method::GET, "/ui/style.css") => console::asset(&path)
                .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")),
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
                    let rid = crate::request_id::keep_or_generate(
                        session.req_header().headers.get("x-request-id"),
                    );
                    let rid = rid.to_str().unwrap_or("");
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
                let client = session
                    .client_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let rid = crate::request_id::keep_or_generate(
                    session.req_header().headers.get("x-request-id"),
                );
                tracing::info!(target: "audit", client = %client, method = %method, path = %p, request_id = rid.to_str().unwrap_or(""), "admin request");
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
