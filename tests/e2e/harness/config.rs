//! The config of a test gateway in a temp dir: `gateway.toml` (built from defaults plus raw
//! lines), tenant files, and the atomic file write the watched directories need.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{temp_dir, Echo, Gateway};

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
    write_file_atomic(path, text, 0o644);
}

/// Writes `path` atomically: a hidden temp file in the same directory with `mode`, synced,
/// then renamed into place.
pub fn write_file_atomic(path: &Path, contents: &str, mode: u32) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .expect("create temp file");
    f.write_all(contents.as_bytes()).expect("write temp file");
    f.sync_all().expect("sync temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// A config in a temp dir: `gateway.toml`, `tenants/`, plus `logs/`, `run/` and `outside/`.
///
/// Default content: features `chat` and `analytics`; plans `free` (chat) and `pro` (chat,
/// analytics); route `/api/analytics` requires `analytics`; pool `shared` → the given addrs.
pub struct GatewayConfig {
    dir: TempDir,
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
        let dir = temp_dir("tg-e2e-");
        for sub in ["tenants", "logs", "run", "outside"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create sub dir");
        }
        Self {
            dir,
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

    /// Extra environment of the gateway process.
    pub(super) fn envs(&self) -> &[(String, String)] {
        &self.env
    }

    fn render(&self) -> String {
        let mut s = String::from("features = [\"chat\", \"analytics\"]\n\n[server]\n");
        // Port 0: the gateway binds free ports and reports them in its ready file.
        s.push_str(
            "http_listen = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\nthreads = 2\nbase_domains = [\"localhost\"]\n",
        );
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

    /// Starts `tenant-gateway run` on this config and waits until it is ready.
    pub async fn start(self) -> Gateway {
        Gateway::start(self).await
    }
}
