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

/// Reads and moves manifest pointers.
#[async_trait]
pub trait ManifestPointers: Send + Sync + std::fmt::Debug {
    /// The current pointer of a partition, if it has offloaded anything.
    async fn get(&self, topic_id: Uuid, partition: i32) -> Result<Option<ManifestPointer>>;
    /// Moves the pointer from `expected` (None: no pointer yet) to `next`. Returns false if the
    /// pointer is no longer `expected`: another writer moved it.
    async fn swap(
        &self,
        topic_id: Uuid,
        partition: i32,
        expected: Option<&ManifestPointer>,
        next: &ManifestPointer,
    ) -> Result<bool>;
}

/// Pointers in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryPointers {
    pointers: std::sync::Mutex<std::collections::HashMap<(Uuid, i32), ManifestPointer>>,
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
    ) -> Result<bool> {
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
