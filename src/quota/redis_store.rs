//! Redis quota backend: one Lua script per decision checks every key, then increments all and
//! sets their expiry, atomically. Works on standalone Redis and Redis Cluster (all keys of a
//! request share the `{tenant}` hash tag, so they live in one slot).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Demand, Outcome, QuotaError, QuotaStore};
use crate::config::QuotaConfig;

/// Checks all keys first and only then increments all of them: all-or-nothing.
/// KEYS = counters; ARGV[1] = deadline (unix ms), then amount, limit, expire_at (unix s) per key.
/// Reply: {rejected (1-based index, 0 = admitted, -1 = past deadline), counter values…}.
///
/// The deadline matters when Redis stalls: the gateway has already answered by its failure
/// policy, so a script that runs late must not count a request that was never admitted.
pub const CHECK_AND_INCREMENT: &str = r#"
local n = #KEYS
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then
  local r = {-1}
  for i = 1, n do r[i + 1] = 0 end
  return r
end
local used = {}
for i = 1, n do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  if used[i] + tonumber(ARGV[3*i-1]) > tonumber(ARGV[3*i]) then
    table.insert(used, 1, i)
    return used
  end
end
for i = 1, n do
  used[i] = redis.call('INCRBY', KEYS[i], ARGV[3*i-1])
  redis.call('EXPIREAT', KEYS[i], ARGV[3*i+1])
end
table.insert(used, 1, 0)
return used
"#;

/// A live connection: multiplexed, reconnecting on its own once established.
#[derive(Clone)]
enum Connection {
    Single(Box<ConnectionManager>),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// The `redis` backend. Starts disconnected; [`RedisQuotaStore::connect_until_ready`] (run by
/// a background service) establishes the connection, so the gateway starts and serves (by its
/// `on_backend_error` policy) even while Redis is down.
pub struct RedisQuotaStore {
    conn: ArcSwapOption<Connection>,
    script: redis::Script,
    urls: Vec<String>,
    cluster: bool,
    timeout: Duration,
}

impl RedisQuotaStore {
    pub fn new(cfg: &QuotaConfig) -> Self {
        let cluster = !cfg.redis_cluster_urls.is_empty();
        Self {
            conn: ArcSwapOption::empty(),
            script: redis::Script::new(CHECK_AND_INCREMENT),
            urls: if cluster {
                cfg.redis_cluster_urls.clone()
            } else {
                vec![cfg.redis_url.clone()]
            },
            cluster,
            timeout: cfg.timeout,
        }
    }

    async fn connect(&self) -> Result<Connection, QuotaError> {
        // Connection attempts get more time than a decision: they are off the request path.
        let connect_timeout = self.timeout.max(Duration::from_millis(500));
        if self.cluster {
            let client = redis::cluster::ClusterClient::builder(self.urls.clone())
                .connection_timeout(connect_timeout)
                .response_timeout(self.timeout.max(Duration::from_millis(200)))
                .build()?;
            Ok(Connection::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(self.urls[0].as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(connect_timeout)
                // Reconnect quickly once Redis is back: 10ms, 20ms, … capped at 500ms.
                .set_exponent_base(2)
                .set_factor(10)
                .set_max_delay(500)
                .set_number_of_retries(2);
            Ok(Connection::Single(Box::new(
                ConnectionManager::new_with_config(client, config).await?,
            )))
        }
    }

    /// Connects, retrying until it succeeds or `stop` resolves. Only the first connection is
    /// made here; afterwards the client reconnects by itself.
    pub async fn connect_until_ready(
        self: &Arc<Self>,
        mut stop: impl std::future::Future<Output = ()> + Unpin,
    ) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.connect().await {
                Ok(c) => {
                    self.conn.store(Some(Arc::new(c)));
                    tracing::info!(urls = ?self.urls, cluster = self.cluster, "quota backend connected");
                    return;
                }
                Err(e) => {
                    tracing::warn!(urls = ?self.urls, error = %e, retry_in = ?delay, "quota backend not reachable");
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    fn connection(&self) -> Result<Connection, QuotaError> {
        self.conn
            .load()
            .as_deref()
            .cloned()
            .ok_or(QuotaError::NotConnected)
    }

    /// Runs a prepared script on the backend (ACME locks).
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, QuotaError> {
        Ok(match self.connection()? {
            Connection::Single(mut c) => inv.invoke_async(&mut *c).await?,
            Connection::Cluster(mut c) => inv.invoke_async(&mut c).await?,
        })
    }

    /// Runs a raw command on the backend (admin and tests: usage reads, key listing).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, QuotaError> {
        Ok(match self.connection()? {
            Connection::Single(mut c) => cmd.query_async(&mut *c).await?,
            Connection::Cluster(mut c) => cmd.query_async(&mut c).await?,
        })
    }
}

/// Tolerated clock difference between a gateway node and Redis for decision deadlines.
const CLOCK_SKEW_ALLOWANCE_MS: u64 = 250;

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn parse_reply(reply: Vec<i64>, n: usize) -> Result<Outcome, QuotaError> {
    if reply.len() != n + 1 {
        return Err(QuotaError::Protocol("script reply length"));
    }
    let rejected = match reply[0] {
        -1 => return Err(QuotaError::Expired),
        0 => None,
        i if i >= 1 && (i as usize) <= n => Some(i as usize - 1),
        _ => return Err(QuotaError::Protocol("script rejected index")),
    };
    Ok(Outcome {
        rejected,
        used: reply[1..].iter().map(|&v| v.max(0) as u64).collect(),
    })
}

impl QuotaStore for RedisQuotaStore {
    async fn check(&self, demands: &[Demand]) -> Result<Outcome, QuotaError> {
        let mut invocation = self.script.prepare_invoke();
        // Clocks of gateway nodes and Redis may differ a little: allow that much on top.
        let deadline = unix_millis() + self.timeout.as_millis() as u64 + CLOCK_SKEW_ALLOWANCE_MS;
        invocation.arg(deadline);
        for d in demands {
            invocation.key(&d.key);
            invocation
                .arg(d.amount)
                .arg(d.limit)
                .arg(d.window.expire_at());
        }
        let reply: Vec<i64> = match self.connection()? {
            Connection::Single(mut c) => invocation.invoke_async(&mut *c).await?,
            Connection::Cluster(mut c) => invocation.invoke_async(&mut c).await?,
        };
        parse_reply(reply, demands.len())
    }

    async fn read(&self, keys: &[String]) -> Result<Vec<u64>, QuotaError> {
        // One GET per key: keys of different tenants may live in different cluster slots.
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let v: Option<u64> = self.query(redis::cmd("GET").arg(k)).await?;
            out.push(v.unwrap_or(0));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_script_replies() {
        assert_eq!(
            parse_reply(vec![0, 3, 4], 2).unwrap(),
            Outcome {
                rejected: None,
                used: vec![3, 4]
            }
        );
        assert_eq!(
            parse_reply(vec![2, 3, 4], 2).unwrap(),
            Outcome {
                rejected: Some(1),
                used: vec![3, 4]
            }
        );
        assert!(parse_reply(vec![3, 1, 1], 2).is_err());
        assert!(parse_reply(vec![0], 2).is_err());
        assert!(matches!(
            parse_reply(vec![-1, 0, 0], 2),
            Err(QuotaError::Expired)
        ));
    }
}
