//! ACME certificates for the names the config owns: tenant subdomains (when
//! `acme.issue_for_subdomains`) and verified custom domains — never an arbitrary SNI.
//!
//! One background loop per node decides, for every owned name, whether a certificate is
//! missing or due for renewal (`renew_before_ratio`, with per-name jitter), orders it through
//! http-01, writes it into the certificate store (which swaps it into the TLS resolver), and
//! backs off exponentially on failure while the existing certificate keeps serving. With the
//! Redis backend, several nodes share http-01 tokens, a per-name issuance lock and the issued
//! certificates, so one node orders and all serve.

mod challenge;
mod client;
pub mod domains;
mod error;

pub use challenge::ChallengeAnswer;
pub use error::AcmeError;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use challenge::Http01Store;
use client::AcmeClient;
use domains::DomainRegistry;

use crate::config::AcmeConfig;
use crate::metrics::Metrics;
use crate::quota::unix_now;
use crate::redis_client::{RedisClient, BACKGROUND_DEADLINE};
use crate::snapshot::SnapshotHolder;
use crate::tls::{CertEntry, CertStore};

/// A certificate as published to the other nodes.
#[derive(Serialize, Deserialize)]
struct SharedCert {
    chain: String,
    key: String,
}

/// Failure state of one name.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    next_at: u64,
}

/// The ACME manager of one node.
pub struct AcmeManager {
    cfg: AcmeConfig,
    config_dir: PathBuf,
    snapshots: Arc<SnapshotHolder>,
    certs: Arc<CertStore>,
    pub challenges: Arc<Http01Store>,
    pub domains: Arc<DomainRegistry>,
    redis: Option<Arc<RedisClient>>,
    metrics: Metrics,
    /// The account, created or restored on first use; dropped when the CA forgets it.
    client: tokio::sync::Mutex<Option<Arc<AcmeClient>>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    wake: Notify,
    node_id: String,
}

fn redis_cert_key(name: &str) -> String {
    format!("tg:acme:cert:{name}")
}

fn redis_lock_key(name: &str) -> String {
    format!("tg:acme:lock:{name}")
}

/// Deletes the lock only if this node still holds it.
const RELEASE_LOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;
/// Extends the lease only if this node still holds it.
const RENEW_LOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;
const LOCK_LEASE_MS: u64 = 90_000;

impl AcmeManager {
    pub fn new(
        cfg: AcmeConfig,
        verification_secret: Option<Vec<u8>>,
        config_dir: PathBuf,
        snapshots: Arc<SnapshotHolder>,
        certs: Arc<CertStore>,
        redis: Option<Arc<RedisClient>>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let secret = verification_secret;
        if secret.is_none() && cfg.enabled {
            tracing::warn!(env = %cfg.verification_secret_env, "domain verification secret not set; custom domains stay pending");
        }
        let state_file = certs.dir().join("acme").join("domains.json");
        let domains = Arc::new(DomainRegistry::new(
            state_file,
            redis.clone(),
            &cfg.dns_servers,
            secret,
            cfg.domain_failure_grace,
        ));
        let node_id = format!(
            "{}-{}",
            std::process::id(),
            crate::request_id::generate().to_str().unwrap_or("node")
        );
        Arc::new(Self {
            cfg,
            config_dir,
            snapshots,
            certs,
            challenges: Arc::new(Http01Store::new(redis.clone())),
            domains,
            redis,
            metrics,
            client: tokio::sync::Mutex::new(None),
            backoff: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            node_id,
        })
    }

    /// Custom domains only route once verified (this manager runs only when ACME is enabled).
    pub fn domain_routable(&self, domain: &str) -> bool {
        self.domains.is_routable(domain)
    }

    /// Checks a domain's TXT record now; when verified, wakes the loop to order its certificate.
    pub async fn verify_now(&self, domain: &str) -> Option<domains::DomainRecord> {
        let rec = self.domains.check(domain).await?;
        if matches!(
            rec.state,
            domains::DomainState::Verified | domains::DomainState::Active
        ) {
            self.backoff
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(domain);
            self.wake.notify_one();
        }
        Some(rec)
    }

    /// Every custom domain with its state and certificate expiry, for the admin API.
    pub fn report(&self) -> Vec<serde_json::Value> {
        self.domains
            .records()
            .iter()
            .map(|r| self.report_one(r))
            .collect()
    }

    /// The record of one domain with its certificate expiry and the TXT record to publish.
    pub fn report_one(&self, rec: &domains::DomainRecord) -> serde_json::Value {
        let mut v = rec.to_json(self.certs.entry(&rec.domain).map(|e| e.not_after));
        if let Some(obj) = v.as_object_mut() {
            let txt = self.domains.txt_record(&rec.tenant, &rec.domain);
            obj.insert("txt_record".into(), txt.unwrap_or(serde_json::Value::Null));
        }
        v
    }

    /// The names this config owns a certificate for.
    fn owned_names(&self) -> Vec<String> {
        let snap = self.snapshots.load();
        let mut names = Vec::new();
        if self.cfg.issue_for_subdomains {
            for t in snap.hosts.tenants() {
                names.extend(snap.hosts.subdomain_hosts_of(t));
            }
        }
        names.extend(self.domains.certifiable());
        names.sort();
        names.dedup();
        names
    }

    /// When a certificate should be renewed: `renew_before_ratio` of its lifetime before it
    /// expires, minus a per-name jitter (up to 2% of the lifetime) so nodes and names spread out.
    fn renew_at(&self, e: &CertEntry) -> u64 {
        let lifetime = (e.not_after - e.not_before).max(0) as f64;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        e.folder.hash(&mut h);
        let jitter = (h.finish() % 10_000) as f64 / 10_000.0 * 0.02 * lifetime;
        let at = e.not_after as f64 - self.cfg.renew_before_ratio * lifetime - jitter;
        at.max(0.0) as u64
    }

    fn account_file(&self) -> PathBuf {
        self.certs.dir().join("acme").join("account.json")
    }

    async fn client(&self) -> Result<Arc<AcmeClient>, AcmeError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c =
            Arc::new(AcmeClient::connect(&self.cfg, &self.config_dir, &self.account_file()).await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Forgets an account the CA no longer knows; the next attempt creates a new one.
    async fn drop_account(&self) {
        *self.client.lock().await = None;
        let file = self.account_file();
        let stale = file.with_extension("json.stale");
        if let Err(e) = std::fs::rename(&file, &stale) {
            tracing::warn!(file = %file.display(), error = %e, "cannot set the stale ACME account aside");
        }
    }

    /// One pass over every owned name.
    async fn tick(&self) {
        let configured: Vec<(String, String)> = {
            let snap = self.snapshots.load();
            snap.hosts
                .tenants()
                .flat_map(|t| {
                    t.custom_domains
                        .iter()
                        .map(|d| (t.id.to_string(), d.to_string()))
                })
                .collect()
        };
        self.domains.sync_config(&configured).await;
        for d in self.domains.due_for_check(self.cfg.domain_recheck_interval) {
            self.domains.check(&d).await;
        }
        for name in self.owned_names() {
            if let Err(e) = self.ensure(&name).await {
                self.record_failure(&name, &e);
            }
        }
    }

    /// Makes sure `name` has a current certificate.
    async fn ensure(&self, name: &str) -> Result<(), AcmeError> {
        let now = unix_now();
        self.adopt_shared(name).await;
        if let Some(e) = self.certs.entry(name) {
            let renew_at = self.renew_at(&e);
            if now < renew_at {
                self.metrics
                    .acme_next_attempt
                    .with_label_values(&[name])
                    .set(renew_at as f64);
                self.domains.set_active(name).await;
                return Ok(());
            }
        }
        if let Some(b) = self
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            if now < b.next_at {
                return Ok(());
            }
        }
        if !self.take_lock(name).await {
            return Ok(()); // another node is ordering it
        }
        let renewal = self.lease_renewal(name);
        let result = self.order_locked(name).await;
        if let Some(task) = renewal {
            task.abort();
        }
        self.release_lock(name).await;
        result
    }

    async fn order_locked(&self, name: &str) -> Result<(), AcmeError> {
        // Another node may have finished while we waited for the lock.
        if self.adopt_shared(name).await {
            if let Some(e) = self.certs.entry(name) {
                if unix_now() < self.renew_at(&e) {
                    return Ok(());
                }
            }
        }
        let client = self.client().await?;
        tracing::info!(name, "ordering certificate");
        let (chain, key) = match client.order(name, &self.challenges).await {
            Err(e @ AcmeError::AccountGone { .. }) => {
                tracing::warn!(error = %e, "the CA no longer knows our ACME account; a new one will be created");
                self.drop_account().await;
                return Err(e);
            }
            other => other?,
        };
        let entry = self.certs.install(name, chain.as_bytes(), key.as_bytes())?;
        self.publish(name, &chain, &key).await;
        self.metrics
            .acme_orders
            .with_label_values(&["success"])
            .inc();
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let renew_at = self.renew_at(&entry);
        self.metrics
            .acme_next_attempt
            .with_label_values(&[name])
            .set(renew_at as f64);
        self.domains.set_active(name).await;
        tracing::info!(name, serial = %entry.serial, not_after = entry.not_after, "certificate issued");
        Ok(())
    }

    fn record_failure(&self, name: &str, e: &AcmeError) {
        self.metrics
            .acme_orders
            .with_label_values(&["failure"])
            .inc();
        let mut map = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(name.to_string()).or_insert(Backoff {
            failures: 0,
            next_at: 0,
        });
        b.failures += 1;
        let wait = self
            .cfg
            .retry_base
            .saturating_mul(1u32 << (b.failures - 1).min(20))
            .min(self.cfg.retry_max);
        b.next_at = unix_now() + wait.as_secs().max(1);
        self.metrics
            .acme_next_attempt
            .with_label_values(&[name])
            .set(b.next_at as f64);
        tracing::warn!(name, error = %e, failures = b.failures, retry_in = ?wait, "certificate order failed; the current certificate (if any) keeps serving");
    }

    /// Installs the certificate another node published, if it is newer than ours.
    async fn adopt_shared(&self, name: &str) -> bool {
        let Some(r) = &self.redis else { return false };
        let Ok(Some(json)) = r
            .query::<Option<String>>(
                redis::cmd("GET").arg(redis_cert_key(name)),
                BACKGROUND_DEADLINE,
            )
            .await
        else {
            return false;
        };
        let Ok(shared) = serde_json::from_str::<SharedCert>(&json) else {
            return false;
        };
        let Some(der) = rustls_pemfile::certs(&mut shared.chain.as_bytes())
            .next()
            .and_then(Result::ok)
        else {
            return false;
        };
        let Ok(info) = crate::tls::leaf_info(der.as_ref()) else {
            return false;
        };
        let newer = match self.certs.entry(name) {
            Some(local) => local.serial != info.serial && info.not_after >= local.not_after,
            None => true,
        };
        if newer {
            match self
                .certs
                .install(name, shared.chain.as_bytes(), shared.key.as_bytes())
            {
                Ok(e) => {
                    tracing::info!(name, serial = %e.serial, "installed certificate published by another node")
                }
                Err(e) => {
                    tracing::warn!(name, error = %e, "certificate published by another node rejected")
                }
            }
        }
        true
    }

    async fn publish(&self, name: &str, chain: &str, key: &str) {
        let Some(r) = &self.redis else { return };
        let Ok(json) = serde_json::to_string(&SharedCert {
            chain: chain.into(),
            key: key.into(),
        }) else {
            return;
        };
        if let Err(e) = r
            .query::<()>(
                redis::cmd("SET").arg(redis_cert_key(name)).arg(json),
                BACKGROUND_DEADLINE,
            )
            .await
        {
            tracing::warn!(name, error = %e, "cannot publish certificate to Redis; other nodes will order their own");
        }
    }

    async fn take_lock(&self, name: &str) -> bool {
        let Some(r) = &self.redis else { return true };
        let cmd = redis::cmd("SET")
            .arg(redis_lock_key(name))
            .arg(&self.node_id)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_LEASE_MS)
            .clone();
        match r.query::<Option<String>>(&cmd, BACKGROUND_DEADLINE).await {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(e) => {
                // Without Redis there is no coordination; ordering alone is better than never.
                tracing::warn!(name, error = %e, "issuance lock unavailable; ordering without it");
                true
            }
        }
    }

    /// Keeps the lock's lease alive while an order runs.
    fn lease_renewal(&self, name: &str) -> Option<tokio::task::JoinHandle<()>> {
        let r = self.redis.clone()?;
        let key = redis_lock_key(name);
        let node = self.node_id.clone();
        Some(tokio::spawn(async move {
            let script = redis::Script::new(RENEW_LOCK);
            loop {
                tokio::time::sleep(Duration::from_millis(LOCK_LEASE_MS / 3)).await;
                let mut inv = script.prepare_invoke();
                inv.key(&key).arg(&node).arg(LOCK_LEASE_MS);
                let _ = r.invoke::<i64>(&inv, BACKGROUND_DEADLINE).await;
            }
        }))
    }

    async fn release_lock(&self, name: &str) {
        let Some(r) = &self.redis else { return };
        let script = redis::Script::new(RELEASE_LOCK);
        let mut inv = script.prepare_invoke();
        inv.key(redis_lock_key(name)).arg(&self.node_id);
        let _ = r.invoke::<i64>(&inv, BACKGROUND_DEADLINE).await;
    }
}

/// The background service that runs the ACME loop until shutdown.
pub struct AcmeService {
    pub manager: Arc<AcmeManager>,
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let m = &self.manager;
        loop {
            m.tick().await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(m.cfg.check_interval) => {}
                _ = m.wake.notified() => {}
            }
        }
    }
}
