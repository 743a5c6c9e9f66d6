//! Roles within a tenant: `require_role` routes (one role, or any of a list) against API keys
//! with `roles` and JWTs whose roles claim is a list or a space-separated string; 401 without a
//! verified credential, 403 INSUFFICIENT_ROLE (JSON and branded HTML) with a metric and an
//! audit line; `X-User-Roles` upstream (sorted), every client copy stripped; `apikey new
//! --role`; `check` refusing malformed role names.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::fixtures::sha256_hex;
use crate::harness::{eventually, Echo, Gateway, GatewayConfig, TenantToml, BIN};

const SECRET: &str = "e2e-roles-jwt-secret";
const ISSUER: &str = "https://auth.roles.test";

const ADMIN_KEY: &str = "tgk_e2e_roles_admin_0123456789";
const VIEWER_KEY: &str = "tgk_e2e_roles_viewer_0123456789";
const PLAIN_KEY: &str = "tgk_e2e_roles_plain_0123456789";

/// The credential header of a case: an API key.
fn api_key(key: &str) -> Option<(&'static str, &str)> {
    Some(("x-api-key", key))
}

/// The credential header of a case: `Authorization` with `value`.
fn bearer(value: &str) -> Option<(&'static str, &str)> {
    Some(("authorization", value))
}

fn token(roles: Option<Value>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut claims = json!({"tenant_id": "acme", "sub": "user-7", "iss": ISSUER, "exp": now + 600});
    if let Some(r) = roles {
        claims["perms"] = r;
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// `/api/admin` needs `admin`, `/api/edit` needs `editor` or `admin`; JWT roles come from the
/// claim `perms` (a configured `roles_claim`).
fn config(echo: &Echo) -> GatewayConfig {
    let key = |k: &str, name: &str, roles: &str| {
        format!(
            "[[api_keys]]\nsha256 = \"{}\"\nname = \"{name}\"\nroles = {roles}\n",
            sha256_hex(k)
        )
    };
    GatewayConfig::with_echo(echo)
        .env("ROLES_JWT_SECRET", SECRET)
        .extra(&format!(
            "[auth.jwt]\nhs256_secret_env = \"ROLES_JWT_SECRET\"\nissuer = \"{ISSUER}\"\nroles_claim = \"perms\"\n\n[[routes]]\npath_prefix = \"/api/admin\"\nrequire_role = \"admin\"\n\n[[routes]]\npath_prefix = \"/api/edit\"\nrequire_role = [\"editor\", \"admin\"]\n"
        ))
        .tenant(
            TenantToml::new("acme")
                .line(&key(ADMIN_KEY, "admin", "[\"billing\", \"admin\", \"admin\"]"))
                .line(&key(VIEWER_KEY, "viewer", "[\"viewer\"]"))
                .line(&key(PLAIN_KEY, "plain", "[]")),
        )
}

async fn send(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut rb = gw.get("acme.localhost", path);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        ctype,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn bearer_value(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn require_role_admits_by_any_role_and_refuses_with_403() {
    let echo = Echo::start().await;
    let gw = config(&echo).start().await;
    let list = token(Some(json!(["editor"])));
    let scope = token(Some(json!("viewer admin")));
    let no_roles = token(None);
    let malformed = token(Some(json!(["admin", 7])));
    let (list, scope, no_roles, malformed) = (
        bearer_value(&list),
        bearer_value(&scope),
        bearer_value(&no_roles),
        bearer_value(&malformed),
    );

    // (path, credential header, status, code or roles seen upstream)
    type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, u16, &'a str);
    let table: &[Case] = &[
        ("/api/admin", None, 401, "UNAUTHORIZED"),
        ("/api/admin", api_key("tgk_unknown"), 401, "UNAUTHORIZED"),
        ("/api/admin", bearer(&malformed), 401, "UNAUTHORIZED"),
        ("/api/admin", api_key(VIEWER_KEY), 403, "INSUFFICIENT_ROLE"),
        ("/api/admin", api_key(PLAIN_KEY), 403, "INSUFFICIENT_ROLE"),
        ("/api/admin", bearer(&list), 403, "INSUFFICIENT_ROLE"),
        ("/api/admin", bearer(&no_roles), 403, "INSUFFICIENT_ROLE"),
        ("/api/admin", api_key(ADMIN_KEY), 200, "admin,billing"),
        ("/api/admin/deeper", bearer(&scope), 200, "admin,viewer"),
        ("/api/edit", None, 401, "UNAUTHORIZED"),
        ("/api/edit", api_key(VIEWER_KEY), 403, "INSUFFICIENT_ROLE"),
        ("/api/edit", bearer(&list), 200, "editor"),
        ("/api/edit", api_key(ADMIN_KEY), 200, "admin,billing"),
        // Routes without require_role still carry the roles upstream.
        ("/open", api_key(VIEWER_KEY), 200, "viewer"),
        ("/open", api_key(PLAIN_KEY), 200, ""),
    ];
    let mut refused = 0;
    for (path, cred, status, want) in table {
        let headers: Vec<(&str, &str)> = cred.iter().copied().collect();
        let (got, _, body) = send(&gw, path, &headers).await;
        assert_eq!(got, *status, "{path} {cred:?}: {body}");
        match got {
            200 => {
                let roles = body["headers"]["x-user-roles"].as_str().unwrap_or_default();
                assert_eq!(roles, *want, "{path} {cred:?}: {body}");
            }
            _ => {
                assert_eq!(body["code"], *want, "{path} {cred:?}: {body}");
                assert_eq!(body["success"], false);
            }
        }
        if got == 403 {
            refused += 1;
            let text = if path.starts_with("/api/admin") {
                "Role 'admin' is required"
            } else {
                "Role 'editor' or 'admin' is required"
            };
            assert_eq!(body["error"], text);
        }
    }
    // The JWT's subject travels with its roles.
    let (_, _, body) = send(&gw, "/api/admin", &[("authorization", &scope)]).await;
    assert_eq!(body["headers"]["x-user-id"], "user-7");

    // A browser gets the branded page.
    let (status, ctype, body) = send(
        &gw,
        "/api/admin",
        &[("x-api-key", VIEWER_KEY), ("accept", "text/html")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let html = body.as_str().unwrap_or_default();
    assert!(
        html.contains("INSUFFICIENT_ROLE") && html.contains("Role &#39;admin&#39; is required"),
        "{html}"
    );
    refused += 1;

    let sample = "gateway_auth_failures_total{tenant=\"acme\",reason=\"insufficient_role\"}";
    gw.wait_metric(sample, refused as f64).await;
    eventually(
        Duration::from_secs(5),
        "insufficient_role audit lines",
        || {
            let n = audit(&gw, "insufficient_role");
            async move { n == refused }
        },
    )
    .await;
    assert!(gw
        .metric_value("gateway_auth_failures_total{tenant=\"acme\",reason=\"token_invalid_roles\"}")
        .await
        .is_some_and(|v| v >= 1.0));
}

/// Audit lines of authentication failures with this reason.
fn audit(gw: &Gateway, reason: &str) -> usize {
    std::fs::read_to_string(gw.dir().join("logs").join("stdout.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .filter(|v| v["fields"]["reason"] == reason || v["reason"] == reason)
        .count()
}

#[tokio::test]
async fn client_sent_roles_never_reach_the_upstream() {
    let echo = Echo::start().await;
    let gw = config(&echo).start().await;
    let forged: &[&[(&str, &str)]] = &[
        &[("x-user-roles", "admin")],
        &[("X-User-Roles", "admin"), ("x-user-roles", "owner")],
        &[("X-USER-ROLES", "admin,billing")],
    ];
    for headers in forged {
        // Without a credential: nothing upstream, and require_role still refuses.
        let (status, _, body) = send(&gw, "/open", headers).await;
        assert_eq!(status, 200);
        assert!(
            body["headers"].get("x-user-roles").is_none(),
            "{headers:?}: {body}"
        );
        let (status, _, _) = send(&gw, "/api/admin", headers).await;
        assert_eq!(status, 401);
        // With a viewer key: only the verified role goes upstream, and admin stays closed.
        let mut with_key = headers.to_vec();
        with_key.push(("x-api-key", VIEWER_KEY));
        let (_, _, body) = send(&gw, "/open", &with_key).await;
        assert_eq!(
            body["headers"]["x-user-roles"], "viewer",
            "{headers:?}: {body}"
        );
        let (status, _, _) = send(&gw, "/api/admin", &with_key).await;
        assert_eq!(status, 403);
    }
}

#[tokio::test]
async fn apikey_new_prints_roles_and_check_refuses_bad_role_names() {
    let out = Command::new(BIN)
        .args([
            "apikey",
            "new",
            "--tenant",
            "acme",
            "--role",
            "admin",
            "--role",
            "notes:write",
        ])
        .output()
        .expect("run apikey new");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("roles = [\"admin\", \"notes:write\"]"),
        "{text}"
    );
    let out = Command::new(BIN)
        .args(["apikey", "new", "--tenant", "acme", "--role", "ad min"])
        .output()
        .expect("run apikey new");
    assert!(!out.status.success());

    let echo = Echo::start().await;
    for (extra, tenant_line, key) in [
        ("[[routes]]\npath_prefix = \"/x\"\nrequire_role = \"a,b\"\n", "", "routes[1].require_role"),
        ("[[routes]]\npath_prefix = \"/x\"\nrequire_role = []\n", "", "routes[1].require_role"),
        (
            "",
            "[[api_keys]]\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nname = \"k\"\nroles = [\"ok\", \"not ok\"]\n",
            "api_keys[0].roles[1]",
        ),
    ] {
        let cfg = GatewayConfig::with_echo(&echo)
            .extra(extra)
            .tenant(TenantToml::new("acme").line(tenant_line));
        let path = cfg.write();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run check");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}{tenant_line}");
        assert!(err.contains(key), "{key}: {err}");
    }
}
