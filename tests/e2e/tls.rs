//! TLS slice: certificate selection (exact, wildcard, default), hot swap and rejection of broken
//! replacements, strict SNI (421), HTTP/2 over TLS, the plain-HTTP redirect, upstream TLS,
//! X-Forwarded-Proto and the TLS metrics. Certificates come from a CA made in the test; the
//! clients trust only that CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::echo_reply::received;
use crate::harness::tls::{
    https_client, https_raw, install_leaf, served, write_file_atomic, CertFacts, Leaf, TestCa,
    TlsUpstream, Verify, TLS_UPSTREAM_BODY,
};
use crate::harness::{eventually, free_port, raw_http, Echo, Gateway, GatewayConfig, TenantToml};

/// How long a replaced certificate may take to be served.
const SWAP_WAIT: Duration = Duration::from_secs(10);

/// The certificates of a TLS gateway: three folders under `<config dir>/certs`.
struct Certs {
    ca: TestCa,
    /// `acme.localhost/`
    acme: Leaf,
    /// `_wildcard.localhost/` (`*.localhost`)
    wildcard: Leaf,
    /// `_default/` (`default.invalid` and 127.0.0.1, so an SNI-less client by IP verifies it)
    default: Leaf,
}

/// A gateway with an HTTPS listener, tenants `acme` (custom domain `support.acme.com`) and
/// `globex` on the echo upstream, and [`Certs`] in `certs/`.
struct TlsGateway {
    gw: Gateway,
    certs: Certs,
    https_port: u16,
    _echo: Echo,
}

impl TlsGateway {
    async fn start() -> TlsGateway {
        Self::start_with(|cfg| cfg).await
    }

    async fn start_with(tweak: impl FnOnce(GatewayConfig) -> GatewayConfig) -> TlsGateway {
        Self::start_on(free_port(), tweak).await
    }

    /// HTTPS on `127.0.0.1:<https_listen_port>` (0: a port the gateway picks).
    async fn start_on(
        https_listen_port: u16,
        tweak: impl FnOnce(GatewayConfig) -> GatewayConfig,
    ) -> TlsGateway {
        let echo = Echo::start().await;
        let ca = TestCa::new();
        let certs = Certs {
            acme: ca.leaf(&["acme.localhost"], 0x1001, 2031),
            wildcard: ca.leaf(&["*.localhost"], 0x2001, 2032),
            default: ca.leaf(&["default.invalid", "127.0.0.1"], 0x3001, 2033),
            ca,
        };
        let cfg = GatewayConfig::with_echo(&echo)
            .server(&format!(
                "https_listen = [\"127.0.0.1:{https_listen_port}\"]"
            ))
            .extra("[tls]\ncerts_dir = \"certs\"")
            .tenant(TenantToml::new("acme").line("custom_domains = [\"support.acme.com\"]"))
            .tenant(TenantToml::new("globex"));
        let cfg = tweak(cfg);
        let dir = cfg.dir().join("certs");
        install_leaf(&dir, "acme.localhost", &certs.acme);
        install_leaf(&dir, "_wildcard.localhost", &certs.wildcard);
        install_leaf(&dir, "_default", &certs.default);
        let gw = cfg.start().await;
        let https_port = gw.https_addr().expect("an HTTPS listener").port();
        TlsGateway {
            gw,
            certs,
            https_port,
            _echo: echo,
        }
    }

    fn https_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.https_port).into()
    }

    fn certs_dir(&self) -> PathBuf {
        self.gw.dir().join("certs")
    }

    /// The leaf served on a new connection for `sni` (see [`verify_for`]).
    async fn leaf(&self, sni: &str) -> CertFacts {
        served(
            self.https_addr(),
            Some(sni),
            &self.certs.ca,
            verify_for(Some(sni)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .leaf
    }

    /// `GET path` over a new TLS connection (HTTP/1.1, `Connection: close`).
    async fn get(
        &self,
        sni: Option<&str>,
        host: &str,
        path: &str,
        extra_headers: &str,
    ) -> crate::harness::RawResponse {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Connection: close\r\n\r\n"
        );
        https_raw(
            self.https_addr(),
            sni,
            &self.certs.ca,
            verify_for(sni),
            &head,
        )
        .await
        .1
    }

    /// Lines of the gateway's log that report a rejected certificate.
    fn rejections(&self) -> usize {
        self.gw.logs().matches("certificate rejected").count()
    }
}

/// Full verification, except for names under the `*.localhost` wildcard: webpki (like browsers)
/// refuses a wildcard directly above a single-label name, so those clients only check the
/// chain and the test compares the served leaf itself.
fn verify_for(sni: Option<&str>) -> Verify {
    match sni {
        Some(name) if name != "acme.localhost" && name.ends_with(".localhost") => Verify::ChainOnly,
        _ => Verify::Full,
    }
}

fn echo_json(resp: &crate::harness::RawResponse) -> Value {
    assert_eq!(
        resp.status,
        200,
        "expected 200 from the echo upstream, got {}: {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    resp.json()
}

#[tokio::test]
async fn tls_serves_exact_wildcard_and_default_certificates() {
    let t = TlsGateway::start().await;
    let addr = t.https_addr();
    let ca = &t.certs.ca;

    // Exact folder.
    let acme = t.leaf("acme.localhost").await;
    assert_eq!(acme, t.certs.acme.facts, "exact name acme.localhost");
    assert_eq!(acme.sans, vec!["acme.localhost"]);

    // Wildcard folder (chain-only check: see `verify_for`).
    let globex = t.leaf("globex.localhost").await;
    assert_eq!(
        globex, t.certs.wildcard.facts,
        "wildcard for globex.localhost"
    );
    assert_eq!(globex.sans, vec!["*.localhost"]);

    // An SNI with no folder (and not under a wildcard): the default. It does not cover the
    // name, so look at it with chain-only verification.
    for sni in ["other.example", "a.b.localhost"] {
        let h = served(addr, Some(sni), ca, Verify::ChainOnly)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.leaf, t.certs.default.facts, "default for SNI {sni}");
        // And a browser-like client refuses it for that name.
        let strict = served(addr, Some(sni), ca, Verify::Full).await;
        assert!(
            strict.is_err(),
            "default certificate must not verify for {sni}"
        );
    }

    // No SNI at all (client connects by IP): the default, which covers 127.0.0.1.
    let h = served(addr, None, ca, Verify::Full)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.leaf, t.certs.default.facts, "default without SNI");
}

#[tokio::test]
async fn replaced_certificate_is_served_on_next_new_connection() {
    let t = TlsGateway::start().await;
    assert_eq!(t.leaf("acme.localhost").await, t.certs.acme.facts);

    let renewed = t.certs.ca.leaf(&["acme.localhost"], 0x1002, 2034);
    assert_ne!(renewed.facts.serial, t.certs.acme.facts.serial);
    install_leaf(&t.certs_dir(), "acme.localhost", &renewed);

    let what = format!(
        "renewed certificate (serial {}) served",
        renewed.facts.serial
    );
    eventually(SWAP_WAIT, &what, || async {
        t.leaf("acme.localhost").await == renewed.facts
    })
    .await;
    // The other folders are untouched.
    assert_eq!(t.leaf("globex.localhost").await, t.certs.wildcard.facts);
    let gauge = "gateway_certificate_expiry_timestamp_seconds{name=\"acme.localhost\"}";
    t.gw.wait_metric(gauge, renewed.facts.not_after as f64)
        .await;
}

/// Waits until the gateway logged one more rejected certificate than `before` (so the watcher
/// has seen and refused the change), then checks for ~2 s that new connections still get
/// `expected`.
async fn assert_rejected_and_kept(t: &TlsGateway, before: usize, expected: &CertFacts, what: &str) {
    eventually(
        SWAP_WAIT,
        &format!("the gateway to log the rejection of {what}"),
        || async { t.rejections() > before },
    )
    .await;
    // A negative check: nothing may change for a while, so it samples for 2 s.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let got = t.leaf("acme.localhost").await;
        assert_eq!(
            &got, expected,
            "after {what}, the previous certificate must stay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn broken_replacement_keeps_the_previous_certificate() {
    let t = TlsGateway::start().await;
    let folder = t.certs_dir().join("acme.localhost");
    let old = t.certs.acme.facts.clone();
    assert_eq!(t.leaf("acme.localhost").await, old);

    // 1. Garbage fullchain.pem.
    let before = t.rejections();
    write_file_atomic(&folder.join("fullchain.pem"), "this is not PEM\n", 0o644);
    assert_rejected_and_kept(&t, before, &old, "a garbage fullchain.pem").await;

    // 2. A valid certificate with a key that is not its own.
    let next = t.certs.ca.leaf(&["acme.localhost"], 0x1003, 2035);
    let stranger = t.certs.ca.leaf(&["acme.localhost"], 0x1004, 2035);
    let before = t.rejections();
    write_file_atomic(&folder.join("key.pem"), &stranger.key_pem, 0o600);
    write_file_atomic(&folder.join("fullchain.pem"), &next.chain_pem, 0o644);
    assert_rejected_and_kept(&t, before, &old, "a key that does not match").await;
    assert_eq!(
        t.gw.metric("gateway_certificate_expiry_timestamp_seconds{name=\"acme.localhost\"}")
            .await,
        old.not_after as f64,
        "the expiry gauge still describes the served certificate"
    );

    // 3. The matching key: now the new certificate is served (the watcher was live all along).
    write_file_atomic(&folder.join("key.pem"), &next.key_pem, 0o600);
    eventually(
        SWAP_WAIT,
        "the repaired certificate to be served",
        || async { t.leaf("acme.localhost").await == next.facts },
    )
    .await;
}

#[tokio::test]
async fn strict_sni_421_only_across_tenants() {
    let t = TlsGateway::start().await;

    // SNI of one tenant, Host of another.
    let resp = t
        .get(Some("acme.localhost"), "globex.localhost", "/", "")
        .await;
    assert_eq!(
        (resp.status, String::from_utf8_lossy(&resp.body).as_ref()),
        (
            421,
            r#"{"success":false,"error":"SNI and Host name different tenants","code":"MISDIRECTED_REQUEST"}"#
        ),
        "SNI acme.localhost + Host globex.localhost"
    );
    assert_eq!(resp.header("content-type"), Some("application/json"));

    // Two names of the same tenant: subdomain SNI, custom-domain Host.
    let resp = t
        .get(Some("acme.localhost"), "support.acme.com", "/x", "")
        .await;
    let echo = echo_json(&resp);
    assert_eq!(received(&echo, "x-tenant-id"), vec!["acme"]);

    // No SNI (by IP): the Host decides.
    let resp = t.get(None, "acme.localhost", "/y", "").await;
    let echo = echo_json(&resp);
    assert_eq!(received(&echo, "x-tenant-id"), vec!["acme"]);

    // Matching SNI and Host, for completeness.
    let resp = t
        .get(Some("globex.localhost"), "globex.localhost", "/", "")
        .await;
    assert_eq!(received(&echo_json(&resp), "x-tenant-id"), vec!["globex"]);
}

#[tokio::test]
async fn http2_and_http1_over_tls() {
    let t = TlsGateway::start().await;
    let addr = t.https_addr();
    let ca = &t.certs.ca;

    // ALPN as negotiated on the wire.
    let config = crate::harness::tls::client_config(ca.roots(), &["h2", "http/1.1"], Verify::Full);
    let (_s, h) = crate::harness::tls::tls_connect(addr, Some("acme.localhost"), config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.alpn.as_deref(), Some("h2"), "h2 offered first");
    let config = crate::harness::tls::client_config(ca.roots(), &["http/1.1"], Verify::Full);
    let (_s, h) = crate::harness::tls::tls_connect(addr, Some("acme.localhost"), config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.alpn.as_deref(), Some("http/1.1"), "only http/1.1 offered");

    // Requests over each.
    let url = format!("https://acme.localhost:{}/h2?q=1", t.https_port);
    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let client = https_client(ca, "acme.localhost", addr, http1_only);
        let resp = client.get(&url).send().await.expect("HTTPS request");
        assert_eq!(resp.version(), version);
        let status = resp.status();
        let body = resp.text().await.expect("body");
        assert_eq!(status, 200, "{version:?}: {body}");
        let echo: Value = serde_json::from_str(&body).expect("echo JSON");
        assert_eq!(echo["path"], "/h2");
        assert_eq!(received(&echo, "x-tenant-id"), vec!["acme"]);
        assert_eq!(received(&echo, "x-forwarded-proto"), vec!["https"]);
    }
}

#[tokio::test]
async fn plain_http_redirects_to_https_except_acme_challenge() {
    // A fixed port and port 0: the redirect names the port the gateway bound, also after a
    // reload.
    for https_listen_port in [free_port(), 0] {
        let t = TlsGateway::start_on(https_listen_port, |cfg| {
            cfg.server("redirect_http_to_https = true")
        })
        .await;
        assert_ne!(t.https_port, 0);
        if https_listen_port != 0 {
            assert_eq!(t.https_port, https_listen_port);
        }
        let http = t.gw.http_addr();
        let redirect = format!(
            "GET /a?b=1 HTTP/1.1\r\nHost: acme.localhost:{}\r\nConnection: close\r\n\r\n",
            http.port()
        );
        let expected = format!("https://acme.localhost:{}/a?b=1", t.https_port);
        let resp = raw_http(http, &redirect).await;
        assert_eq!(resp.status, 301, "https_listen port {https_listen_port}");
        assert_eq!(resp.header("location"), Some(expected.as_str()));

        t.gw.write_tenant(&TenantToml::new("initech"));
        let (status, body) = t.gw.reload().await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(t.gw.metric("gateway_tenants").await, 3.0, "reloaded");
        let resp = raw_http(http, &redirect).await;
        assert_eq!(
            resp.status, 301,
            "after reload, https_listen port {https_listen_port}"
        );
        assert_eq!(
            resp.header("location"),
            Some(expected.as_str()),
            "after reload"
        );

        let resp = raw_http(
            http,
            "GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: acme.localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_ne!(resp.status, 301, "ACME http-01 paths are never redirected");
        assert_eq!(resp.header("location"), None);

        // TLS requests are not redirected.
        let resp = t
            .get(Some("acme.localhost"), "acme.localhost", "/a", "")
            .await;
        assert_eq!(resp.status, 200);
    }
}

#[tokio::test]
async fn upstream_pool_over_tls() {
    let ca = TestCa::new();
    let upstream = TlsUpstream::start(&ca.leaf(&["upstream.test"], 0x4001, 2036)).await;
    let echo = Echo::start().await;
    let cfg = GatewayConfig::with_echo(&echo);
    let ca_path = cfg.dir().join("test-ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write test CA");
    let ca_file = format!("ca_file = \"{}\"", ca_path.display());
    let gw = cfg
        .pool(
            "tls_good",
            &[&upstream.addr()],
            &["tls = true", "sni = \"upstream.test\"", &ca_file],
        )
        .pool(
            "tls_wrong_name",
            &[&upstream.addr()],
            &["tls = true", "sni = \"wrong.test\"", &ca_file],
        )
        .pool(
            "tls_relative_ca",
            &[&upstream.addr()],
            &[
                "tls = true",
                "sni = \"upstream.test\"",
                "ca_file = \"test-ca.pem\"",
            ],
        )
        .tenant(TenantToml::new("good").pool("tls_good"))
        .tenant(TenantToml::new("wrongname").pool("tls_wrong_name"))
        .tenant(TenantToml::new("relative").pool("tls_relative_ca"))
        .start()
        .await;

    for host in ["good.localhost", "relative.localhost"] {
        let resp = gw.get(host, "/").send().await.expect("request");
        let status = resp.status();
        let body = resp.text().await.expect("body");
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, TLS_UPSTREAM_BODY),
            "{host}"
        );
    }

    let resp = gw
        .get("wrongname.localhost", "/")
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let body = resp.text().await.expect("body");
    assert_eq!(
        status, 502,
        "upstream certificate not valid for sni wrong.test: {body}"
    );
    assert!(body.contains("\"code\":\"UPSTREAM_UNAVAILABLE\""), "{body}");
}

#[tokio::test]
async fn x_forwarded_proto_is_https_for_tls_requests() {
    let t = TlsGateway::start().await;
    // A client-sent value is replaced, not passed on.
    let resp = t
        .get(
            Some("acme.localhost"),
            "acme.localhost",
            "/p",
            "X-Forwarded-Proto: http\r\n",
        )
        .await;
    assert_eq!(
        received(&echo_json(&resp), "x-forwarded-proto"),
        vec!["https"]
    );

    let resp =
        t.gw.get("acme.localhost", "/p")
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .expect("plain request");
    let echo: Value = resp.json().await.expect("echo JSON");
    assert_eq!(received(&echo, "x-forwarded-proto"), vec!["http"]);
}

#[tokio::test]
async fn tls_metrics_handshakes_certificates_expiry() {
    let t = TlsGateway::start().await;
    let success = "gateway_tls_handshakes_total{result=\"success\"}";
    let before = t.gw.metric(success).await;
    for sni in [
        "acme.localhost",
        "globex.localhost",
        "acme.localhost",
        "globex.localhost",
        "acme.localhost",
    ] {
        t.leaf(sni).await;
    }
    t.gw.wait_metric(success, before + 5.0).await;

    t.gw.wait_metric("gateway_certificates", 3.0).await;
    for (name, leaf) in [
        ("acme.localhost", &t.certs.acme),
        ("_wildcard.localhost", &t.certs.wildcard),
        ("_default", &t.certs.default),
    ] {
        t.gw.wait_metric(
            &format!("gateway_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}"),
            leaf.facts.not_after as f64,
        )
        .await;
    }
    // The notAfter chosen at generation (2031-06-15T00:00:00Z), not just what the gateway read.
    assert_eq!(t.certs.acme.facts.not_after, 1_939_248_000);
}
