//! One partition as the broker serves it: its local log, its remote side, and its high watermark,
//! whose changes wake waiting fetches. Offsets below the local log start are read from the remote
//! tier; the partition's log start is the remote start once anything was offloaded.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_tiering::remote::{RemotePartition, RemoteTier};
use strata_tiering::{AppendOptions, AppendOutcome, LogConfig, LogError, PartitionLog};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{BrokerError, Result};

/// The leader epoch stamped on batches and uploads; fixed until replication elects leaders.
const LEADER_EPOCH: i32 = 0;

/// A partition led by this broker.
#[derive(Debug)]
pub struct Partition {
    index: i32,
    log: Arc<PartitionLog>,
    remote: Arc<RemotePartition>,
    high_watermark: watch::Sender<i64>,
}

impl Partition {
    /// Opens the partition: its remote manifest first, then its local log in `dir`, which starts
    /// where the remote tier ends when the local copy is gone.
    pub async fn open(
        dir: &Path,
        tier: Arc<RemoteTier>,
        topic_id: Uuid,
        index: i32,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self> {
        let remote = RemotePartition::open(tier, topic_id, index).await?;
        let manifest = remote.manifest().await;
        let start = manifest.end_offset().unwrap_or(0);
        let dir = dir.to_path_buf();
        let log =
            tokio::task::spawn_blocking(move || PartitionLog::open_at(&dir, config, start, now_ms))
                .await
                .map_err(|_| BrokerError::ShuttingDown)??;
        if let Some(end) = manifest.end_offset() {
            log.set_remote_end_offset(end);
        }
        let (high_watermark, _) = watch::channel(log.log_end_offset());
        Ok(Partition {
            index,
            log: Arc::new(log),
            remote: Arc::new(remote),
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

    /// The remote side.
    pub fn remote(&self) -> &RemotePartition {
        &self.remote
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

    /// The first readable offset, across both tiers.
    pub async fn log_start_offset(&self) -> i64 {
        let local = self.log.log_start_offset();
        match self.remote.manifest().await.start_offset() {
            Some(remote) => remote.min(local),
            None => local,
        }
    }

    /// Whether reading `offset` goes to the remote tier.
    pub fn is_remote(&self, offset: i64) -> bool {
        offset < self.log.log_start_offset()
    }

    /// Reads committed batches from `offset`, at most `max_bytes` (see
    /// [`PartitionLog::read`]), from whichever tier holds it.
    pub async fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<Bytes> {
        if self.is_remote(offset) {
            let start = self.log_start_offset().await;
            if offset < start {
                return Err(out_of_range(offset, start, self.high_watermark()));
            }
            return Ok(self.remote.read(offset, max_bytes, min_one).await?);
        }
        // Positional reads of up to a fetch's size, and a lock an append may hold through a roll's
        // fsync: off the async workers.
        let (log, hw) = (Arc::clone(&self.log), self.high_watermark());
        Ok(
            tokio::task::spawn_blocking(move || log.read(offset, max_bytes, hw, min_one))
                .await
                .map_err(|_| BrokerError::ShuttingDown)??,
        )
    }

    /// The first batch whose records reach `timestamp`, from either tier.
    pub async fn batch_at_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>> {
        let start = self.log_start_offset().await;
        if start < self.log.log_start_offset()
            && let Some(batch) = self.remote.batch_at_timestamp(timestamp, start).await?
        {
            return Ok(Some(batch));
        }
        let log = Arc::clone(&self.log);
        Ok(
            tokio::task::spawn_blocking(move || log.batch_at_timestamp(timestamp))
                .await
                .map_err(|_| BrokerError::ShuttingDown)??,
        )
    }

    /// Moves the log start offset in both tiers (DeleteRecords); returns the new start.
    pub async fn delete_records_before(&self, offset: i64, now_ms: i64) -> Result<i64> {
        if offset > self.high_watermark() || offset < 0 {
            return Err(out_of_range(
                offset,
                self.log_start_offset().await,
                self.high_watermark(),
            ));
        }
        self.remote.move_start(offset).await?;
        self.move_local_start(offset, now_ms).await?;
        Ok(self.log_start_offset().await)
    }

    async fn move_local_start(&self, offset: i64, now_ms: i64) -> Result<()> {
        if offset <= self.log.log_start_offset() {
            return Ok(());
        }
        let log = Arc::clone(&self.log);
        tokio::task::spawn_blocking(move || log.delete_records_before(offset, now_ms))
            .await
            .map_err(|_| BrokerError::ShuttingDown)??;
        Ok(())
    }

    /// Offloads sealed segments if the topic keeps a remote tier.
    pub async fn offload(&self, now_ms: i64) -> Result<usize> {
        Ok(self.remote.offload(&self.log, LEADER_EPOCH, now_ms).await?)
    }

    /// Retention in both tiers: local segments by the local limits (only once offloaded, with
    /// remote storage), remote segments by the totals, and the local start follows the remote one.
    pub async fn apply_retention(&self, config: &LogConfig, now_ms: i64) -> Result<()> {
        let log = Arc::clone(&self.log);
        tokio::task::spawn_blocking(move || log.apply_retention(now_ms))
            .await
            .map_err(|_| BrokerError::ShuttingDown)??;
        if config.remote_storage {
            let remote_end = self
                .remote
                .manifest()
                .await
                .end_offset()
                .unwrap_or(i64::MIN);
            let local_only = self.local_bytes_after(remote_end);
            if let Some(start) = self
                .remote
                .apply_retention(config, local_only, now_ms)
                .await?
            {
                self.move_local_start(start.min(self.log.log_end_offset()), now_ms)
                    .await?;
            }
        }
        Ok(())
    }

    fn local_bytes_after(&self, remote_end: i64) -> u64 {
        match self.log.sealed_segments() {
            Ok(sealed) => {
                let offloaded: u64 = sealed
                    .iter()
                    .filter(|s| s.next_offset <= remote_end)
                    .map(|s| s.size)
                    .sum();
                self.log.size_bytes().saturating_sub(offloaded)
            }
            Err(_) => self.log.size_bytes(),
        }
    }
}

fn out_of_range(offset: i64, start: i64, end: i64) -> BrokerError {
    BrokerError::Log(LogError::OffsetOutOfRange { offset, start, end })
}
