//! Test harness: ephemeral ports, the echo upstream, a temp-dir config builder, the gateway
//! process, Redis, and small HTTP/metrics helpers. Every process is a real child process,
//! killed on drop; every address is loopback.

// Helpers for later slices (Redis, signals, raw HTTP) are not all used by every module yet.
#![allow(dead_code)]

use std::future::Future;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tenant-gateway");

/// Bearer token of the admin API in every test gateway.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// How long a process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Ports handed out by [`free_port`]: below the kernel's ephemeral range (32768–60999 by
/// default), so the source port of some other test's outgoing connection can never take a
/// port between the moment it was picked and the moment a child process binds it (or binds it
/// again after a restart). Below 22000, so a Redis Cluster bus port (port + 10000) stays out of
/// both this range and the ephemeral one.
const PICKED_PORTS: std::ops::Range<u16> = 12000..22000;

/// A port that was free a moment ago. Picks walk [`PICKED_PORTS`] from a start that differs
/// per process, and each pick is checked by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PICKED_PORTS.end - PICKED_PORTS.start);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let seed = std::process::id().wrapping_mul(7919) % span;
        let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PICKED_PORTS.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A loopback address nothing listens on (connections are refused).
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Polls `check` every 50 ms until it returns true; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether something accepts TCP connections on `addr`.
async fn accepts(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Kills (SIGKILL) and reaps a child; errors mean it is already gone.
fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A reqwest client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

// ---------------------------------------------------------------------------------------------
// Echo upstream

/// `tenant-gateway echo` on a free loopback port.
pub struct Echo {
    child: Child,
    port: u16,
}

impl Echo {
    pub async fn start() -> Echo {
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(BIN)
                .args(["echo", "--listen", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn tenant-gateway echo");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if accepts(addr).await {
                    return Echo { child, port };
                }
                if child.try_wait().expect("try_wait echo").is_some() {
                    // Most likely someone took the port between free_port() and bind: retry.
                    break;
                }
                if Instant::now() > deadline {
                    kill_child(&mut child);
                    panic!("echo upstream did not accept on {addr} within {START_TIMEOUT:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("echo upstream exited at start 5 times");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, as written in upstream `addrs`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the echo process now (to make its upstream dead).
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------------------
// Config builder

/// One `tenants/<id>.toml`.
#[derive(Debug, Clone)]
pub struct TenantToml {
    pub id: String,
    pub plan: String,
    /// Extra top-level lines (`custom_domains = [...]`, `status = "suspended"`, ...).
    pub lines: Vec<String>,
    /// Named pool, or `None` for the inline `[upstream]` table below.
    pub pool: Option<String>,
    /// Addresses and extra lines of an inline `[upstream]` table.
    pub dedicated: Option<(Vec<String>, Vec<String>)>,
}

impl TenantToml {
    /// Plan `pro`, pool `shared`, organisation `org_<id>`.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.into(),
            plan: "pro".into(),
            lines: vec![],
            pool: Some("shared".into()),
            dedicated: None,
        }
    }

    pub fn plan(mut self, plan: &str) -> Self {
        self.plan = plan.into();
        self
    }

    /// Adds a raw top-level line.
    pub fn line(mut self, line: &str) -> Self {
        self.lines.push(line.into());
        self
    }

    pub fn pool(mut self, pool: &str) -> Self {
        self.pool = Some(pool.into());
        self.dedicated = None;
        self
    }

    /// An inline `[upstream]` table with these addresses and extra lines.
    pub fn dedicated(mut self, addrs: &[&str], lines: &[&str]) -> Self {
        self.pool = None;
        self.dedicated = Some((
            addrs.iter().map(|a| a.to_string()).collect(),
            lines.iter().map(|l| l.to_string()).collect(),
        ));
        self
    }

    pub fn file_name(&self) -> String {
        format!("{}.toml", self.id)
    }

    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "id = \"{id}\"\norganization_id = \"org_{id}\"\nname = \"{id} Inc\"\nplan = \"{plan}\"\n",
            id = self.id,
            plan = self.plan
        );
        if let Some(pool) = &self.pool {
            s.push_str(&format!("upstream = \"{pool}\"\n"));
        }
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        if let Some((addrs, lines)) = &self.dedicated {
            s.push_str(&format!("\n[upstream]\naddrs = {}\n", toml_list(addrs)));
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Writes `text` to `path` atomically (hidden temp file + rename), so a reload never reads a
/// half-written file. Hidden files are not tenants.
pub fn write_atomic(path: &Path, text: &str) {
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// A config in a temp dir: `gateway.toml`, `tenants/`, plus `logs/`, `run/` and `outside/`.
///
/// Default content: features `chat` and `analytics`; plans `free` (chat) and `pro` (chat,
/// analytics); route `/api/analytics` requires `analytics`; pool `shared` → the given addrs.
pub struct GatewayConfig {
    dir: TempDir,
    http_port: u16,
    admin_port: u16,
    server_lines: Vec<String>,
    /// (name, addrs, extra lines)
    upstreams: Vec<(String, Vec<String>, Vec<String>)>,
    /// Appended after the default plans and routes (more `[plans.x]`, `[[routes]]`).
    extra: String,
    /// Extra environment of the gateway process (`GATEWAY_JWT_SECRET`, …).
    env: Vec<(String, String)>,
}

impl GatewayConfig {
    /// A config whose `shared` pool is `shared_addrs`.
    pub fn new(shared_addrs: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tg-e2e-")
            .tempdir()
            .expect("temp dir");
        for sub in ["tenants", "logs", "run", "outside"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create sub dir");
        }
        Self {
            dir,
            http_port: free_port(),
            admin_port: free_port(),
            server_lines: vec![],
            upstreams: vec![(
                "shared".into(),
                shared_addrs.iter().map(|a| a.to_string()).collect(),
                vec![],
            )],
            extra: String::new(),
            env: vec![],
        }
    }

    /// A config whose `shared` pool is this echo.
    pub fn with_echo(echo: &Echo) -> Self {
        Self::new(&[&echo.addr()])
    }

    /// A raw line in `[server]` (`trust_tenant_header = true`).
    pub fn server(mut self, line: &str) -> Self {
        self.server_lines.push(line.into());
        self
    }

    /// Another named pool.
    pub fn pool(mut self, name: &str, addrs: &[&str], lines: &[&str]) -> Self {
        self.upstreams.retain(|(n, _, _)| n != name);
        self.upstreams.push((
            name.into(),
            addrs.iter().map(|a| a.to_string()).collect(),
            lines.iter().map(|l| l.to_string()).collect(),
        ));
        self
    }

    /// Raw TOML appended at the end of gateway.toml (tables only).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// An environment variable of the gateway process (read at start, e.g. secrets).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn tenant(self, t: TenantToml) -> Self {
        let text = t.to_toml();
        self.tenant_file(&t.file_name(), &text)
    }

    /// Writes `tenants/<name>` with raw content.
    pub fn tenant_file(self, name: &str, text: &str) -> Self {
        std::fs::write(self.dir.path().join("tenants").join(name), text).expect("write tenant");
        self
    }

    /// Writes the tenant to `outside/<id>.toml` and hard-links it as `tenants/<id>.toml`:
    /// writes through the outside path change the tenant without any event in the watched
    /// directories (see [`Gateway::write_unwatched`]).
    pub fn tenant_hardlinked(self, t: TenantToml) -> Self {
        let outside = self.dir.path().join("outside").join(t.file_name());
        std::fs::write(&outside, t.to_toml()).expect("write outside tenant");
        std::fs::hard_link(
            &outside,
            self.dir.path().join("tenants").join(t.file_name()),
        )
        .expect("hard link tenant");
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    fn render(&self) -> String {
        let mut s = String::from("features = [\"chat\", \"analytics\"]\n\n[server]\n");
        s.push_str(&format!(
            "http_listen = [\"127.0.0.1:{}\"]\nadmin_listen = \"127.0.0.1:{}\"\nthreads = 2\nbase_domains = [\"localhost\"]\n",
            self.http_port, self.admin_port
        ));
        for l in &self.server_lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("\n[log]\naccess_log = true\nlevel = \"info\"\n");
        for (name, addrs, lines) in &self.upstreams {
            s.push_str(&format!(
                "\n[upstreams.{name}]\naddrs = {}\n",
                toml_list(addrs)
            ));
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
        }
        s.push_str(
            "\n[plans.free]\nfeatures = [\"chat\"]\n\n[plans.pro]\nfeatures = [\"chat\", \"analytics\"]\n\n[[routes]]\npath_prefix = \"/api/analytics\"\nrequire_feature = \"analytics\"\n",
        );
        if !self.extra.is_empty() {
            s.push('\n');
            s.push_str(&self.extra);
        }
        s
    }

    /// Writes gateway.toml (without starting anything), for `check`.
    pub fn write(&self) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, self.render()).expect("write gateway.toml");
        path
    }

    /// Starts `tenant-gateway run` on this config and waits for `/readyz` = 200.
    pub async fn start(self) -> Gateway {
        Gateway::start(self).await
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway process

/// A running `tenant-gateway run`, killed on drop; its logs are printed when a test panics.
pub struct Gateway {
    cfg: GatewayConfig,
    child: Child,
    client: reqwest::Client,
}

impl Gateway {
    async fn start(mut cfg: GatewayConfig) -> Gateway {
        let client = client();
        for attempt in 0..4 {
            if attempt > 0 {
                cfg.http_port = free_port();
                cfg.admin_port = free_port();
            }
            cfg.write();
            let logs = cfg.dir().join("logs");
            let stdout = std::fs::File::create(logs.join("stdout.log")).expect("stdout.log");
            let stderr = std::fs::File::create(logs.join("stderr.log")).expect("stderr.log");
            let mut child = Command::new(BIN)
                .arg("run")
                .arg("--config")
                .arg(cfg.config_path())
                .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
                // pingora's pid file and upgrade socket go under TMPDIR: keep them in the
                // temp dir (a sub-directory, so the config watcher sees no event).
                .env("TMPDIR", cfg.dir().join("run"))
                .envs(cfg.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .expect("spawn tenant-gateway run");
            let readyz = format!("http://127.0.0.1:{}/readyz", cfg.admin_port);
            let ports = [cfg.http_port, cfg.admin_port];
            match wait_ready(&mut child, &client, cfg.dir(), &readyz, ports).await {
                Start::Ready => return Gateway { cfg, child, client },
                Start::PortInUse => {
                    // A parallel test took one of our ports: pick new ones.
                    kill_child(&mut child);
                    eprintln!("gateway: listen port in use, retrying with new ports");
                    continue;
                }
                outcome => {
                    kill_child(&mut child);
                    panic!(
                        "gateway did not become ready ({outcome:?}, limit {START_TIMEOUT:?})\n{}",
                        read_logs(cfg.dir())
                    );
                }
            }
        }
        panic!("gateway failed to start 4 times (port collisions)");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.cfg.http_port).into()
    }

    /// `http://127.0.0.1:<port>`
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cfg.http_port)
    }

    /// `http://127.0.0.1:<admin port>`
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cfg.admin_port)
    }

    pub fn dir(&self) -> &Path {
        self.cfg.dir()
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request to the proxy listener with the given Host header.
    pub fn request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.http_url(), path))
            .header("host", host)
    }

    /// `GET path` on the proxy listener with the given Host header.
    pub fn get(&self, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, host, path)
    }

    /// Status of `GET path` with this Host.
    pub async fn status(&self, host: &str, path: &str) -> u16 {
        self.get(host, path)
            .send()
            .await
            .expect("request to gateway")
            .status()
            .as_u16()
    }

    /// An admin request, with the bearer token when `token` is set.
    pub fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let rb = self
            .client
            .request(method, format!("{}{}", self.admin_url(), path));
        match token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// `POST /admin/v1/reload` with the token: (status, JSON body).
    pub async fn reload(&self) -> (u16, Value) {
        let resp = self
            .admin(reqwest::Method::POST, "/admin/v1/reload", Some(ADMIN_TOKEN))
            .send()
            .await
            .expect("POST /admin/v1/reload");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("reload JSON"))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.admin_url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of one sample, e.g. `gateway_requests_total{tenant="acme",status_class="2xx"}`
    /// (label order does not matter) or `gateway_tenants`.
    pub async fn metric_value(&self, sample: &str) -> Option<f64> {
        find_sample(&self.metrics().await, sample)
    }

    /// Like [`metric_value`](Self::metric_value), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metric_value(sample).await.unwrap_or(0.0)
    }

    /// Waits (up to 5 s) until a sample has exactly `expected`, else panics with the
    /// exposition. Request metrics are recorded in the logging phase, after the response has
    /// reached the client, so a scrape right after a response may not include it yet.
    pub async fn wait_metric(&self, sample: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics().await;
            let got = find_sample(&text, sample);
            if got == Some(expected) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{sample}: expected {expected}, got {got:?}\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident set size of the gateway process, KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident set size ("high water mark") of the gateway process, KiB.
    pub fn hwm_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Sends a signal by name (`HUP`, `TERM`) with kill(1): the crate forbids `unsafe`, so
    /// `libc::kill` is not available to the tests.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// stdout and stderr of the gateway so far.
    pub fn logs(&self) -> String {
        read_logs(self.dir())
    }

    /// Writes (atomically) a tenant file into the watched tenants dir.
    pub fn write_tenant(&self, t: &TenantToml) {
        self.write_tenant_file(&t.file_name(), &t.to_toml());
    }

    /// Writes (atomically) `tenants/<name>` with raw content.
    pub fn write_tenant_file(&self, name: &str, text: &str) {
        write_atomic(&self.dir().join("tenants").join(name), text);
    }

    /// Deletes `tenants/<name>`.
    pub fn remove_tenant_file(&self, name: &str) {
        std::fs::remove_file(self.dir().join("tenants").join(name)).expect("remove tenant file");
    }

    /// Rewrites a tenant created with [`GatewayConfig::tenant_hardlinked`] through its link in
    /// `outside/`: same inode, so the gateway reads the new content on its next reload, but the
    /// watched directories see no event (inotify reports to the parent of the path written).
    pub fn write_unwatched(&self, t: &TenantToml) {
        let path = self.dir().join("outside").join(t.file_name());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .expect("open outside link");
        f.write_all(t.to_toml().as_bytes())
            .expect("write outside link");
        f.sync_all().expect("sync");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// How a gateway start ended.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    Ready,
    Exited,
    /// pingora retries a busy listen address for 30 s; we pick new ports instead.
    PortInUse,
    TimedOut,
}

/// Polls `/readyz` until 200 and the process holds both `ports`, watching for an early exit
/// or a busy port.
async fn wait_ready(
    child: &mut Child,
    client: &reqwest::Client,
    dir: &Path,
    readyz: &str,
    ports: [u16; 2],
) -> Start {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return if read_logs(dir).contains("in use") {
                Start::PortInUse
            } else {
                Start::Exited
            };
        }
        if read_logs(dir).contains("is in use, will try again") {
            return Start::PortInUse;
        }
        if let Ok(resp) = client
            .get(readyz)
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            // `/readyz` only probes that *something* accepts on the proxy port; make sure it is
            // this process and not another test's that got the same port.
            if resp.status() == 200 && ports.iter().all(|&p| listens_on(child.id(), p)) {
                return Start::Ready;
            }
        }
        if Instant::now() > deadline {
            return Start::TimedOut;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (from /proc/net/tcp
/// and the process's fds).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // cols: sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (cols.len() > 9 && cols[1] == local && cols[3] == "0A")
                .then(|| format!("socket:[{}]", cols[9]))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

fn read_logs(dir: &Path) -> String {
    let read = |n: &str| std::fs::read_to_string(dir.join("logs").join(n)).unwrap_or_default();
    format!(
        "--- gateway stdout ({}) ---\n{}--- gateway stderr ---\n{}--- end ---",
        dir.display(),
        read("stdout.log"),
        read("stderr.log")
    )
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

/// `name{a="x",b="y"}` → (name, sorted label pairs).
fn parse_sample_key(key: &str) -> (String, Vec<(String, String)>) {
    let key = key.trim();
    let Some((name, rest)) = key.split_once('{') else {
        return (key.to_string(), vec![]);
    };
    let body = rest.trim_end_matches('}');
    let mut labels: Vec<(String, String)> = body
        .split("\",")
        .filter(|p| !p.trim().is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect();
    labels.sort();
    (name.to_string(), labels)
}

/// Finds one sample in Prometheus text exposition.
pub fn find_sample(text: &str, sample: &str) -> Option<f64> {
    let wanted = parse_sample_key(sample);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            (parse_sample_key(key) == wanted).then(|| value.trim().parse().ok())?
        })
}

// ---------------------------------------------------------------------------------------------
// Redis

/// `redis-server` on a free loopback port, no persistence, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    pub async fn start() -> Redis {
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("tg-e2e-redis-")
                .tempdir()
                .expect("temp dir");
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("redis.log")).expect("redis.log");
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server not found: install redis-server: apt-get install redis-server"
                ),
                Err(e) => panic!("cannot spawn redis-server: {e}"),
            };
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if redis_command(addr, &["PING"]).await.as_deref() == Some("+PONG") {
                    return Redis {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if child.try_wait().expect("try_wait redis").is_some() {
                    break; // port taken: retry with another
                }
                if Instant::now() > deadline {
                    kill_child(&mut child);
                    let log =
                        std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default();
                    panic!("redis-server did not answer PING on {addr}\n{log}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("redis-server exited at start 5 times");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command; returns the first reply line (`+PONG`, `:1`, `$3` …).
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        redis_command(self.addr(), args).await
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// One RESP command over a fresh connection; the first reply line, or `None` on any error.
pub async fn redis_command(addr: SocketAddr, args: &[&str]) -> Option<String> {
    let mut stream = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .ok()?
    .ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    text.split("\r\n").next().map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends exactly `head` (which must ask for `Connection: close`) and reads the response to EOF;
/// header names are sent with the case given, which reqwest would normalise.
pub async fn raw_http(addr: SocketAddr, head: &str) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf))
        .await
        .expect("response within 20 s")
        .expect("read response");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&buf)));
    let head = std::str::from_utf8(&buf[..split]).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Reads one response with a `Content-Length` body off a kept-alive connection.
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let split = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| "no response within 10 s".to_string())?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before a response ({} bytes read)",
                buf.len()
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    let mut body = buf[split + 4..].to_vec();
    while body.len() < len {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| "body not complete within 10 s".to_string())?
            .map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("connection closed inside the body".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_line = std::str::from_utf8(&data[..eol]).unwrap_or("0");
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
}
