//! The `/ui` console driven in headless Chromium over WebDriver (chromedriver + fantoccini):
//! token prompt, tenants, a hostile tenant name rendered as text, usage bars after traffic,
//! suspend, custom domains with ACME on, reloads; screenshots saved under `target/tmp/console/`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use fantoccini::error::CmdError;
use fantoccini::Client;
use fantoccini::Locator::Css;
use serde_json::Value;

use super::{operator_gateway, require_tool, target_tmp};
use crate::admin_call::admin;
use crate::harness::acme::ChallTestSrv;
use crate::harness::{
    accepts, eventually, free_port, start_on_picked_ports, temp_dir, Echo, Gateway, GatewayConfig,
    Process, TenantToml, ADMIN_TOKEN,
};

/// What a walk-through of the console in a browser ends with.
type Walk = Result<(), CmdError>;

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

    /// A headless Chromium session with a fresh profile of its own.
    async fn browser(&self) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let client = self.session(profile.path()).await;
        Browser {
            client,
            _profile: profile,
        }
    }

    /// A WebDriver session of headless Chromium with a fresh profile in `profile`.
    async fn session(&self, profile: &Path) -> Client {
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

/// One browser session and the profile directory it uses (removed after the session).
struct Browser {
    client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Closes the session, then fails with `what` if the walk-through in it failed.
    async fn finish(self, walk: Walk, what: &str) {
        let _ = self.client.close().await;
        walk.expect(what);
    }
}

/// Types `token` into the console's login form and submits it.
async fn log_in(browser: &Client, token: &str) -> Walk {
    browser
        .wait()
        .for_element(Css("#token"))
        .await?
        .send_keys(token)
        .await?;
    browser.find(Css("#login-btn")).await?.click().await?;
    Ok(())
}

/// Waits for `css` and returns its text.
/// Clicks `css` (once it is on the page), then waits until `script` returns true.
async fn click_then(browser: &Client, css: &str, script: &str, what: &str) -> Walk {
    browser.wait().for_element(Css(css)).await?.click().await?;
    wait_js(browser, script, what).await;
    Ok(())
}

/// The value of `script` run in the page.
async fn js(browser: &Client, script: &str) -> Result<Value, CmdError> {
    browser.execute(script, vec![]).await
}

async fn text_of(browser: &Client, css: &str) -> String {
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
async fn wait_js(browser: &Client, script: &str, what: &str) {
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
    let browser = driver.browser().await;
    let walk = drive_console(&browser.client, &gw, &shots).await;
    browser.finish(walk, "console walk-through").await;
}

async fn drive_console(browser: &Client, gw: &Gateway, shots: &Path) -> Walk {
    browser.goto(&format!("{}/ui", gw.admin_url())).await?;
    // Asks for the token; a wrong one is refused and asked for again.
    log_in(browser, "not-the-token").await?;
    assert!(text_of(browser, "#message.error")
        .await
        .contains("rejected"));
    log_in(browser, ADMIN_TOKEN).await?;

    // The tenants of the temp config; the hostile name is text, and nothing of it ran.
    text_of(browser, r#"#tenants tr[data-tenant="acme"]"#).await;
    let ids = js(
        browser,
        "return [...document.querySelectorAll('#tenants tbody tr')].map(r => r.dataset.tenant)",
    )
    .await?;
    assert_eq!(
        ids,
        serde_json::json!(["acme", "globex", "hostile", "initech"])
    );
    let shown = text_of(browser, r#"tr[data-tenant="hostile"] .tenant-name"#).await;
    assert_eq!(shown, HOSTILE_NAME);
    let injected = js(
        browser,
        "return [typeof window.owned, document.querySelectorAll('#view script, #view img').length]",
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
    let usage = js(browser, "return [...document.querySelectorAll('.usage-row')].map(r => [r.dataset.resource, Number(r.dataset.used), Number(r.dataset.limit), r.querySelector('.fill').style.width])").await?;
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
    let branding = js(browser, "const b = document.getElementById('branding'); return [getComputedStyle(b).backgroundColor, b.textContent]").await?;
    assert_eq!(branding[0], "rgb(0, 68, 204)");
    assert!(branding[1]
        .as_str()
        .is_some_and(|t| t.contains("https://cdn.acme.test/logo.svg")));
    let png = browser.screenshot().await?;
    std::fs::write(shots.join("console-tenant.png"), &png).expect("save screenshot");

    // Suspend from the console: the API and the proxy agree at once.
    click_then(browser, "#status-btn", "return document.getElementById('tenant-title')?.textContent.includes('suspended') === true", "the tenant to show as suspended").await?;
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
    click_then(browser, "#reload-btn", "return /^Reload: (swapped|unchanged)/.test(document.getElementById('reload-result')?.textContent || '')", "the reload result").await?;
    assert_eq!(
        text_of(browser, "#restart-required").await,
        "server.threads"
    );
    assert!(text_of(browser, "#last-success").await.starts_with("20"));
    let (_, tenants) = admin(gw, reqwest::Method::GET, "/admin/v1/tenants", None).await;
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
    click_then(browser, "#reload-btn", "return /^Reload rejected/.test(document.getElementById('reload-result')?.textContent || '')", "the rejected reload").await?;
    let errors = text_of(browser, "#reload-errors").await;
    assert!(
        errors.contains("tenants/broken.toml") && errors.contains("plan"),
        "{errors}"
    );
    assert_eq!(
        text_of(browser, "#restart-required").await,
        "server.threads"
    );
    let (_, status) = admin(gw, reqwest::Method::GET, "/admin/v1/reload", None).await;
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
    let dns = ChallTestSrv::start().await;
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

    let browser = driver.browser().await;
    let walk = drive_domains(&browser.client, &gw, &dns).await;
    browser.finish(walk, "domains walk-through").await;
}

async fn drive_domains(browser: &Client, gw: &Gateway, dns: &ChallTestSrv) -> Walk {
    browser
        .goto(&format!("{}/ui#/domains", gw.admin_url()))
        .await?;
    log_in(browser, ADMIN_TOKEN).await?;
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
    let (_, domains) = admin(gw, reqwest::Method::GET, "/admin/v1/domains", None).await;
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
