//! A throwaway PostgreSQL cluster for the isolation tests: Debian's `postgresql` binaries
//! (`/usr/lib/postgresql/<version>/bin/initdb` and `postgres`), a data dir in a temp dir, TCP on
//! a picked loopback port, no Unix socket, trust authentication; the server is a
//! [`Process`] child, killed on drop. PostgreSQL refuses to run as root, so under root it runs
//! as the `postgres` system user.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::harness::{assert_success, free_port, start_on_picked_ports, temp_dir, Process};

const INSTALL_HINT: &str =
    "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run `bash scripts/deps.sh test` (installs the Debian package postgresql)";

/// The newest `/usr/lib/postgresql/<version>/bin` that has initdb.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(INSTALL_HINT)
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().expect(INSTALL_HINT).1
}

/// uid and gid of `postgres` when we are root (initdb and postgres refuse root).
fn run_as() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "running as root needs the `postgres` system user: {INSTALL_HINT}"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    Some((id("-u"), id("-g")))
}

pub struct Postgres {
    _process: Process,
    _dir: TempDir,
    pub port: u16,
}

impl Postgres {
    /// initdb, then `postgres` on a picked port (it cannot report a port 0 bind); ready when a
    /// connection succeeds. A start whose port was taken exits and is retried on another.
    pub async fn start() -> Postgres {
        let bin = bin_dir();
        let user = run_as();
        let dir = temp_dir("tg-pg-");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown pg dir");
        }
        let pg = |exe: &str| {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(bin.join(exe));
            cmd.current_dir(dir.path()).stdin(Stdio::null());
            if let Some((uid, gid)) = user {
                cmd.uid(uid).gid(gid);
            }
            cmd
        };
        let data = dir.path().join("data");
        let out = pg("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert_success("initdb", &out);
        let log = dir.path().join("server.log");
        let (process, port) = start_on_picked_ports("postgres", || async {
            let port = free_port();
            let mut cmd = pg("postgres");
            cmd.arg("-D").arg(&data);
            for setting in [
                "listen_addresses=127.0.0.1".to_string(),
                format!("port={port}"),
                "unix_socket_directories=".to_string(),
                "fsync=off".to_string(),
                "max_connections=50".to_string(),
            ] {
                cmd.args(["-c", &setting]);
            }
            let mut process = Process::spawn("postgres", cmd, &log, INSTALL_HINT);
            let mut probe = tokio_postgres::Config::new();
            probe
                .host("127.0.0.1")
                .port(port)
                .user("postgres")
                .dbname("postgres");
            process
                .wait_ready(Duration::from_secs(30), || async {
                    probe.connect(tokio_postgres::NoTls).await.ok().map(|_| ())
                })
                .await
                .ok()?;
            Some((process, port))
        })
        .await;
        Postgres {
            _process: process,
            _dir: dir,
            port,
        }
    }

    /// The libpq variables of the superuser `postgres` on this cluster (for hooks and psql).
    pub fn admin_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", "postgres".into()),
            ("PGDATABASE", "postgres".into()),
        ]
    }

    /// A tokio-postgres config for `user` on `db`.
    pub fn config(&self, user: &str, db: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1").port(self.port).user(user).dbname(db);
        cfg
    }

    /// A connection as `user` to `db`.
    pub async fn connect(&self, user: &str, db: &str) -> tokio_postgres::Client {
        let (client, conn) = self
            .config(user, db)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect {user}@{db}: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}
