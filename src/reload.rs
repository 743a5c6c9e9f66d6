//! Config reloads: every trigger (file change, SIGHUP, admin API) runs the same
//! load → validate → compile → swap, serialised, and a failure keeps the old snapshot serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::config::{self, ConfigErrors, StartupConfig};
use crate::metrics::Metrics;
use crate::snapshot::{Snapshot, SnapshotHolder};
use crate::tls::CertStore;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// A `*.toml` change in the config or tenants dir.
    File,
    Sighup,
    /// `POST /admin/v1/reload` or a provisioning change.
    Admin,
}

impl ReloadTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Sighup => "sighup",
            Self::Admin => "admin",
        }
    }

    /// Certificates have their own watch; explicit triggers reload them too.
    fn reloads_certificates(self) -> bool {
        self != Self::File
    }
}
pub mod status;
use status::ReloadStatus;

/// What one reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Swapped {
        tenants: usize,
        /// Start-only keys (leaf paths) whose new value waits for a restart.
        restart_required: Vec<String>,
    },
    /// The files hash to the serving snapshot: nothing swapped.
    Unchanged,
    Failed(ConfigErrors),
}

/// Loads and swaps configs for one `gateway.toml`.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    holder: Arc<SnapshotHolder>,
    metrics: Metrics,
    /// Serialises reloads so two triggers never compile concurrently and swap out of order.
    lock: Mutex<()>,
    /// Certificates reload with the config on SIGHUP and the admin trigger (they also have
    /// their own file watch).
    certs: Option<Arc<CertStore>>,
    /// Port of the first HTTPS listener as bound at start (listeners are start-only), which
    /// every reloaded snapshot's redirect names.
    https_port: Option<u16>,
    /// Outcome of the last attempts, for `GET /admin/v1/reload` and the console.
    pub status: ReloadStatus,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        holder: Arc<SnapshotHolder>,
        metrics: Metrics,
        certs: Option<Arc<CertStore>>,
        startup: StartupConfig,
        https_port: Option<u16>,
    ) -> Self {
        let status = ReloadStatus::new(startup);
        Self {
            path,
            status,
            holder,
            metrics,
            lock: Mutex::new(()),
            certs,
            https_port,
        }
    }

    pub fn config_path(&self) -> &Path {
        &self.path
    }

    /// Blocking: reads files and compiles. Call from a blocking context.
    pub fn reload_now(&self, trigger: ReloadTrigger) -> ReloadOutcome {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if trigger.reloads_certificates() {
            if let Some(certs) = &self.certs {
                certs.reload();
            }
        }
        let outcome = match config::load(&self.path) {
            Ok(valid) if valid.content_hash == self.holder.load().content_hash => {
                ReloadOutcome::Unchanged
            }
            Ok(valid) => {
                let restart_required = self.status.restart_required_by(&valid.startup);
                let next = Snapshot::compile_serving(valid, self.https_port);
                let tenants = next.hosts.len();
                self.metrics.tenants.set(tenants as i64);
                let previous = self.holder.swap(next);
                let current = self.holder.load();
                for t in previous.hosts.tenants() {
                    if current.hosts.by_id(&t.id).is_none() {
                        self.metrics.forget_tenant(&t.id);
                    }
                }
                ReloadOutcome::Swapped {
                    tenants,
                    restart_required,
                }
            }
            Err(e) => ReloadOutcome::Failed(e),
        };
        self.status.record(trigger.as_str(), &outcome);
        let (result, successful) = match &outcome {
            ReloadOutcome::Swapped { .. } => ("success", 1),
            ReloadOutcome::Unchanged => ("unchanged", 1),
            ReloadOutcome::Failed(_) => ("failure", 0),
        };
        self.metrics
            .config_reloads
            .with_label_values(&[result])
            .inc();
        self.metrics.config_last_reload_successful.set(successful);
        let trigger = trigger.as_str();
        match &outcome {
            ReloadOutcome::Swapped {
                tenants,
                restart_required,
            } => {
                self.metrics
                    .config_restart_required
                    .set(i64::from(!restart_required.is_empty()));
                for key in restart_required {
                    tracing::warn!(trigger, key = %key, "config key changed that only a restart applies; the running value stays until then");
                }
                self.metrics
                    .config_last_reload_timestamp
                    .set(since_epoch(SystemTime::now()).as_secs_f64());
                tracing::info!(trigger, tenants, "config reloaded");
            }
            ReloadOutcome::Unchanged => tracing::debug!(trigger, "config unchanged"),
            ReloadOutcome::Failed(errors) => {
                for e in &errors.0 {
                    tracing::error!(trigger, file = %e.file, key = %e.key, error = %e.message, "config reload rejected; previous config keeps serving");
                }
            }
        }
        outcome
    }

    /// Marks the initial load in the metrics.
    pub fn record_initial(&self) {
        let s = self.holder.load();
        self.metrics.tenants.set(s.hosts.len() as i64);
        self.metrics.config_last_reload_successful.set(1);
        self.metrics
            .config_last_reload_timestamp
            .set(since_epoch(SystemTime::now()).as_secs_f64());
    }
}

/// Time from the Unix epoch to `t` (zero for a time before it), for reload timestamps.
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Background service: watches the config dir and the tenants dir, listens for SIGHUP, and
/// reloads (debounced) until shutdown.
#[derive(Debug)]
pub struct ReloadService {
    pub reloader: Arc<Reloader>,
    /// Quiet time that ends a burst of file events.
    pub debounce: Duration,
    /// Longest wait from the first file event of a burst to its reload.
    pub max_delay: Duration,
    /// Set once the file watcher and the SIGHUP handler are installed: the readiness probe
    /// waits for it, so a file changed right after `/readyz` says ready is never missed.
    pub watching: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = mpsc::unbounded_channel::<ReloadTrigger>();
        let _watcher = match self.watch_files(tx.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch config files; reload with SIGHUP or the admin API");
                None
            }
        };
        // Installed here, not in the task: a SIGHUP before the handler exists would end the
        // process (the default action).
        let sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let sighup_tx = tx.clone();
        tokio::spawn(async move {
            match sighup {
                Ok(mut sig) => {
                    while sig.recv().await.is_some() {
                        if sighup_tx.send(ReloadTrigger::Sighup).is_err() {
                            break;
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot install SIGHUP handler"),
            }
        });
        self.watching.store(true, Ordering::Release);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                trigger = rx.recv() => {
                    let Some(mut trigger) = trigger else { return };
                    // SIGHUP reloads at once. File events settle first (editors write a file
                    // in several steps), but never longer than `max_delay` after the first
                    // one: files that keep changing cannot starve a reload.
                    if trigger != ReloadTrigger::Sighup {
                        let deadline = tokio::time::Instant::now() + self.max_delay;
                        loop {
                            let quiet = tokio::time::Instant::now() + self.debounce;
                            match tokio::time::timeout_at(quiet.min(deadline), rx.recv()).await {
                                Ok(Some(ReloadTrigger::Sighup)) => {
                                    trigger = ReloadTrigger::Sighup;
                                    break;
                                }
                                Ok(Some(_)) if tokio::time::Instant::now() < deadline => {}
                                Ok(Some(_)) | Err(_) => break,
                                Ok(None) => return,
                            }
                        }
                    }
                    let reloader = self.reloader.clone();
                    let _ = tokio::task::spawn_blocking(move || reloader.reload_now(trigger)).await;
                }
            }
        }
    }
}

/// True for a change that can alter the config: a `*.toml` file directly in the config or
/// tenants dir, not hidden (editor swap and lock files), not in `.deleted/`. Log files,
/// sockets and temp files written next to the config never trigger a reload.
pub fn is_config_path(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with(".toml")
        && !name.starts_with('.')
        && !path
            .components()
            .any(|c| c.as_os_str().to_str() == Some(".deleted"))
}

impl ReloadService {
    fn watch_files(
        &self,
        tx: mpsc::UnboundedSender<ReloadTrigger>,
    ) -> notify::Result<notify::RecommendedWatcher> {
        use notify::{RecursiveMode, Watcher};
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    if !ev.kind.is_access() && ev.paths.iter().any(|p| is_config_path(p)) {
                        let _ = tx.send(ReloadTrigger::File);
                    }
                }
            })?;
        let path = self.reloader.config_path();
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        let tenants = dir.join(&self.reloader.status.boot().server.tenants_dir);
        if tenants.is_dir() {
            watcher.watch(&tenants, RecursiveMode::NonRecursive)?;
        }
        Ok(watcher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_toml_files_trigger_reloads() {
        for (path, want) in [
            ("conf/gateway.toml", true),
            ("conf/tenants/acme.toml", true),
            ("conf/gateway.log", false),
            ("conf/tenants/.acme.toml.swp", false),
            ("conf/tenants/.#acme.toml", false),
            ("conf/tenants/acme.toml~", false),
            ("conf/tenants/acme.toml.tmp", false),
            ("conf/tenants/.deleted/acme.toml", false),
            ("conf/admin.sock", false),
            ("conf/tenants", false),
        ] {
            assert_eq!(is_config_path(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn every_reload_keeps_the_bound_https_port_of_a_port_0_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::create_dir(dir.path().join("tenants")).unwrap();
        let gateway = |base: &str| {
            format!(
                "[server]\nhttp_listen = [\"127.0.0.1:0\"]\nhttps_listen = [\"127.0.0.1:0\"]\n\
                 redirect_http_to_https = true\nbase_domains = [\"{base}\"]\n"
            )
        };
        std::fs::write(&path, gateway("localhost")).unwrap();
        let valid = config::load(&path).unwrap();
        let bound = Some(40123);
        let holder = Arc::new(SnapshotHolder::new(Snapshot::compile_serving(
            valid.clone(),
            bound,
        )));
        let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
        let reloader = Reloader::new(
            path.clone(),
            holder.clone(),
            metrics,
            None,
            valid.startup,
            bound,
        );
        std::fs::write(&path, gateway("example.test")).unwrap();
        let outcome = reloader.reload_now(ReloadTrigger::Admin);
        assert!(
            matches!(outcome, ReloadOutcome::Swapped { .. }),
            "{outcome:?}"
        );
        assert_eq!(
            holder.load().settings.https_port,
            bound,
            "not the configured 0"
        );
    }
}
