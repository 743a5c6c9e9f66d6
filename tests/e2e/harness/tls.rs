//! TLS test helpers: an rcgen test CA and its leaves, certificate folders written atomically, a
//! tokio-rustls client that trusts only that CA and reports what the server presented (leaf
//! SANs, serial, notAfter, ALPN), an HTTPS reqwest client, and a TLS upstream server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::harness::insecure_verifier::LenientVerifier;
use crate::harness::raw_http::read_to_close;
pub use crate::harness::write_file_atomic;
use crate::harness::RawResponse;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A private CA made in the test; its PEM is what the clients (and upstream `ca_file`) trust.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate signed by a [`TestCa`].
#[derive(Clone)]
pub struct Leaf {
    /// Leaf PEM followed by the CA PEM.
    pub chain_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub facts: CertFacts,
}

/// What a certificate says about itself (read back with x509-parser, so generated and served
/// certificates compare in the same format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// DNS and IP SANs, as text.
    pub sans: Vec<String>,
    /// Serial, hex.
    pub serial: String,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

impl CertFacts {
    pub fn of(der: &[u8]) -> CertFacts {
        use x509_parser::prelude::*;
        let (_, cert) = X509Certificate::from_der(der).expect("parse X.509");
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => sans.push(d.to_string()),
                    GeneralName::IPAddress(ip) if ip.len() == 4 => {
                        sans.push(format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]))
                    }
                    _ => {}
                }
            }
        }
        CertFacts {
            sans,
            serial: cert.raw_serial_as_string(),
            not_after: cert.validity().not_after.timestamp(),
        }
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "tenant-gateway e2e test CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2060, 1, 1);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names` (DNS names or IP literals) with this serial and notAfter year.
    pub fn leaf(&self, names: &[&str], serial: u64, not_after_year: i32) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after_year, 6, 15);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        let der = cert.der().to_vec();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            facts: CertFacts::of(&der),
            der,
        }
    }

    /// Trust store holding only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert.der().to_vec()))
            .expect("add CA root");
        roots
    }
}

/// Writes `<certs_dir>/<folder>/{key.pem (0600), fullchain.pem}`, each atomically, key first.
pub fn write_cert_folder(certs_dir: &Path, folder: &str, chain_pem: &str, key_pem: &str) {
    let dir = certs_dir.join(folder);
    std::fs::create_dir_all(&dir).expect("create cert folder");
    write_file_atomic(&dir.join("key.pem"), key_pem, 0o600);
    write_file_atomic(&dir.join("fullchain.pem"), chain_pem, 0o644);
}

/// [`write_cert_folder`] for a leaf.
pub fn install_leaf(certs_dir: &Path, folder: &str, leaf: &Leaf) {
    write_cert_folder(certs_dir, folder, &leaf.chain_pem, &leaf.key_pem);
}

// ---------------------------------------------------------------------------------------------
// Client

/// How the test client checks the server certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Chain to the test CA and the name asked for (what a browser does).
    Full,
    /// Chain to the test CA only; any name (to look at the default certificate for a name it
    /// does not cover).
    ChainOnly,
}

/// A client that trusts `roots` only and offers `alpn`.
pub fn client_config(roots: RootCertStore, alpn: &[&str], verify: Verify) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let mut config = match verify {
        Verify::Full => builder.with_root_certificates(roots).with_no_client_auth(),
        Verify::ChainOnly => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("webpki verifier");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LenientVerifier::any_name(
                    provider(),
                    inner,
                )))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

/// What the server presented in one handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub leaf: CertFacts,
    /// Negotiated ALPN protocol, if any.
    pub alpn: Option<String>,
}

pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// One new TCP connection + full TLS handshake to `addr`. `sni: None` connects by IP
/// (127.0.0.1), which sends no SNI.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: Option<&str>,
    config: rustls::ClientConfig,
) -> Result<(ClientStream, Handshake), String> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).map_err(|e| format!("bad SNI {n}: {e}"))?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let connect = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr} (SNI {sni:?}): {e}"))
    };
    let stream = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| format!("TLS handshake with {addr} timed out"))??;
    let (_, conn) = stream.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("server sent no certificate")?;
    let handshake = Handshake {
        leaf: CertFacts::of(leaf.as_ref()),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    };
    Ok((stream, handshake))
}

/// Handshake only: what the server presents for `sni` (the connection is closed).
pub async fn served(
    addr: SocketAddr,
    sni: Option<&str>,
    ca: &TestCa,
    verify: Verify,
) -> Result<Handshake, String> {
    let config = client_config(ca.roots(), &["http/1.1"], verify);
    let (mut stream, handshake) = tls_connect(addr, sni, config).await?;
    let _ = stream.shutdown().await;
    Ok(handshake)
}

/// Sends `head` (HTTP/1.1, must carry `Connection: close`) over a new TLS connection with ALPN
/// http/1.1 and reads the response until the server closes.
pub async fn https_raw(
    addr: SocketAddr,
    sni: Option<&str>,
    ca: &TestCa,
    verify: Verify,
    head: &str,
) -> (Handshake, RawResponse) {
    let config = client_config(ca.roots(), &["http/1.1"], verify);
    let (mut stream, handshake) = tls_connect(addr, sni, config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    stream.flush().await.expect("flush request");
    let response = read_to_close(&mut stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (handshake, response)
}

/// A reqwest client that trusts only the test CA and sends `name` to `addr` (so SNI and Host
/// are `name`). `http1_only` restricts ALPN to http/1.1; otherwise it offers h2 and http/1.1.
pub fn https_client(
    ca: &TestCa,
    name: &str,
    addr: SocketAddr,
    http1_only: bool,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA as reqwest cert"),
        )
        .resolve(name, addr)
        .timeout(Duration::from_secs(20));
    if http1_only {
        b = b.http1_only();
    }
    b.build().expect("https reqwest client")
}

// ---------------------------------------------------------------------------------------------
// TLS upstream

/// Body of every answer of [`TlsUpstream`].
pub const TLS_UPSTREAM_BODY: &str = "hello from the TLS upstream";

/// An HTTPS server on a loopback port (listener bound by the test, so no port race) that
/// answers every request with 200 and [`TLS_UPSTREAM_BODY`]; stopped on drop.
pub struct TlsUpstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    pub async fn start(leaf: &Leaf) -> TlsUpstream {
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut leaf.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("parse upstream chain");
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut leaf.key_pem.as_bytes())
            .expect("parse upstream key")
            .expect("an upstream key");
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("upstream server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS upstream");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = serve_fixed(tls).await;
                    }
                });
            }
        });
        TlsUpstream { addr, task }
    }

    /// `127.0.0.1:<port>`, as written in upstream `addrs`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers each request head on the connection (keep-alive) with the fixed 200.
async fn serve_fixed(mut tls: tokio_rustls::server::TlsStream<TcpStream>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{}",
                TLS_UPSTREAM_BODY.len(),
                TLS_UPSTREAM_BODY
            );
            tls.write_all(resp.as_bytes()).await?;
            tls.flush().await?;
        }
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
