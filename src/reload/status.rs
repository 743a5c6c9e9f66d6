//! What the last reloads did, for operators: when the config last swapped, the errors (file and
//! key) of the last rejected attempt, and which changed keys only take effect after a restart.
//!
//! It records outcomes; it does not decide them (that is [`Reloader::reload_now`](super::Reloader::reload_now)).

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::ReloadOutcome;
use crate::config::{ConfigError, GatewayConfig};
use crate::quota::window::rfc3339;

/// Keys (dotted paths into `gateway.toml`) read once at start: a reload validates and stores
/// them, but the running process keeps the values it started with. A table name covers every
/// key inside it.
pub const RESTART_KEYS: &[&str] = &[
    "server.http_listen",
    "server.https_listen",
    "server.admin_listen",
    "server.threads",
    "server.tenants_dir",
    "server.grace_period",
    "admin.token_env",
    "log.level",
    "tls.certs_dir",
    "acme",
    "quota",
    "limits",
];

/// The keys of [`RESTART_KEYS`] whose value in `next` differs from `boot`, as leaf paths
/// (`acme.enabled`, `server.threads`), sorted.
pub fn restart_required(boot: &GatewayConfig, next: &GatewayConfig) -> Vec<String> {
    let (Ok(boot), Ok(next)) = (serde_json::to_value(boot), serde_json::to_value(next)) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    for key in RESTART_KEYS {
        let pointer = format!("/{}", key.replace('.', "/"));
        diff_leaves(
            key,
            boot.pointer(&pointer).unwrap_or(&Value::Null),
            next.pointer(&pointer).unwrap_or(&Value::Null),
            &mut changed,
        );
    }
    changed.sort();
    changed
}

/// Pushes the path of every leaf that differs; lists and scalars are leaves, tables recurse.
fn diff_leaves(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff_leaves(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

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
    /// The config the process started with: what the restart-only keys still run on.
    boot: GatewayConfig,
    record: Mutex<Record>,
}

impl ReloadStatus {
    /// The status right after the initial load.
    pub fn new(boot: &GatewayConfig) -> Self {
        let now = unix_now();
        Self {
            boot: boot.clone(),
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
    pub fn restart_required_by(&self, next: &GatewayConfig) -> Vec<String> {
        restart_required(&self.boot, next)
    }

    /// Records one attempt (a swap carries the restart-required keys the reloader computed).
    pub fn record(&self, trigger: &str, outcome: &ReloadOutcome) {
        let now = unix_now();
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
        let loaded = config_loaded_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigErrors, QuotaBackendKind};
    use std::time::Duration;

    #[test]
    fn hot_reloadable_changes_need_no_restart() {
        let boot = GatewayConfig::default();
        let mut next = boot.clone();
        next.server.base_domains.push("example.net".into());
        next.server.dev_mode = true;
        next.log.access_log = !next.log.access_log;
        next.features.push("chat".into());
        assert!(restart_required(&boot, &next).is_empty());
    }

    #[test]
    fn every_restart_only_change_is_named_by_its_leaf_key() {
        type Change = fn(&mut GatewayConfig);
        let table: &[(&str, Change)] = &[
            ("server.http_listen", |c| c.server.http_listen.clear()),
            ("server.https_listen", |c| {
                c.server.https_listen.push("127.0.0.1:1".into())
            }),
            ("server.admin_listen", |c| {
                c.server.admin_listen = "127.0.0.1:1".into()
            }),
            ("server.threads", |c| c.server.threads += 1),
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
        ];
        for (key, change) in table {
            let boot = GatewayConfig::default();
            let mut next = boot.clone();
            change(&mut next);
            assert_eq!(
                restart_required(&boot, &next),
                vec![key.to_string()],
                "{key}"
            );
        }
    }

    #[test]
    fn failures_keep_the_restart_keys_and_successes_clear_the_errors() {
        let boot = GatewayConfig::default();
        let status = ReloadStatus::new(&boot);
        let mut next = boot.clone();
        next.server.threads += 3;
        status.record(
            "admin",
            &ReloadOutcome::Swapped {
                tenants: 1,
                restart_required: status.restart_required_by(&next),
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
