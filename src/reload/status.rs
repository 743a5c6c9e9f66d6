//! What the last reloads did, for operators: when the config last swapped, the errors (file and
//! key) of the last rejected attempt, and which changed keys only take effect after a restart.
//!
//! It records outcomes; it does not decide them (that is [`Reloader::reload_now`](super::Reloader::reload_now)).

use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::{since_epoch, ReloadOutcome};
use crate::config::{ConfigError, StartupConfig};
use crate::quota::window::rfc3339;

#[derive(Debug, Default)]
struct Record {
    last_attempt_at: Option<u64>,
    last_result: Option<&'static str>,
    last_trigger: Option<String>,
    last_success_at: Option<u64>,
    last_failure_at: Option<u64>,
    last_errors: Vec<ConfigError>,
    restart_required: Vec<String>,
}

/// Reload history of one process, shared by the reloader and the admin API.
#[derive(Debug)]
pub struct ReloadStatus {
    /// The start-only keys the process started with: what it still runs on.
    boot: StartupConfig,
    record: Mutex<Record>,
}

impl ReloadStatus {
    /// The status right after the initial load.
    pub fn new(boot: StartupConfig) -> Self {
        let now = since_epoch(SystemTime::now()).as_secs();
        Self {
            boot,
            record: Mutex::new(Record {
                last_attempt_at: Some(now),
                last_result: Some("initial"),
                last_trigger: Some("start".into()),
                last_success_at: Some(now),
                ..Record::default()
            }),
        }
    }

    /// The start-only keys that `next` changes against the config the process started with.
    pub fn restart_required_by(&self, next: &StartupConfig) -> Vec<String> {
        self.boot.changed_keys(next)
    }

    /// The start-only keys the process runs on.
    pub fn boot(&self) -> &StartupConfig {
        &self.boot
    }

    /// Records one attempt (a swap carries the restart-required keys the reloader computed).
    pub fn record(&self, trigger: &str, outcome: &ReloadOutcome) {
        let now = since_epoch(SystemTime::now()).as_secs();
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        r.last_attempt_at = Some(now);
        r.last_trigger = Some(trigger.to_string());
        match outcome {
            ReloadOutcome::Swapped {
                restart_required, ..
            } => {
                r.last_result = Some("swapped");
                r.last_success_at = Some(now);
                r.last_errors.clear();
                r.restart_required = restart_required.clone();
            }
            ReloadOutcome::Unchanged => {
                r.last_result = Some("unchanged");
                r.last_success_at = Some(now);
                r.last_errors.clear();
            }
            ReloadOutcome::Failed(errors) => {
                r.last_result = Some("failed");
                r.last_failure_at = Some(now);
                r.last_errors = errors.0.clone();
            }
        }
    }

    /// The `reload` object of `GET /admin/v1/reload`.
    pub fn to_json(&self, config_loaded_at: SystemTime) -> Value {
        let r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = since_epoch(config_loaded_at).as_secs();
        json!({
            "config_loaded_at": rfc3339(loaded),
            "last_success_at": r.last_success_at.map(rfc3339),
            "last_attempt_at": r.last_attempt_at.map(rfc3339),
            "last_result": r.last_result,
            "last_trigger": r.last_trigger,
            "last_failure_at": r.last_failure_at.map(rfc3339),
            "last_errors": r.last_errors,
            "restart_required": r.restart_required,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigErrors, GatewayConfig, QuotaBackendKind};
    use crate::test_support::{raw_of, valid};
    use std::time::Duration;

    fn startup(g: GatewayConfig) -> StartupConfig {
        valid(raw_of(g, &[])).startup
    }

    #[test]
    fn hot_reloadable_changes_need_no_restart() {
        let boot = GatewayConfig::default();
        let mut next = boot.clone();
        next.server.base_domains.push("example.net".into());
        next.server.dev_mode = true;
        next.log.access_log = !next.log.access_log;
        next.features.push("chat".into());
        assert!(startup(boot).changed_keys(&startup(next)).is_empty());
    }

    #[test]
    fn every_restart_only_change_is_named_by_its_leaf_key() {
        type Change = fn(&mut GatewayConfig);
        let table: &[(&str, Change)] = &[
            ("server.http_listen", |c| {
                c.server.http_listen.push("127.0.0.1:2".into())
            }),
            ("server.https_listen", |c| {
                c.server.https_listen.push("127.0.0.1:1".into())
            }),
            ("server.admin_listen", |c| {
                c.server.admin_listen = "127.0.0.1:1".into()
            }),
            ("server.threads", |c| c.server.threads += 1),
            ("server.tenants_dir", |c| c.server.tenants_dir = "t2".into()),
            ("server.grace_period", |c| {
                c.server.grace_period += Duration::from_secs(1)
            }),
            ("admin.token_env", |c| c.admin.token_env = "OTHER".into()),
            ("log.level", |c| c.log.level = "debug".into()),
            ("tls.certs_dir", |c| c.tls.certs_dir = "/elsewhere".into()),
            ("acme.enabled", |c| c.acme.enabled = !c.acme.enabled),
            ("acme.retry_max", |c| {
                c.acme.retry_max += Duration::from_secs(1)
            }),
            ("quota.backend", |c| {
                c.quota.backend = QuotaBackendKind::Redis
            }),
            ("quota.timeout", |c| {
                c.quota.timeout += Duration::from_millis(1)
            }),
            ("limits.h2c", |c| c.limits.h2c = !c.limits.h2c),
        ];
        for (key, change) in table {
            let boot = GatewayConfig::default();
            let mut next = boot.clone();
            change(&mut next);
            assert_eq!(
                startup(boot).changed_keys(&startup(next)),
                vec![key.to_string()],
                "{key}"
            );
        }
    }

    #[test]
    fn failures_keep_the_restart_keys_and_successes_clear_the_errors() {
        let boot = GatewayConfig::default();
        let status = ReloadStatus::new(startup(boot.clone()));
        let mut next = boot.clone();
        next.server.threads += 3;
        status.record(
            "admin",
            &ReloadOutcome::Swapped {
                tenants: 1,
                restart_required: status.restart_required_by(&startup(next)),
            },
        );
        let errors = ConfigErrors(vec![ConfigError::new("tenants/a.toml", "plan", "unknown")]);
        status.record("file", &ReloadOutcome::Failed(errors));
        let v = status.to_json(SystemTime::now());
        assert_eq!(v["last_result"], "failed");
        assert_eq!(v["last_trigger"], "file");
        assert_eq!(v["last_errors"][0]["file"], "tenants/a.toml");
        assert_eq!(v["last_errors"][0]["key"], "plan");
        assert_eq!(v["restart_required"], json!(["server.threads"]));
        status.record("sighup", &ReloadOutcome::Unchanged);
        let v = status.to_json(SystemTime::now());
        assert_eq!(v["last_result"], "unchanged");
        assert_eq!(v["last_errors"], json!([]));
        assert!(v["last_failure_at"].is_string());
        assert_eq!(v["restart_required"], json!(["server.threads"]));
    }
}
