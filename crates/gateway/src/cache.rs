//! The verdict cache: accepted tokens, keyed by the SHA-256 of the token,
//! kept until the token (or its key) expires, in a fixed number of entries.
//!
//! Only accepted verdicts are cached. A flood of distinct garbage tokens
//! therefore cannot evict the entries of legitimate clients, and memory stays
//! bounded whatever is thrown at the gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// SHA-256 of a token.
pub(crate) type TokenHash = [u8; 32];

const SHARDS: usize = 16;

struct Entry<V> {
    /// Unix seconds after which the entry must not be used.
    until: i64,
    value: Arc<V>,
}

/// A bounded map from token hash to a shared value with an expiry time.
pub(crate) struct VerdictCache<V> {
    shards: Vec<Mutex<HashMap<TokenHash, Entry<V>>>>,
    per_shard: usize,
}

impl<V> VerdictCache<V> {
    /// A cache holding at most about `capacity` entries (0 disables it).
    pub(crate) fn new(capacity: usize) -> Self {
        VerdictCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, key: &TokenHash) -> MutexGuard<'_, HashMap<TokenHash, Entry<V>>> {
        // The key is a cryptographic hash: any byte of it is uniform.
        let m = &self.shards[usize::from(key[0]) % SHARDS];
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is a single HashMap call), so poisoning is moot.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key`, unless absent or expired at `now`.
    pub(crate) fn get(&self, key: &TokenHash, now: i64) -> Option<Arc<V>> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(e) if e.until >= now => Some(e.value.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` until `until` (unix seconds).
    pub(crate) fn insert(&self, key: TokenHash, value: Arc<V>, until: i64, now: i64) {
        if self.per_shard == 0 || until < now {
            return;
        }
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.until >= now);
            if shard.len() >= self.per_shard {
                // Still full of live entries: drop an eighth of them at once
                // so the next inserts are O(1) again rather than rescanning.
                let drop: Vec<TokenHash> = shard
                    .keys()
                    .take((self.per_shard / 8).max(1))
                    .copied()
                    .collect();
                for k in drop {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(key, Entry { until, value });
    }

    /// Forgets everything (after a policy reload, every verdict is stale).
    pub(crate) fn clear(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Number of entries, expired ones included until they are swept.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> TokenHash {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &i.to_be_bytes());
        d.as_ref().try_into().unwrap()
    }

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let c = VerdictCache::new(64);
        c.insert(key(1), Arc::new(1), 100, 50);
        assert_eq!(c.get(&key(1), 100).as_deref(), Some(&1));
        assert_eq!(c.get(&key(1), 101), None);
        // Already expired: not stored.
        c.insert(key(2), Arc::new(2), 10, 50);
        assert_eq!(c.get(&key(2), 10), None);
        for i in 0..10_000 {
            c.insert(key(i), Arc::new(i), 1000, 0);
        }
        assert!(c.len() <= 64 + SHARDS, "{}", c.len());
        // The most recent insert survives its own eviction round.
        assert_eq!(c.get(&key(9_999), 0).as_deref(), Some(&9_999));
        c.clear();
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let c = VerdictCache::new(0);
        c.insert(key(1), Arc::new(1), 100, 0);
        assert_eq!(c.get(&key(1), 0), None);
    }
}
