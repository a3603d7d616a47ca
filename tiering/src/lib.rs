//! Strata's tiered partition log.
//!
//! Today this crate is the local tier: each partition is a [`PartitionLog`] of segments of record
//! batches on local disk, with sparse offset and time indexes, crash recovery, idempotent-producer
//! state and local retention. Offload of sealed segments to object storage and reads back through
//! a cache build on it.
//!
//! The crate speaks offsets, timestamps and record-batch bytes; it never sees Kafka requests,
//! responses or error codes. Records inside a batch are never decoded here.

pub mod batch;
pub mod config;
pub mod epochs;
pub mod error;
pub mod index;
pub mod log;
pub mod page_cache;
pub mod producer_state;
pub mod remote;
pub mod retention;
pub mod segment;

pub use config::LogConfig;
pub use error::{LogError, Result};
pub use log::{AppendOptions, AppendOutcome, PartitionLog, SealedSegment};
