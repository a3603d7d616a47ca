//! Where a partition's current manifest is: a small pointer kept in the metadata store and moved
//! with compare-and-set. The trait keeps this crate free of the metadata store's types.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;

/// The current manifest of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPointer {
    /// Manifest version.
    pub version: u64,
    /// Its object key.
    pub key: String,
}

/// A condition a pointer move is made under: the metadata-store key `key` still has `version`.
/// A compactor holds a claim on the partition under such a key; once its claim expired and
/// another compactor took the partition, its moves fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapGuard {
    /// The key (the compactor's claim).
    pub key: String,
    /// The version it must still have.
    pub version: u64,
}

/// Reads and moves manifest pointers.
#[async_trait]
pub trait ManifestPointers: Send + Sync + std::fmt::Debug {
    /// The current pointer of a partition, if it has offloaded anything.
    async fn get(&self, topic_id: Uuid, partition: i32) -> Result<Option<ManifestPointer>>;
    /// Moves the pointer from `expected` (None: no pointer yet) to `next`, if `guard` (when
    /// given) still holds. Returns false if the pointer is no longer `expected` (another writer
    /// moved it) or the guard no longer holds.
    async fn swap(
        &self,
        topic_id: Uuid,
        partition: i32,
        expected: Option<&ManifestPointer>,
        next: &ManifestPointer,
        guard: Option<&SwapGuard>,
    ) -> Result<bool>;
}

/// Pointers in memory, for tests. Guards are checked against versions set with
/// [`MemoryPointers::set_guard`].
#[derive(Debug, Default)]
pub struct MemoryPointers {
    pointers: std::sync::Mutex<std::collections::HashMap<(Uuid, i32), ManifestPointer>>,
    guards: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl MemoryPointers {
    /// Sets the version of a guard key (`None` removes it).
    pub fn set_guard(&self, key: &str, version: Option<u64>) {
        let mut guards = self
            .guards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match version {
            Some(v) => guards.insert(key.to_string(), v),
            None => guards.remove(key),
        };
    }
}

#[async_trait]
impl ManifestPointers for MemoryPointers {
    async fn get(&self, topic_id: Uuid, partition: i32) -> Result<Option<ManifestPointer>> {
        let map = self
            .pointers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(map.get(&(topic_id, partition)).cloned())
    }

    async fn swap(
        &self,
        topic_id: Uuid,
        partition: i32,
        expected: Option<&ManifestPointer>,
        next: &ManifestPointer,
        guard: Option<&SwapGuard>,
    ) -> Result<bool> {
        if let Some(guard) = guard {
            let guards = self
                .guards
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if guards.get(&guard.key) != Some(&guard.version) {
                return Ok(false);
            }
        }
        let mut map = self
            .pointers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.get(&(topic_id, partition)) != expected {
            return Ok(false);
        }
        map.insert((topic_id, partition), next.clone());
        Ok(true)
    }
}
