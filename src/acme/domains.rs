//! Custom domain lifecycle: pending → verified (DNS TXT proves ownership) → active (certificate
//! served) → failed (TXT gone; stops routing after a grace period). State is persisted (a file
//! under the certs dir, or Redis with several nodes) so a restart does not re-verify from scratch.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_resolver::config::{NameServerConfig, Protocol, ResolverConfig, ResolverOpts};
use hickory_resolver::TokioAsyncResolver;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::quota::unix_now;
use crate::quota::window::rfc3339;
use crate::redis_client::{RedisClient, BACKGROUND_DEADLINE};

/// Name of the TXT record that proves ownership: `_tenant-gateway.<domain>`.
pub const TXT_LABEL: &str = "_tenant-gateway";
/// Prefix of the TXT value.
pub const TXT_PREFIX: &str = "tenant-gateway-verification=";
const REDIS_HASH: &str = "tg:acme:domains";

/// Where a domain is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainState {
    Pending,
    Verified,
    Active,
    Failed,
}

/// What the gateway knows about one custom domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainRecord {
    pub domain: String,
    pub tenant: String,
    pub state: DomainState,
    /// Unix seconds of the last TXT check.
    pub last_check: Option<u64>,
    pub verified_at: Option<u64>,
    /// Since when the TXT record has been missing (failed domains).
    pub failing_since: Option<u64>,
    pub error: Option<String>,
}

impl DomainRecord {
    fn new(domain: &str, tenant: &str) -> Self {
        Self {
            domain: domain.into(),
            tenant: tenant.into(),
            state: DomainState::Pending,
            last_check: None,
            verified_at: None,
            failing_since: None,
            error: None,
        }
    }

    /// Requests for the domain are routed.
    pub fn routable(&self, now: u64, grace: Duration) -> bool {
        match self.state {
            DomainState::Verified | DomainState::Active => true,
            DomainState::Failed => self
                .failing_since
                .is_some_and(|since| self.verified_at.is_some() && now < since + grace.as_secs()),
            DomainState::Pending => false,
        }
    }

    pub fn to_json(&self, cert_expiry: Option<i64>) -> serde_json::Value {
        serde_json::json!({
            "domain": self.domain,
            "tenant": self.tenant,
            "state": self.state,
            "last_check": self.last_check.map(rfc3339),
            "verified_at": self.verified_at.map(rfc3339),
            "failing_since": self.failing_since.map(rfc3339),
            "error": self.error,
            "certificate_expiry": cert_expiry.map(|t| rfc3339(t.max(0) as u64)),
        })
    }
}

/// The verification token of a tenant's domain: hex HMAC-SHA256(secret, "tenant|domain").
pub fn verification_token(secret: &[u8], tenant: &str, domain: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(tenant.as_bytes());
    mac.update(b"|");
    mac.update(domain.to_ascii_lowercase().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The record an operator creates, as a zone-file line.
pub fn txt_record_line(secret: &[u8], tenant: &str, domain: &str) -> String {
    format!(
        "{TXT_LABEL}.{domain}. 300 IN TXT \"{TXT_PREFIX}{}\"",
        verification_token(secret, tenant, domain)
    )
}

/// All custom domains, their state, and the set that routes.
pub struct DomainRegistry {
    records: Mutex<BTreeMap<String, DomainRecord>>,
    routable: ArcSwap<HashSet<Box<str>>>,
    state_file: PathBuf,
    redis: Option<Arc<RedisClient>>,
    resolver: TokioAsyncResolver,
    secret: Option<Vec<u8>>,
    grace: Duration,
}

impl DomainRegistry {
    pub fn new(
        state_file: PathBuf,
        redis: Option<Arc<RedisClient>>,
        dns_servers: &[String],
        secret: Option<Vec<u8>>,
        grace: Duration,
    ) -> Self {
        let resolver = if dns_servers.is_empty() {
            TokioAsyncResolver::tokio_from_system_conf().unwrap_or_else(|_| {
                TokioAsyncResolver::tokio(ResolverConfig::default(), ResolverOpts::default())
            })
        } else {
            let mut cfg = ResolverConfig::new();
            for s in dns_servers {
                let addr = s
                    .parse::<std::net::SocketAddr>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()));
                if let Ok(addr) = addr {
                    cfg.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                    cfg.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
                }
            }
            let mut opts = ResolverOpts::default();
            // Verification must see a record as soon as it is created.
            opts.cache_size = 0;
            opts.timeout = Duration::from_secs(3);
            opts.attempts = 2;
            TokioAsyncResolver::tokio(cfg, opts)
        };
        let records = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<BTreeMap<String, DomainRecord>>(&b).ok())
            .unwrap_or_default();
        let reg = Self {
            records: Mutex::new(records),
            routable: ArcSwap::from_pointee(HashSet::new()),
            state_file,
            redis,
            resolver,
            secret,
            grace,
        };
        reg.publish_routable();
        reg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DomainRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Does a custom domain route now? (Lock-free: read per request.)
    /// The TXT record to give the customer of `tenant` for `domain`, when the verification
    /// secret is set: `{name, value, zone_line}`.
    pub fn txt_record(&self, tenant: &str, domain: &str) -> Option<serde_json::Value> {
        let secret = self.secret.as_ref()?;
        Some(serde_json::json!({
            "name": format!("{TXT_LABEL}.{domain}"),
            "value": format!("{TXT_PREFIX}{}", verification_token(secret, tenant, domain)),
            "zone_line": txt_record_line(secret, tenant, domain),
        }))
    }

    pub fn is_routable(&self, domain: &str) -> bool {
        self.routable.load().contains(domain)
    }

    fn publish_routable(&self) {
        let now = unix_now();
        let set: HashSet<Box<str>> = self
            .lock()
            .values()
            .filter(|r| r.routable(now, self.grace))
            .map(|r| r.domain.as_str().into())
            .collect();
        self.routable.store(Arc::new(set));
    }

    /// Aligns the records with the config: new domains start pending, a domain now claimed by
    /// another tenant starts over, domains no longer configured are dropped.
    pub async fn sync_config(&self, configured: &[(String, String)]) {
        if let Some(r) = &self.redis {
            // Several nodes: Redis is the source of truth.
            if let Ok(map) = r
                .query::<BTreeMap<String, String>>(
                    redis::cmd("HGETALL").arg(REDIS_HASH),
                    BACKGROUND_DEADLINE,
                )
                .await
            {
                let mut records = self.lock();
                for (d, json) in map {
                    if let Ok(rec) = serde_json::from_str::<DomainRecord>(&json) {
                        records.insert(d, rec);
                    }
                }
            }
        }
        let changed = {
            let mut records = self.lock();
            let wanted: HashSet<&str> = configured.iter().map(|(_, d)| d.as_str()).collect();
            let before = records.len();
            records.retain(|d, _| wanted.contains(d.as_str()));
            let mut changed = before != records.len();
            for (tenant, domain) in configured {
                match records.get(domain) {
                    Some(r) if r.tenant == *tenant => {}
                    _ => {
                        records.insert(domain.clone(), DomainRecord::new(domain, tenant));
                        changed = true;
                    }
                }
            }
            changed
        };
        if changed {
            self.persist(None).await;
        }
        self.publish_routable();
    }

    /// Checks the TXT record of one domain now and updates its state. Returns the new record.
    pub async fn check(&self, domain: &str) -> Option<DomainRecord> {
        let record = self.lock().get(domain).cloned()?;
        let now = unix_now();
        let outcome = self.txt_matches(&record).await;
        let mut rec = record;
        rec.last_check = Some(now);
        match outcome {
            Ok(()) => {
                rec.error = None;
                rec.failing_since = None;
                if matches!(rec.state, DomainState::Pending | DomainState::Failed) {
                    rec.state = DomainState::Verified;
                    rec.verified_at = Some(now);
                    tracing::info!(domain, tenant = %rec.tenant, "custom domain verified");
                }
            }
            Err(e) => {
                match rec.state {
                    DomainState::Verified | DomainState::Active => {
                        rec.state = DomainState::Failed;
                        rec.failing_since = Some(now);
                        tracing::warn!(domain, tenant = %rec.tenant, error = %e, grace = ?self.grace, "custom domain lost its verification record; it stops routing after the grace period");
                    }
                    DomainState::Failed | DomainState::Pending => {}
                }
                rec.error = Some(e);
            }
        }
        self.lock().insert(domain.to_string(), rec.clone());
        self.persist(Some(&rec)).await;
        self.publish_routable();
        Some(rec)
    }

    async fn txt_matches(&self, rec: &DomainRecord) -> Result<(), String> {
        let Some(secret) = &self.secret else {
            return Err("verification secret not set (acme.verification_secret_env)".into());
        };
        let expected = format!(
            "{TXT_PREFIX}{}",
            verification_token(secret, &rec.tenant, &rec.domain)
        );
        let name = format!("{TXT_LABEL}.{}.", rec.domain);
        let lookup = self
            .resolver
            .txt_lookup(name.as_str())
            .await
            .map_err(|e| format!("TXT {name}: {e}"))?;
        let found = lookup.iter().any(|txt| {
            let joined: Vec<u8> = txt
                .txt_data()
                .iter()
                .flat_map(|d| d.iter().copied())
                .collect();
            bool::from(joined.ct_eq(expected.as_bytes()))
        });
        if found {
            Ok(())
        } else {
            Err(format!("TXT {name} does not contain the expected token"))
        }
    }

    /// Marks a domain active (its certificate is served).
    pub async fn set_active(&self, domain: &str) {
        let rec = {
            let mut records = self.lock();
            match records.get_mut(domain) {
                Some(r) if r.state == DomainState::Verified => {
                    r.state = DomainState::Active;
                    r.clone()
                }
                _ => return,
            }
        };
        self.persist(Some(&rec)).await;
        self.publish_routable();
    }

    /// Domains that may have a certificate (verified or active).
    pub fn certifiable(&self) -> Vec<String> {
        self.lock()
            .values()
            .filter(|r| matches!(r.state, DomainState::Verified | DomainState::Active))
            .map(|r| r.domain.clone())
            .collect()
    }

    /// Domains due for a TXT check: pending ones every time, the others every `recheck`.
    pub fn due_for_check(&self, recheck: Duration) -> Vec<String> {
        let now = unix_now();
        self.lock()
            .values()
            .filter(|r| match r.state {
                DomainState::Pending | DomainState::Failed => true,
                _ => r.last_check.is_none_or(|t| now >= t + recheck.as_secs()),
            })
            .map(|r| r.domain.clone())
            .collect()
    }

    pub fn records(&self) -> Vec<DomainRecord> {
        self.lock().values().cloned().collect()
    }

    async fn persist(&self, changed: Option<&DomainRecord>) {
        if let Some(r) = &self.redis {
            let records: Vec<DomainRecord> = match changed {
                Some(c) => vec![c.clone()],
                None => self.records(),
            };
            for rec in records {
                if let Ok(json) = serde_json::to_string(&rec) {
                    let _ = r
                        .query::<()>(
                            redis::cmd("HSET")
                                .arg(REDIS_HASH)
                                .arg(&rec.domain)
                                .arg(json),
                            BACKGROUND_DEADLINE,
                        )
                        .await;
                }
            }
        }
        let json = match serde_json::to_vec_pretty(&*self.lock()) {
            Ok(j) => j,
            Err(_) => return,
        };
        if let Err(e) = crate::atomic_file::write_atomic(&self.state_file, &json, 0o600) {
            tracing::warn!(file = %self.state_file.display(), error = %e, "cannot persist domain state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_hmac_of_tenant_and_domain() {
        let a = verification_token(b"secret", "acme", "Support.Acme.com");
        assert_eq!(a, verification_token(b"secret", "acme", "support.acme.com"));
        assert_ne!(
            a,
            verification_token(b"secret", "globex", "support.acme.com")
        );
        assert_ne!(a, verification_token(b"other", "acme", "support.acme.com"));
        assert_eq!(a.len(), 64);
        assert!(
            txt_record_line(b"secret", "acme", "support.acme.com").starts_with(
                "_tenant-gateway.support.acme.com. 300 IN TXT \"tenant-gateway-verification="
            )
        );
    }

    #[test]
    fn failed_domains_route_only_within_grace() {
        let mut r = DomainRecord::new("x.com", "acme");
        assert!(!r.routable(100, Duration::from_secs(10)));
        r.state = DomainState::Verified;
        r.verified_at = Some(50);
        assert!(r.routable(100, Duration::from_secs(10)));
        r.state = DomainState::Failed;
        r.failing_since = Some(95);
        assert!(r.routable(100, Duration::from_secs(10)));
        assert!(!r.routable(106, Duration::from_secs(10)));
    }
}
