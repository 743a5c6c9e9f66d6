//! Load generator for `benches/tls_handshake.sh`: N new TLS connections, C at a time, each a full
//! handshake (the client never offers a session, so the server cannot resume one) followed by one
//! HTTP/1.1 request with `Connection: close`. Like h2load, it does not check the certificate
//! chain, but it does verify the server's handshake signature.
//!
//! ```text
//! cargo bench --bench tls_handshake_load -- --connect 127.0.0.1:8443 --name bench.localhost \
//!     --requests 2000 --concurrency 10
//! ```
//! Prints one line: `handshakes=… ok=… failed=… seconds=… rate=… protocol=… suite=… group=…`.
//! Without `--connect` (as under `cargo bench` or `cargo test --all-targets`) it does nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

// Accepts any certificate (like h2load), but checks the handshake signature with it, so the
// server really proves possession of the key; the same verifier as the e2e harness's.
#[path = "../tests/e2e/harness/insecure_verifier.rs"]
#[allow(dead_code)] // The bench needs only `any_certificate`.
mod insecure_verifier;
use insecure_verifier::LenientVerifier;

struct Args {
    connect: SocketAddr,
    name: String,
    requests: usize,
    concurrency: usize,
    path: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut connect = None;
    let mut name = None;
    let mut requests = 2000usize;
    let mut concurrency = 10usize;
    let mut path = "/".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().ok_or_else(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--connect" => {
                connect = Some(
                    value("--connect")?
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("--connect: {e}"))?,
                )
            }
            "--name" => name = Some(value("--name")?),
            "--requests" => {
                requests = value("--requests")?
                    .parse()
                    .map_err(|e| format!("--requests: {e}"))?
            }
            "--concurrency" => {
                concurrency = value("--concurrency")?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--path" => path = value("--path")?,
            // Passed by `cargo bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let Some(connect) = connect else {
        return Ok(None);
    };
    Ok(Some(Args {
        connect,
        name: name.ok_or("--name is required")?,
        requests,
        concurrency: concurrency.max(1),
        path,
    }))
}

/// What the first connection negotiated.
#[derive(Default)]
struct Negotiated {
    protocol: String,
    suite: String,
    group: String,
}

/// One connection: handshake, one request, read to the end. `Ok(status)`.
async fn one(
    connector: &TlsConnector,
    args: &Args,
    name: &ServerName<'static>,
    first: &std::sync::Mutex<Option<Negotiated>>,
) -> Result<u16, String> {
    let tcp = TcpStream::connect(args.connect)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    {
        let mut first = first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            let (_, conn) = tls.get_ref();
            *first = Some(Negotiated {
                protocol: conn
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default(),
                suite: conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
                    .unwrap_or_default(),
                group: conn
                    .negotiated_key_exchange_group()
                    .map(|g| format!("{:?}", g.name()))
                    .unwrap_or_default(),
            });
        }
    }
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tls-handshake-load\r\nConnection: close\r\n\r\n",
        args.path, args.name
    );
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A server that closes without close_notify after a complete response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "no status line".to_string())
}

fn main() {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            eprintln!("tls_handshake_load: no --connect given; run benches/tls_handshake.sh");
            return;
        }
        Err(e) => {
            eprintln!("tls_handshake_load: {e}");
            std::process::exit(2);
        }
    };
    // One client thread, like `h2load -t 1`.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(rt.block_on(run(args)));
}

async fn run(args: Args) -> i32 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("rustls: {e}");
            return 1;
        }
    };
    let mut config = config
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LenientVerifier::any_certificate(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let name = match ServerName::try_from(args.name.clone()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("--name: {e}");
            return 2;
        }
    };

    let args = Arc::new(args);
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let first = Arc::new(std::sync::Mutex::new(None::<Negotiated>));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (connector, args, name) = (connector.clone(), args.clone(), name.clone());
        let (next, ok, failed) = (next.clone(), ok.clone(), failed.clone());
        let (first_error, first) = (first_error.clone(), first.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < args.requests {
                let res = tokio::time::timeout(
                    Duration::from_secs(10),
                    one(&connector, &args, &name, &first),
                )
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
                match res {
                    Ok(status) if (200..300).contains(&status) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        if slot.is_none() {
                            *slot = Some(match other {
                                Ok(status) => format!("status {status}"),
                                Err(e) => e,
                            });
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let n = first
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_default();
    println!(
        "handshakes={} ok={ok} failed={failed} seconds={secs:.3} rate={:.0} protocol={} suite={} group={}",
        ok + failed,
        (ok + failed) as f64 / secs,
        n.protocol,
        n.suite,
        n.group
    );
    if let Some(e) = first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        eprintln!("first failure: {e}");
    }
    i32::from(failed > 0)
}
