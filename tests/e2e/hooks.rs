//! Provisioning hooks end to end: `[provisioning]` programs run by `POST/PATCH/DELETE
//! /admin/v1/tenants` and by `tenant new`/`tenant delete`, with the tenant in their
//! environment; a failing or timed-out `on_create` rolls the creation back (no file, nothing
//! routes, 502 PROVISIONING_FAILED with the last stderr lines); a hanging hook blocks neither
//! traffic, nor other admin calls, nor reloads; `on_delete` runs once the tenant has stopped
//! routing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::admin_call::{admin, create_tenant};
use crate::harness::{eventually, Echo, GatewayConfig, TenantToml, ADMIN_TOKEN, BIN};

/// One script for every event, steered by the tenant id:
/// - `fail*`: 12 lines on stderr, exit 3; `hang*`: writes `started-<id>`, then sleeps;
/// - otherwise records its environment in `hooks/<event>-<id>.env`.
///
/// `on_update` fails while `hooks/fail-update` exists. `on_delete` also records what the
/// gateway answers for the tenant at that moment (bash's /dev/tcp, no curl needed).
const HOOK: &str = r#"#!/usr/bin/env bash
set -u
dir="$(dirname "$0")"
case "$TENANT_ID" in
  fail*) for i in $(seq 1 12); do echo "provision step $i failed for $TENANT_ID" >&2; done; exit 3 ;;
  hang*) touch "$dir/started-$TENANT_ID"; sleep 30; exit 0 ;;
esac
if [ "$TENANT_EVENT" = update ] && [ -e "$dir/fail-update" ]; then
  echo "plan change refused" >&2; exit 4
fi
env | grep -E '^TENANT_' | LC_ALL=C sort > "$dir/$TENANT_EVENT-$TENANT_ID.env"
if [ "$TENANT_EVENT" = delete ]; then
  # The harness's gateway listens on port 0: the bound port is in its ready file (http first).
  port="$(grep -m1 -o '127\.0\.0\.1:[0-9]*' run/ready.json | cut -d: -f2)"
  ( exec 3<>"/dev/tcp/127.0.0.1/$port" &&
    printf 'GET / HTTP/1.1\r\nHost: %s.localhost\r\nConnection: close\r\n\r\n' "$TENANT_ID" >&3 &&
    head -n 1 <&3 | tr -d '\r' ) > "$dir/routing-at-delete-$TENANT_ID" 2>/dev/null ||
    echo "no gateway listening" > "$dir/routing-at-delete-$TENANT_ID"
  [ -e "tenants/$TENANT_ID.toml" ] && echo "file still there" >> "$dir/routing-at-delete-$TENANT_ID"
  case "$TENANT_ID" in baddelete*) echo "could not archive" >&2; exit 5 ;; esac
fi
echo "provisioned $TENANT_ID"
"#;

fn config(echo: &Echo, timeout: &str) -> GatewayConfig {
    let cfg = GatewayConfig::with_echo(echo)
        .extra(&format!(
            "[provisioning]\non_create = [\"./hooks/hook.sh\", \"create\"]\non_update = [\"./hooks/hook.sh\"]\non_delete = [\"./hooks/hook.sh\"]\ntimeout = \"{timeout}\"\n"
        ))
        .tenant(TenantToml::new("acme"));
    let hooks = cfg.dir().join("hooks");
    std::fs::create_dir_all(&hooks).expect("hooks dir");
    let script = hooks.join("hook.sh");
    std::fs::write(&script, HOOK).expect("write hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    cfg
}

fn env_file(dir: &Path, event: &str, id: &str) -> String {
    std::fs::read_to_string(dir.join("hooks").join(format!("{event}-{id}.env")))
        .unwrap_or_else(|e| panic!("{event} hook of {id} left no record: {e}"))
}

fn assert_rolled_back(dir: &Path, id: &str) {
    let leftovers: Vec<String> = std::fs::read_dir(dir.join("tenants"))
        .expect("tenants dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(id))
        .collect();
    assert!(leftovers.is_empty(), "{id}: {leftovers:?}");
}

#[tokio::test]
async fn on_create_provisions_or_rolls_back() {
    let echo = Echo::start().await;
    let gw = config(&echo, "30s").start().await;

    let (status, body) = create_tenant(&gw, json!({"id": "newco", "plan": "free", "organization_id": "org_9", "subdomain": "new-co", "schema": "tenant_newco"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        env_file(gw.dir(), "create", "newco"),
        "TENANT_EVENT=create\nTENANT_ID=newco\nTENANT_ORGANIZATION_ID=org_9\nTENANT_PLAN=free\nTENANT_SCHEMA=tenant_newco\nTENANT_STATUS=active\nTENANT_SUBDOMAIN=new-co\n"
    );
    assert_eq!(gw.status("new-co.localhost", "/").await, 200);
    assert!(
        gw.logs().contains("provisioned newco"),
        "hook stdout in the log"
    );

    // A failing hook: 502 with the last lines of stderr, and no trace of the tenant.
    let (status, body) = create_tenant(&gw, json!({"id": "failco", "plan": "free"})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "PROVISIONING_FAILED");
    let stderr: Vec<&str> = body["stderr"]
        .as_array()
        .expect("stderr lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let want: Vec<String> = (3..=12)
        .map(|i| format!("provision step {i} failed for failco"))
        .collect();
    assert_eq!(stderr, want);
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("on_create failed (exit status 3)")
            && error.contains("provision step 12 failed for failco"),
        "{error}"
    );
    assert_rolled_back(gw.dir(), "failco");
    assert_eq!(gw.status("failco.localhost", "/").await, 404);
    // The id is free again: a retry is judged afresh (and fails the same way).
    let (status, _) = create_tenant(&gw, json!({"id": "failco", "plan": "free"})).await;
    assert_eq!(status, 502);
    let audit = gw.logs();
    assert!(
        audit.contains("\"hook\":\"on_create\"") && audit.contains("\"outcome\":\"failed\""),
        "audit line for the failed hook"
    );
}

#[tokio::test]
async fn a_hanging_hook_blocks_nothing_else_and_times_out() {
    let echo = Echo::start().await;
    let gw = config(&echo, "4s").start().await;
    let started = gw.dir().join("hooks").join("started-hangco");
    let admin_url = gw.admin_url();
    let hang = tokio::spawn(async move {
        let resp = crate::harness::client()
            .post(format!("{admin_url}/admin/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"id": "hangco", "plan": "free"}))
            .send()
            .await
            .expect("create hangco");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    });
    eventually(Duration::from_secs(10), "the hook started", || {
        let started = started.clone();
        async move { started.exists() }
    })
    .await;

    // While it hangs: traffic, reads, a reload, and another tenant's whole creation.
    assert_eq!(gw.status("acme.localhost", "/").await, 200);
    let (status, _) = admin(&gw, Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(status, 200);
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = create_tenant(&gw, json!({"id": "quickco", "plan": "free"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(gw.status("quickco.localhost", "/").await, 200);
    // A reserved id cannot be taken meanwhile.
    let (status, body) = create_tenant(&gw, json!({"id": "hangco", "plan": "free"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        !hang.is_finished(),
        "the hook was still running the whole time"
    );

    let (status, body) = hang.await.expect("hang task");
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("on_create failed (timed out after 4s)"),
        "{body}"
    );
    assert_rolled_back(gw.dir(), "hangco");
    assert_eq!(gw.status("hangco.localhost", "/").await, 404);
}

#[tokio::test]
async fn on_update_runs_on_plan_or_status_changes_and_on_delete_after_routing_stops() {
    let echo = Echo::start().await;
    let gw = config(&echo, "30s").start().await;
    for id in ["upco", "baddeleteco"] {
        let (status, body) = create_tenant(&gw, json!({"id": id, "plan": "free"})).await;
        assert_eq!(status, 201, "{body}");
    }

    let patch = |body: Value| admin(&gw, Method::PATCH, "/admin/v1/tenants/upco", Some(body));
    let (status, body) = patch(json!({"plan": "pro"})).await;
    assert_eq!(status, 200, "{body}");
    let env = env_file(gw.dir(), "update", "upco");
    assert!(
        env.contains("TENANT_PLAN=pro\n") && env.contains("TENANT_PREVIOUS_PLAN=free\n"),
        "{env}"
    );
    assert_eq!(gw.status("upco.localhost", "/api/analytics").await, 200);

    // A failing on_update changes nothing.
    std::fs::write(gw.dir().join("hooks").join("fail-update"), "").expect("fail-update");
    let file = gw.dir().join("tenants").join("upco.toml");
    let before = std::fs::read_to_string(&file).expect("tenant file");
    let (status, body) = patch(json!({"status": "suspended"})).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("plan change refused"));
    assert_eq!(std::fs::read_to_string(&file).expect("tenant file"), before);
    assert_eq!(gw.status("upco.localhost", "/").await, 200);
    // A change that touches neither plan nor status runs no hook.
    let (status, body) = patch(json!({"features_disabled": ["analytics"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.status("upco.localhost", "/api/analytics").await, 403);

    // Delete: the hook sees the tenant already gone from routing and from tenants/.
    let (status, body) = admin(&gw, Method::DELETE, "/admin/v1/tenants/upco", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deprovisioned"], true, "{body}");
    let seen = std::fs::read_to_string(gw.dir().join("hooks").join("routing-at-delete-upco"))
        .expect("delete hook record");
    assert!(seen.starts_with("HTTP/1.1 404"), "{seen}");
    assert!(env_file(gw.dir(), "delete", "upco").contains("TENANT_PLAN=pro\n"));

    // A failing on_delete cannot bring the tenant back; the answer says what failed.
    let (status, body) = admin(&gw, Method::DELETE, "/admin/v1/tenants/baddeleteco", None).await;
    assert_eq!(status, 200, "{body}");
    let error = body["deprovisioned"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("on_delete failed (exit status 5)"), "{body}");
    assert_eq!(
        body["deprovisioned"]["stderr"],
        json!(["could not archive"])
    );
    assert_eq!(gw.status("baddeleteco.localhost", "/").await, 404);
}

#[tokio::test]
async fn tenant_new_on_the_command_line_runs_the_hook_too() {
    let echo = Echo::start().await;
    let cfg = config(&echo, "30s");
    let path = cfg.write();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("tenant")
            .args(args)
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run tenant")
    };
    let out = run(&["new", "--id", "failcli", "--plan", "free"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("on_create failed (exit status 3)")
            && err.contains("provision step 12 failed for failcli"),
        "{err}"
    );
    assert_rolled_back(cfg.dir(), "failcli");

    let out = run(&["new", "--id", "clico", "--plan", "free"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env_file(cfg.dir(), "create", "clico").contains("TENANT_ID=clico\n"));
    assert!(cfg.dir().join("tenants/clico.toml").exists());

    let out = run(&["delete", "--id", "clico"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env_file(cfg.dir(), "delete", "clico").contains("TENANT_EVENT=delete\n"));
}
