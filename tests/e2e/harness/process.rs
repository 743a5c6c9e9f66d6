//! One child process of a test (gateway, echo, redis-server, pebble, postgres, …): spawned
//! with its output in log files, waited on until ready, its logs printed when the test panics,
//! killed (SIGKILL) and reaped on drop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running child process with its stdout and stderr in files.
pub struct Process {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// How waiting for a process to become ready ended without it being ready.
#[derive(Debug, PartialEq, Eq)]
pub enum NotReady {
    /// It exited (for a server on a picked port: most likely someone took the port).
    Exited,
}

impl Process {
    /// Spawns `cmd` with stdout and stderr appended to `log` (one file); a missing binary
    /// panics with `install` (how to get it), never skips.
    pub fn spawn(name: &str, cmd: Command, log: &Path, install: &str) -> Process {
        Self::spawn_split(name, cmd, log, log, install)
    }

    /// Like [`spawn`](Self::spawn), stdout and stderr in separate files.
    pub fn spawn_split(
        name: &str,
        mut cmd: Command,
        stdout: &Path,
        stderr: &Path,
        install: &str,
    ) -> Process {
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("{name}: cannot open log {}: {e}", p.display()))
        };
        let child = match cmd
            .stdin(Stdio::null())
            .stdout(open(stdout))
            .stderr(open(stderr))
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("{name}: {:?} not found: {install}", cmd.get_program())
            }
            Err(e) => panic!("{name}: cannot spawn {:?}: {e}", cmd.get_program()),
        };
        Process {
            name: name.to_string(),
            child: Some(child),
            stdout: stdout.to_path_buf(),
            stderr: stderr.to_path_buf(),
        }
    }

    /// Polls `ready` until it yields a value; [`NotReady::Exited`] if the process exits first;
    /// panics with the logs after `timeout`.
    pub async fn wait_ready<T, F, Fut>(
        &mut self,
        timeout: Duration,
        mut ready: F,
    ) -> Result<T, NotReady>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = ready().await {
                return Ok(value);
            }
            if !self.is_running() {
                return Err(NotReady::Exited);
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} was not ready within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Like [`wait_ready`](Self::wait_ready), but an exit is a failure (with the logs).
    pub async fn expect_ready<T, F, Fut>(&mut self, timeout: Duration, ready: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        match self.wait_ready(timeout, ready).await {
            Ok(value) => value,
            Err(NotReady::Exited) => {
                panic!("{} exited during start\n{}", self.name, self.logs())
            }
        }
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} was killed", self.name))
            .id()
    }

    /// SIGKILL and reap; nothing if it is already gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`, `STOP`) with kill(1): the crate forbids
    /// `unsafe`, so `libc::kill` is not available to the tests.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{signal} {pid} ({}) failed",
            self.name
        );
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Its output so far, headed by where it comes from.
    pub fn logs(&self) -> String {
        if self.stdout == self.stderr {
            return format!(
                "--- {} log ({}) ---\n{}--- end ---",
                self.name,
                self.stdout.display(),
                self.stdout()
            );
        }
        format!(
            "--- {} stdout ({}) ---\n{}--- {} stderr ---\n{}--- end ---",
            self.name,
            self.stdout.display(),
            self.stdout(),
            self.name,
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Starts a server on freshly picked ports: `start` spawns it and waits until ready; `None`
/// (it exited: a port was taken between the pick and its bind) tries again with new ports.
/// For servers that cannot bind port 0 and report it.
pub async fn start_on_picked_ports<T, F, Fut>(what: &str, mut start: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        if let Some(server) = start().await {
            return server;
        }
    }
    panic!("{what} exited at start {ATTEMPTS} times");
}

/// Panics unless a finished command succeeded, with its status and output.
#[track_caller]
pub fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
