//! HTTP/1.1 over a raw socket, for hostile and byte-exact tests that a client library would
//! normalise: responses parsed with `httparse`, chunked bodies decoded with its chunk-size
//! parser. Well-formed requests go through reqwest ([`super::client`]) instead.

use std::net::SocketAddr;
use std::time::Duration;

use httparse::Status;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// How the body after this head is delimited.
    fn framing(&self) -> Framing {
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            return Framing::Chunked;
        }
        match self.header("content-length").and_then(|v| v.parse().ok()) {
            Some(len) => Framing::Length(len),
            None => Framing::ToEof,
        }
    }
}

enum Framing {
    Chunked,
    Length(usize),
    ToEof,
}

/// Parses a response head: `None` while incomplete, else the head (empty body) and its length.
fn parse_head(buf: &[u8]) -> Result<Option<(RawResponse, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "bad response head ({e}): {:?}",
                String::from_utf8_lossy(buf)
            ))
        }
    };
    let headers = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let head = RawResponse {
        status: resp.code.unwrap_or_default(),
        headers,
        body: Vec::new(),
    };
    Ok(Some((head, len)))
}

/// Decodes a chunked body: the data and whether the last chunk was seen (trailers are not
/// kept).
pub fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Ok(Status::Complete((consumed, size))) = httparse::parse_chunk_size(data) else {
            return (out, false);
        };
        data = &data[consumed..];
        let Ok(size) = usize::try_from(size) else {
            return (out, false);
        };
        if size == 0 {
            return (out, true);
        }
        if data.len() < size {
            out.extend_from_slice(data);
            return (out, false);
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// Parses one complete response read to its end (Content-Length, chunked, or to EOF).
pub fn parse_response(buf: &[u8]) -> RawResponse {
    let (mut resp, head_len) = parse_head(buf)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let rest = &buf[head_len..];
    resp.body = match resp.framing() {
        Framing::Chunked => dechunk(rest).0,
        Framing::Length(len) => rest[..len.min(rest.len())].to_vec(),
        Framing::ToEof => rest.to_vec(),
    };
    resp
}

/// Reads one response off `stream` (which may stay open for the next request): the head, then
/// a body by Content-Length or chunks, or to EOF without either. Bytes past the response are
/// dropped, so send the next request only after reading this response.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let (mut resp, head_len) = loop {
        if let Some(parsed) = parse_head(&buf)? {
            break parsed;
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err(format!(
                "connection closed before a response ({} bytes read)",
                buf.len()
            ));
        }
    };
    let framing = resp.framing();
    loop {
        let rest = &buf[head_len..];
        let done = match framing {
            Framing::Chunked => {
                let (body, complete) = dechunk(rest);
                complete.then_some(body)
            }
            Framing::Length(len) => (rest.len() >= len).then(|| rest[..len].to_vec()),
            Framing::ToEof => None,
        };
        if let Some(body) = done {
            resp.body = body;
            return Ok(resp);
        }
        if read_more(stream, &mut buf).await? == 0 {
            return match framing {
                Framing::ToEof => {
                    resp.body = buf[head_len..].to_vec();
                    Ok(resp)
                }
                _ => Err("connection closed inside the body".into()),
            };
        }
    }
}

/// One read of up to 16 KiB appended to `buf`, within 10 s; 0 at EOF.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
        .await
        .map_err(|_| "nothing read within 10 s".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Reads until the peer closes (within 20 s) and parses the response. A TLS peer that closes
/// without close_notify ends the read like a plain EOF.
pub async fn read_to_close<S: AsyncRead + Unpin>(stream: &mut S) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let read_all = async {
        match stream.read_to_end(&mut buf).await {
            Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => Err(format!("read: {e}")),
            _ => Ok(()),
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .map_err(|_| "no response within 20 s".to_string())??;
    Ok(parse_response(&buf))
}

/// Sends exactly `head` (which must ask for `Connection: close`) and reads the response to EOF;
/// header names are sent with the case given, which reqwest would normalise.
pub async fn raw_http(addr: SocketAddr, head: &str) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    read_to_close(&mut stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_framed_by_length_chunks_or_eof() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef", b"abc"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                b"abcde",
            ),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nrest", b"rest"),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", b""),
        ];
        for (wire, body) in cases {
            let r = parse_response(wire);
            assert_eq!(r.body, body, "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn a_truncated_chunked_body_keeps_what_arrived() {
        assert_eq!(
            dechunk(b"5\r\nabcde\r\n4\r\nfg"),
            (b"abcdefg".to_vec(), false)
        );
        assert_eq!(dechunk(b"1\r\na\r\n0\r\n\r\n"), (b"a".to_vec(), true));
    }

    #[tokio::test]
    async fn a_response_is_read_as_far_as_its_framing_says() {
        let cases: [(&[u8], u16, &[u8]); 3] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-A: 1\r\n\r\na",
                200,
                b"a",
            ),
            (
                b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n",
                404,
                b"b",
            ),
            (
                b"HTTP/1.1 502 Bad Gateway\r\n\r\nto the end",
                502,
                b"to the end",
            ),
        ];
        for (wire, status, body) in cases {
            let mut reader = wire;
            let r = read_response(&mut reader).await.expect("response");
            assert_eq!((r.status, r.body.as_slice()), (status, body));
        }
        let mut cut: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
        assert!(read_response(&mut cut).await.is_err());
        let mut empty: &[u8] = b"";
        assert!(read_response(&mut empty).await.is_err());
    }
}
