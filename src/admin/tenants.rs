//! Tenant provisioning through the admin API (`POST`, `PATCH`, `DELETE /admin/v1/tenants`):
//! run the change, reload so it serves at once, and answer with what happened (a refused change
//! keeps its error answers: 400 with every validation error, 404, 409, 502 for a failed hook).

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::respond::{error, json_response};
use super::AdminApp;
use crate::provision::{self, ProvisionError};
use crate::reload::{ReloadOutcome, ReloadTrigger};

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

impl AdminApp {
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
    pub(super) async fn provision<T: Send + 'static>(
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
    pub(super) async fn delete_tenant(&self, id: &str) -> Response<Vec<u8>> {
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
}
