//! What replication needs from the local log (KIP-101, KIP-279): a follower appends the leader's
//! batches unchanged, finds where its log diverges from the leader's through the leader-epoch cache
//! (`end_offset_for_epoch` answers OffsetsForLeaderEpoch) and truncates there, or, when it is
//! behind the leader's local log start, restarts its log empty at that start.
//!
//! # Crash safety
//! `truncate_to` works from the top down, and a crash after any step leaves a log that opens at a
//! batch boundary between the old and the new end (the last segment is recovered by scanning); the
//! follower then simply truncates again:
//! 1. producer snapshots above the new end are deleted (a missing snapshot only means a longer
//!    replay, a stale one would be trusted once the log grows past it again);
//! 2. whole segments above are deleted, newest first, so the survivors stay contiguous;
//! 3. the segment holding the new end is cut and fsynced, its index files rewritten, and the
//!    directory fsynced;
//! 4. the leader-epoch checkpoint is rewritten without entries at or past the new end (open drops
//!    those itself if the crash comes first);
//! 5. producer state is rebuilt as of the new end and a snapshot written there.
//!
//! `reset_to` deletes the leader-epoch checkpoint first (a missing one is rebuilt from the batches
//! that remain), then the producer snapshots, then the segments oldest first (the survivors are a
//! suffix of the log, still valid above the stored log start), then the `log-start-offset` file,
//! and only then creates the new, empty segment.
//!
//! On an I/O error either operation stops where it failed; the files stay a valid log, but the
//! in-memory state may not match them until the log is reopened.

use std::collections::BTreeMap;

use super::{
    AppendOutcome, LogState, PartitionLog, flush_by_policy, rebuild_producer_state, record_epoch,
    recovery, remove_log_start,
};
use crate::batch::{self, HEADER_SIZE};
use crate::epochs::{self, LeaderEpochCache};
use crate::error::{LogError, Result};
use crate::producer_state::{self, ProducerStateTable};
use crate::segment::Segment;

impl PartitionLog {
    /// Appends record batches copied from the leader (the follower's path). `records` are whole
    /// v2 batches that already carry their offsets, leader epochs and timestamps; they are checked
    /// (length, CRC) and written byte for byte. Each must start at or after the log end offset and
    /// after the previous one (compaction leaves gaps), else [`LogError::OffsetMismatch`] and
    /// nothing is written.
    /// Segments roll and the flush policy applies as for [`PartitionLog::append`]; idempotent
    /// producers are recorded without sequence checks (the leader made them), so a follower that
    /// becomes leader recognises retries; a batch of a newer leader epoch starts a new entry in the
    /// leader-epoch cache.
    pub fn append_replica(&self, records: &[u8], now_ms: i64) -> Result<AppendOutcome> {
        let ranges = batch::split_batches(records)?;
        if ranges.is_empty() {
            return Err(LogError::corrupt(
                "the replicated data carried no record batch",
            ));
        }
        let mut state = self.lock();
        let mut expected = state.next_offset();
        let mut batches = Vec::with_capacity(ranges.len());
        for range in ranges {
            let bytes = &records[range];
            let header = batch::validate_batch(bytes)?;
            // A gap is a leader's compaction having removed whole batches.
            if header.base_offset < expected {
                return Err(LogError::OffsetMismatch {
                    expected,
                    got: header.base_offset,
                });
            }
            expected = header.next_offset();
            batches.push((bytes, header));
        }
        let base_offset = batches.first().map_or(expected, |(_, h)| h.base_offset);
        let leader_epoch = batches.last().map_or(-1, |(_, h)| h.partition_leader_epoch);
        for (bytes, header) in &batches {
            self.roll_if_needed(&mut state, header, now_ms)?;
            record_epoch(
                &self.dir,
                &mut state,
                header.partition_leader_epoch,
                header.base_offset,
            )?;
            let (head, body) = bytes
                .split_first_chunk::<HEADER_SIZE>()
                .ok_or_else(|| LogError::corrupt("a batch is shorter than its header"))?;
            state.active_mut().append(head, body, header)?;
            state.producers.record(header);
            state.unflushed_messages += i64::from(header.records_count);
        }
        flush_by_policy(&mut state, &self.dir, now_ms)?;
        Ok(AppendOutcome {
            base_offset,
            last_offset: expected - 1,
            log_append_time: None,
            duplicate: false,
            log_start_offset: state.log_start_offset,
            leader_epoch,
        })
    }

    /// The newest leader epoch in the log's leader-epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().epochs.latest_epoch()
    }

    /// OffsetsForLeaderEpoch: the largest cached leader epoch at or below `epoch` and its end
    /// offset, which is the start offset of the next cached epoch, or the log end offset for the
    /// newest. `None` when the cache holds no epoch at or below `epoch` (Kafka answers UNDEFINED).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.lock();
        state.epochs.end_offset_for(epoch, state.next_offset())
    }

    /// Removes every batch whose last offset is at or after `offset`: whole batches, so when
    /// `offset` falls inside a batch the log ends at that batch's base offset instead, as in Kafka.
    /// Later segments are deleted and the one holding the new end becomes the active segment
    /// again; the leader-epoch cache and producer state are cut to the new end. Nothing happens when
    /// `offset` is at or past the log end. The log never shrinks below its start: when `offset`
    /// (or the batch holding it) is at or below the log start offset, the log is emptied and
    /// restarts at the log start, like [`PartitionLog::reset_to`]. The caller never truncates below
    /// the high watermark, so sealed segments being offloaded are not touched.
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        let _checkpoint = self.checkpoint_lock();
        let mut state = self.lock();
        if offset >= state.next_offset() {
            return Ok(());
        }
        let start = state.log_start_offset;
        let new_end = match state.segments.range(..offset).next_back() {
            Some((_, segment)) if offset > start => segment
                .batch_start(offset)?
                .unwrap_or_else(|| segment.next_offset()),
            _ => start,
        };
        if new_end <= start {
            // No clock is passed in: the fresh segment takes the creation time of the active one.
            let created_at_ms = state.active().created_at_ms();
            return self.reset_locked(&mut state, start, created_at_ms);
        }
        // The log ends below `new_end` when batches before the cut left a gap (compaction) or the
        // cut batch opened its segment: the point and the snapshots go back to the base of the
        // segment that becomes the active one (scanned after any crash), at or below the real end.
        let active_base = state
            .segments
            .range(..new_end)
            .next_back()
            .map_or(start, |(base, _)| *base);
        recovery::lower(&self.dir, &mut state, active_base)?;
        producer_state::delete_snapshots_above(&self.dir, active_base)?;
        let doomed: Vec<i64> = state.segments.range(new_end..).map(|(b, _)| *b).collect();
        for base in doomed.into_iter().rev() {
            if let Some(segment) = state.segments.get(&base) {
                segment.delete()?;
            }
            state.segments.remove(&base);
        }
        state.active_mut().truncate_to(offset)?;
        epochs::sync_dir(&self.dir)?;
        let end = state.next_offset();
        if state.epochs.truncate_from_end(end) {
            epochs::store(&self.dir, &state.epochs)?;
        }
        state.producers = rebuild_producer_state(&self.dir, &state)?;
        state.producers.write_snapshot(&self.dir, end)?;
        state.unflushed_messages = 0;
        tracing::info!(
            log = %self.dir.display(),
            offset,
            log_end_offset = end,
            "truncated the log"
        );
        Ok(())
    }

    /// Deletes every segment, producer snapshot and the leader-epoch cache, and restarts the log
    /// empty at `start_offset`: log start = log end = `start_offset`. A follower behind the
    /// leader's local log start starts there instead of replicating what the remote tier already
    /// holds. What the remote tier holds (`set_remote_end_offset`) is kept.
    pub fn reset_to(&self, start_offset: i64, now_ms: i64) -> Result<()> {
        let _checkpoint = self.checkpoint_lock();
        let mut state = self.lock();
        if start_offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset: start_offset,
                start: state.log_start_offset,
                end: state.next_offset(),
            });
        }
        self.reset_locked(&mut state, start_offset, now_ms)
    }

    fn reset_locked(&self, state: &mut LogState, start_offset: i64, now_ms: i64) -> Result<()> {
        recovery::lower(&self.dir, state, start_offset)?;
        epochs::remove(&self.dir)?;
        producer_state::delete_snapshots_above(&self.dir, i64::MIN)?;
        let bases: Vec<i64> = state.segments.keys().copied().collect();
        for base in bases {
            if let Some(segment) = state.segments.get(&base) {
                segment.delete()?;
            }
            // The last one stays in memory until its replacement exists: a log always has an
            // active segment.
            if state.segments.len() > 1 {
                state.segments.remove(&base);
            }
        }
        remove_log_start(&self.dir)?;
        let segment = Segment::create(
            &self.dir,
            start_offset,
            state.config.index_interval_bytes,
            now_ms,
        )?;
        state.segments = BTreeMap::from([(start_offset, segment)]);
        state.log_start_offset = start_offset;
        state.producers = ProducerStateTable::default();
        state.epochs = LeaderEpochCache::default();
        state.unflushed_messages = 0;
        state.last_flush_ms = now_ms;
        epochs::store(&self.dir, &state.epochs)?;
        tracing::info!(
            log = %self.dir.display(),
            log_start_offset = start_offset,
            "restarted the log empty"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
