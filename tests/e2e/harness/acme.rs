//! ACME test helpers: a real Pebble CA (with its own HTTPS certificate from an rcgen test CA)
//! and pebble-challtestsrv as the DNS server both Pebble and the gateway ask; rustls clients
//! that trust Pebble's issuing root or nothing at all; `tenant-gateway domain token`.
//!
//! Missing binaries are a loud panic with the install hint, never a skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use crate::harness::insecure_verifier::LenientVerifier;
use crate::harness::raw_http::read_to_close;
use crate::harness::tls::{client_config, tls_connect, Handshake, TestCa, Verify};
use crate::harness::{
    accepts, free_port, start_on_picked_ports, temp_dir, Process, RawResponse, BIN,
};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Panics unless `binary` is installed (the ACME tests need the real thing).
fn require(binary: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(binary);
        if p.is_file() {
            return p;
        }
    }
    panic!("{binary} not found: {PEBBLE_INSTALL}");
}

const PEBBLE_INSTALL: &str = "the ACME tests run a real ACME CA. Install it with \
    `bash scripts/deps.sh test` (Debian package `pebble`: apt-get install pebble)";

// ---------------------------------------------------------------------------------------------
// pebble-challtestsrv

/// `pebble-challtestsrv` serving only mock DNS (every A query → 127.0.0.1, TXT records as set
/// through its management API), killed on drop.
pub struct ChallTestSrv {
    process: Process,
    dns_port: u16,
    mgmt_port: u16,
    _dir: TempDir,
    client: reqwest::Client,
}

impl ChallTestSrv {
    pub async fn start() -> ChallTestSrv {
        let bin = require("pebble-challtestsrv");
        start_on_picked_ports("pebble-challtestsrv", || async {
            let dir = temp_dir("tg-e2e-challtestsrv-");
            let (dns_port, mgmt_port) = (free_port(), free_port());
            let mut cmd = Command::new(&bin);
            cmd.args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{mgmt_port}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]);
            let log = dir.path().join("challtestsrv.log");
            let mut process = Process::spawn("pebble-challtestsrv", cmd, &log, PEBBLE_INSTALL);
            let mgmt: SocketAddr = ([127, 0, 0, 1], mgmt_port).into();
            let dns: SocketAddr = ([127, 0, 0, 1], dns_port).into();
            // The DNS server (TCP side) and the management API both accept: ready.
            process
                .wait_ready(START_TIMEOUT, || async {
                    (accepts(mgmt).await && accepts(dns).await).then_some(())
                })
                .await
                .ok()?;
            Some(ChallTestSrv {
                process,
                dns_port,
                mgmt_port,
                _dir: dir,
                client: crate::harness::client(),
            })
        })
        .await
    }

    /// `127.0.0.1:<dns port>`, for `acme.dns_servers` and `pebble -dnsserver`.
    pub fn dns_addr(&self) -> String {
        format!("127.0.0.1:{}", self.dns_port)
    }

    async fn post(&self, path: &str, body: serde_json::Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.mgmt_port);
        let resp = self
            .client
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert!(
            resp.status().is_success(),
            "POST {url} {body}: {}",
            resp.status()
        );
    }

    /// Serves a TXT record `value` for `host` (a fully qualified name with the final dot).
    pub async fn set_txt(&self, host: &str, value: &str) {
        self.post(
            "/set-txt",
            serde_json::json!({"host": host, "value": value}),
        )
        .await;
    }

    /// Removes every TXT record of `host`.
    pub async fn clear_txt(&self, host: &str) {
        self.post("/clear-txt", serde_json::json!({"host": host}))
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Pebble

/// The files of Pebble's own HTTPS identity: an rcgen test CA and a leaf for `localhost` and
/// 127.0.0.1 that is not a CA (webpki rejects a CA certificate used as end entity).
pub struct PebbleTls {
    ca: TestCa,
    dir: TempDir,
}

impl PebbleTls {
    pub fn new() -> PebbleTls {
        let ca = TestCa::new();
        let leaf = ca.leaf(&["localhost", "127.0.0.1"], 0x5eb1, 2055);
        let dir = temp_dir("tg-e2e-pebble-tls-");
        std::fs::write(dir.path().join("cert.pem"), &leaf.chain_pem).expect("pebble cert");
        std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).expect("pebble key");
        PebbleTls { ca, dir }
    }

    /// PEM of the CA that signed Pebble's HTTPS certificate (the gateway's `acme.ca_roots`).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// A reqwest client trusting only that CA.
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).expect("CA PEM"),
            )
            .timeout(Duration::from_secs(10))
            .build()
            .expect("pebble client")
    }
}

/// Ports of one Pebble: the ACME API and the management API (issuing roots).
#[derive(Debug, Clone, Copy)]
pub struct PebblePorts {
    pub acme: u16,
    pub mgmt: u16,
}

impl PebblePorts {
    /// Two ports that were free a moment ago.
    pub fn pick() -> PebblePorts {
        PebblePorts {
            acme: free_port(),
            mgmt: free_port(),
        }
    }

    /// `https://127.0.0.1:<acme>/dir`, the gateway's `acme.directory_url`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme)
    }
}

/// A running Pebble, killed on drop. Each start makes a new issuing hierarchy (and forgets
/// every account), so fetch the root again after a restart.
pub struct Pebble {
    process: Option<Process>,
    ports: PebblePorts,
    http_port: u16,
    dns: String,
    dir: TempDir,
    client: reqwest::Client,
}

impl Pebble {
    /// Starts Pebble on `ports`, validating http-01 against 127.0.0.1:`http_port` (the gateway's
    /// plain listener) and resolving names through `dns` (challtestsrv).
    pub async fn start(tls: &PebbleTls, ports: PebblePorts, http_port: u16, dns: &str) -> Pebble {
        require("pebble");
        let dir = temp_dir("tg-e2e-pebble-");
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{}", ports.acme),
            "managementListenAddress": format!("127.0.0.1:{}", ports.mgmt),
            "certificate": tls.cert_file(),
            "privateKey": tls.key_file(),
            "httpPort": http_port,
            // Nothing uses tls-alpn-01 here; a port nobody listens on.
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(
            dir.path().join("pebble-config.json"),
            serde_json::to_vec_pretty(&config).expect("pebble config JSON"),
        )
        .expect("write pebble config");
        let mut pebble = Pebble {
            process: None,
            ports,
            http_port,
            dns: dns.to_string(),
            dir,
            client: tls.client(),
        };
        pebble.spawn().await;
        pebble
    }

    async fn spawn(&mut self) {
        assert!(self.process.is_none(), "pebble is already running");
        let mut cmd = Command::new(require("pebble"));
        cmd.arg("-config")
            .arg(self.dir.path().join("pebble-config.json"))
            .args(["-dnsserver", &self.dns])
            // Validate at once, never reject a nonce at random (instant-acme would retry, but
            // the tests count orders), and never pretend a challenge is valid.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID");
        let log = self.dir.path().join("pebble.log");
        let mut process = Process::spawn("pebble", cmd, &log, PEBBLE_INSTALL);
        let url = self.ports.directory_url();
        let client = &self.client;
        let ready = process
            .wait_ready(START_TIMEOUT, || async {
                let resp = client.get(&url).send().await.ok()?;
                (resp.status() == 200).then_some(())
            })
            .await;
        assert!(
            ready.is_ok(),
            "pebble exited at start (its ports {:?} may have been taken)\n{}",
            self.ports,
            process.logs()
        );
        self.process = Some(process);
    }

    /// Kills Pebble (its state is gone; [`restart`](Self::restart) makes a new CA).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts Pebble again on the same ports.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub fn ports(&self) -> PebblePorts {
        self.ports
    }

    /// PEM of the root that issues the certificates (`GET /roots/0` on the management API).
    pub async fn root_pem(&self) -> String {
        let url = format!("https://127.0.0.1:{}/roots/0", self.ports.mgmt);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status(), 200, "GET {url}");
        resp.text().await.expect("root PEM")
    }

    /// A trust store holding only Pebble's issuing root.
    pub async fn roots(&self) -> RootCertStore {
        roots_from_pem(&self.root_pem().await)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// A trust store of every certificate in `pem`.
pub fn roots_from_pem(pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
        roots.add(cert.expect("root PEM")).expect("add root");
    }
    assert!(!roots.is_empty(), "no certificate in root PEM:\n{pem}");
    roots
}

// ---------------------------------------------------------------------------------------------
// TLS clients

/// Handshake only, fully verified against `roots` for `sni`.
pub async fn handshake(
    addr: SocketAddr,
    sni: &str,
    roots: &RootCertStore,
) -> Result<Handshake, String> {
    let config = client_config(roots.clone(), &["http/1.1"], Verify::Full);
    let (mut stream, hs) = tls_connect(addr, Some(sni), config).await?;
    let _ = stream.shutdown().await;
    Ok(hs)
}

/// `GET path` with Host = SNI = `name` over a new TLS connection verified against `roots`.
pub async fn https_get(
    addr: SocketAddr,
    name: &str,
    roots: &RootCertStore,
    path: &str,
) -> Result<(Handshake, RawResponse), String> {
    let config = client_config(roots.clone(), &["http/1.1"], Verify::Full);
    let (mut stream, hs) = tls_connect(addr, Some(name), config).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    Ok((hs, read_to_close(&mut stream).await?))
}

/// What the server presents for `sni`, unverified: (facts of the leaf, leaf is self-signed).
pub async fn presented(addr: SocketAddr, sni: &str) -> Result<(Handshake, bool), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LenientVerifier::any_certificate(provider)))
        .with_no_client_auth();
    let (mut stream, hs) = tls_connect(addr, Some(sni), config).await?;
    let self_signed = {
        use x509_parser::prelude::*;
        let (_, conn) = stream.get_ref();
        let der = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no certificate")?;
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
        cert.issuer() == cert.subject()
    };
    let _ = stream.shutdown().await;
    Ok((hs, self_signed))
}

// ---------------------------------------------------------------------------------------------
// CLI

/// `tenant-gateway domain token --config <config> --tenant <tenant> --domain <domain>` with the
/// verification secret in `GATEWAY_DOMAIN_SECRET` (or unset when `None`).
pub fn domain_token(config: &Path, tenant: &str, domain: &str, secret: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["domain", "token", "--config"])
        .arg(config)
        .args(["--tenant", tenant, "--domain", domain])
        .env_remove("GATEWAY_DOMAIN_SECRET")
        .stdin(Stdio::null());
    if let Some(s) = secret {
        cmd.env("GATEWAY_DOMAIN_SECRET", s);
    }
    cmd.output().expect("run tenant-gateway domain token")
}

/// The TXT value from `domain token` output (`… IN TXT "<value>"`).
pub fn txt_value(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.contains(" IN TXT "))
        .unwrap_or_else(|| panic!("no TXT line in domain token output:\n{stdout}"));
    line.rsplit_once(" IN TXT ")
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .expect("TXT value")
}
