//! The cluster metadata store: a small versioned key-value store with compare-and-set, behind a
//! trait so the single-node embedded store and etcd (`etcd.rs`) are interchangeable.
//!
//! Keys are named only in [`keys`]; typed records on top of the raw store live in [`catalog`].

pub mod catalog;
#[cfg(test)]
mod conformance;
pub mod embedded;
pub mod etcd;
mod history;
pub mod keys;
pub mod pointers;
pub mod registration;
mod watch;

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

/// One write of a [`MetadataStore::transact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Sets `key` to `value`.
    Put {
        /// The key written.
        key: String,
        /// The new value.
        value: String,
    },
    /// Removes `key` (no error if missing).
    Delete {
        /// The key removed.
        key: String,
    },
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

/// The conflict a failed transaction reports: its first conditional key.
fn conflict(conditions: &[(String, Expect)]) -> MetadataError {
    let key = conditions
        .iter()
        .find(|(_, expect)| *expect != Expect::Any)
        .map_or("", |(key, _)| key.as_str());
    MetadataError::Conflict {
        key: key.to_string(),
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
    /// Applies every write if every condition holds, atomically; otherwise writes nothing and
    /// fails with [`MetadataError::Conflict`] naming the first conditional key (etcd does not say
    /// which condition failed). Returns the store revision of the writes: the new version of each
    /// written key (the current revision if nothing changed, e.g. deletes of missing keys). A key
    /// may be written at most once per transaction (etcd refuses repeats).
    ///
    /// This fences a writer: a controller conditions its writes on the controller key at the
    /// version it wrote, so they fail once another controller has taken over.
    async fn transact(
        &self,
        conditions: &[(String, Expect)],
        writes: Vec<Write>,
    ) -> Result<u64, MetadataError>;
    /// A receiver whose value changes whenever a key under `prefix` is written or deleted, and
    /// whenever the watch is (re-)established: once at the start, and again after an etcd outage.
    /// So a caller that reads once at start and re-reads on every change never misses a write.
    /// The first value is available at once; the first change only says that the watch is in
    /// place (at once for the embedded store). The watch lives while any receiver (or clone)
    /// does. Must be called within a Tokio runtime.
    fn watch(&self, prefix: &str) -> tokio::sync::watch::Receiver<u64>;
    /// The store's history: 0, raised each time the store is found to have gone back in time
    /// (etcd restored from a backup or a snapshot, or wiped), after which versions restart below
    /// those already seen. Versions compare only within one history. Read it just before the
    /// request whose versions it qualifies: an answer that turned out to come from a later
    /// history is then taken for an earlier one (and ignored until read again), never an answer
    /// of an earlier history for a later one. The embedded store never goes back.
    fn history(&self) -> u64 {
        0
    }
}
