//! ACME slice against a real CA: Pebble issues over http-01 answered by the gateway's plain
//! listener, pebble-challtestsrv is the DNS server of both Pebble (A records → 127.0.0.1) and
//! the gateway (custom-domain TXT records). Covers subdomain issuance, the custom-domain
//! lifecycle (pending → verified → active → failed), two nodes sharing Redis, backoff while
//! the CA is down, renewal forced by `renew_before_ratio`, and `tenant-gateway domain token`.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustls::RootCertStore;
use serde_json::Value;

use crate::admin_call::admin;
use crate::harness::acme::{
    domain_token, handshake, https_get, presented, txt_value, ChallTestSrv, Pebble, PebblePorts,
    PebbleTls,
};
use crate::harness::quota::unix_now_f64;
use crate::harness::{
    eventually, find_sample, free_port, listens_on, Echo, Gateway, GatewayConfig, Redis,
    TenantToml, ADMIN_TOKEN,
};

/// The verification secret of every gateway here (`GATEWAY_DOMAIN_SECRET`).
const SECRET: &str = "e2e-domain-verification-secret";
/// `acme.ca_roots` entry, relative to the config dir: the CA of Pebble's own HTTPS certificate.
const CA_FILE: &str = "pebble-https-ca.pem";
/// How long issuance may take (Pebble answers in well under a second; the machine may be busy).
const ISSUE_WAIT: Duration = Duration::from_secs(60);
const SUCCESS: &str = r#"gateway_acme_orders_total{result="success"}"#;
const FAILURE: &str = r#"gateway_acme_orders_total{result="failure"}"#;

/// The `[acme]` table: fast defaults for tests, keys overridable one by one.
#[derive(Clone)]
struct AcmeToml {
    keys: Vec<(String, String)>,
}

impl AcmeToml {
    fn new(ports: PebblePorts, dns: &str) -> Self {
        let mut t = Self { keys: vec![] };
        for (k, v) in [
            ("enabled", "true".to_string()),
            ("issue_for_subdomains", "true".to_string()),
            ("directory_url", format!("\"{}\"", ports.directory_url())),
            ("ca_roots", format!("[\"{CA_FILE}\"]")),
            ("dns_servers", format!("[\"{dns}\"]")),
            ("check_interval", "\"1s\"".to_string()),
            ("retry_base", "\"1s\"".to_string()),
            ("retry_max", "\"2s\"".to_string()),
        ] {
            t = t.set(k, &v);
        }
        t
    }

    /// Sets `key = <raw TOML value>`.
    fn set(mut self, key: &str, raw: &str) -> Self {
        self.keys.retain(|(k, _)| k != key);
        self.keys.push((key.into(), raw.into()));
        self
    }

    fn render(&self) -> String {
        let mut s = String::from("[acme]\n");
        for (k, v) in &self.keys {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s
    }
}

/// A gateway config with an HTTPS listener, `certs_dir = "certs"`, the `[acme]` table, the
/// verification secret, and Pebble's HTTPS CA written next to gateway.toml.
fn acme_gateway(echo: &Echo, tls: &PebbleTls, acme: &AcmeToml, https_port: u16) -> GatewayConfig {
    let cfg = GatewayConfig::with_echo(echo)
        .server(&format!("https_listen = [\"127.0.0.1:{https_port}\"]"))
        .extra("[tls]\ncerts_dir = \"certs\"")
        .extra(&acme.render())
        .env("GATEWAY_DOMAIN_SECRET", SECRET);
    std::fs::write(cfg.dir().join(CA_FILE), tls.ca_pem()).expect("write Pebble's HTTPS CA");
    cfg
}

/// What an ACME test runs besides its gateways: the echo upstream, the challenge test server
/// (the DNS Pebble asks), and Pebble's TLS files and reserved ports. Pebble itself starts once
/// a gateway's plain port is known ([`Ca::pebble`]).
struct Ca {
    echo: Echo,
    chall: ChallTestSrv,
    tls: PebbleTls,
    ports: PebblePorts,
}

impl Ca {
    async fn start() -> Ca {
        let echo = Echo::start().await;
        let chall = ChallTestSrv::start().await;
        Ca {
            echo,
            chall,
            tls: PebbleTls::new(),
            ports: PebblePorts::pick(),
        }
    }

    /// The `[acme]` table pointing at this Pebble and DNS.
    fn acme_toml(&self) -> AcmeToml {
        AcmeToml::new(self.ports, &self.chall.dns_addr())
    }

    /// [`acme_gateway`] on this echo and Pebble's CA.
    fn gateway(&self, acme: &AcmeToml, https_port: u16) -> GatewayConfig {
        acme_gateway(&self.echo, &self.tls, acme, https_port)
    }

    /// A running [`Ca::gateway`] with the one tenant `acme`.
    async fn start_for_acme(&self, acme: &AcmeToml, https_port: u16) -> Gateway {
        self.gateway(acme, https_port)
            .tenant(TenantToml::new("acme"))
            .start()
            .await
    }

    /// Starts Pebble, validating http-01 on the plain port of `gw`.
    async fn pebble(&self, gw: &Gateway) -> Pebble {
        Pebble::start(
            &self.tls,
            self.ports,
            gw.http_addr().port(),
            &self.chall.dns_addr(),
        )
        .await
    }
}

fn https_addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The process is alive (not a zombie) and still holds its HTTPS port.
fn assert_alive(gw: &Gateway, https_port: u16) {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", gw.pid()))
        .unwrap_or_else(|e| panic!("gateway process {} is gone: {e}", gw.pid()));
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    assert_ne!(state, "Z", "gateway process exited\n{}", gw.logs());
    assert!(
        listens_on(gw.pid(), https_port),
        "gateway no longer listens on its HTTPS port\n{}",
        gw.logs()
    );
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
}

/// Waits until a fully verified handshake for `sni` succeeds (the CA-issued certificate is
/// served) and returns the serial served.
async fn wait_issued(addr: SocketAddr, sni: &str, roots: &RootCertStore) -> String {
    let what = format!("a certificate trusted by Pebble's root for {sni} on {addr}");
    let hs = eventually(ISSUE_WAIT, &what, || async {
        handshake(addr, sni, roots).await.ok()
    })
    .await;
    assert_eq!(
        hs.leaf.sans,
        vec![sni.to_string()],
        "SANs of the issued leaf"
    );
    hs.leaf.serial
}

/// Waits until `gw` counted at least `n` successful orders: the counter moves after the
/// certificate is installed and published, so a handshake may see the certificate first.
async fn wait_orders(gw: &Gateway, n: f64) {
    let what = format!("{n} successful orders counted");
    eventually(Duration::from_secs(5), &what, || async {
        gw.metric(SUCCESS).await >= n
    })
    .await;
}

/// The gateway's access log shows an http-01 challenge answered with 200.
fn answered_challenge(gw: &Gateway) -> bool {
    gw.logs().lines().any(|l| {
        l.contains("\"path\":\"/.well-known/acme-challenge/") && l.contains("\"status\":200")
    })
}

/// The body's `code` of a gateway error response.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not a gateway error: {}>", String::from_utf8_lossy(body)))
}

/// (status, error code or "") of `GET /` with this Host on the plain listener.
async fn plain_get(gw: &Gateway, host: &str) -> (u16, String) {
    let resp = gw.get(host, "/").send().await.expect("request to gateway");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    let code = if status == 200 {
        String::new()
    } else {
        error_code(&body)
    };
    (status, code)
}

/// One domain of `GET /admin/v1/domains`.
async fn admin_domain(gw: &Gateway, domain: &str) -> Value {
    let resp = gw
        .admin(reqwest::Method::GET, "/admin/v1/domains", Some(ADMIN_TOKEN))
        .send()
        .await
        .expect("GET /admin/v1/domains");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("domains JSON");
    assert_eq!(body["acme_enabled"], true, "{body}");
    body["domains"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["domain"] == domain).cloned())
        .unwrap_or_else(|| panic!("{domain} not in {body}"))
}

/// `POST /admin/v1/domains/{domain}/verify`: (status, body).
async fn verify(gw: &Gateway, domain: &str) -> (u16, Value) {
    let path = format!("/admin/v1/domains/{domain}/verify");
    admin(gw, reqwest::Method::POST, &path, None).await
}

// ---------------------------------------------------------------------------------------------
// (a) subdomain issuance

#[tokio::test]
async fn subdomain_gets_a_pebble_certificate_over_http01() {
    let started = Instant::now();
    let ca = Ca::start().await;
    let https_port = free_port();
    let acme = ca.acme_toml();
    let gw = ca.start_for_acme(&acme, https_port).await;
    // Pebble validates http-01 on the gateway's plain port, known once the gateway runs.
    let pebble = ca.pebble(&gw).await;
    let roots = pebble.roots().await;

    let serial = wait_issued(https_addr(https_port), "acme.localhost", &roots).await;
    let (hs, resp) = https_get(https_addr(https_port), "acme.localhost", &roots, "/")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hs.leaf.serial, serial);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    // On disk: the certificate folder (key 0600) and the ACME account (0600).
    let certs = gw.dir().join("certs");
    let chain = std::fs::read_to_string(certs.join("acme.localhost/fullchain.pem"))
        .expect("certs/acme.localhost/fullchain.pem");
    let leaf = rustls_pemfile::certs(&mut chain.as_bytes())
        .next()
        .expect("a certificate in fullchain.pem")
        .expect("PEM");
    assert_eq!(
        crate::harness::tls::CertFacts::of(leaf.as_ref()).serial,
        serial,
        "fullchain.pem holds the served certificate"
    );
    assert_eq!(mode(&certs.join("acme.localhost/key.pem")), 0o600);
    assert_eq!(mode(&certs.join("acme/account.json")), 0o600);
    let account: Value = serde_json::from_slice(
        &std::fs::read(certs.join("acme/account.json")).expect("account.json"),
    )
    .expect("account.json is JSON");
    assert_eq!(account["directory_url"], ca.ports.directory_url());

    wait_orders(&gw, 1.0).await;
    // The CA really validated over http-01 (no shortcut such as PEBBLE_VA_ALWAYS_VALID), and
    // the gateway's plain listener answered.
    assert!(
        pebble.logs().contains("validate w/ HTTP"),
        "pebble log shows no http-01 validation:\n{}",
        pebble.logs()
    );
    assert!(answered_challenge(&gw), "{}", gw.logs());
    eprintln!("(a) took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// (b) custom domain lifecycle

#[tokio::test]
async fn custom_domain_pending_verified_active_failed() {
    const DOMAIN: &str = "shop.example.com";
    const TXT_HOST: &str = "_tenant-gateway.shop.example.com.";
    let grace = Duration::from_secs(3);
    let ca = Ca::start().await;
    let https_port = free_port();
    let acme = ca
        .acme_toml()
        .set("issue_for_subdomains", "false")
        .set("domain_recheck_interval", "\"1s\"")
        .set("domain_failure_grace", &format!("\"{}s\"", grace.as_secs()));
    let gw = ca
        .gateway(&acme, https_port)
        .tenant(TenantToml::new("acme").line(&format!("custom_domains = [\"{DOMAIN}\"]")))
        .start()
        .await;
    let pebble = ca.pebble(&gw).await;
    let roots = pebble.roots().await;
    let https = https_addr(https_port);

    // Pending: unrouted, and it stays so over several ACME ticks (check_interval 1s).
    assert_eq!(
        plain_get(&gw, DOMAIN).await,
        (404, "TENANT_NOT_FOUND".into())
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rec = admin_domain(&gw, DOMAIN).await;
    assert_eq!(rec["state"], "pending", "{rec}");
    assert_eq!(rec["tenant"], "acme", "{rec}");
    assert!(rec["certificate_expiry"].is_null(), "{rec}");
    assert_eq!(
        plain_get(&gw, DOMAIN).await,
        (404, "TENANT_NOT_FOUND".into())
    );
    // Verifying without the record keeps it pending, with the reason.
    let (status, body) = verify(&gw, DOMAIN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["domain"]["state"], "pending", "{body}");
    assert!(body["domain"]["error"].is_string(), "{body}");
    // No certificate was ordered for an unverified domain.
    assert!(handshake(https, DOMAIN, &roots).await.is_err());
    assert_eq!(gw.metric(SUCCESS).await, 0.0);

    // The operator's record, exactly as `tenant-gateway domain token` prints it.
    let out = domain_token(&gw.dir().join("gateway.toml"), "acme", DOMAIN, Some(SECRET));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{TXT_HOST} 300 IN TXT \"")),
        "{stdout}"
    );
    let value = txt_value(&stdout);
    ca.chall.set_txt(TXT_HOST, &value).await;

    // Verify now: verified (or already active if the loop raced ahead), and it routes at once.
    let (status, body) = verify(&gw, DOMAIN).await;
    assert_eq!(status, 200, "{body}");
    let state = body["domain"]["state"].as_str().unwrap_or_default();
    assert!(
        state == "verified" || state == "active",
        "expected verified after POST verify: {body}"
    );
    assert!(body["domain"]["verified_at"].is_string(), "{body}");
    assert_eq!(plain_get(&gw, DOMAIN).await, (200, String::new()));

    // Certificate issued and served for SNI shop.example.com, trusted by Pebble's root.
    let serial = wait_issued(https, DOMAIN, &roots).await;
    let (hs, resp) = https_get(https, DOMAIN, &roots, "/")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hs.leaf.serial, serial);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    eventually(Duration::from_secs(10), "domain state active", || async {
        admin_domain(&gw, DOMAIN).await["state"] == "active"
    })
    .await;
    let rec = admin_domain(&gw, DOMAIN).await;
    assert!(
        rec["certificate_expiry"]
            .as_str()
            .is_some_and(|s| s.starts_with("20")),
        "{rec}"
    );
    wait_orders(&gw, 1.0).await;

    // The record disappears: failed at the next recheck, routing through the grace period,
    // then 404 again.
    ca.chall.clear_txt(TXT_HOST).await;
    eventually(Duration::from_secs(15), "domain state failed", || async {
        admin_domain(&gw, DOMAIN).await["state"] == "failed"
    })
    .await;
    let failed_at = Instant::now();
    let rec = admin_domain(&gw, DOMAIN).await;
    assert!(rec["failing_since"].is_string(), "{rec}");
    assert!(rec["error"].is_string(), "{rec}");
    assert_eq!(
        plain_get(&gw, DOMAIN).await,
        (200, String::new()),
        "a failed domain keeps routing during domain_failure_grace"
    );
    eventually(
        grace + Duration::from_secs(10),
        "failed domain stops routing",
        || async { plain_get(&gw, DOMAIN).await.0 == 404 },
    )
    .await;
    eprintln!(
        "(b) failed domain stopped routing {:?} after it was seen failed (grace {grace:?})",
        failed_at.elapsed()
    );
    assert_eq!(
        plain_get(&gw, DOMAIN).await,
        (404, "TENANT_NOT_FOUND".into())
    );
}

// ---------------------------------------------------------------------------------------------
// (c) two nodes, one Redis

/// What this proves. Pebble has one http-01 port, and it is node A's. Node A starts with no
/// tenant, so it owns no name: it never orders and never holds a token in memory. Node B owns
/// `acme.localhost` and is the only node that can order it. B's order succeeds only if A answers
/// Pebble's request for B's token, which A can only get from Redis (B's plain port is never
/// contacted). Then A gets the tenant too: it must adopt the certificate B published instead of
/// ordering (orders across both nodes stay at 1, same serial on both). Finally both nodes get a
/// second tenant at the same moment: the Redis lock lets exactly one of them order it.
#[tokio::test]
async fn two_nodes_share_tokens_lock_and_certificates_through_redis() {
    let redis = Redis::start().await;
    let ca = Ca::start().await;
    let acme = ca.acme_toml();
    let quota = format!(
        "[quota]\nbackend = \"redis\"\nredis_url = \"{}\"",
        redis.url()
    );
    let (https_a, https_b) = (free_port(), free_port());
    let a = ca.gateway(&acme, https_a).extra(&quota).start().await;
    let pebble = ca.pebble(&a).await;
    let b = ca
        .gateway(&acme, https_b)
        .extra(&quota)
        .tenant(TenantToml::new("acme"))
        .start()
        .await;
    let roots = pebble.roots().await;

    let serial = wait_issued(https_addr(https_b), "acme.localhost", &roots).await;
    wait_orders(&b, 1.0).await;
    assert_eq!(b.metric(SUCCESS).await, 1.0, "B ordered once");
    assert_eq!(a.metric(SUCCESS).await, 0.0, "A ordered nothing");
    assert_eq!(b.metric(FAILURE).await, 0.0, "B's order never failed");
    assert_eq!(
        a.metric(FAILURE).await,
        0.0,
        "A attempted nothing:\n{}",
        a.logs()
    );
    assert!(
        answered_challenge(&a),
        "A answered B's challenge\n{}",
        a.logs()
    );
    assert!(
        !b.logs().contains("/.well-known/acme-challenge/"),
        "{}",
        b.logs()
    );

    // A gets the tenant: it adopts B's certificate.
    a.write_tenant(&TenantToml::new("acme"));
    let serial_a = wait_issued(https_addr(https_a), "acme.localhost", &roots).await;
    assert_eq!(
        serial_a, serial,
        "both nodes serve the one issued certificate"
    );
    for (gw, port) in [(&a, https_a), (&b, https_b)] {
        let (hs, resp) = https_get(https_addr(port), "acme.localhost", &roots, "/")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hs.leaf.serial, serial);
        assert_eq!(resp.status, 200, "{}", gw.logs());
    }
    // A few more ticks: still exactly one order overall.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.metric(SUCCESS).await + b.metric(SUCCESS).await, 1.0);
    assert!(a.dir().join("certs/acme.localhost/key.pem").is_file());

    // Both nodes get tenant globex at once: one order between them (the issuance lock), the
    // other node adopts; the same certificate on both.
    a.write_tenant(&TenantToml::new("globex"));
    b.write_tenant(&TenantToml::new("globex"));
    let ga = wait_issued(https_addr(https_a), "globex.localhost", &roots).await;
    let gb = wait_issued(https_addr(https_b), "globex.localhost", &roots).await;
    assert_eq!(ga, gb, "both nodes serve the same globex certificate");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let total = a.metric(SUCCESS).await + b.metric(SUCCESS).await;
    assert_eq!(
        total,
        2.0,
        "one order per name across both nodes\nA:\n{}\nB:\n{}",
        a.logs(),
        b.logs()
    );
}

// ---------------------------------------------------------------------------------------------
// (d) CA unreachable → backoff → CA back

#[tokio::test]
async fn ca_down_backs_off_keeps_default_cert_then_recovers() {
    // Pebble's ports are reserved but nothing listens there yet.
    let ca = Ca::start().await;
    let https_port = free_port();
    let https = https_addr(https_port);
    let acme = ca
        .acme_toml()
        // Long enough that "the next attempt is in the future" holds with seconds to spare
        // on a busy machine, short enough that the CA coming back is noticed soon.
        .set("retry_base", "\"4s\"")
        .set("retry_max", "\"4s\"");
    let gw = ca.start_for_acme(&acme, https_port).await;
    let next_attempt = r#"gateway_acme_next_attempt_timestamp_seconds{name="acme.localhost"}"#;

    // Failures are counted and the next attempt is scheduled in the future, more than once
    // (it retries, with backoff, instead of giving up or spinning).
    for at_least in [1.0, 2.0] {
        eventually(
            Duration::from_secs(20),
            &format!("{at_least} failed orders"),
            || async { gw.metric(FAILURE).await >= at_least },
        )
        .await;
        let text = gw.metrics().await;
        let next =
            find_sample(&text, next_attempt).unwrap_or_else(|| panic!("no {next_attempt}\n{text}"));
        let now = unix_now_f64();
        assert!(
            next > now,
            "next attempt {next} is not in the future (now {now})"
        );
        assert_alive(&gw, https_port);
    }
    assert_eq!(gw.metric(SUCCESS).await, 0.0);
    let failures = gw.metric(FAILURE).await;
    assert!(
        failures < 6.0,
        "{failures} failures in a few seconds: no backoff"
    );

    // The self-signed default still serves acme.localhost.
    let (hs, self_signed) = presented(https, "acme.localhost")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        self_signed,
        "expected the self-signed default: {:?}",
        hs.leaf
    );
    assert!(
        hs.leaf.sans.contains(&"*.localhost".to_string()),
        "{:?}",
        hs.leaf
    );

    // The CA comes up on the same port: issuance succeeds without a restart.
    let pid = gw.pid();
    let pebble = ca.pebble(&gw).await;
    let roots = pebble.roots().await;
    wait_issued(https, "acme.localhost", &roots).await;
    assert_eq!(gw.pid(), pid);
    assert_alive(&gw, https_port);
    wait_orders(&gw, 1.0).await;
    let (hs, self_signed) = presented(https, "acme.localhost")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!self_signed, "{:?}", hs.leaf);
}

// ---------------------------------------------------------------------------------------------
// (e) renewal

#[tokio::test]
async fn renewal_forced_by_ratio_serves_a_new_serial() {
    let ca = Ca::start().await;
    let https_port = free_port();
    let https = https_addr(https_port);
    // Pebble certificates live ~5 years: renewing 0.999999999 of the lifetime before expiry
    // makes every certificate due about a second after issuance.
    let acme = ca.acme_toml().set("renew_before_ratio", "0.999999999");
    let gw = ca.start_for_acme(&acme, https_port).await;
    let pid = gw.pid();
    let pebble = ca.pebble(&gw).await;
    let roots = pebble.roots().await;

    let first = wait_issued(https, "acme.localhost", &roots).await;
    let what = format!("a serial other than {first} served");
    let renewed = eventually(Duration::from_secs(20), &what, || async {
        let hs = handshake(https, "acme.localhost", &roots)
            .await
            .unwrap_or_else(|e| panic!("renewal broke TLS: {e}"));
        (hs.leaf.serial != first).then_some(hs.leaf.serial)
    })
    .await;
    assert_ne!(renewed, first);
    assert_eq!(gw.pid(), pid, "renewed without a restart");
    assert_alive(&gw, https_port);
    wait_orders(&gw, 2.0).await;
    let (_, resp) = https_get(https, "acme.localhost", &roots, "/")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status, 200);
}

/// The CA forgets the gateway's account (Pebble restarted; a staging reset; a deactivated
/// account): the gateway must create a new account instead of failing every order forever.
#[tokio::test]
async fn ca_that_forgot_the_account_gets_a_new_one() {
    let ca = Ca::start().await;
    let https_port = free_port();
    let https = https_addr(https_port);
    let acme = ca.acme_toml();
    let gw = ca.start_for_acme(&acme, https_port).await;
    let mut pebble = ca.pebble(&gw).await;
    let roots = pebble.roots().await;
    wait_issued(https, "acme.localhost", &roots).await;

    // Pebble goes down while a new name needs a certificate, and comes back with no accounts.
    pebble.stop();
    gw.write_tenant(&TenantToml::new("globex"));
    eventually(Duration::from_secs(20), "a failed order", || async {
        gw.metric(FAILURE).await >= 1.0
    })
    .await;
    pebble.restart().await;
    let roots = pebble.roots().await;
    wait_issued(https, "globex.localhost", &roots).await;
    assert_alive(&gw, https_port);
}

// ---------------------------------------------------------------------------------------------
// CLI

#[test]
fn domain_token_needs_the_secret_and_is_deterministic() {
    let cfg = GatewayConfig::new(&["127.0.0.1:9"]).tenant(TenantToml::new("acme"));
    let config = cfg.write();

    let out = domain_token(&config, "acme", "shop.example.com", None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("GATEWAY_DOMAIN_SECRET") && stderr.contains("secret"),
        "unclear message: {stderr}"
    );
    // An empty secret is no secret.
    let out = domain_token(&config, "acme", "shop.example.com", Some(""));
    assert_eq!(out.status.code(), Some(1));

    let out = domain_token(&config, "acme", "Shop.Example.com.", Some(SECRET));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.contains(" IN TXT "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let value = txt_value(&stdout);
    assert_eq!(
        line,
        format!("_tenant-gateway.shop.example.com. 300 IN TXT \"{value}\"")
    );
    let token = value
        .strip_prefix("tenant-gateway-verification=")
        .unwrap_or_else(|| panic!("{value}"));
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    // Same inputs, same token; another tenant or secret, another token.
    let again = domain_token(&config, "acme", "shop.example.com", Some(SECRET));
    assert_eq!(txt_value(&String::from_utf8_lossy(&again.stdout)), value);
    let other = domain_token(&config, "globex", "shop.example.com", Some(SECRET));
    assert_ne!(txt_value(&String::from_utf8_lossy(&other.stdout)), value);
    let other = domain_token(&config, "acme", "shop.example.com", Some("another"));
    assert_ne!(txt_value(&String::from_utf8_lossy(&other.stdout)), value);
}
