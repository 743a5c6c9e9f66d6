//! Redis quota backend: one Lua script per decision checks every key, then increments all and
//! sets their expiry, atomically. Works on standalone Redis and Redis Cluster (all keys of a
//! request share the `{tenant}` hash tag, so they live in one slot).

use std::sync::Arc;

use super::{Demand, Outcome, QuotaError, QuotaStore};
use crate::redis_client::{RedisClient, BACKGROUND_DEADLINE};

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

/// The `redis` backend: the decision script on the shared [`RedisClient`].
pub struct RedisQuotaStore {
    client: Arc<RedisClient>,
    script: redis::Script,
}

impl RedisQuotaStore {
    pub fn new(client: Arc<RedisClient>) -> Self {
        Self {
            client,
            script: redis::Script::new(CHECK_AND_INCREMENT),
        }
    }

    pub fn client(&self) -> &Arc<RedisClient> {
        &self.client
    }
}

/// Tolerated clock difference between a gateway node and Redis for decision deadlines. A script
/// that runs after the gateway gave up but within this allowance still counts (an over-count of
/// at most the timed-out decisions; never an under-count), so it is kept small: NTP keeps
/// nodes within a few ms of each other.
const CLOCK_SKEW_ALLOWANCE_MS: u64 = 50;

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
    async fn check(&self, demands: &[Demand<'_>]) -> Result<Outcome, QuotaError> {
        let mut invocation = self.script.prepare_invoke();
        // Clocks of gateway nodes and Redis may differ a little: allow that much on top.
        let timeout = self.client.request_deadline();
        let deadline = unix_millis() + timeout.as_millis() as u64 + CLOCK_SKEW_ALLOWANCE_MS;
        invocation.arg(deadline);
        for d in demands {
            invocation.key(&d.key);
            invocation
                .arg(d.amount)
                .arg(d.limit)
                .arg(d.window.expire_at());
        }
        let reply: Vec<i64> = self.client.invoke(&invocation, timeout).await?;
        parse_reply(reply, demands.len())
    }

    async fn read(&self, keys: &[String]) -> Result<Vec<u64>, QuotaError> {
        // One GET per key: keys of different tenants may live in different cluster slots.
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let v: Option<u64> = self
                .client
                .query(redis::cmd("GET").arg(k), BACKGROUND_DEADLINE)
                .await?;
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
