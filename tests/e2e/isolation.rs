//! The three PostgreSQL isolation models end to end: a real PostgreSQL cluster, the gateway with
//! `examples/isolation/<model>.sh` as its `[provisioning]` hooks, and the reference backend of
//! `examples/tenant_backend.rs` behind it. For each model two tenants are provisioned through
//! the admin API (the hooks build their database, schema or RLS context), each writes notes
//! through the gateway, and neither can read, count or update the other's rows — also not
//! with `X-Tenant-*` headers or `?tenant=` forged on the client side. Deleting a tenant keeps
//! its data but takes it out of reach.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::admin_call::{admin, create_tenant};
use crate::harness::postgres::Postgres;
use crate::harness::{Gateway, GatewayConfig};
use tokio_postgres::GenericClient;

#[allow(dead_code)]
#[path = "../../examples/tenant_backend.rs"]
mod tenant_backend;

use tenant_backend::{Backend, Model};

const APP_ROLE: &str = "tenant_app";

struct Stack {
    pg: Postgres,
    gw: Gateway,
    backend_addr: std::net::SocketAddr,
    _backend: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// PostgreSQL, the backend for `model` (as the application role) and a gateway whose hooks
/// are the model's script.
async fn stack(model: Model, script: &str) -> Stack {
    let pg = Postgres::start().await;
    let shared_db = "postgres";
    let backend = Arc::new(Backend::new(model, pg.config(APP_ROLE, shared_db)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let backend_addr = listener.local_addr().expect("backend addr");
    let task = tokio::spawn(tenant_backend::serve(listener, backend));
    let hook = format!("{}/examples/isolation/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cfg = GatewayConfig::new(&[&backend_addr.to_string()]).extra(&format!(
        "[provisioning]\non_create = [\"{hook}\"]\non_delete = [\"{hook}\"]\ntimeout = \"60s\"\n"
    ));
    for (k, v) in pg.admin_env() {
        cfg = cfg.env(k, &v);
    }
    cfg = cfg.env("APP_ROLE", APP_ROLE);
    let gw = cfg.start().await;
    Stack {
        pg,
        gw,
        backend_addr,
        _backend: task,
    }
}

/// Creates the tenant through the admin API; the hook must have run.
async fn provision(s: &Stack, id: &str) {
    let (status, body) = create_tenant(
        &s.gw,
        json!({"id": id, "plan": "free", "schema": format!("tenant_{id}")}),
    )
    .await;
    assert_eq!(status, 201, "create {id}: {body}\n{}", s.gw.logs());
}

/// A request through the gateway as tenant `id` (Host `<id>.localhost`), with extra headers.
async fn call(
    s: &Stack,
    method: Method,
    id: &str,
    path: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut rb = s.gw.request(method, &format!("{id}.localhost"), path);
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("request through the gateway");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn bodies(list: &Value) -> Vec<String> {
    list["notes"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|n| n["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// What a client of `attacker` may forge to reach `victim`'s data.
fn forgeries<'a>(victim: &'a str, victim_schema: &'a str) -> Vec<Vec<(&'a str, &'a str)>> {
    vec![
        vec![],
        vec![("x-tenant-id", victim)],
        vec![("X-Tenant-Id", victim), ("x-tenant-id", victim)],
        vec![("x-tenant-schema", victim_schema)],
        vec![("x-tenant-id", victim), ("x-tenant-schema", victim_schema)],
        vec![("x-organization-id", victim), ("x-user-id", victim)],
    ]
}

/// The whole scenario for one model; returns alpha's first note id.
async fn two_tenants_stay_apart(s: &Stack) -> i64 {
    provision(s, "alpha").await;
    provision(s, "bravo").await;

    let mut alpha_ids = Vec::new();
    for body in ["alpha one", "alpha two"] {
        let (status, v) = call(
            s,
            Method::POST,
            "alpha",
            "/api/notes",
            Some(json!({"body": body})),
            &[],
        )
        .await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["tenant"], "alpha", "{v}");
        alpha_ids.push(v["note"]["id"].as_i64().expect("note id"));
    }
    let (status, v) = call(
        s,
        Method::POST,
        "bravo",
        "/api/notes",
        Some(json!({"body": "bravo one"})),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{v}");

    // Each sees and counts exactly its own rows.
    let (_, alpha) = call(s, Method::GET, "alpha", "/api/notes", None, &[]).await;
    assert_eq!(bodies(&alpha), ["alpha one", "alpha two"], "{alpha}");
    assert_eq!(alpha["count"], 2);
    let (_, bravo) = call(s, Method::GET, "bravo", "/api/notes", None, &[]).await;
    assert_eq!(bodies(&bravo), ["bravo one"], "{bravo}");
    assert_eq!(bravo["count"], 1);

    // bravo forging alpha's identity, on every path: read, count, read by id, update by id.
    for forged in forgeries("alpha", "tenant_alpha") {
        let (status, list) = call(
            s,
            Method::GET,
            "bravo",
            "/api/notes?tenant=alpha",
            None,
            &forged,
        )
        .await;
        assert_eq!(status, 200, "{forged:?}: {list}");
        assert_eq!(list["tenant"], "bravo", "{forged:?}: {list}");
        // (bravo may have rewritten its own note below: ids are per database in two models.)
        assert!(
            bodies(&list).iter().all(|b| !b.starts_with("alpha")),
            "{forged:?}: {list}"
        );
        assert_eq!(list["count"], 1, "{forged:?}");
        for id in &alpha_ids {
            let (_, one) = call(
                s,
                Method::GET,
                "bravo",
                &format!("/api/notes/{id}"),
                None,
                &forged,
            )
            .await;
            assert!(
                !one["note"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("alpha"),
                "{forged:?}: bravo read {one}"
            );
            let (_, upd) = call(
                s,
                Method::PUT,
                "bravo",
                &format!("/api/notes/{id}"),
                Some(json!({"body": "defaced"})),
                &forged,
            )
            .await;
            assert_ne!(upd["tenant"], "alpha", "{forged:?}: {upd}");
        }
    }
    let (_, alpha) = call(s, Method::GET, "alpha", "/api/notes", None, &[]).await;
    assert_eq!(
        bodies(&alpha),
        ["alpha one", "alpha two"],
        "alpha's rows changed: {alpha}"
    );

    // The backend itself refuses requests without the gateway's headers.
    let direct = crate::harness::client()
        .get(format!("http://{}/api/notes", s.backend_addr))
        .send()
        .await
        .expect("direct request");
    assert_eq!(direct.status(), 400);
    alpha_ids[0]
}

/// Deleting through the admin API: alpha stops routing, the hook keeps its data out of reach.
async fn delete_alpha(s: &Stack) {
    let (status, body) = admin(&s.gw, Method::DELETE, "/admin/v1/tenants/alpha", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deprovisioned"], true, "{body}\n{}", s.gw.logs());
    assert_eq!(s.gw.status("alpha.localhost", "/api/notes").await, 404);
    let (_, bravo) = call(s, Method::GET, "bravo", "/api/notes", None, &[]).await;
    assert_eq!(bravo["count"], 1, "{bravo}");
}

/// The first column of every row `sql` returns, as text.
async fn first_column(db: &impl GenericClient, sql: &str) -> Vec<String> {
    db.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The one value of the one row `sql` returns.
async fn single_value<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    db: &impl GenericClient,
    sql: &str,
) -> T {
    db.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The one name `sql` lists after alpha was deleted: its archive `deleted_tenant_alpha_…`.
async fn deleted_alpha(db: &impl GenericClient, sql: &str) -> String {
    let names = first_column(db, sql).await;
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("deleted_tenant_alpha_"), "{names:?}");
    names[0].clone()
}

#[tokio::test]
async fn database_per_tenant() {
    let s = stack(Model::Database, "database.sh").await;
    two_tenants_stay_apart(&s).await;
    let admin_db = s.pg.connect("postgres", "postgres").await;
    let dbs = first_column(
        &admin_db,
        "SELECT datname FROM pg_database WHERE datname LIKE '%tenant%' ORDER BY 1",
    )
    .await;
    assert_eq!(dbs, ["tenant_alpha", "tenant_bravo"]);
    // The application role cannot even connect to another tenant's database without the
    // grant the hook gives it, and PUBLIC has none.
    let public_connect: bool = single_value(
        &admin_db,
        "SELECT has_database_privilege('public', 'tenant_alpha', 'CONNECT')",
    )
    .await;
    assert!(!public_connect);

    delete_alpha(&s).await;
    let archived = deleted_alpha(
        &admin_db,
        "SELECT datname FROM pg_database WHERE datname LIKE '%tenant_alpha%'",
    )
    .await;
    // Kept, and out of the application role's reach.
    let renamed = s.pg.config(APP_ROLE, &archived);
    assert!(renamed.connect(tokio_postgres::NoTls).await.is_err());
    let kept = s.pg.connect("postgres", &archived).await;
    let n: i64 = single_value(&kept, "SELECT count(*) FROM notes").await;
    assert_eq!(n, 2);
}

#[tokio::test]
async fn schema_per_tenant() {
    let s = stack(Model::Schema, "schema.sh").await;
    two_tenants_stay_apart(&s).await;
    let admin_db = s.pg.connect("postgres", "postgres").await;
    let n: i64 = single_value(&admin_db, "SELECT count(*) FROM tenant_alpha.notes").await;
    assert_eq!(n, 2);

    delete_alpha(&s).await;
    let archived = deleted_alpha(
        &admin_db,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE '%tenant_alpha%'",
    )
    .await;
    let n: i64 = single_value(
        &admin_db,
        &format!("SELECT count(*) FROM \"{}\".notes", archived),
    )
    .await;
    assert_eq!(n, 2, "data kept");
    let app = s.pg.connect(APP_ROLE, "postgres").await;
    let denied = app
        .query_one(&format!("SELECT count(*) FROM \"{}\".notes", archived), &[])
        .await;
    assert!(
        denied.is_err(),
        "the application role still reads a deleted tenant"
    );
}

#[tokio::test]
async fn row_level_security() {
    let s = stack(Model::Rls, "rls.sh").await;
    let alpha_note = two_tenants_stay_apart(&s).await;
    // Straight to the database as the application role: no tenant context, no rows; another
    // tenant's context cannot write rows for alpha or see them.
    let mut app = s.pg.connect(APP_ROLE, "postgres").await;
    let n: i64 = single_value(&app, "SELECT count(*) FROM notes").await;
    assert_eq!(n, 0, "rows visible without set_tenant_context");
    let tx = app.transaction().await.unwrap();
    tx.execute("SELECT set_tenant_context('bravo')", &[])
        .await
        .unwrap();
    let n: i64 = single_value(&tx, "SELECT count(*) FROM notes").await;
    assert_eq!(n, 1);
    let updated = tx
        .execute("UPDATE notes SET body = 'x' WHERE id = $1", &[&alpha_note])
        .await
        .unwrap();
    assert_eq!(updated, 0);
    let forged = tx
        .execute(
            "INSERT INTO notes (tenant_id, body) VALUES ('alpha', 'planted')",
            &[],
        )
        .await;
    assert!(forged.is_err(), "inserted a row for another tenant");
    drop(tx);

    delete_alpha(&s).await;
    let admin_db = s.pg.connect("postgres", "postgres").await;
    let kept: i64 = single_value(
        &admin_db,
        "SELECT count(*) FROM notes WHERE tenant_id = 'alpha'",
    )
    .await;
    // The superuser bypasses RLS: the rows are still there.
    assert_eq!(kept, 2);
    let tx = app.transaction().await.unwrap();
    tx.execute("SELECT set_tenant_context('alpha')", &[])
        .await
        .unwrap();
    let n: i64 = single_value(&tx, "SELECT count(*) FROM notes").await;
    assert_eq!(n, 0, "a deleted tenant's rows are still visible");
}
