//! The `/admin/v1/*` router: one match arm per endpoint (method and path segments), each
//! answered here or by the resource's module. The OpenAPI test reads these arms.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::respond::{error, json_response, text_response};
use super::{openapi, tenant_json, AdminApp};
use crate::provision::{self, NewTenant, TenantPatch};
use crate::reload::{ReloadOutcome, ReloadTrigger};
use crate::tenant::Tenant;

impl AdminApp {
    pub(super) async fn admin_api(
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
