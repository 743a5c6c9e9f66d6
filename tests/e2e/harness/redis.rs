//! Redis for the e2e tests, spoken to with the `redis` crate: one `redis-server` (standalone
//! or a cluster node) that can be killed, frozen and restarted on its port, and a Redis
//! Cluster of such nodes formed with `redis-cli --cluster create`.
//!
//! `redis-server --port 0` does not listen, so nodes run on picked ports; a start whose port
//! was taken in between exits and is retried on another (no log grepping).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis::FromRedisValue;
use tempfile::TempDir;

use super::{eventually, free_port, start_on_picked_ports, temp_dir, Process};

/// How long a Redis process may take to answer PING, and a cluster to become `ok`.
pub const REDIS_START: Duration = Duration::from_secs(20);

const INSTALL: &str =
    "the tests need a real Redis: apt-get install redis-server (bash scripts/deps.sh test)";

/// One `redis-server` on a fixed port, no persistence unless asked; can be killed and started
/// again on the same port (a Redis outage as a gateway sees it). Killed on drop.
pub struct Redis {
    process: Option<Process>,
    port: u16,
    extra_args: Vec<String>,
    dir: TempDir,
}

impl Redis {
    /// A standalone Redis on a free port.
    pub async fn start() -> Redis {
        Self::start_with(|_dir, _port| vec![]).await
    }

    /// A standalone Redis that writes every command to its append-only file before answering,
    /// so a SIGKILL and restart keep the counters (a durable production Redis).
    pub async fn start_durable() -> Redis {
        Self::start_with(|_dir, _port| {
            ["--appendonly", "yes", "--appendfsync", "always"]
                .map(String::from)
                .to_vec()
        })
        .await
    }

    /// A Redis on a free port with extra arguments (computed from its temp dir and port).
    pub async fn start_with(extra: impl Fn(&Path, u16) -> Vec<String>) -> Redis {
        start_on_picked_ports("redis-server", || async {
            let dir = temp_dir("tg-e2e-redis-");
            let port = free_port();
            let extra_args = extra(dir.path(), port);
            let process = spawn(port, dir.path(), &extra_args).await?;
            Some(Redis {
                process: Some(process),
                port,
                extra_args,
                dir,
            })
        })
        .await
    }

    /// SIGKILL: connections drop, every counter is lost (no persistence).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts Redis again on the same port (retrying while the port is briefly unavailable).
    pub async fn restart(&mut self) {
        self.kill();
        let (port, dir, args) = (self.port, self.dir.path(), &self.extra_args);
        let what = format!("redis-server on its old port {port} again");
        self.process = Some(eventually(REDIS_START, &what, || spawn(port, dir, args)).await);
    }

    /// Sends a signal by name (`STOP` freezes Redis: connections stay open, nothing answers;
    /// `CONT` resumes it).
    pub fn signal(&self, name: &str) {
        self.process
            .as_ref()
            .expect("redis is running")
            .signal(name);
    }

    /// Whether the process is running (not killed).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command on a fresh connection (at most 2 s).
    pub async fn command<T: FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        command(&self.url(), args).await
    }
}

/// A `redis-server` on `port` with its files in `dir`, once it answers PING; `None` if it
/// exited (port taken).
async fn spawn(port: u16, dir: &Path, extra_args: &[String]) -> Option<Process> {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra_args);
    let log = dir.join(format!("redis-{port}.log"));
    let mut process = Process::spawn("redis-server", cmd, &log, INSTALL);
    let url = format!("redis://127.0.0.1:{port}");
    process
        .wait_ready(REDIS_START, || async { ping(&url).await.then_some(()) })
        .await
        .ok()?;
    Some(process)
}

/// One command to the Redis at `url` on a fresh connection, within 2 s.
pub async fn command<T: FromRedisValue>(url: &str, args: &[&str]) -> redis::RedisResult<T> {
    let attempt = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "no answer within 2 s",
            )))
        })
}

/// Whether the Redis at `url` answers PING.
pub async fn ping(url: &str) -> bool {
    command::<String>(url, &["PING"])
        .await
        .is_ok_and(|r| r == "PONG")
}

/// Runs `redis-cli` with these arguments (for `--cluster create`, which the crate has no
/// equivalent of); (success, stdout + stderr).
pub async fn redis_cli(args: &[&str]) -> (bool, String) {
    let out = match tokio::process::Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("redis-cli not found: {INSTALL}")
        }
        Err(e) => panic!("cannot run redis-cli: {e}"),
    };
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
