//! The cluster metadata store: a small versioned key-value store with compare-and-set, behind a
//! trait so the single-node embedded store and etcd (`etcd.rs`) are interchangeable.
//!
//! Keys are named only in [`keys`]; typed records on top of the raw store live in [`catalog`].

pub mod catalog;
#[cfg(test)]
mod conformance;
pub mod embedded;
pub mod etcd;
pub mod keys;
pub mod pointers;
pub mod registration;

use std::fmt::Debug;

use async_trait::async_trait;

/// A value and the version it was written at. Versions grow with every write to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored value: a UTF-8 JSON document.
    pub value: String,
    /// The store revision of the last write to this key.
    pub version: u64,
}

/// The condition a write is made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write unconditionally.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist at exactly this version.
    Version(u64),
}

/// Failures of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A conditional write found the key in another state.
    #[error("metadata key '{key}' changed concurrently")]
    Conflict {
        /// The key written.
        key: String,
    },
    /// The store cannot be reached or written.
    #[error("the metadata store is unavailable: {0}")]
    Unavailable(String),
    /// A stored document could not be decoded.
    #[error("metadata key '{key}' holds an unreadable value: {reason}")]
    Corrupt {
        /// The key read.
        key: String,
        /// Why it could not be decoded.
        reason: String,
    },
}

impl MetadataError {
    /// Whether retrying the operation may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            MetadataError::Conflict { .. } | MetadataError::Unavailable(_)
        )
    }
}

/// A versioned key-value store with compare-and-set.
#[async_trait]
pub trait MetadataStore: Send + Sync + Debug {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetadataError>;
    /// Lists every key under `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetadataError>;
    /// Writes `value` if `expect` holds; returns the new version.
    async fn put(&self, key: &str, value: String, expect: Expect) -> Result<u64, MetadataError>;
    /// Deletes `key` if `expect` holds. Deleting a missing key with [`Expect::Any`] succeeds.
    async fn delete(&self, key: &str, expect: Expect) -> Result<(), MetadataError>;
}
