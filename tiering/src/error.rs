//! Errors of the tiered log.

use std::io;
use std::path::PathBuf;

/// What went wrong in the log. Kafka error codes are chosen from these at the protocol edge.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A record batch failed validation: wrong magic, bad length or CRC mismatch.
    #[error("corrupt record batch: {reason}")]
    CorruptBatch {
        /// Why the batch was rejected.
        reason: String,
    },
    /// A record batch is well-formed but not acceptable from a producer (record count that
    /// disagrees with its offsets, a control batch, a retry mixed with new batches).
    #[error("invalid record batch: {reason}")]
    InvalidRecord {
        /// Why the batch was refused.
        reason: String,
    },
    /// A record batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge {
        /// The batch's size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An idempotent producer sent a sequence number that does not follow the last one.
    #[error("producer {producer_id} sent sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The next sequence the log expected.
        expected: i32,
        /// The sequence the batch carried.
        got: i32,
    },
    /// An idempotent producer used an epoch older than one the log has seen.
    #[error("producer {producer_id} used epoch {got}, but epoch {current} is current")]
    ProducerFenced {
        /// The producer id.
        producer_id: i64,
        /// The current epoch.
        current: i16,
        /// The epoch the batch carried.
        got: i16,
    },
    /// A read or a log-start move asked for an offset the log does not hold.
    #[error("offset {offset} is outside the log's range [{start}, {end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset.
        start: i64,
        /// The log end offset.
        end: i64,
    },
    /// Batches copied from the leader do not continue the log: the first does not start at the
    /// log end offset, or one does not start where the previous one ended.
    #[error("a replicated batch starts at offset {got}, but the log continues at {expected}")]
    OffsetMismatch {
        /// The offset the log expected the batch to start at.
        expected: i64,
        /// The batch's base offset.
        got: i64,
    },
    /// An object store request failed (after the store's own retries).
    #[error("object store request for {key} failed: {source}")]
    ObjectStore {
        /// The object key.
        key: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// A remote object or manifest is not what the manifest promised (missing data, bad CRC,
    /// unreadable JSON).
    #[error("remote object {key} is corrupt: {reason}")]
    CorruptRemote {
        /// The object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A leader append under an epoch older than the log's latest: the broker stopped leading at
    /// that epoch while the append waited, and the log already holds a newer leader's batches.
    #[error("an append under leader epoch {epoch} came after batches of epoch {latest}")]
    StaleLeaderEpoch {
        /// The append's epoch.
        epoch: i32,
        /// The newest epoch in the log.
        latest: i32,
    },
    /// Another writer moved the manifest pointer: this one must stop writing the partition.
    #[error("the manifest of {partition} was moved by another writer")]
    Fenced {
        /// The partition, as `topic-id/partition`.
        partition: String,
    },
    /// A compaction swap names a segment the manifest no longer lists: the manifest changed since
    /// the pass read it, and the pass must be planned again.
    #[error("remote segment {key} was replaced or expired while it was being compacted")]
    SwapConflict {
        /// The segment's object key.
        key: String,
    },
    /// The metadata store holding manifest pointers failed.
    #[error("manifest pointer store failed: {0}")]
    PointerStore(String),
    /// A file of the log could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl LogError {
    /// Whether retrying the operation may succeed (a transient remote or metadata failure).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            LogError::ObjectStore { .. } | LogError::PointerStore(_) | LogError::Io { .. }
        )
    }

    /// Whether the object store said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, LogError::ObjectStore { source, .. }
            if matches!(**source, object_store::Error::NotFound { .. }))
    }

    /// Wraps an object store error with the key it concerned.
    pub fn object_store(key: impl ToString, source: object_store::Error) -> Self {
        LogError::ObjectStore {
            key: key.to_string(),
            source: Box::new(source),
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a [`LogError::CorruptBatch`].
    pub fn corrupt(reason: impl Into<String>) -> Self {
        LogError::CorruptBatch {
            reason: reason.into(),
        }
    }
}

/// Result type of the tiered log.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
