//! The floor of the load benchmark: a bare pingora proxy that forwards everything to one
//! upstream and inserts one header — no tenants, no config, no metrics. Comparing
//! tenant-gateway with it shows what tenancy costs on top of pingora itself.
//!
//! `cargo run --release --example bare_pingora -- <listen addr> <upstream addr> [threads]
//! [--tls <addr> <cert.pem> <key.pem>]`
//!
//! The plain listener speaks HTTP/1.1. `--tls` adds pingora's own (rustls) TLS listener with
//! one static certificate (no SNI selection) and ALPN h2 + http/1.1, as the gateway's HTTPS
//! listener offers. Upstream is always plain HTTP/1.1 to `<upstream addr>`, whatever the client
//! spoke. `threads` defaults to 1.

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: bare_pingora <listen addr> <upstream addr> [threads] \
                     [--tls <addr> <cert.pem> <key.pem>]";

struct Bare {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        _: &mut (),
    ) -> Result<()> {
        req.insert_header("x-proxy", "bare-pingora")
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--tls <addr> <cert> <key>` may stand anywhere; the rest are the positional arguments.
    let tls = match args.iter().position(|a| a == "--tls") {
        Some(i) if i + 3 < args.len() => {
            let v: Vec<String> = args.drain(i..i + 4).skip(1).collect();
            Some((v[0].clone(), v[1].clone(), v[2].clone()))
        }
        Some(_) => fail(USAGE),
        None => None,
    };
    let (Some(listen), Some(upstream)) = (args.first(), args.get(1)) else {
        fail(USAGE);
    };
    let Ok(upstream) = upstream.parse() else {
        fail(&format!("bad upstream address {upstream:?}"));
    };
    let threads = match args.get(2).map(|t| t.parse()) {
        None => 1,
        Some(Ok(t)) if args.len() == 3 => t,
        _ => fail(USAGE),
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(listen);
    if let Some((addr, cert, key)) = tls {
        // The setters check the files now; TlsSettings::build would panic later in a thread.
        let mut settings = TlsSettings::intermediate(&cert, &key)
            .and_then(|mut s| {
                s.set_certificate_chain_file(&cert)?;
                s.set_private_key_file(&key)?;
                Ok(s)
            })
            .unwrap_or_else(|e| fail(&format!("TLS {cert:?} / {key:?}: {e}")));
        settings.enable_h2();
        proxy.add_tls_with_settings(&addr, None, settings);
    }
    server.add_service(proxy);
    server.run_forever()
}
