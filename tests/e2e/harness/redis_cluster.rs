//! A Redis Cluster for the e2e tests: 3 masters (optionally with replicas, synced before use)
//! of [`Redis`] nodes, formed with `redis-cli --cluster create`, plus the lookups failover
//! tests need (which master serves a key, cluster health), asked with the `redis` crate.

use std::time::Duration;

use super::redis::{command, redis_cli, REDIS_START};
use super::{eventually, Redis};

/// Three cluster-enabled masters joined with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Three masters, no replicas.
    pub async fn start() -> RedisCluster {
        Self::start_with(0, 15_000).await
    }

    /// Three masters with `replicas` replicas each and the given `cluster-node-timeout` (a
    /// small one makes failover fast: a replica is promoted about one timeout after its
    /// master dies). `nodes[0..3]` are the masters.
    pub async fn start_with(replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        let count = 3 * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(
                Redis::start_with(|dir, port| {
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        dir.join(format!("nodes-{port}.conf"))
                            .to_string_lossy()
                            .into_owned(),
                        "--cluster-node-timeout".into(),
                        node_timeout_ms.to_string(),
                    ]
                })
                .await,
            );
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
        args.extend(["--cluster-replicas".to_string(), replicas.to_string()]);
        args.push("--cluster-yes".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = redis_cli(&args).await;
        assert!(ok, "redis-cli --cluster create failed:\n{out}");
        let cluster = RedisCluster { nodes };
        // Replicas must have synced with their masters, or a failover cannot promote them.
        let what = format!("{} replicas synced with their masters", 3 * replicas);
        eventually(REDIS_START, &what, || async {
            let mut synced = 0;
            for node in &cluster.nodes {
                let info: String = node
                    .command(&["INFO", "replication"])
                    .await
                    .unwrap_or_default();
                if info.contains("role:slave") && info.contains("master_link_status:up") {
                    synced += 1;
                }
            }
            synced == 3 * replicas
        })
        .await;
        cluster.wait_ok(REDIS_START).await;
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node (the gateway's `redis_cluster_urls`).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// Index (into `nodes`) of the master that serves `key` now, per `CLUSTER NODES` of a
    /// live node (a master flagged `fail` does not count).
    pub async fn master_of(&self, key: &str) -> usize {
        let slot = self.keyslot(key).await;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Ok(out) = node.command::<String>(&["CLUSTER", "NODES"]).await else {
                continue;
            };
            for line in out.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 9 {
                    continue;
                }
                let flags = fields[2];
                if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                    continue;
                }
                let owns = fields[8..].iter().any(|range| {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
                });
                let node_port = fields[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                if let (true, Some(p)) = (owns, node_port) {
                    if let Some(idx) = self.nodes.iter().position(|n| n.port() == p) {
                        return idx;
                    }
                }
            }
        }
        panic!("no live node knows a healthy master of slot {slot} ({key})");
    }

    /// Waits until every live node reports `cluster_state:ok` (after forming, a failover).
    pub async fn wait_ok(&self, within: Duration) {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let what = format!("cluster node {} reports cluster_state:ok", node.port());
            eventually(within, &what, || async {
                node.command::<String>(&["CLUSTER", "INFO"])
                    .await
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })
            .await;
        }
    }

    /// `GET key` through the cluster (the cluster client follows MOVED); empty when unset.
    pub async fn get(&self, key: &str) -> String {
        let client = redis::cluster::ClusterClient::new(self.urls()).expect("cluster client");
        let mut conn = client
            .get_async_connection()
            .await
            .expect("cluster connection");
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("GET {key} through the cluster: {e}"));
        value.unwrap_or_default()
    }

    /// Every key of each node, with that node's port.
    pub async fn keys_by_node(&self) -> Vec<(u16, Vec<String>)> {
        let mut all = Vec::new();
        for node in &self.nodes {
            let keys: Vec<String> = command(&node.url(), &["KEYS", "*"])
                .await
                .unwrap_or_else(|e| panic!("KEYS on {}: {e}", node.port()));
            all.push((node.port(), keys));
        }
        all
    }

    /// `CLUSTER KEYSLOT key`.
    pub async fn keyslot(&self, key: &str) -> u16 {
        self.nodes[0]
            .command(&["CLUSTER", "KEYSLOT", key])
            .await
            .unwrap_or_else(|e| panic!("cluster keyslot {key}: {e}"))
    }
}
