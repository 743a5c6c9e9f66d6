//! The keys of `gateway.toml` that are read once at start (listeners, threads, the quota
//! backend, ACME, logging, the admin token variable, the certificate dir) and that a reload
//! therefore cannot apply. Every reload compares them with what the process started with, so a
//! change is reported (log line naming the key, the admin reload answer, the
//! `gateway_config_restart_required` gauge) instead of silently ignored.

use serde_json::Value;

use crate::config::GatewayConfig;

/// The start-only keys and their values, as the process started (or as a reload read them).
#[derive(Debug, Clone, PartialEq)]
pub struct StartupConfig {
    entries: Vec<(&'static str, Value)>,
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl StartupConfig {
    /// Exhaustive on purpose: a new start-only key is added here.
    pub fn of(g: &GatewayConfig) -> Self {
        let s = &g.server;
        Self {
            entries: vec![
                ("server.http_listen", json(&s.http_listen)),
                ("server.https_listen", json(&s.https_listen)),
                ("server.admin_listen", json(&s.admin_listen)),
                ("server.threads", json(&s.threads)),
                ("server.tenants_dir", json(&s.tenants_dir)),
                ("server.grace_period", json(&s.grace_period.as_secs_f64())),
                ("admin.token_env", json(&g.admin.token_env)),
                ("log.level", json(&g.log.level)),
                ("tls.certs_dir", json(&g.tls.certs_dir)),
                ("quota", json(&g.quota)),
                ("acme", json(&g.acme)),
            ],
        }
    }

    /// Keys whose value in `next` differs from this one, in a stable order.
    pub fn changed_keys(&self, next: &StartupConfig) -> Vec<&'static str> {
        self.entries
            .iter()
            .zip(&next.entries)
            .filter(|((_, a), (_, b))| a != b)
            .map(|((k, _), _)| *k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reports_each_changed_start_only_key() {
        let base = GatewayConfig::default();
        let start = StartupConfig::of(&base);
        assert!(start.changed_keys(&StartupConfig::of(&base)).is_empty());
        let mut next = base.clone();
        next.quota.timeout = Duration::from_millis(99);
        next.log.level = "debug".into();
        next.server.http_listen = vec!["127.0.0.1:1".into()];
        // Reloadable keys are not reported.
        next.server.dev_mode = !base.server.dev_mode;
        next.log.access_log = !base.log.access_log;
        assert_eq!(
            start.changed_keys(&StartupConfig::of(&next)),
            ["server.http_listen", "log.level", "quota"]
        );
    }
}
