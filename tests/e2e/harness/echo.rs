//! The echo upstream: `tenant-gateway echo` on a picked loopback port (it cannot report a
//! port 0 bind), answering every request with JSON of what it received. It can be killed and
//! started again on its port (an upstream outage).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::{accepts, eventually, free_port, start_on_picked_ports, temp_dir, Process, BIN};

/// How long an echo process may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `tenant-gateway echo` on a free loopback port, killed on drop.
pub struct Echo {
    process: Option<Process>,
    port: u16,
    dir: TempDir,
}

impl Echo {
    pub async fn start() -> Echo {
        start_on_picked_ports("echo upstream", || async {
            let dir = temp_dir("tg-e2e-echo-");
            let port = free_port();
            let process = spawn(port, dir.path()).await?;
            Some(Echo {
                process: Some(process),
                port,
                dir,
            })
        })
        .await
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
        self.process = None;
    }

    /// Starts it again on the same port (retrying while the port is briefly unavailable).
    pub async fn restart(&mut self) {
        self.kill();
        let (port, dir) = (self.port, self.dir.path());
        let what = format!("echo upstream on its old port {port} again");
        self.process = Some(eventually(START_TIMEOUT, &what, || spawn(port, dir)).await);
    }
}

/// An echo process on `port`, once it accepts; `None` if it exited (port taken).
async fn spawn(port: u16, dir: &Path) -> Option<Process> {
    let mut cmd = Command::new(BIN);
    cmd.args(["echo", "--listen", &format!("127.0.0.1:{port}")]);
    let log = dir.join("echo.log");
    let mut process = Process::spawn("echo", cmd, &log, "build it with cargo build");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    process
        .wait_ready(START_TIMEOUT, || async {
            accepts(addr).await.then_some(())
        })
        .await
        .ok()?;
    Some(process)
}
