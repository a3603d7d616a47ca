//! The key map of a compaction pass: for each key seen in the dirty part of the log, the offset
//! of its latest record. Keys are stored as 128-bit xxh3 hashes (a collision between two keys of
//! one partition has odds around 2^-100 per pass), so an entry is 16 + 8 bytes and the map's
//! memory does not depend on key sizes.
//!
//! # Memory
//! The map lives in a `HashMap` whose table is sized once, up front, and never grows: 25 bytes
//! per bucket (the 24-byte entry plus one control byte), at most 7/8 of buckets filled, bucket
//! counts a power of two. A budget of B bytes therefore holds 7/8 of the largest power of two of
//! buckets that fits B / 25 — 28.6 bytes per key when full, and at worst half the budget unused
//! because of the rounding. When the map is full the pass ends early and the rest of the dirty
//! log is left for the next pass.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Memory of one bucket of the table.
pub const BYTES_PER_BUCKET: usize = 25;

/// A key's 128-bit hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyHash(u64, u64);

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 ^ self.1);
    }
}

/// Passes an already uniform hash through.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn hash(key: &[u8]) -> KeyHash {
    let h = xxhash_rust::xxh3::xxh3_128(key);
    KeyHash((h >> 64) as u64, h as u64)
}

/// Latest offset per key, within a fixed memory budget.
#[derive(Debug)]
pub struct KeyMap {
    map: HashMap<KeyHash, i64, BuildHasherDefault<PassThrough>>,
    limit: usize,
}

impl KeyMap {
    /// How many keys a budget of `bytes` holds.
    pub fn capacity_for(bytes: usize) -> usize {
        let buckets = (bytes / BYTES_PER_BUCKET).max(8);
        let buckets = if buckets.is_power_of_two() {
            buckets
        } else {
            buckets.next_power_of_two() / 2
        };
        buckets / 8 * 7
    }

    /// A map for at most `expected_keys` keys, never more than `budget_bytes` hold.
    pub fn new(budget_bytes: usize, expected_keys: usize) -> Self {
        let limit = Self::capacity_for(budget_bytes).min(expected_keys.max(64));
        KeyMap {
            map: HashMap::with_capacity_and_hasher(limit, BuildHasherDefault::default()),
            limit,
        }
    }

    /// Records `offset` as the latest for `key`. Returns false, changing nothing, when `key` is
    /// new and the map is full.
    pub fn insert(&mut self, key: &[u8], offset: i64) -> bool {
        let h = hash(key);
        if let Some(latest) = self.map.get_mut(&h) {
            *latest = (*latest).max(offset);
            return true;
        }
        if self.map.len() >= self.limit {
            return false;
        }
        self.map.insert(h, offset);
        true
    }

    /// The latest offset recorded for `key`.
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&hash(key)).copied()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key was recorded.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes the table occupies.
    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        let buckets = (self.map.capacity() * 8).div_ceil(7).next_power_of_two();
        buckets * BYTES_PER_BUCKET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_and_refuses_new_keys_when_full() {
        let mut map = KeyMap::new(1 << 20, 100);
        assert_eq!(map.limit, 100);
        assert!(map.insert(b"a", 5));
        assert!(
            map.insert(b"a", 3),
            "an older offset of a known key is accepted"
        );
        assert_eq!(map.latest(b"a"), Some(5));
        for i in 1..100 {
            assert!(map.insert(format!("k{i}").as_bytes(), i));
        }
        assert!(!map.insert(b"new", 1000), "full");
        assert!(map.insert(b"k7", 1000), "known keys still update");
        assert_eq!(map.latest(b"k7"), Some(1000));
        assert_eq!(map.latest(b"new"), None);
        assert_eq!(map.len(), 100);
    }

    #[test]
    fn the_budget_bounds_the_table() {
        for budget in [1 << 10, 100_000, 1 << 20, 128 << 20] {
            let keys = KeyMap::capacity_for(budget);
            let map = KeyMap::new(budget, usize::MAX);
            assert_eq!(map.limit, keys);
            assert!(
                map.allocated_bytes() <= budget.max(8 * BYTES_PER_BUCKET),
                "budget {budget}: {} bytes",
                map.allocated_bytes()
            );
            assert!(
                map.allocated_bytes() * 2 >= budget.saturating_sub(2 * BYTES_PER_BUCKET),
                "budget {budget}: at most half is lost to rounding"
            );
        }
    }
}
