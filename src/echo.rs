//! Echo ("whoami") HTTP upstream for the quick start, end-to-end tests and load benchmarks.
//! Answers every request with a JSON description of what it received; also speaks h2c and
//! WebSocket echo, and has `/status/{code}`, `/delay/{ms}` and `/bytes/{n}` helpers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const CHUNK_SIZE: usize = 64 * 1024;
// Static so `/bytes/{n}` streams without allocating anything per chunk.
static X_CHUNK: [u8; CHUNK_SIZE] = [b'x'; CHUNK_SIZE];

const X_ECHO_SERVER: &str = "x-echo-server";

fn server_name() -> HeaderValue {
    HeaderValue::from_static("tenant-gateway-echo")
}

/// Serves until the process ends. Binds `listen` itself.
pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    serve_listener(listener).await
}

/// Same, on an already-bound listener (tests use this to avoid port races).
pub async fn serve_listener(listener: TcpListener) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's default 30 s header-read timeout panics without a timer.
    builder.http1().keep_alive(true).timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        // Large h2c uploads (the 200 MB test) stall on the 64 KiB default window.
        .adaptive_window(true);
    let builder = Arc::new(builder);

    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::debug!(error = %err, "echo: accept failed");
                // Back off on resource exhaustion (EMFILE etc.) instead of spinning.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "echo: set_nodelay failed");
        }
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let conn =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), service_fn(handle));
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "echo: connection error");
            }
        });
    }
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<EchoBody>, hyper::Error> {
    if let Some(accept) = websocket_accept(&req) {
        return Ok(websocket_upgrade(&mut req, accept));
    }

    let (parts, mut body) = req.into_parts();
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            body_bytes += data.len() as u64;
        }
    }

    let path = parts.uri.path();
    let mut status = StatusCode::OK;

    if let Some(n) = path.strip_prefix("/bytes/") {
        return Ok(match n.parse::<u64>() {
            Ok(n) => stream_bytes(n),
            Err(_) => json_response(StatusCode::BAD_REQUEST, &parts, body_bytes),
        });
    }
    if let Some(code) = path.strip_prefix("/status/") {
        status = match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            // 1xx is not a valid final response.
            Some(code) if code.as_u16() >= 200 => code,
            _ => StatusCode::BAD_REQUEST,
        };
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        match ms.parse::<u64>() {
            Ok(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Err(_) => status = StatusCode::BAD_REQUEST,
        }
    }

    Ok(json_response(status, &parts, body_bytes))
}

fn json_response(
    status: StatusCode,
    parts: &http::request::Parts,
    body_bytes: u64,
) -> Response<EchoBody> {
    let echo = Echo {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: JoinedHeaders(&parts.headers),
        header_list: HeaderList(&parts.headers),
        body_bytes,
    };
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 8)
        .sum();
    // Headers appear twice (map + list); the rest is keys, method, URI and the count.
    let mut buf = Vec::with_capacity(
        128 + 2 * header_bytes + 2 * parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len()),
    );
    let status = match serde_json::to_writer(&mut buf, &echo) {
        Ok(()) => status,
        Err(err) => {
            tracing::debug!(error = %err, "echo: json serialization failed");
            buf.clear();
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };

    let mut resp = Response::new(EchoBody::Full(Some(Bytes::from(buf))));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_ECHO_SERVER, server_name());
    resp
}

fn stream_bytes(n: u64) -> Response<EchoBody> {
    let mut resp = Response::new(EchoBody::Repeat { remaining: n });
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(X_ECHO_SERVER, server_name());
    resp
}

#[derive(Serialize)]
struct Echo<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: JoinedHeaders<'a>,
    header_list: HeaderList<'a>,
    body_bytes: u64,
}

/// Header map with repeated values joined by ", ".
struct JoinedHeaders<'a>(&'a HeaderMap);

impl Serialize for JoinedHeaders<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.keys_len()))?;
        for name in self.0.keys() {
            let mut values = self.0.get_all(name).iter();
            let Some(first) = values.next() else { continue };
            let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
            for value in values {
                joined.push_str(", ");
                joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
            }
            map.serialize_entry(name.as_str(), &joined)?;
        }
        map.end()
    }
}

/// Every header occurrence as `[name, value]`. `HeaderMap` groups repeats of one name
/// together, so order is exact per name but not across interleaved names.
struct HeaderList<'a>(&'a HeaderMap);

impl Serialize for HeaderList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (name, value) in self.0 {
            seq.serialize_element(&(name.as_str(), String::from_utf8_lossy(value.as_bytes())))?;
        }
        seq.end()
    }
}

/// Response body: either one ready buffer or `remaining` bytes of `x` served from a static chunk.
/// A hand-rolled body avoids boxing and per-chunk allocation on the benchmark path.
enum EchoBody {
    Full(Option<Bytes>),
    Repeat { remaining: u64 },
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            EchoBody::Full(data) => data.take().filter(|d| !d.is_empty()).map(Frame::data),
            EchoBody::Repeat { remaining } if *remaining == 0 => None,
            EchoBody::Repeat { remaining } => {
                let len = usize::try_from(*remaining).map_or(CHUNK_SIZE, |r| r.min(CHUNK_SIZE));
                *remaining -= len as u64;
                Some(Frame::data(Bytes::from_static(&X_CHUNK[..len])))
            }
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EchoBody::Full(data) => data.as_ref().is_none_or(Bytes::is_empty),
            EchoBody::Repeat { remaining } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EchoBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            EchoBody::Repeat { remaining } => SizeHint::with_exact(*remaining),
        }
    }
}

/// `Sec-WebSocket-Accept` for an HTTP/1.1 WebSocket upgrade request, `None` for anything else
/// (an upgrade without a key is just echoed like a plain request).
fn websocket_accept(req: &Request<Incoming>) -> Option<HeaderValue> {
    // h2 extended CONNECT is not needed by any test or benchmark.
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants_websocket = req.headers().get_all(UPGRADE).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    });
    if !wants_websocket {
        return None;
    }
    let key = req.headers().get(SEC_WEBSOCKET_KEY)?;
    // Base64 output is always a valid header value, so `ok()` never drops an upgrade.
    HeaderValue::try_from(derive_accept_key(key.as_bytes())).ok()
}

fn websocket_upgrade(req: &mut Request<Incoming>, accept: HeaderValue) -> Response<EchoBody> {
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                if let Err(err) = echo_websocket(ws).await {
                    tracing::debug!(error = %err, "echo: websocket error");
                }
            }
            Err(err) => tracing::debug!(error = %err, "echo: upgrade failed"),
        }
    });

    let mut resp = Response::new(EchoBody::Full(None));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    headers.insert(X_ECHO_SERVER, server_name());
    resp
}

async fn echo_websocket<S>(
    mut ws: WebSocketStream<S>,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // tungstenite queues pong and close replies itself and flushes them on the next read,
    // so only data frames need handling; the stream ends after the close handshake.
    while let Some(msg) = ws.next().await {
        match msg? {
            msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg).await?,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_listener(listener));
        addr
    }

    /// Sends raw HTTP/1.1 bytes (the request must say `Connection: close`) and returns
    /// (status, lower-cased headers, body).
    async fn raw_http(
        addr: SocketAddr,
        head: &str,
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap();

        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&buf[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        (status, headers, buf[split + 4..].to_vec())
    }

    /// `GET path` with `Connection: close`, through [`raw_http`].
    async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let head = format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        raw_http(addr, &head, b"").await
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn get_echoes_query_and_repeated_headers() {
        let addr = start().await;
        let req = "GET /hello/world?a=1&b=2 HTTP/1.1\r\nHost: example.test\r\nX-Dup: one\r\nX-Other: z\r\nX-Dup: two\r\nConnection: close\r\n\r\n";
        let (status, headers, body) = raw_http(addr, req, b"").await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        assert_eq!(
            header(&headers, "x-echo-server"),
            Some("tenant-gateway-echo")
        );
        assert_eq!(
            header(&headers, "content-length"),
            Some(body.len().to_string().as_str())
        );

        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["method"], "GET");
        assert_eq!(json["path"], "/hello/world");
        assert_eq!(json["query"], "a=1&b=2");
        assert_eq!(json["body_bytes"], 0);
        assert_eq!(json["headers"]["host"], "example.test");
        assert_eq!(json["headers"]["x-dup"], "one, two");
        assert_eq!(json["headers"]["x-other"], "z");

        let list = json["header_list"].as_array().unwrap();
        let dups: Vec<&str> = list
            .iter()
            .filter(|pair| pair[0] == "x-dup")
            .map(|pair| pair[1].as_str().unwrap())
            .collect();
        assert_eq!(dups, ["one", "two"]);
        assert_eq!(list.len(), 5);
    }

    #[tokio::test]
    async fn no_query_is_empty_string() {
        let addr = start().await;
        let (status, _, body) = get(addr, "/").await;
        assert_eq!(status, 200);
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["query"], "");
        assert_eq!(json["path"], "/");
    }

    #[tokio::test]
    async fn status_path_sets_status_and_keeps_json() {
        let addr = start().await;
        let (status, headers, body) = get(addr, "/status/418").await;
        assert_eq!(status, 418);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["path"], "/status/418");

        let (status, _, _) = get(addr, "/status/abc").await;
        assert_eq!(status, 400);

        // hyper must drop the JSON body for bodiless statuses rather than corrupt the stream.
        let (status, _, body) = get(addr, "/status/204").await;
        assert_eq!(status, 204);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn post_body_is_counted() {
        let addr = start().await;
        let body = vec![7u8; 1024 * 1024];
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (status, _, resp) = raw_http(addr, &head, &body).await;
        assert_eq!(status, 200);
        let json: Value = serde_json::from_slice(&resp).unwrap();
        assert_eq!(json["method"], "POST");
        assert_eq!(json["body_bytes"], 1_048_576);
    }

    #[tokio::test]
    async fn chunked_body_is_counted() {
        let addr = start().await;
        let head = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let (_, _, resp) = raw_http(addr, head, b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n").await;
        let json: Value = serde_json::from_slice(&resp).unwrap();
        assert_eq!(json["body_bytes"], 8);
    }

    #[tokio::test]
    async fn bytes_path_streams_exact_length() {
        let addr = start().await;
        let n = 3 * CHUNK_SIZE + 17;
        let (status, headers, body) = get(addr, &format!("/bytes/{n}")).await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(
            header(&headers, "content-length"),
            Some(n.to_string().as_str())
        );
        assert_eq!(body.len(), n);
        assert!(body.iter().all(|&b| b == b'x'));
    }

    #[tokio::test]
    async fn delay_path_waits() {
        let addr = start().await;
        let started = std::time::Instant::now();
        let (status, _, _) = get(addr, "/delay/150").await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn keep_alive_serves_two_requests_on_one_connection() {
        let addr = start().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2);
        assert!(text.contains(r#""path":"/a""#) && text.contains(r#""path":"/b""#));
    }

    #[tokio::test]
    async fn h2c_prior_knowledge_works() {
        let addr = start().await;
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let resp = client
            .post(format!("http://{addr}/h2?x=y"))
            .body(vec![0u8; 300_000])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let json: Value = resp.json().await.unwrap();
        assert_eq!(json["query"], "x=y");
        assert_eq!(json["body_bytes"], 300_000);
    }

    #[tokio::test]
    async fn websocket_round_trip() {
        let addr = start().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tcp)
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(
            resp.headers().get(X_ECHO_SERVER).map(|v| v.as_bytes()),
            Some(&b"tenant-gateway-echo"[..])
        );

        ws.send(Message::Text("hello echo".into())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Text("hello echo".into())
        );

        ws.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Binary(vec![1, 2, 3])
        );

        ws.send(Message::Ping(b"p".to_vec())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Pong(b"p".to_vec())
        );

        ws.close(None).await.unwrap();
        // The server answers the close; the stream then ends.
        while let Some(msg) = ws.next().await {
            if msg.is_err() {
                break;
            }
        }
    }
}
