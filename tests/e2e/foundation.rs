//! Foundation slice: tenant resolution, header hygiene, error contract, upstream pools and
//! retries, WebSocket, streaming, h2c, hot reload, admin API and `check`.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::admin_call::admin;
use crate::echo_reply::{echo_ok, received, received_names};
use crate::fixtures::{acme_config, acme_gateway, acme_gateway_with_server};
use crate::harness::{
    dead_addr, eventually, raw_http, read_response, Echo, Gateway, GatewayConfig, Redis,
    TenantToml, BIN,
};

const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// One answer of the JSON error contract.
struct ApiError {
    status: u16,
    code: &'static str,
    message: &'static str,
}

impl ApiError {
    const fn new(status: u16, code: &'static str, message: &'static str) -> ApiError {
        ApiError {
            status,
            code,
            message,
        }
    }
}

const TENANT_REQUIRED: ApiError = ApiError::new(400, "TENANT_REQUIRED", "Tenant ID is required");
const TENANT_NOT_FOUND: ApiError = ApiError::new(404, "TENANT_NOT_FOUND", "Tenant not found");
const TENANT_SUSPENDED: ApiError = ApiError::new(403, "TENANT_SUSPENDED", "Tenant is suspended");
const ANALYTICS_NOT_AVAILABLE: ApiError = ApiError::new(
    403,
    "FEATURE_NOT_AVAILABLE",
    "Feature 'analytics' is not available for your plan",
);
const UPSTREAM_UNAVAILABLE: ApiError =
    ApiError::new(502, "UPSTREAM_UNAVAILABLE", "Upstream unavailable");
const UPSTREAM_TIMEOUT: ApiError = ApiError::new(504, "UPSTREAM_TIMEOUT", "Upstream timed out");

/// Exact error contract: status, JSON content type, and the body byte for byte.
async fn assert_error(rb: reqwest::RequestBuilder, error: &ApiError) {
    let resp = rb.send().await.expect("request");
    let got_status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = resp.text().await.expect("body");
    let expected = format!(
        r#"{{"success":false,"error":"{}","code":"{}"}}"#,
        error.message, error.code
    );
    assert_eq!(
        (got_status, body.as_str()),
        (error.status, expected.as_str()),
        "error response"
    );
    assert_eq!(content_type.as_deref(), Some("application/json"));
}

/// Waits until `tenant` has `count` 2xx answers in `gateway_requests_total`.
async fn wait_2xx(gw: &Gateway, tenant: &str, count: f64) {
    gw.wait_metric(
        &format!("gateway_requests_total{{tenant=\"{tenant}\",status_class=\"2xx\"}}"),
        count,
    )
    .await;
}

/// `GET path` on the admin API with the token; the JSON answer.
async fn admin_get(gw: &Gateway, path: &str) -> Value {
    admin(gw, Method::GET, path, None).await.1
}

// ---------------------------------------------------------------------------------------------
// 1. Tenant resolution

#[tokio::test]
async fn routes_by_subdomain_and_custom_domain() {
    let echo = Echo::start().await;
    let gw = GatewayConfig::with_echo(&echo)
        .tenant(TenantToml::new("acme").line(r#"custom_domains = ["support.acme.com"]"#))
        .tenant(TenantToml::new("globex").plan("free"))
        .start()
        .await;
    for (host, tenant) in [
        ("acme.localhost", "acme"),
        ("ACME.Localhost:8080", "acme"),
        ("support.acme.com", "acme"),
        ("support.acme.com:443", "acme"),
        ("globex.localhost", "globex"),
    ] {
        let echo = echo_ok(gw.get(host, "/hello?a=1")).await;
        assert_eq!(received(&echo, "x-tenant-id"), [tenant], "Host {host}");
        assert_eq!(echo["path"], "/hello");
        assert_eq!(echo["query"], "a=1");
    }
}

#[tokio::test]
async fn tenant_header_only_when_trusted() {
    let echo = Echo::start().await;
    let trusted = acme_gateway_with_server(&echo, "trust_tenant_header = true").await;
    let untrusted = acme_gateway(&echo).await;

    let body = echo_ok(trusted.get("localhost", "/").header("X-Tenant-Id", "acme")).await;
    assert_eq!(received(&body, "x-tenant-id"), ["acme"]);
    assert_error(
        trusted.get("localhost", "/").header("X-Tenant-Id", "nope"),
        &TENANT_NOT_FOUND,
    )
    .await;
    // The Host wins over the header.
    let body = echo_ok(
        trusted
            .get("acme.localhost", "/")
            .header("X-Tenant-Id", "nope"),
    )
    .await;
    assert_eq!(received(&body, "x-tenant-id"), ["acme"]);
    assert_error(
        untrusted
            .get("localhost", "/")
            .header("X-Tenant-Id", "acme"),
        &TENANT_REQUIRED,
    )
    .await;
}

#[tokio::test]
async fn tenant_query_only_in_dev_mode() {
    let echo = Echo::start().await;
    let dev = acme_gateway_with_server(&echo, "dev_mode = true").await;
    let prod = acme_gateway(&echo).await;

    let body = echo_ok(dev.get("localhost", "/x?tenant=acme")).await;
    assert_eq!(received(&body, "x-tenant-id"), ["acme"]);
    assert_eq!(body["query"], "tenant=acme");
    assert_error(prod.get("localhost", "/x?tenant=acme"), &TENANT_REQUIRED).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Header hygiene

#[tokio::test]
async fn spoofed_tenant_headers_are_replaced() {
    let echo = Echo::start().await;
    let gw = GatewayConfig::with_echo(&echo)
        .tenant(TenantToml::new("acme").line(r#"schema = "tenant_acme""#))
        .start()
        .await;

    // Raw bytes, so the header names keep the case and the repetitions sent here.
    let spoof = "X-Tenant-Id: evil\r\nX-Tenant-Id: evil\r\nx-TENANT-plan: x\r\n\
                 X-Organization-Id: y\r\nX-Tenant-Custom: z\r\nX-TENANT-FEATURES: everything\r\n\
                 x-tenant-schema: public\r\nX-Forwarded-For: 203.0.113.9\r\n\
                 X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n";
    let head = format!(
        "GET /spoof HTTP/1.1\r\nHost: acme.localhost\r\n{spoof}X-Request-Id: abc-123\r\nConnection: close\r\n\r\n"
    );
    let resp = raw_http(gw.http_addr(), &head).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let e = resp.json();
    assert_eq!(received(&e, "x-tenant-id"), ["acme"]);
    assert_eq!(received(&e, "x-organization-id"), ["org_acme"]);
    assert_eq!(received(&e, "x-tenant-plan"), ["pro"]);
    assert_eq!(received(&e, "x-tenant-features"), ["analytics,chat"]);
    assert_eq!(received(&e, "x-tenant-schema"), ["tenant_acme"]);
    assert_eq!(
        received_names(&e, "x-tenant-"),
        [
            "x-tenant-features",
            "x-tenant-id",
            "x-tenant-plan",
            "x-tenant-schema"
        ],
        "no client X-Tenant-* header may reach the upstream"
    );
    assert_eq!(received(&e, "x-request-id"), ["abc-123"]);
    assert_eq!(resp.header("x-request-id"), Some("abc-123"));
    assert_eq!(received(&e, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(received(&e, "x-forwarded-proto"), ["http"]);
    assert_eq!(received(&e, "x-forwarded-host"), ["acme.localhost"]);

    // An invalid request id is replaced by a generated one, sent both ways.
    let head = "GET / HTTP/1.1\r\nHost: acme.localhost\r\nX-Request-Id: bad id <script>\r\nConnection: close\r\n\r\n";
    let resp = raw_http(gw.http_addr(), head).await;
    assert_eq!(resp.status, 200);
    let e = resp.json();
    let ids = received(&e, "x-request-id");
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], "bad id <script>");
    assert_eq!(ids[0].len(), 36, "a UUID: {}", ids[0]);
    assert_eq!(resp.header("x-request-id"), Some(ids[0].as_str()));

    // None sent: one is generated.
    let e = echo_ok(gw.get("acme.localhost", "/")).await;
    assert_eq!(received(&e, "x-request-id").len(), 1);
    assert_eq!(received(&e, "x-request-id")[0].len(), 36);
}

#[tokio::test]
async fn no_schema_header_without_schema() {
    let echo = Echo::start().await;
    let gw = GatewayConfig::with_echo(&echo)
        .tenant(TenantToml::new("globex").plan("free"))
        .start()
        .await;
    let e = echo_ok(
        gw.get("globex.localhost", "/")
            .header("X-Tenant-Schema", "public"),
    )
    .await;
    assert!(received(&e, "x-tenant-schema").is_empty());
    assert_eq!(received(&e, "x-tenant-features"), ["chat"]);
    assert_eq!(received(&e, "x-tenant-plan"), ["free"]);
}

// ---------------------------------------------------------------------------------------------
// 3. Error contract

#[tokio::test]
async fn errors_tenant_required_and_not_found() {
    let echo = Echo::start().await;
    let gw = GatewayConfig::with_echo(&echo)
        .tenant(TenantToml::new("acme").line(r#"custom_domains = ["support.acme.com"]"#))
        .start()
        .await;
    // Base domain, reserved subdomain, IP literal (reqwest's own Host: 127.0.0.1:<port>).
    assert_error(gw.get("localhost", "/"), &TENANT_REQUIRED).await;
    assert_error(gw.get("www.localhost", "/"), &TENANT_REQUIRED).await;
    assert_error(
        gw.client().get(format!("{}/", gw.http_url())),
        &TENANT_REQUIRED,
    )
    .await;
    assert_error(gw.get("nope.localhost", "/"), &TENANT_NOT_FOUND).await;
    assert_error(gw.get("a.acme.localhost", "/"), &TENANT_NOT_FOUND).await;
    assert_error(gw.get("unknown.example.com", "/"), &TENANT_NOT_FOUND).await;
}

#[tokio::test]
async fn errors_suspended_and_feature_not_available() {
    let echo = Echo::start().await;
    let gw = acme_config(&echo)
        .tenant(TenantToml::new("globex").plan("free"))
        .tenant(TenantToml::new("initech").line(r#"status = "suspended""#))
        .start()
        .await;
    for path in ["/", "/api/analytics/report"] {
        assert_error(gw.get("initech.localhost", path), &TENANT_SUSPENDED).await;
    }
    assert_error(
        gw.get("globex.localhost", "/api/analytics/report"),
        &ANALYTICS_NOT_AVAILABLE,
    )
    .await;
    echo_ok(gw.get("globex.localhost", "/api/other")).await;
    echo_ok(gw.get("acme.localhost", "/api/analytics/report")).await;
}

#[tokio::test]
async fn upstream_unavailable_is_502() {
    let echo = Echo::start().await;
    let dead = dead_addr();
    let gw = GatewayConfig::with_echo(&echo)
        .tenant(TenantToml::new("down").dedicated(&[&dead], &[]))
        .start()
        .await;
    assert_error(gw.get("down.localhost", "/"), &UPSTREAM_UNAVAILABLE).await;
    assert!(
        gw.metric(r#"gateway_upstream_errors_total{tenant="down",kind="connect"}"#)
            .await
            >= 1.0
    );
    gw.wait_metric(
        r#"gateway_requests_total{tenant="down",status_class="5xx"}"#,
        1.0,
    )
    .await;
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let echo = Echo::start().await;
    let gw = GatewayConfig::with_echo(&echo)
        .tenant(TenantToml::new("slow").dedicated(&[&echo.addr()], &[r#"read_timeout = "500ms""#]))
        .start()
        .await;
    echo_ok(gw.get("slow.localhost", "/delay/50")).await;
    let started = Instant::now();
    assert_error(gw.get("slow.localhost", "/delay/3000"), &UPSTREAM_TIMEOUT).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "504 after {took:?}, read_timeout is 500ms"
    );
}

/// After any answer on an HTTP/1.1 keep-alive connection, either the response announced
/// `Connection: close` (and the gateway closes), or the connection serves the next request.
/// Closing silently makes keep-alive clients fail their next request with a reset.
#[tokio::test]
async fn error_responses_keep_or_announce_connection_close() {
    let echo = Echo::start().await;
    let dead = dead_addr();
    let gw = acme_config(&echo)
        .tenant(TenantToml::new("initech").line(r#"status = "suspended""#))
        .tenant(TenantToml::new("down").dedicated(&[&dead], &[]))
        .tenant(TenantToml::new("slow").dedicated(&[&echo.addr()], &[r#"read_timeout = "500ms""#]))
        .start()
        .await;
    let mut problems = Vec::new();
    for (host, path, status) in [
        ("acme.localhost", "/", 200),
        ("localhost", "/", 400),
        ("nope.localhost", "/", 404),
        ("initech.localhost", "/", 403),
        ("down.localhost", "/", 502),
        ("slow.localhost", "/delay/3000", 504),
    ] {
        let mut conn = tokio::net::TcpStream::connect(gw.http_addr())
            .await
            .unwrap();
        let first = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        conn.write_all(first.as_bytes()).await.unwrap();
        let r1 = read_response(&mut conn).await.unwrap();
        assert_eq!(r1.status, status, "{host}{path}");
        if r1
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            continue;
        }
        conn.write_all(b"GET /second HTTP/1.1\r\nHost: acme.localhost\r\n\r\n")
            .await
            .unwrap();
        match read_response(&mut conn).await {
            Ok(r2) if r2.status == 200 => {}
            Ok(r2) => problems.push(format!("after {status}: second request got {}", r2.status)),
            Err(e) => problems.push(format!(
                "after {status} (Connection: {:?}): second request on the connection failed: {e}",
                r1.header("connection")
            )),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------------------
// 4./5. Upstream pools

#[tokio::test]
async fn round_robin_retries_on_next_address() {
    let echo = Echo::start().await;
    let dead = dead_addr();
    let gw = GatewayConfig::new(&[&dead, &echo.addr()])
        .tenant(TenantToml::new("acme"))
        .start()
        .await;
    const N: usize = 10;
    for i in 0..N {
        let e = echo_ok(gw.get("acme.localhost", &format!("/rr/{i}"))).await;
        assert_eq!(e["path"], format!("/rr/{i}"));
    }
    // Round robin: every other request tried the dead address first, failed to connect and
    // was retried once on the live one.
    let connect_errors = gw
        .metric(r#"gateway_upstream_errors_total{tenant="acme",kind="connect"}"#)
        .await;
    assert_eq!(connect_errors, (N / 2) as f64, "{}", gw.metrics().await);
    wait_2xx(&gw, "acme", N as f64).await;
}

#[tokio::test]
async fn dedicated_upstream_routes_to_its_own_echo() {
    let shared = Echo::start().await;
    let mut own = Echo::start().await;
    let gw = acme_config(&shared)
        .tenant(TenantToml::new("globex").dedicated(&[&own.addr()], &[r#"connect_timeout = "1s""#]))
        .start()
        .await;
    let e = echo_ok(gw.get("globex.localhost", "/")).await;
    assert_eq!(received(&e, "x-tenant-id"), ["globex"]);
    echo_ok(gw.get("acme.localhost", "/")).await;

    let admin = admin_get(&gw, "/admin/v1/tenants/globex").await;
    assert_eq!(
        admin["tenant"]["upstream"]["addrs"],
        serde_json::json!([own.addr()])
    );

    // Only globex depends on its own echo.
    own.kill();
    assert_error(gw.get("globex.localhost", "/"), &UPSTREAM_UNAVAILABLE).await;
    echo_ok(gw.get("acme.localhost", "/")).await;
}

// ---------------------------------------------------------------------------------------------
// 6. WebSocket

#[tokio::test]
async fn websocket_echo_through_gateway() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    let tcp = tokio::net::TcpStream::connect(gw.http_addr())
        .await
        .unwrap();
    let request = "ws://acme.localhost/ws".into_client_request().unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(resp.status(), 101);
    for text in ["hello through the gateway", "second frame"] {
        ws.send(Message::Text(text.into())).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo within 5 s")
            .expect("stream open")
            .expect("frame");
        assert_eq!(got, Message::Text(text.into()));
    }
    ws.send(Message::Binary(vec![0, 1, 2, 255])).await.unwrap();
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got, Message::Binary(vec![0, 1, 2, 255]));
    ws.close(None).await.unwrap();

    // An unknown tenant gets the 404 instead of an upgrade.
    let tcp = tokio::net::TcpStream::connect(gw.http_addr())
        .await
        .unwrap();
    let request = "ws://nope.localhost/ws".into_client_request().unwrap();
    match tokio_tungstenite::client_async(request, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected a 404 handshake failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Streaming

const BIG: u64 = 200 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
static CHUNK_DATA: [u8; CHUNK] = [b'u'; CHUNK];
/// Allowed growth of the gateway's peak RSS while 200 MB pass through it.
const MAX_GROWTH_KIB: u64 = 30 * 1024;

fn generated_body() -> reqwest::Body {
    let chunks = (BIG as usize) / CHUNK;
    let stream = futures_util::stream::iter(
        (0..chunks).map(|_| Ok::<Bytes, std::io::Error>(Bytes::from_static(&CHUNK_DATA))),
    );
    reqwest::Body::wrap_stream(stream)
}

/// A gateway on [`acme_gateway`] after one request, and its peak RSS (VmHWM, KiB) then.
async fn warmed_up_acme(echo: &Echo) -> (Gateway, u64) {
    let gw = acme_gateway(echo).await;
    echo_ok(gw.get("acme.localhost", "/warm-up")).await;
    let hwm = gw.hwm_kib();
    (gw, hwm)
}

#[tokio::test]
async fn upload_200mb_streams_in_bounded_memory() {
    let echo = Echo::start().await;
    let (gw, hwm_before) = warmed_up_acme(&echo).await;
    let rss_before = gw.rss_kib();

    // Chunked (no length), then with Content-Length: both paths must stream.
    let started = Instant::now();
    let e = echo_ok(
        gw.request(Method::POST, "acme.localhost", "/upload")
            .body(generated_body()),
    )
    .await;
    assert_eq!(e["body_bytes"], BIG);
    let chunked_took = started.elapsed();
    let e = echo_ok(
        gw.request(Method::POST, "acme.localhost", "/upload")
            .header("content-length", BIG)
            .body(generated_body()),
    )
    .await;
    assert_eq!(e["body_bytes"], BIG);
    assert_eq!(received(&e, "content-length"), [BIG.to_string()]);

    let detail = format!(
        "VmRSS before {rss_before} KiB, after {} KiB; chunked upload took {chunked_took:?}",
        gw.rss_kib()
    );
    assert_peak_growth_bounded(&gw, hwm_before, "upload 2 x 200 MiB", &detail);
}

/// Prints the gateway's peak RSS (VmHWM) since `hwm_before` during `what` (with `detail`) and
/// asserts that it grew by less than `MAX_GROWTH_KIB`.
fn assert_peak_growth_bounded(gw: &Gateway, hwm_before: u64, what: &str, detail: &str) {
    let hwm_after = gw.hwm_kib();
    let growth = hwm_after.saturating_sub(hwm_before);
    eprintln!("{what}: VmHWM {hwm_before} -> {hwm_after} KiB (+{growth} KiB) {detail}");
    assert!(
        growth < MAX_GROWTH_KIB,
        "gateway peak RSS grew by {growth} KiB during {what} (limit {MAX_GROWTH_KIB} KiB)"
    );
}

#[tokio::test]
async fn download_200mb_streams_in_bounded_memory() {
    let echo = Echo::start().await;
    let (gw, hwm_before) = warmed_up_acme(&echo).await;

    let resp = gw
        .get("acme.localhost", &format!("/bytes/{BIG}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(BIG));
    let mut stream = resp.bytes_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("body chunk");
        assert!(chunk.iter().all(|&b| b == b'x'));
        total += chunk.len() as u64;
    }
    assert_eq!(total, BIG);

    assert_peak_growth_bounded(&gw, hwm_before, "download 200 MiB", "");
}

// ---------------------------------------------------------------------------------------------
// 8. h2c

/// Sends the request, expects an HTTP/2 answer with `status`.
async fn h2_answer(rb: reqwest::RequestBuilder, status: u16) -> reqwest::Response {
    let resp = rb.send().await.expect("h2c request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), status);
    resp
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve("acme.localhost", gw.http_addr())
        .resolve("nope.localhost", gw.http_addr())
        .build()
        .unwrap();
    let port = gw.http_addr().port();

    let resp = h2_answer(
        client.get(format!("http://acme.localhost:{port}/h2?x=1")),
        200,
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(received(&e, "x-tenant-id"), ["acme"]);
    assert_eq!(e["query"], "x=1");

    let resp = h2_answer(
        client
            .post(format!("http://acme.localhost:{port}/h2-upload"))
            .body(vec![7u8; 1_000_000]),
        200,
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["body_bytes"], 1_000_000);

    let resp = h2_answer(client.get(format!("http://nope.localhost:{port}/")), 404).await;
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"success":false,"error":"Tenant not found","code":"TENANT_NOT_FOUND"}"#
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Hot reload

const FAILURES: &str = r#"gateway_config_reloads_total{result="failure"}"#;
const SUCCESSES: &str = r#"gateway_config_reloads_total{result="success"}"#;
const LAST_OK: &str = "gateway_config_last_reload_successful";

#[tokio::test]
async fn reload_serves_a_new_tenant_file() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    assert_error(gw.get("globex.localhost", "/"), &TENANT_NOT_FOUND).await;

    gw.write_tenant(&TenantToml::new("globex").plan("free"));
    eventually(
        RELOAD_WAIT,
        "globex served after its file appeared",
        || async { gw.status("globex.localhost", "/").await == 200 },
    )
    .await;
    let e = echo_ok(gw.get("globex.localhost", "/")).await;
    assert_eq!(received(&e, "x-tenant-plan"), ["free"]);
    assert_eq!(gw.metric("gateway_tenants").await, 2.0);

    // And a deleted file stops being served.
    gw.remove_tenant_file("globex.toml");
    eventually(
        RELOAD_WAIT,
        "globex gone after its file was deleted",
        || async { gw.status("globex.localhost", "/").await == 404 },
    )
    .await;
    echo_ok(gw.get("acme.localhost", "/")).await;
}

#[tokio::test]
async fn reload_rejects_broken_files_and_keeps_serving() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    assert_eq!(gw.metric(LAST_OK).await, 1.0);
    assert_eq!(gw.metric(FAILURES).await, 0.0);

    // Invalid TOML.
    gw.write_tenant_file("broken.toml", "id = \"broken\"\nplan = [unclosed\n");
    eventually(RELOAD_WAIT, "a failed reload for invalid TOML", || async {
        gw.metric(FAILURES).await >= 1.0
    })
    .await;
    assert_eq!(gw.metric(LAST_OK).await, 0.0);
    echo_ok(gw.get("acme.localhost", "/")).await;
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "CONFIG_INVALID");
    assert_eq!(body["errors"][0]["file"], "tenants/broken.toml", "{body}");

    // Fixed again: the next reload succeeds (same content as the serving config).
    gw.remove_tenant_file("broken.toml");
    eventually(
        RELOAD_WAIT,
        "last reload successful after the fix",
        || async { gw.metric(LAST_OK).await == 1.0 },
    )
    .await;

    // Valid TOML, unknown plan.
    let failures_before = gw.metric(FAILURES).await;
    gw.write_tenant(&TenantToml::new("newco").plan("platinum"));
    eventually(
        RELOAD_WAIT,
        "a failed reload for an unknown plan",
        || async { gw.metric(FAILURES).await > failures_before },
    )
    .await;
    assert_eq!(gw.metric(LAST_OK).await, 0.0);
    echo_ok(gw.get("acme.localhost", "/")).await;
    assert_error(gw.get("newco.localhost", "/"), &TENANT_NOT_FOUND).await;
    let (status, body) = gw.reload().await;
    assert_eq!(status, 422, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["file"] == "tenants/newco.toml" && e["key"] == "plan"),
        "{body}"
    );
    assert!(
        gw.logs().contains("config reload rejected"),
        "{}",
        gw.logs()
    );
}

/// A gateway whose tenant `acme` (plan `free`) is hard-linked from outside the watched
/// directories (see `Gateway::write_unwatched`), and that tenant.
async fn hardlinked_free_acme(echo: &Echo) -> (Gateway, TenantToml) {
    let acme = TenantToml::new("acme").plan("free");
    let gw = GatewayConfig::with_echo(echo)
        .tenant_hardlinked(acme.clone())
        .start()
        .await;
    (gw, acme)
}

#[tokio::test]
async fn sighup_triggers_a_reload() {
    let echo = Echo::start().await;
    let (gw, acme) = hardlinked_free_acme(&echo).await;
    assert_error(
        gw.get("acme.localhost", "/api/analytics"),
        &ANALYTICS_NOT_AVAILABLE,
    )
    .await;

    // Change the plan through the unwatched hard link: only SIGHUP can pick it up.
    gw.write_unwatched(&acme.clone().plan("pro"));
    // Premise check (longer than the 250 ms debounce): the file watcher did not see the write.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        gw.metric(SUCCESSES).await,
        0.0,
        "the watcher reloaded; test premise broken"
    );
    assert_error(
        gw.get("acme.localhost", "/api/analytics"),
        &ANALYTICS_NOT_AVAILABLE,
    )
    .await;

    gw.signal("HUP");
    eventually(RELOAD_WAIT, "the new plan served after SIGHUP", || async {
        gw.status("acme.localhost", "/api/analytics").await == 200
    })
    .await;
    assert_eq!(gw.metric(SUCCESSES).await, 1.0);
    // The process is still the same one.
    echo_ok(gw.get("acme.localhost", "/")).await;
}

#[tokio::test]
async fn admin_reload_endpoint() {
    let echo = Echo::start().await;
    let (gw, acme) = hardlinked_free_acme(&echo).await;

    for token in [None, Some("wrong-token")] {
        let resp = gw
            .admin(Method::POST, "/admin/v1/reload", token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "token {token:?}");
        assert!(resp.headers().contains_key("www-authenticate"));
    }

    let (status, body) = gw.reload().await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("unchanged")),
        "{body}"
    );

    gw.write_unwatched(&acme.clone().plan("pro"));
    let (status, body) = gw.reload().await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("swapped")),
        "{body}"
    );
    assert_eq!(body["tenants"], 1);
    // Swapped before the answer: the very next request sees the new plan.
    echo_ok(gw.get("acme.localhost", "/api/analytics")).await;

    let (status, body) = gw.reload().await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("unchanged")),
        "{body}"
    );
    assert_eq!(gw.metric(SUCCESSES).await, 1.0);
    assert_eq!(
        gw.metric(r#"gateway_config_reloads_total{result="unchanged"}"#)
            .await,
        2.0
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Reload under load

fn record(failures: &Mutex<Vec<String>>, failure: String) {
    failures.lock().expect("failures lock").push(failure);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_drops_nothing() {
    const CLIENTS: usize = 4;
    const TOTAL: usize = 2000;
    const RELOADS: usize = 20;
    let echo = Echo::start().await;
    let gw = Arc::new(acme_config(&echo).start().await);
    let successes_before = gw.metric(SUCCESSES).await;
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (gw, done, failures) = (gw.clone(), done.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..TOTAL / CLIENTS {
                let result = gw
                    .get("acme.localhost", &format!("/load/{c}/{i}"))
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status() == 200 => {
                        // Read the whole body: a truncated response is a failure too.
                        if let Err(e) = r.bytes().await {
                            record(&failures, format!("body: {e}"));
                        }
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        record(&failures, format!("{status}: {body}"));
                    }
                    Err(e) => record(&failures, format!("error: {e}")),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // Reloads spread over the load: reload k waits for k * 90 finished requests, so all 20
    // happen while requests are still being sent.
    let mut reload_at = Vec::new();
    for k in 0..RELOADS {
        while done.load(Ordering::SeqCst) < k * 90 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if k % 2 == 0 {
            gw.write_tenant(&TenantToml::new("extra").plan("free"));
        } else {
            gw.remove_tenant_file("extra.toml");
        }
        let (status, body) = gw.reload().await;
        assert_eq!(status, 200, "reload {k}: {body}");
        let result = body["result"].as_str().unwrap_or_default().to_string();
        assert!(
            result == "swapped" || result == "unchanged",
            "reload {k}: {body}"
        );
        reload_at.push(done.load(Ordering::SeqCst));
    }
    for c in clients {
        c.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {TOTAL} requests failed during reloads, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(done.load(Ordering::SeqCst), TOTAL);
    assert!(
        *reload_at.last().unwrap() < TOTAL,
        "reloads finished after the load ({reload_at:?})"
    );
    // Every content change was swapped in exactly once (by the admin call or the watcher).
    let swaps = gw.metric(SUCCESSES).await - successes_before;
    assert_eq!(swaps, RELOADS as f64);
    wait_2xx(&gw, "acme", TOTAL as f64).await;
}

// ---------------------------------------------------------------------------------------------
// 11. Admin API

#[tokio::test]
async fn admin_api_health_metrics_and_tenants() {
    let echo = Echo::start().await;
    let gw = GatewayConfig::with_echo(&echo)
        .extra("[plans.pro.quotas]\nmessages = { limit = 1000, period = \"month\" }\n")
        .tenant(
            TenantToml::new("acme")
                .line(r#"custom_domains = ["support.acme.com"]"#)
                .line(r#"schema = "tenant_acme""#)
                .line("[quotas]\nmessages = { limit = 5000, period = \"month\" }"),
        )
        .tenant(TenantToml::new("globex").plan("free"))
        .start()
        .await;

    // `/readyz` also reports where every listener is bound (the config asks for port 0).
    let listeners = serde_json::json!({
        "http": [gw.http_addr().to_string()],
        "https": [],
        "admin": gw.admin_addr().to_string(),
    });
    for (path, body) in [
        ("/healthz", serde_json::json!({"status": "ok"})),
        (
            "/readyz",
            serde_json::json!({"status": "ready", "listeners": listeners}),
        ),
    ] {
        let resp = gw.admin(Method::GET, path, None).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.json::<Value>().await.unwrap(), body, "{path}");
    }

    echo_ok(gw.get("acme.localhost", "/")).await;
    wait_2xx(&gw, "acme", 1.0).await;
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"gateway_requests_total{status_class="2xx",tenant="acme"} 1"#),
        "{metrics}"
    );
    assert_eq!(gw.metric("gateway_tenants").await, 2.0);
    assert!(
        gw.metric_value("gateway_request_duration_seconds_count{tenant=\"acme\"}")
            .await
            == Some(1.0)
    );

    // Token required for /admin/v1/*.
    for path in ["/admin/v1/tenants", "/admin/v1/tenants/acme"] {
        let resp = gw.admin(Method::GET, path, None).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED");
        let resp = gw
            .admin(Method::GET, path, Some("not-the-token"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }

    let list = admin_get(&gw, "/admin/v1/tenants").await;
    let ids: Vec<&str> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "globex"]);

    let (status, acme) = admin(&gw, Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(status, 200, "{acme}");
    let t = &acme["tenant"];
    assert_eq!(t["id"], "acme");
    assert_eq!(t["organization_id"], "org_acme");
    assert_eq!(t["plan"], "pro");
    assert_eq!(t["status"], "active");
    assert_eq!(t["features"], serde_json::json!(["analytics", "chat"]));
    assert_eq!(
        t["quotas"],
        serde_json::json!({"messages": {"limit": 5000, "period": "month"}}),
        "tenant override of the plan quota"
    );
    assert_eq!(
        t["hosts"],
        serde_json::json!(["acme.localhost", "support.acme.com"])
    );
    assert_eq!(t["schema"], "tenant_acme");

    let g = admin_get(&gw, "/admin/v1/tenants/globex").await;
    assert_eq!(g["tenant"]["features"], serde_json::json!(["chat"]));

    let (status, nope) = admin(&gw, Method::GET, "/admin/v1/tenants/nope", None).await;
    assert_eq!(status, 404, "{nope}");
}

// ---------------------------------------------------------------------------------------------
// 12. `check`

#[test]
fn check_accepts_the_example_config() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gateway.toml");
    let out = Command::new(BIN)
        .args(["check", "--config", config])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("ok"), "{stdout}");
}

#[test]
fn check_reports_file_and_key() {
    let cfg = GatewayConfig::new(&["127.0.0.1:9"])
        .tenant(TenantToml::new("acme").line(r#"custom_domains = ["support.acme.com"]"#))
        .tenant(
            TenantToml::new("x")
                .plan("platinum")
                .line(r#"custom_domains = ["support.acme.com"]"#),
        )
        .tenant_file(
            "y.toml",
            "id = \"y\"\nplan = \"free\"\nupstream = \"shared\"\ncolour = \"red\"\n",
        )
        .tenant(TenantToml::new("z").pool("nowhere"));
    let path = cfg.write();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    for expected in [
        r#"tenants/x.toml: plan: unknown plan "platinum""#,
        r#"tenants/x.toml: custom_domains[0]: already claimed by tenant "acme""#,
        r#"tenants/z.toml: upstream: unknown upstream pool "nowhere""#,
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("tenants/y.toml: ") && l.contains("colour")),
        "unknown key not reported with its file:\n{stderr}"
    );
    // Every error line names a file and a key.
    for l in lines.iter().filter(|l| l.starts_with("tenants/")) {
        assert!(
            l.splitn(3, ": ").count() == 3,
            "not `file: key: message`: {l}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Harness self-test for later slices

#[tokio::test]
async fn redis_helper_starts() {
    let redis = Redis::start().await;
    assert_eq!(
        redis.command::<String>(&["PING"]).await.ok().as_deref(),
        Some("PONG")
    );
    assert_eq!(
        redis
            .command::<String>(&["SET", "tg:e2e", "1"])
            .await
            .ok()
            .as_deref(),
        Some("OK")
    );
    assert_eq!(
        redis.command::<i64>(&["INCR", "tg:e2e"]).await.ok(),
        Some(2)
    );
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
}
