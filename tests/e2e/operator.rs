//! Operator surface: the admin API checked by schemathesis (a real OpenAPI fuzzer) against
//! its committed OpenAPI document, `promtool check metrics` on a scrape with the process
//! metrics, and (in `console`) the `/ui` console driven in headless Chromium over WebDriver.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::admin_call::admin;
use crate::harness::{
    assert_success, find_sample, Echo, Gateway, GatewayConfig, TenantToml, ADMIN_TOKEN,
};

mod console;

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
    let (status, served) = admin(&gw, reqwest::Method::GET, "/admin/v1/openapi.json", None).await;
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
    let (_, spec) = admin(&gw, reqwest::Method::GET, "/admin/v1/openapi.json", None).await;
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
        // schemathesis keeps a cache in its working directory: keep it out of the repo.
        .current_dir(&out)
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
    assert_success("promtool check metrics", &out);
}
