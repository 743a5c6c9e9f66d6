//! Reference backend for the three PostgreSQL isolation models behind tenant-gateway: a small
//! notes API (`GET/POST /api/notes`, `GET/PUT /api/notes/{id}`) that scopes every query to the
//! tenant named by the gateway's headers, and refuses requests without them.
//!
//! - `database`: connects to the database `tenant_<X-Tenant-Id>` (made by
//!   `examples/isolation/database.sh`).
//! - `schema`: runs each request in a transaction with `SET LOCAL search_path` to
//!   `X-Tenant-Schema` (made by `schema.sh`).
//! - `rls`: runs each request in a transaction that starts with
//!   `SELECT set_tenant_context(<X-Tenant-Id>)`, so the row-level security policy of `rls.sql`
//!   shows and accepts only that tenant's rows.
//!
//! It trusts `X-Tenant-*` because only the gateway can reach it (bind it to a private address);
//! the gateway removes every client copy of those headers. Connection settings come from the
//! libpq variables `PGHOST`, `PGPORT`, `PGUSER` (the application role, never a superuser or the
//! table owner: both bypass row-level security), `PGPASSWORD` and `PGDATABASE` (the shared
//! database of the schema and RLS models).
//!
//! ```text
//! PGHOST=127.0.0.1 PGUSER=tenant_app PGDATABASE=app \
//!   cargo run --example tenant_backend -- --model rls --listen 127.0.0.1:3000
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_postgres::{Client, Config, NoTls};

/// How the tenant's data is kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Database,
    Schema,
    Rls,
}

impl std::str::FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Model, String> {
        match s {
            "database" => Ok(Model::Database),
            "schema" => Ok(Model::Schema),
            "rls" => Ok(Model::Rls),
            _ => Err(format!("unknown model {s:?} (database, schema or rls)")),
        }
    }
}

/// The tenant of one request, read from the gateway's headers and checked.
#[derive(Debug, PartialEq, Eq)]
struct TenantContext {
    id: String,
    schema: Option<String>,
}

/// Gateway tenant ids as the provisioning hooks accept them.
fn is_tenant_id(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=32).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_schema_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=40).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// `"name"`, with any `"` doubled (the names are validated as well).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Exactly one value of a header, or `None` (absent, repeated, not text).
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

fn context(model: Model, headers: &HeaderMap) -> Result<TenantContext, &'static str> {
    let id = single(headers, "x-tenant-id").ok_or("X-Tenant-Id is required (one value)")?;
    if !is_tenant_id(id) {
        return Err("X-Tenant-Id is not a valid tenant id");
    }
    let schema = match model {
        Model::Schema => {
            let s = single(headers, "x-tenant-schema")
                .ok_or("X-Tenant-Schema is required (one value)")?;
            if !is_schema_name(s) {
                return Err("X-Tenant-Schema is not a valid schema name");
            }
            Some(s.to_string())
        }
        Model::Database | Model::Rls => None,
    };
    Ok(TenantContext {
        id: id.to_string(),
        schema,
    })
}

/// Connections per database, kept for reuse.
pub struct Backend {
    model: Model,
    /// Host, port, user, password and (for schema and RLS) the shared database.
    base: Config,
    idle: Mutex<HashMap<String, Vec<Client>>>,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Value) -> Reply {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default()
}

/// What a request asks for.
enum Action {
    List,
    Create(String),
    Get(i64),
    Update(i64, String),
}

impl Backend {
    /// Settings from the libpq environment variables.
    pub fn from_env(model: Model) -> Backend {
        let mut base = Config::new();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        base.host(var("PGHOST").as_deref().unwrap_or("localhost"));
        if let Some(port) = var("PGPORT").and_then(|p| p.parse().ok()) {
            base.port(port);
        }
        base.user(var("PGUSER").as_deref().unwrap_or("tenant_app"));
        if let Some(pw) = var("PGPASSWORD") {
            base.password(pw);
        }
        base.dbname(var("PGDATABASE").as_deref().unwrap_or("postgres"));
        Backend::new(model, base)
    }

    pub fn new(model: Model, base: Config) -> Backend {
        Backend {
            model,
            base,
            idle: Mutex::new(HashMap::new()),
        }
    }

    fn database_for(&self, ctx: &TenantContext) -> String {
        match self.model {
            Model::Database => format!("tenant_{}", ctx.id),
            Model::Schema | Model::Rls => self.base.get_dbname().unwrap_or("postgres").into(),
        }
    }

    async fn client(&self, db: &str) -> Result<Client, tokio_postgres::Error> {
        let reused = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.get_mut(db).and_then(Vec::pop));
        if let Some(client) = reused.filter(|c| !c.is_closed()) {
            return Ok(client);
        }
        let mut cfg = self.base.clone();
        cfg.dbname(db);
        let (client, connection) = cfg.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    fn give_back(&self, db: String, client: Client) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(db).or_default();
            if list.len() < 8 {
                list.push(client);
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Reply {
        let ctx = match context(self.model, req.headers()) {
            Ok(ctx) => ctx,
            Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e})),
        };
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "body"})),
        };
        let note_body = || -> Option<String> {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["body"].as_str().map(str::to_string))
        };
        let bad_body = || {
            reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "want {\"body\": \"…\"}"}),
            )
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let action = match (&method, segments.as_slice()) {
            (&Method::GET, ["api", "notes"]) => Action::List,
            (&Method::POST, ["api", "notes"]) => match note_body() {
                Some(b) => Action::Create(b),
                None => return bad_body(),
            },
            (m, ["api", "notes", id]) => {
                let Ok(id) = id.parse::<i64>() else {
                    return reply(StatusCode::NOT_FOUND, json!({"error": "no such note"}));
                };
                match *m {
                    Method::GET => Action::Get(id),
                    Method::PUT => match note_body() {
                        Some(b) => Action::Update(id, b),
                        None => return bad_body(),
                    },
                    _ => return reply(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "method"})),
                }
            }
            _ => return reply(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        };
        let db = self.database_for(&ctx);
        let mut client = match self.client(&db).await {
            Ok(c) => c,
            Err(e) => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": format!("database {db}: {e}")}),
                )
            }
        };
        let result = self.run(&mut client, &ctx, action).await;
        match result {
            Ok((status, mut value)) => {
                self.give_back(db.clone(), client);
                value["tenant"] = json!(ctx.id);
                value["database"] = json!(db);
                reply(status, value)
            }
            // A connection that failed mid-request is dropped, not reused.
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": e.to_string()}),
            ),
        }
    }

    /// One transaction: the tenant context first, then the action.
    async fn run(
        &self,
        client: &mut Client,
        ctx: &TenantContext,
        action: Action,
    ) -> Result<(StatusCode, Value), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        match self.model {
            // The connection is to the tenant's own database: nothing to set.
            Model::Database => {}
            Model::Schema => {
                let schema = ctx.schema.as_deref().unwrap_or_default();
                tx.batch_execute(&format!("SET LOCAL search_path TO {}", quote_ident(schema)))
                    .await?;
            }
            Model::Rls => {
                tx.execute("SELECT set_tenant_context($1)", &[&ctx.id])
                    .await?;
            }
        }
        let note = |row: &tokio_postgres::Row| json!({"id": row.get::<_, i64>(0), "body": row.get::<_, String>(1)});
        let answer = match action {
            Action::List => {
                let rows = tx.query("SELECT id, body FROM notes ORDER BY id", &[]).await?;
                let count: i64 = tx.query_one("SELECT count(*) FROM notes", &[]).await?.get(0);
                let notes: Vec<Value> = rows.iter().map(note).collect();
                (StatusCode::OK, json!({"notes": notes, "count": count}))
            }
            Action::Create(body) => {
                let row = tx
                    .query_one("INSERT INTO notes (body) VALUES ($1) RETURNING id, body", &[&body])
                    .await?;
                (StatusCode::CREATED, json!({"note": note(&row)}))
            }
            Action::Get(id) => match tx
                .query_opt("SELECT id, body FROM notes WHERE id = $1", &[&id])
                .await?
            {
                Some(row) => (StatusCode::OK, json!({"note": note(&row)})),
                None => (StatusCode::NOT_FOUND, json!({"error": "no such note"})),
            },
            Action::Update(id, body) => match tx
                .query_opt(
                    "UPDATE notes SET body = $2, updated_at = now() WHERE id = $1 RETURNING id, body",
                    &[&id, &body],
                )
                .await?
            {
                Some(row) => (StatusCode::OK, json!({"note": note(&row)})),
                None => (StatusCode::NOT_FOUND, json!({"error": "no such note"})),
            },
        };
        tx.commit().await?;
        Ok(answer)
    }
}

/// Serves HTTP/1.1 on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, backend: Arc<Backend>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let backend = backend.clone();
                async move { Ok::<_, std::convert::Infallible>(backend.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut model = None;
    let mut listen: SocketAddr = "127.0.0.1:3000".parse()?;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => {
                model = Some(
                    args.next()
                        .ok_or("--model needs a value")?
                        .parse::<Model>()?,
                )
            }
            "--listen" => listen = args.next().ok_or("--listen needs a value")?.parse()?,
            _ => {
                return Err(format!(
                "usage: tenant_backend --model database|schema|rls [--listen ADDR] (got {arg:?})"
            )
                .into())
            }
        }
    }
    let model = model.ok_or("--model database|schema|rls is required")?;
    let listener = TcpListener::bind(listen).await?;
    eprintln!(
        "tenant_backend: {model:?} model on http://{}",
        listener.local_addr()?
    );
    serve(listener, Arc::new(Backend::from_env(model))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for &(k, v) in pairs {
            h.append(k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_context_needs_valid_headers() {
        let ok = context(
            Model::Schema,
            &headers(&[("x-tenant-id", "acme"), ("x-tenant-schema", "tenant_acme")]),
        );
        assert_eq!(
            ok,
            Ok(TenantContext {
                id: "acme".into(),
                schema: Some("tenant_acme".into())
            })
        );
        for (model, h) in [
            (Model::Rls, headers(&[])),
            (Model::Rls, headers(&[("x-tenant-id", "")])),
            (
                Model::Rls,
                headers(&[("x-tenant-id", "acme"), ("x-tenant-id", "globex")]),
            ),
            (Model::Database, headers(&[("x-tenant-id", "Acme")])),
            (
                Model::Database,
                headers(&[("x-tenant-id", "a\"; DROP TABLE notes; --")]),
            ),
            (Model::Schema, headers(&[("x-tenant-id", "acme")])),
            (
                Model::Schema,
                headers(&[("x-tenant-id", "acme"), ("x-tenant-schema", "public; x")]),
            ),
            (
                Model::Schema,
                headers(&[("x-tenant-id", "acme"), ("x-tenant-schema", "Tenant")]),
            ),
        ] {
            assert!(context(model, &h).is_err(), "{model:?} {h:?}");
        }
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
