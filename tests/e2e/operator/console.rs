//! The `/ui` console driven in headless Chromium over WebDriver (chromedriver + fantoccini):
//! token prompt, tenants, a hostile tenant name rendered as text, usage bars after traffic,
//! suspend, custom domains with ACME on, reloads; screenshots saved under `target/tmp/console/`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use serde_json::Value;

use super::{admin_json, operator_gateway, require_tool, target_tmp};
use crate::harness::{
    accepts, eventually, free_port, start_on_picked_ports, temp_dir, Echo, Gateway, GatewayConfig,
    Process, TenantToml, ADMIN_TOKEN,
};

/// `chromedriver` on a picked loopback port (it cannot report a port 0 bind), killed on drop.
struct ChromeDriver {
    _process: Process,
    port: u16,
    _dir: TempDir,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let hint = "run `bash scripts/deps.sh test` (Debian packages chromium and chromium-driver)";
        require_tool(Path::new("chromedriver"), hint);
        require_tool(Path::new("chromium"), hint);
        start_on_picked_ports("chromedriver", || async {
            let dir = temp_dir("tg-e2e-chromedriver-");
            let port = free_port();
            let mut cmd = Command::new("chromedriver");
            cmd.arg(format!("--port={port}"));
            let log = dir.path().join("chromedriver.log");
            let mut process = Process::spawn("chromedriver", cmd, &log, hint);
            let addr = ([127, 0, 0, 1], port).into();
            process
                .wait_ready(Duration::from_secs(20), || async {
                    accepts(addr).await.then_some(())
                })
                .await
                .ok()?;
            Some(ChromeDriver {
                _process: process,
                port,
                _dir: dir,
            })
        })
        .await
    }

    /// A WebDriver session of headless Chromium with a fresh profile in `profile`.
    async fn session(&self, profile: &Path) -> fantoccini::Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("WebDriver session with headless Chromium")
    }
}

/// Waits for `css` and returns its text.
async fn text_of(browser: &fantoccini::Client, css: &str) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
        .text()
        .await
        .expect("element text")
}

/// Polls a script until it returns `true` (or panics with `what`).
async fn wait_js(browser: &fantoccini::Client, script: &str, what: &str) {
    let what = format!("{what} ({script})");
    eventually(Duration::from_secs(10), &what, || async {
        let v = browser
            .execute(script, vec![])
            .await
            .expect("execute script");
        v == Value::Bool(true)
    })
    .await;
}

const HOSTILE_NAME: &str =
    r#"<script>window.owned = 1</script><img src=x onerror="window.owned = 2"> & "Co""#;

#[tokio::test]
async fn console_in_headless_chromium_shows_tenants_usage_and_reloads() {
    let driver = ChromeDriver::start().await;
    let echo = Echo::start().await;
    let gw = operator_gateway(&echo, Some(("hostile", HOSTILE_NAME))).await;
    // Traffic for acme: 6 requests (2xx), 2 of them messages, one feature-gated 403.
    for _ in 0..4 {
        assert_eq!(gw.status("acme.localhost", "/").await, 200);
    }
    for _ in 0..2 {
        let resp = gw
            .request(reqwest::Method::POST, "acme.localhost", "/api/messages")
            .send()
            .await
            .expect("POST message");
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(gw.status("acme.localhost", "/api/analytics").await, 403);
    gw.wait_metric(
        r#"gateway_requests_total{tenant="acme",status_class="4xx"}"#,
        1.0,
    )
    .await;

    let shots = target_tmp("console");
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.session(profile.path()).await;
    let result = drive_console(&browser, &gw, &shots).await;
    let _ = browser.close().await;
    result.expect("console walk-through");
}

async fn drive_console(
    browser: &fantoccini::Client,
    gw: &Gateway,
    shots: &Path,
) -> Result<(), fantoccini::error::CmdError> {
    use fantoccini::Locator::Css;
    browser.goto(&format!("{}/ui", gw.admin_url())).await?;
    // Asks for the token; a wrong one is refused and asked for again.
    let token = browser.wait().for_element(Css("#token")).await?;
    token.send_keys("not-the-token").await?;
    browser.find(Css("#login-btn")).await?.click().await?;
    assert!(text_of(browser, "#message.error")
        .await
        .contains("rejected"));
    let token = browser.find(Css("#token")).await?;
    token.send_keys(ADMIN_TOKEN).await?;
    browser.find(Css("#login-btn")).await?.click().await?;

    // The tenants of the temp config; the hostile name is text, and nothing of it ran.
    text_of(browser, r#"#tenants tr[data-tenant="acme"]"#).await;
    let ids = browser
        .execute(
            "return [...document.querySelectorAll('#tenants tbody tr')].map(r => r.dataset.tenant)",
            vec![],
        )
        .await?;
    assert_eq!(
        ids,
        serde_json::json!(["acme", "globex", "hostile", "initech"])
    );
    let shown = text_of(browser, r#"tr[data-tenant="hostile"] .tenant-name"#).await;
    assert_eq!(shown, HOSTILE_NAME);
    let injected = browser
        .execute(
            "return [typeof window.owned, document.querySelectorAll('#view script, #view img').length]",
            vec![],
        )
        .await?;
    assert_eq!(injected, serde_json::json!(["undefined", 0]));
    assert!(text_of(browser, r#"tr[data-tenant="globex"]"#)
        .await
        .contains("suspended"));
    // Search narrows the list.
    browser
        .find(Css("#search"))
        .await?
        .send_keys("initech")
        .await?;
    wait_js(
        browser,
        "return document.querySelectorAll('#tenants tbody tr').length === 1",
        "search to leave one row",
    )
    .await;
    browser.find(Css("#search")).await?.clear().await?;

    // One tenant: usage bars after the traffic, response counts, key names, branding.
    browser
        .find(Css(r#"tr[data-tenant="acme"] .tenant-link"#))
        .await?
        .click()
        .await?;
    text_of(browser, r#".usage-row[data-resource="messages"]"#).await;
    let usage = browser
        .execute(
            "return [...document.querySelectorAll('.usage-row')].map(r => [r.dataset.resource, Number(r.dataset.used), Number(r.dataset.limit), r.querySelector('.fill').style.width])",
            vec![],
        )
        .await?;
    let usage = usage.as_array().expect("usage rows").clone();
    let row = |name: &str| {
        usage
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no usage row {name}: {usage:?}"))
            .clone()
    };
    assert_eq!(row("messages")[1], 2.0);
    assert_eq!(row("messages")[2], 1000.0);
    assert_eq!(row("messages")[3], "0.2%");
    // Six admitted requests; the feature-gated 403 was refused before the quota step.
    assert_eq!(
        row("requests"),
        serde_json::json!(["requests", 6, 50, "12%"])
    );
    assert!(text_of(browser, r#"#counts [data-class="4xx"] .total"#).await == "1");
    assert_eq!(text_of(browser, "#api-keys").await, "ci");
    let branding = browser
        .execute(
            "const b = document.getElementById('branding'); return [getComputedStyle(b).backgroundColor, b.textContent]",
            vec![],
        )
        .await?;
    assert_eq!(branding[0], "rgb(0, 68, 204)");
    assert!(branding[1]
        .as_str()
        .is_some_and(|t| t.contains("https://cdn.acme.test/logo.svg")));
    let png = browser.screenshot().await?;
    std::fs::write(shots.join("console-tenant.png"), &png).expect("save screenshot");

    // Suspend from the console: the API and the proxy agree at once.
    browser.find(Css("#status-btn")).await?.click().await?;
    wait_js(
        browser,
        "return document.getElementById('tenant-title')?.textContent.includes('suspended') === true",
        "the tenant to show as suspended",
    )
    .await;
    assert_eq!(gw.status("acme.localhost", "/").await, 403);

    // Custom domains view.
    browser.find(Css("#nav-domains")).await?.click().await?;
    let domain = text_of(browser, r#"tr[data-domain="support.acme.test"]"#).await;
    assert!(
        domain.contains("unmanaged") && domain.contains("ACME disabled"),
        "{domain}"
    );

    // Reload view: a reload that swaps in a new tenant and a restart-only change...
    std::fs::write(
        gw.dir().join("tenants").join("newco.toml"),
        "id = \"newco\"\nname = \"NewCo\"\nplan = \"free\"\nupstream = \"shared\"\n",
    )
    .expect("write tenant");
    let main = gw.dir().join("gateway.toml");
    let text = std::fs::read_to_string(&main).expect("read gateway.toml");
    assert!(text.contains("threads = 2\n"));
    std::fs::write(&main, text.replace("threads = 2\n", "threads = 3\n")).expect("edit");
    browser.find(Css("#nav-reload")).await?.click().await?;
    browser
        .wait()
        .for_element(Css("#reload-btn"))
        .await?
        .click()
        .await?;
    wait_js(
        browser,
        "return /^Reload: (swapped|unchanged)/.test(document.getElementById('reload-result')?.textContent || '')",
        "the reload result",
    )
    .await;
    assert_eq!(
        text_of(browser, "#restart-required").await,
        "server.threads"
    );
    assert!(text_of(browser, "#last-success").await.starts_with("20"));
    let (_, tenants) = admin_json(gw, reqwest::Method::GET, "/admin/v1/tenants").await;
    assert!(tenants["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .any(|t| t["id"] == "newco"));
    // ... then one that is rejected: its errors name file and key.
    std::fs::write(
        gw.dir().join("tenants").join("broken.toml"),
        "id = \"broken\"\nplan = \"gold\"\nupstream = \"shared\"\n",
    )
    .expect("write broken tenant");
    browser.find(Css("#reload-btn")).await?.click().await?;
    wait_js(
        browser,
        "return /^Reload rejected/.test(document.getElementById('reload-result')?.textContent || '')",
        "the rejected reload",
    )
    .await;
    let errors = text_of(browser, "#reload-errors").await;
    assert!(
        errors.contains("tenants/broken.toml") && errors.contains("plan"),
        "{errors}"
    );
    assert_eq!(
        text_of(browser, "#restart-required").await,
        "server.threads"
    );
    let (_, status) = admin_json(gw, reqwest::Method::GET, "/admin/v1/reload").await;
    assert_eq!(status["reload"]["last_result"], "failed", "{status}");
    assert_eq!(
        status["reload"]["last_errors"][0]["file"],
        "tenants/broken.toml"
    );
    let png = browser.screenshot().await?;
    std::fs::write(shots.join("console-reload.png"), &png).expect("save screenshot");
    Ok(())
}

/// A certificate for `name` that expires in `days` days, in the store layout
/// (`<certs>/<name>/{fullchain,key}.pem`).
fn install_cert_expiring_in(certs_dir: &Path, name: &str, days: i64) {
    use chrono::Datelike;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    let end = chrono::Utc::now() + chrono::Duration::days(days);
    params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    let dir = certs_dir.join(name);
    std::fs::create_dir_all(&dir).expect("cert dir");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
    std::fs::write(dir.join("fullchain.pem"), cert.pem()).expect("fullchain.pem");
}

/// The custom-domains view with ACME on: the TXT record to give the customer is shown, a
/// certificate expiring within 14 days is flagged, and "Verify now" after the customer
/// published that record turns the domain verified.
#[tokio::test]
async fn console_custom_domains_show_the_txt_record_and_verify_now() {
    let driver = ChromeDriver::start().await;
    let dns = crate::harness::acme::ChallTestSrv::start().await;
    let echo = Echo::start().await;
    let cfg = GatewayConfig::with_echo(&echo)
        .extra(&format!(
            "[tls]\ncerts_dir = \"certs\"\n\n[acme]\nenabled = true\ndirectory_url = \"http://{}/dir\"\ndns_servers = [\"{}\"]\ncheck_interval = \"1h\"\ndomain_recheck_interval = \"1h\"",
            crate::harness::dead_addr(),
            dns.dns_addr()
        ))
        .env("GATEWAY_DOMAIN_SECRET", "operator-test-secret")
        .tenant(TenantToml::new("acme").line("custom_domains = [\"support.acme.test\"]"));
    install_cert_expiring_in(&cfg.dir().join("certs"), "support.acme.test", 5);
    let gw = cfg.start().await;

    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.session(profile.path()).await;
    let result = drive_domains(&browser, &gw, &dns).await;
    let _ = browser.close().await;
    result.expect("domains walk-through");
}

async fn drive_domains(
    browser: &fantoccini::Client,
    gw: &Gateway,
    dns: &crate::harness::acme::ChallTestSrv,
) -> Result<(), fantoccini::error::CmdError> {
    use fantoccini::Locator::Css;
    browser
        .goto(&format!("{}/ui#/domains", gw.admin_url()))
        .await?;
    browser
        .wait()
        .for_element(Css("#token"))
        .await?
        .send_keys(ADMIN_TOKEN)
        .await?;
    browser.find(Css("#login-btn")).await?.click().await?;
    let row = r#"tr[data-domain="support.acme.test"]"#;
    let text = text_of(browser, row).await;
    assert!(text.contains("pending") && text.contains("acme"), "{text}");
    assert!(
        text_of(browser, &format!("{row} .cert-warning"))
            .await
            .contains("days left"),
        "a certificate expiring in 5 days is flagged"
    );
    // The exact record, as the API computes it.
    let (_, domains) = admin_json(gw, reqwest::Method::GET, "/admin/v1/domains").await;
    let txt = &domains["domains"][0]["txt_record"];
    let zone_line = txt["zone_line"].as_str().expect("zone line");
    assert_eq!(text_of(browser, &format!("{row} code")).await, zone_line);
    assert_eq!(txt["name"], "_tenant-gateway.support.acme.test");
    // The customer publishes it; the operator clicks "Verify now".
    dns.set_txt(
        "_tenant-gateway.support.acme.test.",
        txt["value"].as_str().expect("value"),
    )
    .await;
    browser
        .find(Css(&format!("{row} .verify-btn")))
        .await?
        .click()
        .await?;
    wait_js(
        browser,
        &format!(
            "return document.querySelector('{}')?.textContent.includes('verified') === true",
            row.replace('\'', "\\'")
        ),
        "the domain to show as verified",
    )
    .await;
    assert!(text_of(browser, "#message").await.contains("verified"));
    let png = browser.screenshot().await?;
    std::fs::write(target_tmp("console").join("console-domains.png"), &png)
        .expect("save screenshot");
    Ok(())
}
