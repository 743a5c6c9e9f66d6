//! The keys a running process reads once at start (listeners, threads, `[quota]`, `[acme]`,
//! `[limits]`, `log.level`, `admin.token_env`, `tls.certs_dir`, `server.tenants_dir`, …),
//! extracted from a validated config, and how two of them differ.
//!
//! The components that start once read these values from [`StartupConfig`] and nowhere else,
//! and a reload compares the whole struct against the one the process started with: a key
//! added here is compared without further code, so none can be forgotten.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{AcmeConfig, AdminConfig, LimitsConfig, QuotaConfig, TlsConfig};

/// Start-only configuration. Serialised with the same key names as `gateway.toml`, so a
/// changed key is named as the operator wrote it (`quota.timeout`).
#[derive(Debug, Clone, Serialize)]
pub struct StartupConfig {
    pub server: StartupServer,
    pub admin: AdminConfig,
    pub log: StartupLog,
    pub tls: TlsConfig,
    pub acme: AcmeConfig,
    pub quota: QuotaConfig,
    pub limits: LimitsConfig,
}

/// The start-only keys of `[server]`.
#[derive(Debug, Clone, Serialize)]
pub struct StartupServer {
    pub http_listen: Vec<SocketAddr>,
    pub https_listen: Vec<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    pub tenants_dir: String,
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

/// The start-only key of `[log]` (the tracing filter is installed once).
#[derive(Debug, Clone, Serialize)]
pub struct StartupLog {
    pub level: String,
}

impl StartupConfig {
    /// The leaf keys (`acme.enabled`, `server.threads`) whose value in `next` differs from
    /// `self`, sorted. Lists and scalars are leaves, tables recurse.
    pub fn changed_keys(&self, next: &StartupConfig) -> Vec<String> {
        let (Ok(a), Ok(b)) = (serde_json::to_value(self), serde_json::to_value(next)) else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        diff_leaves("", &a, &b, &mut changed);
        changed.sort();
        changed
    }
}

fn diff_leaves(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_leaves(
                    &child,
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
