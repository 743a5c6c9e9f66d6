//! `[limits]` against hostile clients: idle sockets, slowloris, slow bodies, slow readers,
//! oversized heads, paced HTTP/2 rapid reset, request budgets per connection, log volume, and
//! anonymous floods against a tenant's quota. Raw sockets for HTTP/1, raw frames and the `h2`
//! crate for HTTP/2; timeouts are shortened to 1–2 s so every test stays short.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures::{acme_config, with_api_key};
use crate::harness::{Echo, Gateway, GatewayConfig, TenantToml};

mod h2_streams;

const HOST: &str = "acme.localhost";
const ACME_KEY: &str = "acme-key-abuse-0123456789";

/// `[limits]` with short timeouts; `more` adds keys.
fn limits(more: &str) -> String {
    format!(
        "[limits]\nrequest_header_timeout = \"1s\"\nkeepalive_timeout = \"1s\"\nrequest_body_timeout = \"1s\"\nresponse_send_timeout = \"2s\"\n{more}\n"
    )
}

async fn start(echo: &Echo, limits_toml: &str) -> Gateway {
    acme_config(echo).extra(limits_toml).start().await
}

/// Reads until EOF or error; `Some(bytes)` when the peer closed within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn connect(gw: &Gateway) -> TcpStream {
    TcpStream::connect(gw.http_addr()).await.expect("connect")
}

/// A fresh connection that has sent `GET path` (keep-alive, nothing read yet).
async fn connected_get(gw: &Gateway, path: &str) -> TcpStream {
    let mut s = connect(gw).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("send GET");
    s
}

/// One normal request on a fresh connection; its status and how long it took.
async fn normal_request(gw: &Gateway) -> (u16, Duration) {
    let t = Instant::now();
    let status = gw.status(HOST, "/").await;
    (status, t.elapsed())
}

#[tokio::test]
async fn slow_clients_are_cut_off_while_normal_requests_keep_answering() {
    let echo = Echo::start().await;
    let gw = start(&echo, &limits("")).await;

    // 20 idle sockets, 5 partial h2c prefaces, 5 slowloris heads, 5 slow bodies.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(connect(&gw).await);
    }
    let mut partial = Vec::new();
    for _ in 0..5 {
        let mut s = connect(&gw).await;
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        partial.push(s);
    }
    let started = Instant::now();
    let mut loris = Vec::new();
    for _ in 0..5 {
        let mut s = connect(&gw).await;
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-A: 1\r\n").as_bytes())
            .await
            .unwrap();
        loris.push(tokio::spawn(async move {
            // One header line every 300 ms: each read restarts a per-read timeout, never
            // the whole-head deadline.
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if s.write_all(format!("X-L{i}: v\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            closed_within(&mut s, Duration::from_secs(5)).await
        }));
    }
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let mut s = connect(&gw).await;
        s.write_all(
            format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\r\nx").as_bytes(),
        )
        .await
        .unwrap();
        bodies.push(tokio::spawn(async move {
            // One byte every 1.5 s: longer than request_body_timeout.
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                if s.write_all(b"y").await.is_err() {
                    break;
                }
            }
            closed_within(&mut s, Duration::from_secs(5)).await
        }));
    }

    // Normal requests keep answering, quickly, during the flood.
    for _ in 0..10 {
        let (status, took) = normal_request(&gw).await;
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(500),
            "normal request took {took:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for s in idle.iter_mut().chain(partial.iter_mut()) {
        assert!(
            closed_within(s, Duration::from_secs(3)).await.is_some(),
            "idle or partial-preface socket still open after {:?}",
            started.elapsed()
        );
    }
    for l in loris {
        let got = l
            .await
            .unwrap()
            .expect("slowloris connection was not closed");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "slowloris got {text:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    for b in bodies {
        assert!(
            b.await.unwrap().is_some(),
            "slow body connection was not closed"
        );
    }
    assert!(
        gw.metric("gateway_connection_timeouts_total{kind=\"request_head\"}")
            .await
            >= 30.0
    );
    assert_eq!(normal_request(&gw).await.0, 200);
}

#[tokio::test]
async fn keepalive_connections_close_after_the_idle_timeout() {
    let echo = Echo::start().await;
    let gw = start(&echo, &limits("")).await;
    let mut s = connected_get(&gw, "/").await;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    // The body may still be arriving; what matters is the close after ~1 s of idleness.
    assert!(closed_within(&mut s, Duration::from_secs(4))
        .await
        .is_some());
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "closed too early: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn oversized_heads_are_refused_with_414_and_431() {
    let echo = Echo::start().await;
    let gw = start(&echo, &limits("")).await;
    let big_header = format!("X-Big: {}\r\n", "a".repeat(40 * 1024));
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_uri = format!("/{}", "u".repeat(9 * 1024));
    let cases = [
        ("/".to_string(), big_header, "431"),
        ("/".to_string(), many, "431"),
        (long_uri, String::new(), "414"),
        ("/".to_string(), "X-Fine: ok\r\n".to_string(), "200"),
    ];
    for (path, headers, expected) in cases {
        let mut s = connect(&gw).await;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{headers}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let got = closed_within(&mut s, Duration::from_secs(5)).await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {expected}")),
            "{expected}: got {}",
            &text[..text.len().min(200)]
        );
    }

    // HTTP/2: the decoded header list counts (101 small fields, and one 40 KiB field that
    // HPACK could make cheap to send).
    let mut h2 = h2c(&gw).await;
    for (name_count, value_len, expected) in [(101, 1, 431), (1, 40 * 1024, 431), (5, 10, 200)] {
        let mut req = http::Request::get(format!("http://{HOST}/"))
            .body(())
            .unwrap();
        for i in 0..name_count {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                http::HeaderValue::from_str(&"v".repeat(value_len)).unwrap(),
            );
        }
        let status = match h2.clone().ready().await {
            Ok(mut c) => match c.send_request(req, true) {
                Ok((resp, _)) => resp.await.map(|r| r.status().as_u16()).unwrap_or(0),
                Err(_) => 0,
            },
            Err(_) => 0,
        };
        assert_eq!(
            status, expected,
            "h2 {name_count} fields of {value_len} bytes"
        );
        if status != 200 {
            h2 = h2c(&gw).await; // a refusal may close the connection
        }
    }
}

/// An h2c connection with prior knowledge.
async fn h2c(gw: &Gateway) -> h2::client::SendRequest<Bytes> {
    let tcp = connect(gw).await;
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

#[tokio::test]
async fn requests_per_connection_are_capped_for_h1_and_h2() {
    let echo = Echo::start().await;
    let gw = start(&echo, &limits("max_requests_per_connection = 3")).await;
    let mut s = connect(&gw).await;
    let mut closes = Vec::new();
    for _ in 0..3 {
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        closes.push(text.contains("connection: close"));
    }
    assert_eq!(closes.last(), Some(&true), "{closes:?}");
    assert!(closed_within(&mut s, Duration::from_secs(2))
        .await
        .is_some());

    // HTTP/2: after 3 streams the gateway sends GOAWAY; new streams fail.
    let mut h2 = h2c(&gw).await;
    let mut ok = 0;
    for _ in 0..6 {
        let Ok(mut c) = h2.clone().ready().await else {
            break;
        };
        let req = http::Request::get(format!("http://{HOST}/"))
            .body(())
            .unwrap();
        let Ok((resp, _)) = c.send_request(req, true) else {
            break;
        };
        match resp.await {
            Ok(r) if r.status() == 200 => ok += 1,
            _ => break,
        }
        h2 = c;
    }
    assert_eq!(ok, 3, "h2 streams answered before GOAWAY");
    assert_eq!(
        gw.metric("gateway_h2_goaway_total{reason=\"max_requests\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_stalled_h1_reader_is_closed_after_the_send_timeout() {
    let echo = Echo::start().await;
    let gw = start(&echo, &limits("")).await;
    let mut s = connected_get(&gw, "/bytes/100000000").await;
    // Read nothing for 4 s (twice response_send_timeout), then drain what was buffered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("connection of a stalled reader still open");
    assert!(got.len() < 50_000_000, "{} bytes delivered", got.len());
}

#[tokio::test]
async fn an_anonymous_flood_does_not_spend_the_tenants_plan() {
    let echo = Echo::start().await;
    let gw = GatewayConfig::with_echo(&echo)
        .extra(&format!(
            "[plans.metered]\nfeatures = [\"chat\"]\nquotas.requests = {{ limit = 40, period = \"second\" }}\n\n{}\n[limits.per_client]\nanonymous = {{ limit = 5, period = \"second\" }}\nauthenticated = {{ limit = 20, period = \"second\" }}\n",
            limits("")
        ))
        .tenant(
            with_api_key(TenantToml::new("acme").plan("metered"), ACME_KEY, "app"),
        )
        .start()
        .await;
    let flood_until = Instant::now() + Duration::from_secs(3);
    let mut flooders = Vec::new();
    for _ in 0..4 {
        let client = gw.client().clone();
        let url = gw.http_url();
        flooders.push(tokio::spawn(async move {
            let mut by_status = std::collections::BTreeMap::<u16, u32>::new();
            let mut policy_named = false;
            while Instant::now() < flood_until {
                let Ok(r) = client
                    .get(format!("{url}/"))
                    .header("Host", HOST)
                    .send()
                    .await
                else {
                    continue;
                };
                if r.status() == 429 {
                    policy_named |= r
                        .headers()
                        .get("ratelimit-policy")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("client-anonymous"));
                }
                *by_status.entry(r.status().as_u16()).or_default() += 1;
            }
            (by_status, policy_named)
        }));
    }
    let mut authed = Vec::new();
    while Instant::now() < flood_until {
        let r = gw
            .get(HOST, "/")
            .header("X-API-Key", ACME_KEY)
            .send()
            .await
            .unwrap();
        authed.push(r.status().as_u16());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut flood = std::collections::BTreeMap::<u16, u32>::new();
    let mut named = false;
    for f in flooders {
        let (by, n) = f.await.unwrap();
        named |= n;
        for (k, v) in by {
            *flood.entry(k).or_default() += v;
        }
    }
    eprintln!("anonymous flood by status: {flood:?}; authenticated: {authed:?}");
    assert!(
        authed.iter().all(|s| *s == 200),
        "authenticated client got {authed:?}"
    );
    assert!(flood.get(&429).copied().unwrap_or(0) > 50, "{flood:?}");
    assert!(named, "429s name the per-client policy");
    // At most 5 anonymous requests per second (+1 window edge) reached the tenant's plan.
    let admitted = flood.get(&200).copied().unwrap_or(0);
    assert!(admitted <= 5 * 5, "{admitted} anonymous requests admitted");
    let m = gw.metrics().await;
    assert!(m.contains("gateway_client_limit_decisions_total{decision=\"rejected\",policy=\"client-anonymous\",tenant=\"acme\"}"), "{m}");
    assert!(
        !m.contains("127.0.0.1\""),
        "a client address became a metric label"
    );
}

#[tokio::test]
async fn tls_connections_that_never_send_a_request_are_closed() {
    use crate::harness::free_port;
    use crate::harness::tls::{client_config, install_leaf, tls_connect, TestCa, Verify};
    let echo = Echo::start().await;
    let https_port = free_port();
    let ca = TestCa::new();
    let leaf = ca.leaf(&["default.invalid", "127.0.0.1"], 0x3001, 2033);
    let cfg = GatewayConfig::with_echo(&echo)
        .server(&format!("https_listen = [\"127.0.0.1:{https_port}\"]"))
        .extra(&format!("[tls]\ncerts_dir = \"certs\"\n\n{}", limits("")))
        .tenant(TenantToml::new("acme"));
    install_leaf(&cfg.dir().join("certs"), "_default", &leaf);
    let gw = cfg.start().await;
    let addr = ([127, 0, 0, 1], https_port).into();
    for alpn in ["http/1.1", "h2"] {
        let t = Instant::now();
        let (mut tls, hs) =
            tls_connect(addr, None, client_config(ca.roots(), &[alpn], Verify::Full))
                .await
                .unwrap();
        assert_eq!(hs.alpn.as_deref(), Some(alpn));
        let mut buf = [0u8; 4096];
        // h2 sends its SETTINGS first; then nothing until the close.
        let closed = tokio::time::timeout(Duration::from_secs(4), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{alpn}: TLS connection without a request still open"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(800),
            "{alpn}: closed too early"
        );
    }
    assert_eq!(gw.status(HOST, "/").await, 200);
}
