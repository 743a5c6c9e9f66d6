//! Operations slice: the shipped Grafana dashboard and Prometheus alert rules name only metrics
//! the gateway exports (and promtool accepts the rules), SIGTERM drains an in-flight request,
//! and a zero-downtime upgrade (`run --upgrade` + SIGQUIT) hands the listening sockets over
//! without failing a single request.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures::{acme_config, acme_gateway, acme_gateway_with_server};
use crate::harness::{
    connection_established_to, dead_addr, eventually, free_port, listens_on, Echo, GatewayConfig,
    Process, TenantToml, ADMIN_TOKEN, BIN,
};

/// Every metric family the gateway exports (the contract of the dashboard and the alerts).
const EXPORTED: &[&str] = &[
    "gateway_requests_total",
    "gateway_request_duration_seconds",
    "gateway_upstream_errors_total",
    "gateway_config_reloads_total",
    "gateway_config_last_reload_successful",
    "gateway_config_last_reload_success_timestamp_seconds",
    "gateway_tenants",
    "gateway_tls_handshakes_total",
    "gateway_certificate_expiry_timestamp_seconds",
    "gateway_certificates",
    "gateway_quota_decisions_total",
    "gateway_quota_backend_errors_total",
    "gateway_redis_up",
    "gateway_quota_breaker_state",
    "gateway_quota_pending_dropped_total",
    "gateway_quota_backend_duration_seconds",
    "gateway_auth_failures_total",
    "gateway_quota_usage_ratio",
    "gateway_acme_orders_total",
    "gateway_acme_next_attempt_timestamp_seconds",
];

/// Families whose samples only exist once their feature has done something this test does
/// not do: an ACME order needs an ACME CA (the ACME slice's tests cover those metrics), and the
/// quota usage ratio is published by the quota usage reporting, not by a single decision. A
/// label-less vector has no `# HELP` line in the exposition, so for these the test only holds
/// the dashboard and the alerts to the list above.
const EXPORTED_ON_FEATURE_USE: &[&str] = &[
    "gateway_acme_orders_total",
    "gateway_acme_next_attempt_timestamp_seconds",
    "gateway_quota_usage_ratio",
    // Registered with the Redis backend only.
    "gateway_redis_up",
];

/// Histogram families: PromQL names their `_bucket`, `_sum` and `_count` series.
const HISTOGRAMS: &[&str] = &[
    "gateway_request_duration_seconds",
    "gateway_quota_backend_duration_seconds",
];

fn conf_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf")
        .join(name)
}

// ---------------------------------------------------------------------------------------------
// PromQL metric names

/// PromQL words that are not metric names: aggregations, operators, modifiers.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Modifiers followed by a parenthesised list of label names.
const LABEL_LIST_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers
/// (`{…}`) and ranges (`[…]`) that are not functions (followed by `(`), PromQL words, or label
/// lists of `by (…)` and friends.
fn promql_metric_names(expr: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let (mut braces, mut brackets) = (0i32, 0i32);
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            _ if braces > 0 || brackets > 0 => {}
            c => {
                cleaned.push(c);
                continue;
            }
        }
        cleaned.push(' ');
    }
    assert!(
        quote.is_none() && braces == 0 && brackets == 0,
        "unbalanced PromQL: {expr}"
    );

    let chars: Vec<char> = cleaned.chars().collect();
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        (i, chars.get(i).copied())
    };
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number (`0.99`, `86400`, `1e3`): skip it whole.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$'))
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let (after, next) = next_non_space(i);
        if word.starts_with('$') || next == Some('(') && !LABEL_LIST_WORDS.contains(&word.as_str())
        {
            continue; // a Grafana variable, or a function call
        }
        if LABEL_LIST_WORDS.contains(&word.as_str()) {
            if next == Some('(') {
                let mut depth = 0;
                i = after;
                while i < chars.len() {
                    match chars[i] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            continue;
        }
        if PROMQL_WORDS.contains(&word.to_ascii_lowercase().as_str()) {
            continue;
        }
        names.push(word);
    }
    names
}

/// The family a series name belongs to (`x_bucket` of histogram `x` → `x`).
fn family(name: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if HISTOGRAMS.contains(&base) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

#[test]
fn promql_metric_name_extraction() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (tenant, le) (rate(gateway_request_duration_seconds_bucket{tenant=~"$tenant", x="}"}[$__rate_interval]))) / on (tenant) group_left (kind) foo:bar and time() - 14 * 86400"#,
    );
    assert_eq!(
        names,
        ["gateway_request_duration_seconds_bucket", "foo:bar"]
    );
    assert_eq!(
        family("gateway_request_duration_seconds_bucket"),
        "gateway_request_duration_seconds"
    );
    assert_eq!(family("gateway_requests_total"), "gateway_requests_total");
}

/// Every `expr` in a JSON document, with a path for messages.
fn json_exprs(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{path}.{k}");
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push((p, s.clone())),
                    _ => json_exprs(v, &p, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                json_exprs(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The `expr:` values of a Prometheus rules file: inline, or a block scalar (`|`, `>-`) that
/// runs while lines are indented deeper than the key.
fn yaml_exprs(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            let rest = rest.trim();
            let at = format!("alerts.yml:{}", i + 1);
            if rest.starts_with('|') || rest.starts_with('>') {
                let mut block = String::new();
                i += 1;
                while i < lines.len()
                    && (lines[i].trim().is_empty()
                        || lines[i].len() - lines[i].trim_start().len() > indent)
                {
                    block.push_str(lines[i].trim());
                    block.push('\n');
                    i += 1;
                }
                out.push((at, block));
                continue;
            }
            out.push((at, rest.trim_matches(['"', '\'']).to_string()));
        }
        i += 1;
    }
    out
}

fn assert_only_exported(source: &str, exprs: &[(String, String)]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (at, expr) in exprs {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{source} {at}: no metric in {expr:?}");
        for n in names {
            let fam = family(&n);
            assert!(
                EXPORTED.contains(&fam.as_str()),
                "{source} {at}: metric {n:?} is not exported by the gateway (expr {expr:?})"
            );
            used.insert(fam);
        }
    }
    used
}

/// `# HELP <name>` families of an exposition.
fn help_families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A self-signed certificate for `name` in `certs/<name>/`, so the certificate metrics have a
/// sample.
fn install_self_signed(certs_dir: &Path, name: &str) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("self-signed cert");
    let dir = certs_dir.join(name);
    std::fs::create_dir_all(&dir).expect("cert dir");
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).expect("key.pem");
    std::fs::write(dir.join("fullchain.pem"), ck.cert.pem()).expect("fullchain.pem");
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    // The dashboard.
    let text = std::fs::read_to_string(conf_file("grafana-dashboard.json")).expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );
    let mut exprs = Vec::new();
    json_exprs(&dash["panels"], "panels", &mut exprs);
    assert!(
        exprs.len() >= 20,
        "expected a full dashboard, found {} exprs",
        exprs.len()
    );
    for panel in dash["panels"].as_array().expect("panels") {
        if panel["type"] != "row" {
            assert!(
                panel["datasource"]["uid"] == "${DS_PROMETHEUS}",
                "panel {:?} does not use the ${{DS_PROMETHEUS}} datasource",
                panel["title"]
            );
        }
    }
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let tenant_var = vars
        .iter()
        .find(|v| v["name"] == "tenant")
        .expect("tenant variable");
    let query = tenant_var["definition"]
        .as_str()
        .expect("tenant definition");
    let metric = query
        .strip_prefix("label_values(")
        .and_then(|q| q.split_once(','))
        .map(|(m, _)| m.trim())
        .expect("label_values(metric, label)");
    assert_eq!(metric, "gateway_requests_total");
    assert!(vars
        .iter()
        .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"));
    let mut used = assert_only_exported("grafana-dashboard.json", &exprs);

    // The alert rules.
    let rules = std::fs::read_to_string(conf_file("alerts.yml")).expect("alerts.yml");
    let rule_exprs = yaml_exprs(&rules);
    assert!(
        rule_exprs.len() >= 6,
        "expected the alert rules, found {rule_exprs:?}"
    );
    used.extend(assert_only_exported("alerts.yml", &rule_exprs));
    // The dashboard shows every exported family.
    for name in EXPORTED {
        assert!(
            used.contains(*name),
            "{name} is on neither the dashboard nor an alert"
        );
    }

    // A gateway that has exercised every family: proxied requests, an upstream failure, a
    // quota decision, an auth failure, a TLS handshake, a certificate.
    let echo = Echo::start().await;
    let https_port = free_port();
    let cfg = GatewayConfig::with_echo(&echo)
        .server(&format!("https_listen = [\"127.0.0.1:{https_port}\"]"))
        .extra(
            "[plans.metered]\nfeatures = [\"chat\"]\nquotas.requests = { limit = 1000, period = \"minute\" }\n\n[[routes]]\npath_prefix = \"/secure\"\nrequire_auth = true\n\n[tls]\ncerts_dir = \"certs\"",
        )
        .tenant(TenantToml::new("acme"))
        .tenant(TenantToml::new("metered").plan("metered"))
        .tenant(TenantToml::new("down").dedicated(&[&dead_addr()], &[]));
    install_self_signed(&cfg.dir().join("certs"), "acme.localhost");
    let gw = cfg.start().await;

    assert_eq!(gw.status("acme.localhost", "/").await, 200);
    assert_eq!(gw.status("metered.localhost", "/").await, 200);
    assert_eq!(gw.status("down.localhost", "/").await, 502);
    let status = gw
        .get("acme.localhost", "/secure")
        .header("x-api-key", "tgk_not_a_key")
        .send()
        .await
        .expect("request with a bad key")
        .status();
    assert_eq!(status, 401, "a bad API key on a route that requires one");
    let tls = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .resolve("acme.localhost", ([127, 0, 0, 1], https_port).into())
        .build()
        .expect("TLS client");
    let resp = tls
        .get(format!("https://acme.localhost:{https_port}/"))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(resp.status(), 200);

    let missing = |text: &str| -> Vec<&str> {
        let present = help_families(text);
        EXPORTED
            .iter()
            .copied()
            .filter(|n| !EXPORTED_ON_FEATURE_USE.contains(n) && !present.contains(*n))
            .collect()
    };
    let all_there = tokio::time::timeout(
        Duration::from_secs(5),
        eventually(
            Duration::from_secs(6),
            "every family on /metrics",
            || async { missing(&gw.metrics().await).is_empty() },
        ),
    )
    .await;
    if all_there.is_err() {
        let text = gw.metrics().await;
        panic!(
            "families missing from /metrics: {:?}\n{text}",
            missing(&text)
        );
    }
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let path = conf_file("alerts.yml");
    let out = match Command::new("promtool").arg("check").arg("rules").arg(&path).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run promtool ({e}): install it with `bash scripts/deps.sh test` (Debian package prometheus)"
        ),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn systemd_unit_is_hardened() {
    let unit = std::fs::read_to_string(conf_file("tenant-gateway.service")).expect("unit");
    for line in [
        "User=tenant-gateway",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/tenant-gateway/certs",
        "ExecStart=/usr/local/bin/tenant-gateway run --config /etc/tenant-gateway/gateway.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "LimitNOFILE=1048576",
        "EnvironmentFile=-/etc/tenant-gateway/env",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "unit lacks {line:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Signals

/// Whether process `pid` has exited (gone, or a zombie its parent has not reaped yet).
pub(crate) fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits until `pid` exits; the time it took, or `None` after `limit`.
pub(crate) async fn wait_exit(pid: u32, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let exited = eventually(limit + Duration::from_secs(1), "exit", || async {
        has_exited(pid)
    });
    tokio::time::timeout(limit, exited)
        .await
        .ok()
        .map(|()| start.elapsed())
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request() {
    const GRACE: Duration = Duration::from_secs(5);
    let echo = Echo::start().await;
    let gw = acme_config(&echo)
        .server(&format!("grace_period = \"{}s\"", GRACE.as_secs()))
        .start()
        .await;
    assert!(
        !connection_established_to(echo.port()),
        "nothing has been proxied yet"
    );
    let slow = tokio::spawn(
        gw.get("acme.localhost", "/delay/2000")
            .timeout(Duration::from_secs(30))
            .send(),
    );
    // SIGTERM once the gateway has the request in flight (its upstream connection is open).
    eventually(
        Duration::from_secs(10),
        "the slow request reaching the upstream",
        || async { connection_established_to(echo.port()) },
    )
    .await;
    let sent = Instant::now();
    gw.signal("TERM");
    // Draining: the listener closes at once (new connections go to other instances), while
    // the request already in flight goes on.
    eventually(
        Duration::from_secs(1),
        "the proxy listener closing after SIGTERM",
        || async {
            tokio::net::TcpStream::connect(gw.http_addr())
                .await
                .is_err()
        },
    )
    .await;
    assert!(
        !slow.is_finished(),
        "the slow request ended before the listener closed"
    );

    let resp = slow
        .await
        .expect("request task")
        .unwrap_or_else(|e| panic!("in-flight request failed after SIGTERM: {e}\n{}", gw.logs()));
    assert_eq!(resp.status(), 200, "{}", gw.logs());
    let body: Value = resp.json().await.expect("echo JSON after SIGTERM");
    assert_eq!(body["path"], "/delay/2000", "{body}");
    let answered = sent.elapsed();
    assert!(
        answered >= Duration::from_millis(1500),
        "answered too early: {answered:?}"
    );

    let margin = Duration::from_secs(5);
    let limit = (GRACE + margin).saturating_sub(sent.elapsed());
    if wait_exit(gw.pid(), limit).await.is_none() {
        panic!(
            "gateway still running {:?} after SIGTERM (grace period {GRACE:?})\n{}",
            GRACE + margin,
            gw.logs()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Zero-downtime upgrade

/// A second `tenant-gateway run --upgrade` on the same config, killed on drop.
pub(crate) struct Successor {
    process: Process,
    dir: PathBuf,
}

impl Successor {
    /// Starts it with the environment of the harness's gateway (same TMPDIR: the upgrade socket
    /// lives in the runtime dir under it; the port-0 listeners' addresses too).
    pub(crate) fn spawn(dir: &Path) -> Successor {
        let logs = dir.join("logs");
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(dir.join("gateway.toml"))
            .arg("--upgrade")
            .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("TMPDIR", dir.join("run"));
        let process = Process::spawn_split(
            "successor",
            cmd,
            &logs.join("upgrade-stdout.log"),
            &logs.join("upgrade-stderr.log"),
            "build it with cargo build",
        );
        Successor {
            process,
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub(crate) fn logs(&self) -> String {
        self.process.logs()
    }

    /// The upgrade socket the successor waits on for the listening sockets.
    pub(crate) fn upgrade_socket(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.join("run"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("upgrade.sock"))
            .find(|p| p.exists())
    }
}

#[derive(Default)]
struct LoopStats {
    ok: AtomicU64,
    /// Requests answered after the old process exited.
    ok_after_handover: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// Sends `GET /` to tenant acme until `stop`, counting outcomes. `fresh` opens a new
/// connection per request; otherwise connections are kept alive and reused.
async fn client_loop(
    url: String,
    fresh: bool,
    stop: Arc<AtomicBool>,
    handed_over: Arc<AtomicBool>,
    stats: Arc<LoopStats>,
) {
    let mut builder = reqwest::Client::builder().no_proxy();
    if fresh {
        builder = builder.pool_max_idle_per_host(0);
    }
    let client = builder.build().expect("client");
    while !stop.load(Ordering::Acquire) {
        let after = handed_over.load(Ordering::Acquire);
        let result = client
            .get(&url)
            .header("host", "acme.localhost")
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let outcome = match result {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(_) if status == 200 => Ok(()),
                    Ok(body) => Err(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => Err(format!("body: {e:?}")),
                }
            }
            Err(e) => Err(format!("{e:?}")),
        };
        match outcome {
            Ok(()) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
                if after {
                    stats.ok_after_handover.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => stats.failures.lock().expect("failures").push(format!(
                "{} ({}): {e}",
                if fresh {
                    "new connection"
                } else {
                    "keep-alive"
                },
                if after { "after" } else { "before/while" }
            )),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn upgrade_hands_over_sockets_without_dropping_requests() {
    let echo = Echo::start().await;
    // The old process drains for the grace period after pingora's 5 s close timeout.
    let gw = acme_gateway_with_server(&echo, "grace_period = \"2s\"").await;
    let old_pid = gw.pid();
    let http_port = gw.http_addr().port();
    let admin_port = gw.admin_addr().port();

    let stop = Arc::new(AtomicBool::new(false));
    let handed_over = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LoopStats::default());
    let loops: Vec<_> = [false, false, true, true]
        .into_iter()
        .map(|fresh| {
            tokio::spawn(client_loop(
                format!("{}/", gw.http_url()),
                fresh,
                stop.clone(),
                handed_over.clone(),
                stats.clone(),
            ))
        })
        .collect();
    // Traffic flows before anything happens.
    eventually(
        Duration::from_secs(10),
        "client loops getting going",
        || async { stats.ok.load(Ordering::Relaxed) >= 50 },
    )
    .await;

    // The successor first: it binds the upgrade socket and waits there (pingora gives it five
    // one-second accept attempts). Only then may the old process get SIGQUIT, which makes it
    // send its listening sockets to that socket, keep serving for pingora's 5 s close timeout,
    // then drain and exit.
    let successor = Successor::spawn(gw.dir());
    eventually(
        Duration::from_secs(20),
        "the successor's upgrade socket",
        || async {
            assert!(
                !has_exited(successor.pid()),
                "successor exited before binding the upgrade socket\n{}",
                successor.logs()
            );
            successor.upgrade_socket()
        },
    )
    .await;
    gw.signal("QUIT");

    // The successor takes over both listeners (proxy and admin) …
    let what = "the successor receiving the listening sockets";
    eventually(Duration::from_secs(20), what, || async {
        assert!(
            !has_exited(successor.pid()),
            "successor exited during the hand-over\n{}\n{}",
            successor.logs(),
            gw.logs()
        );
        listens_on(successor.pid(), http_port) && listens_on(successor.pid(), admin_port)
    })
    .await;
    // … and the old process leaves: close timeout (5 s) + drain.
    let Some(_) = wait_exit(old_pid, Duration::from_secs(30)).await else {
        panic!("old gateway did not exit after SIGQUIT\n{}", gw.logs());
    };
    handed_over.store(true, Ordering::Release);
    let before = stats.ok.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(10),
        "100 requests after the hand-over",
        || async { stats.ok_after_handover.load(Ordering::Relaxed) >= 100 },
    )
    .await;
    stop.store(true, Ordering::Release);
    for l in loops {
        l.await.expect("client loop");
    }

    let failures = stats.failures.lock().expect("failures").clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across the upgrade:\n{}\n{}\n{}",
        failures.len(),
        stats.ok.load(Ordering::Relaxed) + failures.len() as u64,
        failures.join("\n"),
        successor.logs(),
        gw.logs()
    );
    assert!(
        before > 100,
        "too little traffic across the upgrade: {before}"
    );

    // Only the successor serves now: it holds the sockets, and its /metrics (the admin
    // listener was handed over too) counts only what it served itself.
    assert!(listens_on(successor.pid(), http_port));
    let metrics = gw.metrics().await;
    let served = crate::harness::find_sample(
        &metrics,
        r#"gateway_requests_total{tenant="acme",status_class="2xx"}"#,
    )
    .unwrap_or(0.0);
    let total = stats.ok.load(Ordering::Relaxed) as f64;
    assert!(
        served > 0.0 && served < total,
        "successor's counter {served} should count part of the {total} requests"
    );
}

// ---------------------------------------------------------------------------------------------
// Start-only keys

/// Changing a key that only a restart applies is reported, not silently ignored: the reload
/// answer lists it, a WARN line names it, `gateway_config_restart_required` is 1.
#[tokio::test]
async fn start_only_key_change_is_reported_on_reload() {
    let echo = Echo::start().await;
    let gw = acme_gateway(&echo).await;
    assert_eq!(gw.metric("gateway_config_restart_required").await, 0.0);
    let path = gw.dir().join("gateway.toml");
    let text = std::fs::read_to_string(&path).expect("gateway.toml");
    crate::harness::write_atomic(&path, &format!("{text}\n[quota]\ntimeout = \"99ms\"\n"));
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["restart_required"],
        serde_json::json!(["quota.timeout"]),
        "{body}"
    );
    assert_eq!(gw.metric("gateway_config_restart_required").await, 1.0);
    let logs = gw.logs();
    assert!(
        logs.contains("only a restart applies") && logs.contains("\"key\":\"quota.timeout\""),
        "{logs}"
    );
    // Requests keep being served by the running config.
    assert_eq!(gw.status("acme.localhost", "/").await, 200);
}
