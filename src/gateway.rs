//! Assembles the running gateway from a config file: pingora server, proxy listeners, admin
//! listener and background services. `main.rs` only parses the command line and calls [`run`].

mod listeners;

pub use listeners::{BindError, ListenerAddrs};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::acme::{AcmeManager, AcmeService};
use crate::admin::AdminApp;
use crate::config::{self, ConfigErrors};
use crate::limits::connection::{ConnRegistry, ConnectionGuard};
use crate::limits::per_client::ClientLimiter;
use crate::limits::{raise_fd_limit, LimitMetrics, RequestLimits};
use crate::metrics::Metrics;
use crate::proxy::TenantProxy;
use crate::quota::QuotaEngine;
use crate::reload::{ReloadService, Reloader};
use crate::snapshot::{Snapshot, SnapshotHolder};
use crate::tls::{CertResolver, CertStore, CertWatchService, SniCapture};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Listen(#[from] BindError),
}

/// Options of `run` that are not part of the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Take over the listening sockets of a running instance (zero-downtime upgrade).
    pub upgrade: bool,
    /// Where to write the bound listener addresses (JSON) once the gateway is ready.
    pub ready_file: Option<PathBuf>,
}

/// Loads, validates and compiles the config, then serves until shutdown. Never returns on
/// success (pingora exits the process).
pub fn run(config_path: &Path, opts: RunOptions) -> Result<(), StartError> {
    let valid = config::load(config_path)?;
    init_logging(&valid.startup.log.level);
    raise_fd_limit();

    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    // The start-only keys: every component below that starts once reads them from here.
    let startup = valid.startup.clone();
    let secrets = valid.secrets.clone();
    let config_dir = valid.dir.clone();
    let trust_tenant_header = valid.server.trust_tenant_header;
    let admin_token = secrets.admin_token.clone();
    if admin_token.is_none() {
        tracing::warn!(env = %startup.admin.token_env, "admin token not set; /admin/v1/* answers 401");
    }

    let certs = CertStore::open(
        valid.certs_dir(),
        &valid.server.base_domains,
        metrics.clone(),
    )
    .map_err(StartError::Tls)?;
    // Listeners are bound before the first compile: a port-0 HTTPS listener's redirect names
    // the port it got.
    let run_dir = runtime_dir(config_path);
    if let Some(path) = &opts.ready_file {
        // A ready file left by an earlier run must not announce this one before it is ready.
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove the old ready file");
            }
        }
    }
    let listen_strings =
        |list: &[SocketAddr]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
    let http_listen = listen_strings(&startup.server.http_listen);
    let https_listen = listen_strings(&startup.server.https_listen);
    let admin_listen = startup.server.admin_listen.to_string();
    let record = ListenerAddrs::record_path(&run_dir);
    let inherited = opts.upgrade.then(|| ListenerAddrs::read(&record)).flatten();
    let (bound, mut sockets) = ListenerAddrs::bind(
        &http_listen,
        &https_listen,
        &admin_listen,
        inherited.as_ref(),
    )?;
    if ListenerAddrs::any_port_zero(&http_listen, &https_listen, &admin_listen) {
        // An upgrading successor reads which ports the port-0 listeners got.
        if let Err(e) = bound.write(&record) {
            tracing::warn!(file = %record.display(), error = %e, "cannot record the bound listener addresses; an upgrade will bind new ports");
        }
    }
    let bound = Arc::new(bound);
    let https_port = bound.https_socket_addrs().first().map(|a| a.port());
    let holder = Arc::new(SnapshotHolder::new(Snapshot::compile_serving(
        valid, https_port,
    )));
    let reloader = Arc::new(Reloader::new(
        config_path.to_path_buf(),
        holder.clone(),
        metrics.clone(),
        Some(certs.clone()),
        startup.clone(),
        https_port,
    ));
    reloader.record_initial();

    let quota = QuotaEngine::new(&startup.quota, metrics.clone());
    let acme = startup.acme.enabled.then(|| {
        AcmeManager::new(
            startup.acme.clone(),
            secrets.domain_verification.clone(),
            config_dir.clone(),
            holder.clone(),
            certs.clone(),
            quota.redis_client(),
            metrics.clone(),
        )
    });
    let conf = ServerConf {
        threads: startup.server.threads,
        pid_file: run_dir
            .join("tenant-gateway.pid")
            .to_string_lossy()
            .into_owned(),
        upgrade_sock: run_dir.join("upgrade.sock").to_string_lossy().into_owned(),
        // pingora keeps in-flight requests running for the grace period after SIGTERM/SIGQUIT,
        // then gives runtimes one more second to stop.
        grace_period_seconds: Some(startup.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        // Every peer/downstream timeout on tokio's timer instead of pingora's fast-timeout
        // wheel: fewer instructions and allocations per request (issue 12, measured with
        // benches/insn.sh).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let draining = Arc::new(AtomicBool::new(false));

    let limits = Arc::new(startup.limits.clone());
    let limit_metrics = LimitMetrics::register(&registry)?;
    let connections = Arc::new(ConnRegistry::default());
    let request_limits = Arc::new(RequestLimits {
        limits: limits.clone(),
        connections: connections.clone(),
        per_client: ClientLimiter::new(
            &startup.limits.per_client,
            trust_tenant_header,
            limit_metrics.clone(),
        ),
        metrics: limit_metrics.clone(),
    });
    let mut http_proxy = pingora::proxy::http_proxy(
        &server.configuration,
        TenantProxy::new(
            holder.clone(),
            metrics.clone(),
            quota.clone(),
            acme.clone(),
            draining.clone(),
            request_limits,
        ),
    );
    http_proxy.server_options = Some(limits.server_options());
    http_proxy.h2_options = Some(limits.h2_options());
    // Every accepted stream goes through the connection guard (head deadline, keep-alive,
    // HTTP/2 reset budget) before pingora reads it.
    let mut proxy = Service::new(
        "tenant proxy".to_string(),
        ConnectionGuard::new(http_proxy, limits, connections, limit_metrics),
    );
    for addr in &bound.http {
        proxy.add_tcp(addr);
    }
    for addr in &bound.https {
        let mut tls = TlsSettings::with_callbacks(Box::new(SniCapture {
            metrics: metrics.clone(),
        }))
        .map_err(|e| StartError::Tls(e.to_string()))?;
        tls.set_cert_resolver(Arc::new(CertResolver {
            store: certs.clone(),
        }));
        tls.enable_h2();
        proxy.add_tls_with_settings(&addr.to_string(), None, tls);
    }

    let ready = Arc::new(AtomicBool::new(false));
    let mut admin = Service::new(
        "admin".to_string(),
        HttpServer::new_app(AdminApp {
            snapshots: holder.clone(),
            metrics: metrics.clone(),
            reloader: reloader.clone(),
            ready: ready.clone(),
            listeners: bound.clone(),
            token: admin_token,
            quota: quota.clone(),
            acme: acme.clone(),
        }),
    );
    admin.add_tcp(&bound.admin);
    admin.threads = Some(1);

    let reload_watching = Arc::new(AtomicBool::new(false));
    let readiness = background_service(
        "readiness",
        ReadinessProbe {
            addrs: bound.http_socket_addrs(),
            tls_addrs: bound.https_socket_addrs(),
            admin_addr: bound.admin_socket_addr(),
            listeners: bound.clone(),
            ready_file: opts.ready_file.clone(),
            ready,
            reload_watching: reload_watching.clone(),
        },
    );
    let reload = background_service(
        "config reload",
        ReloadService {
            reloader,
            debounce: Duration::from_millis(250),
            max_delay: Duration::from_secs(1),
            watching: reload_watching,
        },
    );

    let proxy_sockets = sockets.take(&[bound.http.clone(), bound.https.clone()].concat());
    server.add_service(proxy_sockets.serve_with(proxy));
    server.add_service(
        sockets
            .take(std::slice::from_ref(&bound.admin))
            .serve_with(admin),
    );
    server.add_service(readiness);
    server.add_service(reload);
    server.add_service(background_service(
        "certificate watch",
        CertWatchService {
            store: certs,
            debounce: Duration::from_millis(250),
        },
    ));
    if let Some(manager) = acme {
        server.add_service(background_service("acme", AcmeService { manager }));
    }
    if quota.redis_client().is_some() {
        server.add_service(background_service(
            "quota backend",
            QuotaConnector {
                quota: quota.clone(),
            },
        ));
    }
    tracing::info!(
        config = %config_path.display(),
        http = ?bound.http,
        https = ?bound.https,
        admin = %bound.admin,
        threads = startup.server.threads,
        "tenant-gateway starting"
    );
    watch_for_drain(&server, draining);
    server.run(pingora::server::RunArgs::default());
    // Lines the access-log writer has not written yet.
    crate::access_log::flush();
    std::process::exit(0)
}

/// Sets `draining` once the process stops taking new work (SIGQUIT hand-over to a new binary,
/// SIGTERM): responses then carry `Connection: close`, so keep-alive clients reconnect — to the
/// successor — between requests instead of racing the close of an idle connection.
fn watch_for_drain(server: &Server, draining: Arc<AtomicBool>) {
    use pingora::server::ExecutionPhase;
    let mut phases = server.watch_execution_phase();
    let spawned = std::thread::Builder::new()
        .name("drain-watch".into())
        .spawn(move || {
            while let Ok(phase) = phases.blocking_recv() {
                if matches!(
                    phase,
                    ExecutionPhase::GracefulUpgradeTransferringFds
                        | ExecutionPhase::GracefulUpgradeCloseTimeout
                        | ExecutionPhase::GracefulTerminate
                ) {
                    draining.store(true, Ordering::Release);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for shutdown; keep-alive clients may see closed connections on upgrade");
    }
}

/// Where the pid file and upgrade socket of this config live: one directory per config path,
/// so several gateways on one machine (tests, blue/green) never share them.
fn runtime_dir(config_path: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let abs = std::fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    abs.hash(&mut h);
    let dir = std::env::temp_dir().join(format!("tenant-gateway-{:016x}", h.finish()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create runtime dir");
    }
    dir
}

/// The Redis client's health probe and the quota write-back, until shutdown.
struct QuotaConnector {
    quota: Arc<QuotaEngine>,
}

#[async_trait]
impl BackgroundService for QuotaConnector {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.quota
            .maintain_backend(async move {
                let _ = shutdown.changed().await;
            })
            .await;
    }
}

/// Marks the gateway ready once every proxy listener accepts connections and the admin
/// listener is bound and the reload service watches the config files, then writes the
/// `--ready-file`.
///
/// A plain listener counts only when it answers a request with this process's nonce echoed in
/// `X-Request-Id` — so another process holding the port (pingora retries a busy bind for a
/// while) does not make the gateway look ready. TLS listeners are checked by connecting.
struct ReadinessProbe {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    listeners: Arc<ListenerAddrs>,
    ready_file: Option<PathBuf>,
    ready: Arc<AtomicBool>,
    /// Set by the reload service once it watches the config files.
    reload_watching: Arc<AtomicBool>,
}

/// Sends one request and checks the reply carries `nonce` (the gateway echoes X-Request-Id).
async fn answers_with_nonce(addr: SocketAddr, nonce: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "GET /.well-known/tenant-gateway-readiness HTTP/1.1\r\nHost: readiness.invalid\r\nX-Request-Id: {nonce}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::with_capacity(1024);
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).contains(nonce))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}

#[async_trait]
impl BackgroundService for ReadinessProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let nonce = format!(
            "readiness-{}-{}",
            std::process::id(),
            crate::request_id::generate().to_str().unwrap_or("x")
        );
        // All listeners of the proxy service are bound together, so a plain listener answering
        // proves the TLS ones too; TLS listeners are probed (by connecting, which pingora logs
        // as an aborted handshake) only when there is no plain one.
        let tls_only: &[SocketAddr] = if self.addrs.is_empty() {
            &self.tls_addrs
        } else {
            &[]
        };
        let checks = self
            .addrs
            .iter()
            .map(|a| (a, true))
            .chain(tls_only.iter().map(|a| (a, false)))
            .chain(self.admin_addr.iter().map(|a| (a, false)));
        for (addr, plain) in checks {
            loop {
                let ok = if plain {
                    answers_with_nonce(*addr, &nonce).await
                } else {
                    tokio::net::TcpStream::connect(addr).await.is_ok()
                };
                if ok {
                    break;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }
        // Ready also means a config file changed from now on is seen.
        while !self.reload_watching.load(Ordering::Acquire) {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        self.ready.store(true, Ordering::Release);
        if let Some(path) = &self.ready_file {
            if let Err(e) = self.listeners.write(path) {
                tracing::error!(file = %path.display(), error = %e, "cannot write the ready file");
            }
        }
        tracing::info!(listeners = ?self.listeners, "ready");
    }
}

/// JSON logs on stdout; `RUST_LOG` overrides the configured level.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
