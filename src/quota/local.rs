//! In-process quota backend: the same all-or-nothing semantics as Redis, for one node.
//!
//! Counters live in shards chosen by the key's hash tag (the tenant), so every key of one
//! request is in one shard and a decision is atomic under that shard's lock.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use super::{unix_now, Demand, Outcome, QuotaError, QuotaStore};

const SHARDS: usize = 32;

struct Counter {
    value: u64,
    expires_at: u64,
}

/// The `local` backend.
pub struct LocalQuotaStore {
    shards: Vec<Mutex<HashMap<String, Counter>>>,
    hasher: foldhash::fast::RandomState,
}

impl Default for LocalQuotaStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The `{tenant}` part of a key, which picks the shard.
pub(super) fn hash_tag(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .unwrap_or(key)
}

impl LocalQuotaStore {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Counter>> {
        &self.shards[(self.hasher.hash_one(hash_tag(key)) as usize) % SHARDS]
    }

    /// The decision itself, at a given time (tests pass their own clock).
    pub fn check_at(&self, demands: &[Demand], now: u64) -> Outcome {
        let Some(first) = demands.first() else {
            return Outcome {
                rejected: None,
                used: vec![],
            };
        };
        let mut map = self
            .shard(&first.key)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let current = |map: &HashMap<String, Counter>, key: &str| {
            map.get(key)
                .filter(|c| c.expires_at > now)
                .map_or(0, |c| c.value)
        };
        let used: Vec<u64> = demands.iter().map(|d| current(&map, &d.key)).collect();
        if let Some(i) = demands
            .iter()
            .zip(&used)
            .position(|(d, u)| u.saturating_add(d.amount) > d.limit)
        {
            return Outcome {
                rejected: Some(i),
                used,
            };
        }
        let mut after = Vec::with_capacity(demands.len());
        for d in demands {
            let c = map.entry(d.key.clone()).or_insert(Counter {
                value: 0,
                expires_at: 0,
            });
            if c.expires_at <= now {
                c.value = 0;
            }
            c.value += d.amount;
            c.expires_at = d.window.expire_at();
            after.push(c.value);
        }
        // Occasional sweep of expired counters so the map does not grow without bound.
        if map.len() > 10_000 && now % 16 == 0 {
            map.retain(|_, c| c.expires_at > now);
        }
        Outcome {
            rejected: None,
            used: after,
        }
    }

    pub fn read_at(&self, keys: &[String], now: u64) -> Vec<u64> {
        keys.iter()
            .map(|k| {
                let map = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
                map.get(k.as_str())
                    .filter(|c| c.expires_at > now)
                    .map_or(0, |c| c.value)
            })
            .collect()
    }
}

impl QuotaStore for LocalQuotaStore {
    async fn check(&self, demands: &[Demand<'_>]) -> Result<Outcome, QuotaError> {
        Ok(self.check_at(demands, unix_now()))
    }

    async fn read(&self, keys: &[String]) -> Result<Vec<u64>, QuotaError> {
        Ok(self.read_at(keys, unix_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Period;
    use crate::quota::test_demand;

    #[test]
    fn all_or_nothing() {
        let s = LocalQuotaStore::new();
        let now = 1_000_000;
        let full = [test_demand("messages", 3, 3, Period::Month, now)];
        assert_eq!(s.check_at(&full, now).rejected, None);
        let both = [
            test_demand("requests", 1, 100, Period::Minute, now),
            test_demand("messages", 1, 3, Period::Month, now),
        ];
        let o = s.check_at(&both, now);
        assert_eq!(o.rejected, Some(1));
        assert_eq!(o.used, vec![0, 3]);
        // Neither was consumed.
        let keys: Vec<String> = both.iter().map(|d| d.key.clone()).collect();
        assert_eq!(s.read_at(&keys, now), vec![0, 3]);
    }

    #[test]
    fn window_roll_over() {
        let s = LocalQuotaStore::new();
        let now = 2_000_000;
        let d = [test_demand("requests", 1, 2, Period::Second, now)];
        assert_eq!(s.check_at(&d, now).used, vec![1]);
        assert_eq!(s.check_at(&d, now).used, vec![2]);
        assert_eq!(s.check_at(&d, now).rejected, Some(0));
        let next = [test_demand("requests", 1, 2, Period::Second, now + 1)];
        assert_eq!(s.check_at(&next, now + 1).rejected, None);
    }

    #[test]
    fn exact_under_contention() {
        let s = std::sync::Arc::new(LocalQuotaStore::new());
        let now = 3_000_000;
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let d = [test_demand("requests", 1, 500, Period::Hour, now)];
                        if s.check_at(&d, now).rejected.is_none() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 500);
    }
}
