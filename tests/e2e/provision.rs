//! Tenant provisioning end to end: through the admin API (create → serves after the reload,
//! invalid body → 400 and no file, patch status/plan, delete → stops routing, file kept in
//! `.deleted/`) and through the CLI (`tenant new`, `suspend`, `activate`, `delete`) against a
//! running gateway that picks the files up by its watch. The harness config has plans `free`
//! (chat) and `pro` (chat, analytics) and a route `/api/analytics` that needs `analytics`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::admin_call::admin;
use crate::fixtures::acme_gateway;
use crate::harness::{eventually, Echo, BIN};

#[tokio::test]
async fn api_creates_patches_and_deletes_tenants() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    assert_eq!(gw.status("newco.localhost", "/").await, 404);

    // Create: validated, written, reloaded — serves at once.
    let (status, body) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(
            json!({"id": "newco", "plan": "free", "organization_id": "org_new", "name": "New Co"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    let file = gw.dir().join("tenants/newco.toml");
    let text = std::fs::read_to_string(&file).expect("tenant file written");
    assert!(
        text.contains("id = \"newco\"") && text.contains("plan = \"free\""),
        "{text}"
    );
    let resp = gw.get("newco.localhost", "/hello").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-tenant-id"], "newco");
    assert_eq!(echoed["headers"]["x-organization-id"], "org_new");

    // Duplicate → 409; invalid (unknown plan) → 400 with the error, nothing written.
    let (status, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "newco", "plan": "free"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "badco", "plan": "gold"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].to_string();
    assert!(errors.contains("plan") && errors.contains("gold"), "{body}");
    assert!(!gw.dir().join("tenants/badco.toml").exists());
    let (status, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "x", "plan": "free", "colour": 1})),
    )
    .await;
    assert_eq!(status, 400, "unknown JSON field");
    let (status, _) = admin(&gw, reqwest::Method::POST, "/admin/v1/tenants", None).await;
    assert_eq!(status, 400, "missing body");
    // Without the token: 401 and nothing written.
    let resp = gw
        .admin(reqwest::Method::POST, "/admin/v1/tenants", None)
        .json(&json!({"id": "sneaky", "plan": "free"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(!gw.dir().join("tenants/sneaky.toml").exists());

    // Patch: suspend → 403, activate → 200, plan change → feature appears.
    let (status, body) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/v1/tenants/newco",
        Some(json!({"status": "suspended"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.status("newco.localhost", "/").await, 403);
    let (status, _) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/v1/tenants/newco",
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gw.status("newco.localhost", "/").await, 200);
    assert_eq!(gw.status("newco.localhost", "/api/analytics").await, 403);
    let (status, _) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/v1/tenants/newco",
        Some(json!({"plan": "pro"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gw.status("newco.localhost", "/api/analytics").await, 200);
    let (status, _) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/v1/tenants/newco",
        Some(json!({"plan": "gold"})),
    )
    .await;
    assert_eq!(status, 400, "invalid patch");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("plan = \"pro\""),
        "unchanged on error"
    );
    let (status, _) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/v1/tenants/nobody",
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(status, 404);

    // Delete: stops routing; the file is moved, not destroyed.
    let (status, body) = admin(
        &gw,
        reqwest::Method::DELETE,
        "/admin/v1/tenants/newco",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.status("newco.localhost", "/").await, 404);
    assert!(!file.exists());
    let deleted: Vec<_> = std::fs::read_dir(gw.dir().join("tenants/.deleted"))
        .expect(".deleted dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("newco"))
        .collect();
    assert_eq!(deleted.len(), 1);
    // The other tenant never stopped serving.
    assert_eq!(gw.status("acme.localhost", "/").await, 200);
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run tenant-gateway")
}

#[tokio::test]
async fn cli_provisions_a_running_gateway() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    let config = gw.dir().join("gateway.toml");
    let config = config.to_str().unwrap();

    let out = cli(&[
        "tenant",
        "new",
        "--config",
        config,
        "--id",
        "cli-co",
        "--plan",
        "free",
        "--organization-id",
        "org_cli",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(10), "new tenant served", || async {
        gw.status("cli-co.localhost", "/").await == 200
    })
    .await;

    let out = cli(&[
        "tenant", "new", "--config", config, "--id", "cli-co", "--plan", "free",
    ]);
    assert!(!out.status.success(), "duplicate refused");
    let out = cli(&[
        "tenant", "new", "--config", config, "--id", "bad", "--plan", "gold",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plan") && stderr.contains("gold"),
        "{stderr}"
    );
    assert!(!gw.dir().join("tenants/bad.toml").exists());

    let out = cli(&["tenant", "suspend", "--config", config, "--id", "cli-co"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(10), "suspended → 403", || async {
        gw.status("cli-co.localhost", "/").await == 403
    })
    .await;
    let out = cli(&["tenant", "activate", "--config", config, "--id", "cli-co"]);
    assert!(out.status.success());
    eventually(Duration::from_secs(10), "activated → 200", || async {
        gw.status("cli-co.localhost", "/").await == 200
    })
    .await;
    let out = cli(&["tenant", "delete", "--config", config, "--id", "cli-co"]);
    assert!(out.status.success());
    eventually(Duration::from_secs(10), "deleted → 404", || async {
        gw.status("cli-co.localhost", "/").await == 404
    })
    .await;
    // `check` still accepts what the CLI wrote and moved.
    let out = cli(&["check", "--config", config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
