//! A throwaway PostgreSQL cluster for the isolation tests: Debian's `postgresql` binaries
//! (`/usr/lib/postgresql/<version>/bin/initdb` and `pg_ctl`), a data dir in a temp dir, TCP on
//! a free loopback port, no Unix socket, trust authentication; stopped on drop. PostgreSQL
//! refuses to run as root, so under root it runs as the `postgres` system user.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use crate::harness::free_port;

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
    dir: TempDir,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    pub port: u16,
}

impl Postgres {
    /// initdb + pg_ctl start -w; panics with the server log when it does not come up.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let user = run_as();
        let dir = tempfile::Builder::new()
            .prefix("tg-pg-")
            .tempdir()
            .expect("temp dir");
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
        for attempt in 0..4 {
            let port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c fsync=off -c max_connections=50"
            );
            let log = dir.path().join("server.log");
            let out = pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-w", "-t", "30", "-o", &options, "-l"])
                .arg(&log)
                .arg("start")
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                return Postgres {
                    dir,
                    bin,
                    user,
                    port,
                };
            }
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            if attempt < 3 && log_text.contains("Address already in use") {
                continue;
            }
            panic!(
                "pg_ctl start failed: {}\n{}\n{log_text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        unreachable!("pg_ctl start loop returns or panics")
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

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Postgres {
    fn drop(&mut self) {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd.status();
    }
}
