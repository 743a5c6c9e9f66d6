//! Tenant provisioning end to end: through the admin API (create → serves after the reload,
//! invalid body → 400 and no file, patch status/plan, delete → stops routing, file kept in
//! `.deleted/`) and through the CLI (`tenant new`, `suspend`, `activate`, `delete`) against a
//! running gateway that picks the files up by its watch. The harness config has plans `free`
//! (chat) and `pro` (chat, analytics) and a route `/api/analytics` that needs `analytics`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::admin_call::{admin, create_tenant};
use crate::fixtures::acme_gateway;
use crate::harness::{eventually, Echo, BIN};

#[tokio::test]
async fn api_creates_patches_and_deletes_tenants() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    assert_eq!(gw.status("newco.localhost", "/").await, 404);

    // Create: validated, written, reloaded — serves at once.
    let (status, body) = create_tenant(
        &gw,
        json!({"id": "newco", "plan": "free", "organization_id": "org_new", "name": "New Co"}),
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

    // Duplicate → 409; invalid → 400 naming what is wrong; nothing written for either.
    for (body, status, mentions, what) in [
        (
            Some(json!({"id": "newco", "plan": "free"})),
            409,
            &[][..],
            "duplicate",
        ),
        (
            Some(json!({"id": "badco", "plan": "gold"})),
            400,
            &["plan", "gold"][..],
            "unknown plan",
        ),
        (
            Some(json!({"id": "x", "plan": "free", "colour": 1})),
            400,
            &[][..],
            "unknown JSON field",
        ),
        (None, 400, &[][..], "missing body"),
    ] {
        let (got, answer) = admin(&gw, reqwest::Method::POST, "/admin/v1/tenants", body).await;
        assert_eq!(got, status, "{what}: {answer}");
        let errors = answer["errors"].to_string();
        for word in mentions {
            assert!(
                errors.contains(word),
                "{what}: errors name {word:?}: {answer}"
            );
        }
    }
    assert!(!gw.dir().join("tenants/badco.toml").exists());
    // Without the token: 401 and nothing written.
    let resp = gw
        .admin(reqwest::Method::POST, "/admin/v1/tenants", None)
        .json(&json!({"id": "sneaky", "plan": "free"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(!gw.dir().join("tenants/sneaky.toml").exists());

    // Patch: suspend → 403, activate → 200, plan change → feature appears; an invalid patch
    // (400) leaves the file as it was, an unknown tenant is 404.
    for (id, patch, status, serves) in [
        (
            "newco",
            json!({"status": "suspended"}),
            200,
            &[("/", 403)][..],
        ),
        (
            "newco",
            json!({"status": "active"}),
            200,
            &[("/", 200), ("/api/analytics", 403)][..],
        ),
        (
            "newco",
            json!({"plan": "pro"}),
            200,
            &[("/api/analytics", 200)][..],
        ),
        ("newco", json!({"plan": "gold"}), 400, &[][..]),
        ("nobody", json!({"status": "active"}), 404, &[][..]),
    ] {
        let path = format!("/admin/v1/tenants/{id}");
        let (got, body) = admin(&gw, reqwest::Method::PATCH, &path, Some(patch.clone())).await;
        assert_eq!(got, status, "PATCH {id} {patch}: {body}");
        for (path, expected) in serves {
            assert_eq!(
                gw.status(&format!("{id}.localhost"), path).await,
                *expected,
                "{path} of {id} after PATCH {patch}"
            );
        }
    }
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("plan = \"pro\""),
        "unchanged on error"
    );

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

/// Runs the CLI, which must succeed.
fn cli_ok(args: &[&str]) {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn cli_provisions_a_running_gateway() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    let config = gw.dir().join("gateway.toml");
    let config = config.to_str().unwrap();

    cli_ok(&[
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

    for (command, status) in [("suspend", 403), ("activate", 200), ("delete", 404)] {
        cli_ok(&["tenant", command, "--config", config, "--id", "cli-co"]);
        eventually(
            Duration::from_secs(10),
            &format!("{command} → {status}"),
            || async { gw.status("cli-co.localhost", "/").await == status },
        )
        .await;
    }
    // `check` still accepts what the CLI wrote and moved.
    cli_ok(&["check", "--config", config]);
}
