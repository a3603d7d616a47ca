//! Errors of the compaction service.

use strata_tiering::LogError;

/// Why a compaction pass failed. A failed pass changes nothing that readers see; the next pass
/// starts over.
#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    /// The log or the remote tier failed (I/O, object store, a swap that lost a race).
    #[error(transparent)]
    Log(#[from] LogError),
    /// A record batch could not be decoded or re-encoded.
    #[error("cannot rewrite the batch at offset {offset}: {reason}")]
    Records {
        /// The batch's base offset.
        offset: i64,
        /// What the codec said.
        reason: String,
    },
    /// The pass was stopped (shutdown) before it swapped anything in.
    #[error("compaction was stopped")]
    Stopped,
    /// A background task running the pass panicked or was cancelled.
    #[error("the compaction task stopped: {0}")]
    Task(String),
}

/// Results of this crate.
pub type Result<T, E = CompactionError> = std::result::Result<T, E>;
