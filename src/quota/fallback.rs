//! The `local` failure policy: while Redis is unavailable, decisions run against an in-process
//! counter per key and window, which starts from the usage this node last saw in Redis for that
//! key and may admit this node's `fallback_share` of the room that was left:
//!
//! `allowance = floor((limit - last_seen) * fallback_share)`.
//!
//! With N nodes at `fallback_share = 1/N`, an outage admits at most the room that was left, so
//! the total stays within the limit plus what the other nodes admitted after this node's last
//! look (see the README). A key this node never saw starts from 0.
//!
//! On the healthy path only [`LocalFallback::observe`] runs: an in-place update, allocating only
//! the first time a node sees a key (once per key and window).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use super::local::hash_tag;
use super::{Demand, Outcome};

const SHARDS: usize = 32;

#[derive(Debug, Clone, Copy)]
struct KeyState {
    /// Counter value last read from Redis.
    seen: u64,
    /// Admitted by this node without Redis since then.
    local: u64,
    /// Unix second after which the key's window is over.
    expires_at: u64,
}

/// See the module docs.
pub struct LocalFallback {
    share: f64,
    max_keys: usize,
    shards: Vec<Mutex<HashMap<Box<str>, KeyState>>>,
    hasher: foldhash::fast::RandomState,
}

impl LocalFallback {
    pub fn new(share: f64, max_keys: usize) -> Self {
        Self {
            share,
            max_keys: (max_keys / SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<Box<str>, KeyState>> {
        self.shards[(self.hasher.hash_one(hash_tag(key)) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records the counter values Redis just returned for these demands.
    pub fn observe(&self, demands: &[Demand], used: &[u64], now: u64) {
        let Some(first) = demands.first() else { return };
        let mut map = self.shard(&first.key);
        for (d, &u) in demands.iter().zip(used) {
            if let Some(s) = map.get_mut(d.key.as_str()) {
                if s.expires_at <= now {
                    s.local = 0;
                }
                s.seen = u;
                s.expires_at = d.window.end;
                continue;
            }
            if map.len() >= self.max_keys {
                map.retain(|_, s| s.expires_at > now);
                if map.len() >= self.max_keys {
                    continue;
                }
            }
            map.insert(
                d.key.as_str().into(),
                KeyState {
                    seen: u,
                    local: 0,
                    expires_at: d.window.end,
                },
            );
        }
    }

    /// One all-or-nothing decision without Redis. `used` in the outcome is this node's estimate
    /// of the counter (last seen + admitted locally).
    pub fn check(&self, demands: &[Demand], now: u64) -> Outcome {
        let Some(first) = demands.first() else {
            return Outcome {
                rejected: None,
                used: vec![],
            };
        };
        let mut map = self.shard(&first.key);
        let state = |map: &HashMap<Box<str>, KeyState>, d: &Demand| {
            map.get(d.key.as_str())
                .filter(|s| s.expires_at > now)
                .copied()
                .unwrap_or(KeyState {
                    seen: 0,
                    local: 0,
                    expires_at: d.window.end,
                })
        };
        let mut used = Vec::with_capacity(demands.len());
        let mut rejected = None;
        for (i, d) in demands.iter().enumerate() {
            let s = state(&map, d);
            used.push(s.seen.saturating_add(s.local));
            let room = d.limit.saturating_sub(s.seen);
            let allowance = (room as f64 * self.share).floor() as u64;
            if rejected.is_none() && s.local.saturating_add(d.amount) > allowance {
                rejected = Some(i);
            }
        }
        if rejected.is_some() {
            return Outcome { rejected, used };
        }
        for (d, u) in demands.iter().zip(used.iter_mut()) {
            let s = state(&map, d);
            let next = KeyState {
                local: s.local.saturating_add(d.amount),
                ..s
            };
            *u = next.seen.saturating_add(next.local);
            match map.get_mut(d.key.as_str()) {
                Some(e) => *e = next,
                None => {
                    map.insert(d.key.as_str().into(), next);
                }
            }
        }
        Outcome {
            rejected: None,
            used,
        }
    }

    /// The outage is over and what was admitted locally has been handed to write-back: fold
    /// it into `seen` (Redis will hold it) so the next outage starts from there.
    pub fn settle(&self) {
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            for s in map.values_mut() {
                s.seen = s.seen.saturating_add(s.local);
                s.local = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Period;
    use crate::quota::test_demand;
    use proptest::prelude::*;

    const NOW: u64 = 1_795_871_109;

    fn demand(resource: &str, amount: u64, limit: u64) -> Demand<'_> {
        test_demand(resource, amount, limit, Period::Hour, NOW)
    }

    #[test]
    fn a_share_of_the_room_last_seen() {
        let f = LocalFallback::new(0.5, 1000);
        let d = [demand("requests", 1, 100)];
        f.observe(&d, &[60], NOW);
        // Room 40, share 0.5: 20 admitted, then rejected.
        for i in 0..20 {
            let o = f.check(&d, NOW);
            assert_eq!(o.rejected, None, "decision {i}");
            assert_eq!(o.used, vec![61 + i]);
        }
        assert_eq!(f.check(&d, NOW).rejected, Some(0));
        // After settling, the next outage starts from 80.
        f.settle();
        for _ in 0..10 {
            assert_eq!(f.check(&d, NOW).rejected, None);
        }
        assert_eq!(f.check(&d, NOW).rejected, Some(0));
    }

    #[test]
    fn all_or_nothing_across_resources() {
        let f = LocalFallback::new(1.0, 1000);
        let both = [demand("requests", 1, 100), demand("messages", 2, 3)];
        f.observe(&both, &[0, 2], NOW);
        let o = f.check(&both, NOW);
        assert_eq!(o.rejected, Some(1));
        // Nothing was taken from `requests`.
        let o = f.check(&both[..1], NOW);
        assert_eq!(o.used, vec![1]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn admits_exactly_the_allowance(limit in 1u64..5_000, seen in 0u64..6_000, share in 0.01f64..=1.0, amount in 1u64..5) {
            let f = LocalFallback::new(share, 1000);
            let d = [demand("requests", amount, limit)];
            f.observe(&d, &[seen], NOW);
            let allowance = (limit.saturating_sub(seen) as f64 * share).floor() as u64;
            let mut admitted = 0u64;
            while f.check(&d, NOW).rejected.is_none() {
                admitted += amount;
                prop_assert!(admitted <= allowance);
            }
            prop_assert!(admitted + amount > allowance);
        }
    }
}
