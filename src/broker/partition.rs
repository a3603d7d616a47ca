//! One partition as the broker serves it: its local log and its high watermark, whose changes wake
//! waiting fetches.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_tiering::{AppendOptions, AppendOutcome, LogConfig, PartitionLog};
use tokio::sync::watch;

use crate::error::{BrokerError, Result};

/// A partition led by this broker.
#[derive(Debug)]
pub struct Partition {
    index: i32,
    log: Arc<PartitionLog>,
    high_watermark: watch::Sender<i64>,
}

impl Partition {
    /// Opens (or creates) the partition's log in `dir`. Blocking: call from a blocking context.
    pub fn open(dir: &Path, index: i32, config: LogConfig, now_ms: i64) -> Result<Self> {
        let log = PartitionLog::open(dir, config, now_ms)?;
        let (high_watermark, _) = watch::channel(log.log_end_offset());
        Ok(Partition {
            index,
            log: Arc::new(log),
            high_watermark,
        })
    }

    /// The partition index.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The local log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// Appends record batches on a blocking thread (a roll fsyncs a whole segment), then publishes
    /// the new high watermark, waking fetches that wait on this partition.
    pub async fn append(&self, records: Bytes, options: AppendOptions) -> Result<AppendOutcome> {
        let log = Arc::clone(&self.log);
        let outcome = tokio::task::spawn_blocking(move || log.append(&records, options))
            .await
            .map_err(|_| BrokerError::ShuttingDown)??;
        let end = self.log.log_end_offset();
        self.high_watermark.send_if_modified(|hw| {
            let moved = end > *hw;
            *hw = (*hw).max(end);
            moved
        });
        Ok(outcome)
    }

    /// The high watermark: consumers see offsets below it. On a single node it is the log end.
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that is notified whenever the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Reads committed batches from `offset`, at most `max_bytes` (see [`PartitionLog::read`]).
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<Bytes> {
        Ok(self
            .log
            .read(offset, max_bytes, self.high_watermark(), min_one)?)
    }

    /// Moves the log start offset (DeleteRecords), publishing nothing: the high watermark stays.
    pub fn delete_records_before(&self, offset: i64, now_ms: i64) -> Result<i64> {
        if offset > self.high_watermark() {
            return Err(BrokerError::Log(
                strata_tiering::LogError::OffsetOutOfRange {
                    offset,
                    start: self.log.log_start_offset(),
                    end: self.high_watermark(),
                },
            ));
        }
        Ok(self.log.delete_records_before(offset, now_ms)?)
    }
}
