//! Strata's background compaction service: `cleanup.policy=compact` for the local log of every
//! replica and for the remote tier, as a pure planner (`plan`) and executors that do the I/O
//! (`local`, `remote`). Retention by time and size lives with the logs themselves
//! (`strata_tiering::retention`, `RemotePartition::apply_retention`); the unreferenced-object
//! sweep is `strata_tiering::remote::sweep`.
//!
//! # A pass
//! 1. Plan (`plan::plan_pass`): the cleanable log is the sealed segments below the first
//!    uncleanable offset and older than `min.compaction.lag.ms`; a pass runs when its uncleaned
//!    ("dirty") share reaches `min.cleanable.dirty.ratio`, when the oldest dirty record is older
//!    than `max.compaction.lag.ms`, or when a kept tombstone's `delete.retention.ms` ran out.
//! 2. Map (`pass::MapBuilder`): the dirty records' keys and latest offsets go into a [`KeyMap`]
//!    of fixed memory; when it is full the pass ends there (`pass_end`) and the rest waits for the
//!    next pass.
//! 3. Rewrite (`pass::rewrite_segment`): every segment from the log start up to `pass_end` is
//!    read, grouped (`plan::group_segments`) and rewritten keeping the records `plan::keep_record`
//!    keeps. Offsets are preserved (compaction leaves gaps, never renumbers), batches are
//!    re-encoded with their codec and a new CRC, transactional and control batches are kept
//!    whole.
//! 4. Swap: locally `PartitionLog::swap_cleaned`, remotely `RemotePartition::swap_compacted`
//!    (one manifest version replaces every rewritten run at once). The checkpoint (cleaned up to
//!    `pass_end`, when a kept tombstone may go) is stored with the swap.

pub mod config;
pub mod error;
pub mod filter;
pub mod keymap;
pub mod local;
pub mod metrics;
pub mod pass;
pub mod plan;
pub mod remote;
pub mod throttle;

#[cfg(test)]
mod test_support;

pub use config::CompactionConfig;
pub use error::{CompactionError, Result};
pub use keymap::KeyMap;
pub use local::{LocalBounds, compact_local};
pub use metrics::CompactionMetrics;
pub use pass::PassReport;
pub use remote::{RemoteLimits, compact_remote, plan_remote};
pub use throttle::Throttle;
