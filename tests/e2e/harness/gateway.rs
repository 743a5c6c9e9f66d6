//! A running `tenant-gateway run` on a [`GatewayConfig`]: started with port 0 for every
//! listener and `--ready-file`, so the bound addresses are read, never guessed; requests to
//! its proxy and admin listeners; its metrics and process state. Killed on drop, its logs
//! printed when a test panics.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::config::write_atomic;
use super::{
    client, eventually, find_sample, GatewayConfig, Process, TenantToml, ADMIN_TOKEN, BIN,
};

/// How long a gateway may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The listeners of a started gateway, from its ready file.
#[derive(Debug, Clone, Copy)]
struct Listeners {
    http: SocketAddr,
    https: Option<SocketAddr>,
    admin: SocketAddr,
}

impl Listeners {
    /// Parses the ready file (`{"http": [..], "https": [..], "admin": ".."}`).
    fn parse(json: &Value) -> Option<Listeners> {
        let first = |key: &str| -> Option<SocketAddr> { json[key].get(0)?.as_str()?.parse().ok() };
        Some(Listeners {
            http: first("http")?,
            https: first("https"),
            admin: json["admin"].as_str()?.parse().ok()?,
        })
    }
}

/// A running `tenant-gateway run`, killed on drop; its logs are printed when a test panics.
pub struct Gateway {
    cfg: GatewayConfig,
    process: Process,
    listeners: Listeners,
    client: reqwest::Client,
}

impl Gateway {
    pub(super) async fn start(cfg: GatewayConfig) -> Gateway {
        cfg.write();
        let logs = cfg.dir().join("logs");
        // In `run/` (like pingora's pid file and upgrade socket, below): a sub-directory, so the
        // config watcher sees no event.
        let ready_file = cfg.dir().join("run").join("ready.json");
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(cfg.config_path())
            .arg("--ready-file")
            .arg(&ready_file)
            .env("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
            // pingora's pid file and upgrade socket go under TMPDIR: keep them in the temp dir.
            .env("TMPDIR", cfg.dir().join("run"))
            .envs(cfg.envs().iter().map(|(k, v)| (k, v)));
        let mut process = Process::spawn_split(
            "gateway",
            cmd,
            &logs.join("stdout.log"),
            &logs.join("stderr.log"),
            "build it with cargo build",
        );
        let listeners = process
            .expect_ready(START_TIMEOUT, || async {
                let text = std::fs::read(&ready_file).ok()?;
                Listeners::parse(&serde_json::from_slice(&text).ok()?)
            })
            .await;
        Gateway {
            cfg,
            process,
            listeners,
            client: client(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The (first) plain proxy listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.listeners.http
    }

    /// The (first) TLS proxy listener, when `https_listen` is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.listeners.https
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin
    }

    /// `http://127.0.0.1:<port>`
    pub fn http_url(&self) -> String {
        format!("http://{}", self.listeners.http)
    }

    /// `http://127.0.0.1:<admin port>`
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.listeners.admin)
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
        let last = std::cell::RefCell::new(String::new());
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            eventually(Duration::from_secs(6), sample, || async {
                let text = self.metrics().await;
                let got = find_sample(&text, sample);
                *last.borrow_mut() = text;
                got == Some(expected)
            }),
        )
        .await;
        if waited.is_err() {
            let text = last.borrow();
            panic!(
                "{sample}: expected {expected}, got {:?}\n{text}",
                find_sample(&text, sample)
            );
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

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// stdout and stderr of the gateway so far.
    pub fn logs(&self) -> String {
        self.process.logs()
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
        // The process kills itself and prints its logs on a panic; this names the config too.
        if std::thread::panicking() {
            eprintln!("--- gateway config dir: {} ---", self.dir().display());
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}
