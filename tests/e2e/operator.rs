//! Operator surface: the admin API checked by schemathesis (a real OpenAPI fuzzer) against
//! its committed OpenAPI document, `promtool check metrics` on a scrape with the process
//! metrics, and the `/ui` console driven in headless Chromium over WebDriver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    find_sample, free_port, Echo, Gateway, GatewayConfig, TenantToml, ADMIN_TOKEN,
};

/// Where `scripts/deps.sh test` installs schemathesis (a virtualenv of its own).
fn schemathesis_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/tenant-gateway/schemathesis-venv/bin/st")
}

/// Panics with the install hint when a tool the test needs is missing.
fn require_tool(path: &Path, hint: &str) {
    let found = if path.components().count() > 1 {
        path.is_file()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {}", path.display())])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(found, "{} is not installed: {hint}", path.display());
}

/// Scratch dir of this test binary under `target/`.
fn target_tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("create target tmp dir");
    dir
}

/// A gateway with plans that have quotas, a dedicated-upstream tenant, a suspended one, an
/// API key, branding and a custom domain: every shape the admin API reports.
async fn operator_gateway(echo: &Echo, extra_tenant: Option<(&str, &str)>) -> Gateway {
    let mut cfg = GatewayConfig::with_echo(echo)
        .extra(
            "[plans.metered]\nfeatures = [\"chat\"]\nquotas.requests = { limit = 50, period = \"minute\" }\nquotas.messages = { limit = 1000, period = \"month\" }\npricing = { base = 10.0, overage = { messages = 0.01 } }\n\n[[routes]]\npath_prefix = \"/api/messages\"\nmethods = [\"POST\"]\nconsumes = { messages = 1 }",
        )
        .tenant(
            TenantToml::new("acme")
                .plan("metered")
                .line("custom_domains = [\"support.acme.test\"]")
                .line("[branding]\nprimary_color = \"#0044cc\"\nsecondary_color = \"#ffffff\"\nlogo = \"https://cdn.acme.test/logo.svg\"")
                .line("[[api_keys]]\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nname = \"ci\""),
        )
        .tenant(TenantToml::new("globex").line("status = \"suspended\""))
        .tenant(TenantToml::new("initech").dedicated(&[&echo.addr()], &[]));
    if let Some((id, name)) = extra_tenant {
        cfg = cfg.tenant_file(
            &format!("{id}.toml"),
            &format!(
                "id = \"{id}\"\norganization_id = \"org_{id}\"\nname = {name:?}\nplan = \"free\"\nupstream = \"shared\"\n"
            ),
        );
    }
    cfg.start().await
}

async fn admin_json(gw: &Gateway, method: reqwest::Method, path: &str) -> (u16, Value) {
    let resp = gw
        .admin(method, path, Some(ADMIN_TOKEN))
        .send()
        .await
        .expect("admin request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("admin JSON"))
}

// ---------------------------------------------------------------------------------------------
// OpenAPI + schemathesis

#[tokio::test]
async fn openapi_document_is_served_with_the_token_and_matches_the_repo() {
    let echo = Echo::start().await;
    let gw = operator_gateway(&echo, None).await;
    let anon = gw
        .admin(reqwest::Method::GET, "/admin/v1/openapi.json", None)
        .send()
        .await
        .expect("GET openapi without token");
    assert_eq!(anon.status(), 401);
    let (status, served) = admin_json(&gw, reqwest::Method::GET, "/admin/v1/openapi.json").await;
    assert_eq!(status, 200);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/openapi.json"),
        )
        .expect("read src/admin/openapi.json"),
    )
    .expect("committed document is JSON");
    assert_eq!(served, committed);
}

/// schemathesis generates requests for every operation from the document (examples, boundary
/// values, random and negative data, and create → get → patch → delete sequences through the
/// document's links) and checks each response: no 5xx, a documented status, a body that
/// conforms to the documented schema.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_nonconforming_response() {
    let st = schemathesis_bin();
    require_tool(
        &st,
        "run `bash scripts/deps.sh test` (installs schemathesis into ~/.cache/tenant-gateway/schemathesis-venv), or set SCHEMATHESIS=/path/to/st",
    );
    let echo = Echo::start().await;
    let gw = operator_gateway(&echo, None).await;
    // Some traffic, so usage and billing have counters to report.
    for _ in 0..3 {
        gw.request(reqwest::Method::POST, "acme.localhost", "/api/messages")
            .send()
            .await
            .expect("POST message");
    }
    let (_, spec) = admin_json(&gw, reqwest::Method::GET, "/admin/v1/openapi.json").await;
    let out = target_tmp("schemathesis");
    let spec_path = out.join("openapi.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).expect("spec")).expect("write spec");
    let started = Instant::now();
    let run = Command::new(&st)
        .arg("run")
        .arg(&spec_path)
        .args(["--url", &gw.admin_url()])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "25", "--seed", "15"])
        .args(["--workers", "2", "--request-timeout", "15"])
        .args(["--generation-database", "none"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&out)
        .arg("--no-color")
        .env("SCHEMATHESIS_HOOKS", "")
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    std::fs::write(out.join("output.txt"), format!("{stdout}\n{stderr}")).expect("save output");
    eprintln!("schemathesis took {:?}", started.elapsed());
    assert!(
        run.status.success(),
        "schemathesis failed ({}), report in {}:\n{stdout}\n{stderr}",
        run.status,
        out.display()
    );
    // It really ran every operation (a schema it could not load also exits early).
    let ops = spec["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| {
            ["get", "post", "put", "patch", "delete"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum::<usize>();
    assert!(
        stdout.contains(&format!("Tested: {ops}")),
        "expected {ops} operations in the run:\n{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// Process metrics + promtool

#[tokio::test]
async fn scrape_has_process_metrics_and_build_info_and_promtool_accepts_it() {
    require_tool(
        Path::new("promtool"),
        "run `bash scripts/deps.sh test` (Debian package prometheus)",
    );
    let echo = Echo::start().await;
    let gw = operator_gateway(&echo, None).await;
    assert_eq!(gw.status("acme.localhost", "/").await, 200);
    assert_eq!(gw.status("nobody.localhost", "/").await, 404);
    gw.wait_metric(
        r#"gateway_requests_total{tenant="acme",status_class="2xx"}"#,
        1.0,
    )
    .await;
    let text = gw.metrics().await;
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let v = find_sample(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(
            v > 0.0 || name == "process_cpu_seconds_total",
            "{name} = {v}"
        );
    }
    let start = find_sample(&text, "process_start_time_seconds").expect("start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        now - start < 600.0 && start <= now + 1.0,
        "start {start}, now {now}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        find_sample(
            &text,
            &format!("gateway_build_info{{version=\"{version}\"}}")
        ),
        Some(1.0),
        "{text}"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().expect("promtool stdin");
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let out = promtool.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The /ui console in headless Chromium

/// `chromedriver` on a free loopback port, killed on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let hint = "run `bash scripts/deps.sh test` (Debian packages chromium and chromium-driver)";
        require_tool(Path::new("chromedriver"), hint);
        require_tool(Path::new("chromium"), hint);
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let mut driver = ChromeDriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                driver.child.try_wait().expect("try_wait").is_none(),
                "chromedriver exited at start"
            );
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
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

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = browser
            .execute(script, vec![])
            .await
            .expect("execute script");
        if v == Value::Bool(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({script})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let dns = crate::acme_harness::ChallTestSrv::start().await;
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
    dns: &crate::acme_harness::ChallTestSrv,
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
