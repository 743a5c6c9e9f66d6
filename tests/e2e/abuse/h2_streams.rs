//! HTTP/2 stream abuse: paced rapid reset, stalled readers (window 0), stalled request bodies.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{connect, h2c, limits, start, HOST};
use crate::harness::Echo;

#[tokio::test]
async fn a_stalled_h2_request_body_is_reset_after_the_body_timeout() {
    let echo = Echo::start().await;
    let gw = start(&echo, &limits("")).await;
    let h2 = h2c(&gw).await;
    let mut c = h2.clone().ready().await.unwrap();
    let req = http::Request::post(format!("http://{HOST}/"))
        .header("content-length", "100")
        .body(())
        .unwrap();
    let (resp, mut body) = c.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(b"x"), false).unwrap();
    let t = Instant::now();
    // Nothing more is sent: the stream ends after request_body_timeout (1 s).
    let outcome = tokio::time::timeout(Duration::from_secs(5), resp).await;
    let ended = match outcome {
        Ok(Ok(r)) => r.status() != 200,
        Ok(Err(_)) => true,
        Err(_) => false,
    };
    assert!(
        ended,
        "stalled h2 body still pending after {:?}",
        t.elapsed()
    );
    assert!(t.elapsed() >= Duration::from_millis(800));
    assert_eq!(
        gw.metric("gateway_connection_timeouts_total{kind=\"request_body\"}")
            .await,
        1.0
    );
    // The connection itself still serves other streams.
    let mut c = h2.ready().await.unwrap();
    let req = http::Request::get(format!("http://{HOST}/"))
        .body(())
        .unwrap();
    let (resp, _) = c.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
}

/// Raw HTTP/2 frame bytes.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HEADERS (END_STREAM | END_HEADERS) for `GET /` at HOST, HPACK without the dynamic table.
fn get_headers(stream: u32) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, HOST.len() as u8];
    block.extend_from_slice(HOST.as_bytes());
    frame(0x1, 0x5, stream, &block)
}

#[tokio::test]
async fn paced_rapid_reset_gets_goaway_with_bounded_logs() {
    let echo = Echo::start().await;
    let gw = start(
        &echo,
        &limits("h2_reset_budget = 30\nh2_reset_window = \"10s\""),
    )
    .await;
    let logs_before = gw.logs().len();
    let mut s = connect(&gw).await;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    s.write_all(&hello).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // The reader drains the socket so the writer never blocks on a full window.
    let reader = tokio::spawn(async move {
        let mut joined = Vec::new();
        let mut chunk = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), rd.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => joined.extend_from_slice(&chunk[..n]),
                Ok(_) => break,
                Err(_) => {}
            }
        }
        joined
    });
    // One HEADERS + RST_STREAM pair every 2 ms: paced under h2's own detector (which counts
    // resets of streams not yet accepted), so only the gateway's budget can stop it.
    let mut sent = 0u32;
    for n in 0..300u32 {
        let id = 1 + 2 * n;
        let mut out = get_headers(id);
        out.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
        if wr.write_all(&out).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let received = reader.await.unwrap();
    let mut cursor: &[u8] = &received;
    let mut goaway = None;
    while cursor.len() >= 9 {
        let len =
            (usize::from(cursor[0]) << 16) | (usize::from(cursor[1]) << 8) | usize::from(cursor[2]);
        if cursor.len() < 9 + len {
            break;
        }
        if cursor[3] == 0x7 {
            goaway = Some(u32::from_be_bytes([
                cursor[13], cursor[14], cursor[15], cursor[16],
            ]));
        }
        cursor = &cursor[9 + len..];
    }
    assert_eq!(
        goaway,
        Some(0xb),
        "GOAWAY ENHANCE_YOUR_CALM after the reset budget ({sent} pairs sent)"
    );
    assert_eq!(
        gw.metric("gateway_h2_goaway_total{reason=\"reset_budget\"}")
            .await,
        1.0
    );
    let not_proxied = gw
        .metric("gateway_h2_reset_streams_not_proxied_total")
        .await;
    let m = gw.metrics().await;
    let proxied: f64 = m
        .lines()
        .filter(|l| l.starts_with("gateway_requests_total{") && l.contains("tenant=\"acme\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!(
        "rapid reset: {not_proxied} reset streams not proxied, {proxied} acme requests counted"
    );
    // Streams reset before the gateway looked at them never reach the tenant or the upstream;
    // the budget (30) bounds the rest.
    assert!(proxied <= 31.0, "{proxied} reset streams were proxied");

    // Logs: no ERROR line, and a bounded number of bytes per reset stream.
    let logs = gw.logs();
    let added = &logs[logs_before..];
    assert!(
        !added.contains("\"level\":\"ERROR\""),
        "ERROR lines: {added}"
    );
    let per_stream = added.len() as f64 / f64::from(sent);
    eprintln!(
        "rapid reset: {sent} pairs sent, {} log bytes, {per_stream:.0} bytes per pair",
        added.len()
    );
    assert!(
        per_stream < 600.0,
        "{per_stream} log bytes per reset stream"
    );
    // The gateway still answers.
    assert_eq!(gw.status(HOST, "/").await, 200);
}

#[tokio::test]
async fn stalled_h2_readers_cost_bounded_memory_and_are_released() {
    let echo = Echo::start().await;
    let gw = start(&echo, &limits("")).await;
    assert_eq!(gw.status(HOST, "/").await, 200);
    const CONNS: usize = 6;
    const STREAMS: usize = 20;
    let mut held = Vec::new();
    let mut rss_before = 0;
    for conn_no in 0..CONNS {
        if conn_no == 1 {
            // The first connection warms up every code path and allocator arena.
            tokio::time::sleep(Duration::from_millis(500)).await;
            rss_before = gw.rss_kib();
        }
        let tcp = connect(&gw).await;
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        for _ in 0..STREAMS {
            let mut c = send.clone().ready().await.unwrap();
            let req = http::Request::get(format!("http://{HOST}/bytes/100000000"))
                .body(())
                .unwrap();
            let (resp, _) = c.send_request(req, true).unwrap();
            held.push(tokio::spawn(async move {
                let t = Instant::now();
                // Headers arrive; the body never can (window 0) until the gateway gives up.
                if let Ok(r) = resp.await {
                    let mut body = r.into_body();
                    while let Some(chunk) = body.data().await {
                        if chunk.is_err() {
                            break;
                        }
                    }
                }
                t.elapsed()
            }));
        }
        held.push(tokio::spawn(async move {
            drop(send);
            Duration::ZERO
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_stalled = gw.rss_kib();
    let per_stream = rss_stalled.saturating_sub(rss_before) as f64 / ((CONNS - 1) * STREAMS) as f64;
    eprintln!(
        "stalled readers: RSS {rss_before} KiB → {rss_stalled} KiB, {per_stream:.0} KiB per stalled stream"
    );
    // pingora's proxy pipeline holds up to ~9 body chunks of 64 KiB per stream (upstream read
    // buffer, two 4-task queues) plus the h2 send buffer: bounded, not small.
    assert!(per_stream < 1024.0, "{per_stream} KiB per stalled stream");
    // response_send_timeout (2 s) ends every stalled stream.
    for h in held {
        let took = tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("a stalled stream was never ended")
            .unwrap();
        assert!(
            took < Duration::from_secs(8),
            "stalled stream ended after {took:?}"
        );
    }
    // Each ended stream is a client abort of the tenant, not a gateway error.
    let aborts = gw
        .metric("gateway_client_aborts_total{tenant=\"acme\"}")
        .await;
    assert!(
        aborts >= (CONNS * STREAMS) as f64,
        "{aborts} client aborts counted"
    );
    assert!(
        !gw.logs().contains("\"level\":\"ERROR\""),
        "a client abort was logged as ERROR"
    );
    assert_eq!(gw.status(HOST, "/").await, 200);
}
