//! The echo upstream: `tenant-gateway echo` on a picked loopback port (it cannot report a
//! port 0 bind), answering every request with JSON of what it received.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::{accepts, free_port, start_on_picked_ports, temp_dir, Process, BIN};

/// `tenant-gateway echo` on a free loopback port, killed on drop.
pub struct Echo {
    process: Process,
    port: u16,
    _dir: TempDir,
}

impl Echo {
    pub async fn start() -> Echo {
        start_on_picked_ports("echo upstream", || async {
            let dir = temp_dir("tg-e2e-echo-");
            let port = free_port();
            let mut cmd = Command::new(BIN);
            cmd.args(["echo", "--listen", &format!("127.0.0.1:{port}")]);
            let mut process = Process::spawn(
                "echo",
                cmd,
                &dir.path().join("echo.log"),
                "build it with cargo build",
            );
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            process
                .wait_ready(Duration::from_secs(20), || async {
                    accepts(addr).await.then_some(())
                })
                .await
                .ok()?;
            Some(Echo {
                process,
                port,
                _dir: dir,
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
        self.process.kill();
    }
}
