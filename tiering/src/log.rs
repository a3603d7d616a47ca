//! The local log of one partition: an ordered run of segments, the offsets assigned to appended
//! batches, reads by offset and timestamp, rolling, flushing, retention and crash recovery.
//!
//! # Files in the partition directory
//! - `<base>.log`, `<base>.index`, `<base>.timeindex`: segments (see `segment.rs`);
//! - `<offset>.snapshot`: idempotent-producer state as of an offset (see `producer_state.rs`);
//! - `log-start-offset`: the log start offset when `DeleteRecords` moved it inside a segment;
//! - `leader-epoch-checkpoint`: the first offset of each leader epoch (see `epochs.rs`);
//! - `recovery-point`: the offset below which every segment is durable (see `log/recovery.rs`);
//! - `clean-shutdown`: present only while the log is closed cleanly;
//! - `cleaner-checkpoint.json` and `cleaning/`: compaction's checkpoint and work area (see `log/cleaned.rs`).
//!
//! # Crash safety
//! Batches are written to the active segment's file (the page cache) before an append returns, so a
//! killed process loses nothing that was acknowledged; `flush.messages` / `flush.ms` add fsyncs for
//! machine crashes. Rolling seals the old segment (indexes written) before the new one is created;
//! the flush scheduler fsyncs sealed segments later, outside the lock, and records how far the log
//! is durable (the recovery point, `log/recovery.rs`). When `clean-shutdown` is missing on open,
//! every segment from the recovery point on is scanned, cut after its last whole batch with a valid
//! CRC, and its indexes rebuilt; a segment before the last that was cut, or that lost whole batches
//! at its end (it ends below the next base), drops the segments after it. Compaction, the one
//! thing that shortens a segment legitimately, cleans only segments below the recovery point.
//!
//! Replication (a follower's appends, truncation to a leader's epoch boundary, restarting at the
//! leader's log start) is in `log/replica.rs`, which describes its own crash safety.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_SIZE, Stamp};
use crate::config::LogConfig;
use crate::epochs::{self, LeaderEpochCache};
use crate::error::{LogError, Result};
use crate::page_cache::DropBehind;
use crate::producer_state::{self, ProducerStateTable, SequenceCheck};
use crate::retention::{SegmentSummary, plan_retention};
use crate::segment::{self, Segment};

pub use cleaned::{CLEANING_DIR, CleanCheckpoint, CleanedSegment, CompactionView, Replacement};

const CLEAN_SHUTDOWN: &str = "clean-shutdown";
const LOG_START_OFFSET: &str = "log-start-offset";

/// How to stamp the batches of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOptions {
    /// The broker's clock, in milliseconds since the epoch.
    pub now_ms: i64,
    /// The partition's leader epoch, written into each batch.
    pub leader_epoch: i32,
    /// Whether the topic uses `LogAppendTime`: batch timestamps are replaced by `now_ms`.
    pub log_append_time: bool,
}

/// Where an append put its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first record appended (or, for a duplicate, originally appended).
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The append time stamped on the batches, for `LogAppendTime` topics.
    pub log_append_time: Option<i64>,
    /// Whether the batch was a retry of one already in the log, and nothing was written.
    pub duplicate: bool,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// The leader epoch the batches were appended under (a replica append: its last batch's).
    pub leader_epoch: i32,
}

/// A sealed local segment and its files, as the uploader needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// First offset.
    pub base_offset: i64,
    /// Offset after the last record.
    pub next_offset: i64,
    /// Bytes of record batches.
    pub size: u64,
    /// Timestamp of the first batch.
    pub first_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// The `.log` file.
    pub log_path: PathBuf,
    /// The `.index` file.
    pub offset_index_path: PathBuf,
    /// The `.timeindex` file.
    pub time_index_path: PathBuf,
}

/// The local log of one partition. All methods take `&self`; appends are serialised internally and
/// reads copy data outside the lock.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    state: Mutex<LogState>,
    checkpoint: Mutex<()>,
}

#[derive(Debug)]
struct LogState {
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    producers: ProducerStateTable,
    epochs: LeaderEpochCache,
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// Offsets below this are durable in the remote tier (the published manifest's end).
    remote_end_offset: Option<i64>,
    /// Every segment wholly below this offset is durable on local disk (`log/recovery.rs`).
    recovery_point: i64,
    /// Producer state as of the last roll, written by `flush_sealed` outside the lock.
    pending_snapshot: Option<(i64, ProducerStateTable)>,
    /// How far the written data has been dropped from the page cache (`log/drop_behind.rs`).
    drop_behind: DropBehind,
}

impl LogState {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn next_offset(&self) -> i64 {
        self.active().next_offset()
    }

    fn summaries(&self) -> Vec<SegmentSummary> {
        self.segments
            .values()
            .map(|s| SegmentSummary {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                max_timestamp: s.max_timestamp(),
            })
            .collect()
    }
}

impl PartitionLog {
    /// Opens the log in `dir`, creating it if needed and recovering it after an unclean shutdown.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Self> {
        Self::open_at(dir, config, 0, now_ms)
    }

    /// Opens the log like [`PartitionLog::open`]; a log with no segments starts at `start_offset`
    /// (where the remote tier ends, for a broker whose local copy is gone).
    pub fn open_at(dir: &Path, config: LogConfig, start_offset: i64, now_ms: i64) -> Result<Self> {
        if !dir.exists() {
            // Every directory created (a new topic's too) gets its entry fsynced, or a crash
            // could lose the log with its parent's unsynced change.
            let created: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
            fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
            for new in created {
                if let Some(parent) = new.parent() {
                    epochs::sync_dir(parent)?;
                }
            }
        }
        cleaned::recover_swap(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        let stored_recovery_point = recovery::load(dir);
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
            let path = entry.map_err(|e| LogError::io(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "log")
                && let Some(base) = path
                    .file_stem()
                    .and_then(|s| s.to_str()?.parse::<i64>().ok())
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let cleaned_offset = cleaned::read_checkpoint(dir)?.cleaned_offset;
        let mut segments = open_segments(
            dir,
            &bases,
            clean,
            stored_recovery_point,
            cleaned_offset,
            &config,
            now_ms,
        )?;
        bases.retain(|b| segments.contains_key(b));
        let stored_start = read_log_start(dir)?;
        let first_base = bases
            .first()
            .copied()
            .unwrap_or(stored_start.unwrap_or(0).max(start_offset));
        let log_start_offset = stored_start.unwrap_or(first_base).max(first_base);
        let end = segments.values().next_back().map(Segment::next_offset);
        if end.is_some_and(|end| end < log_start_offset) {
            // A machine crash kept the stored start but lost the data up to it: what is left
            // lies below the start and can never be read. Start over empty there, as Kafka does.
            tracing::warn!(log = %dir.display(), log_start_offset, "the log ends below its start after a crash: starting over empty at the start");
            for segment in std::mem::take(&mut segments).into_values() {
                segment.delete()?;
            }
            producer_state::delete_snapshots_above(dir, log_start_offset)?;
            epochs::sync_dir(dir)?;
        }
        if segments.is_empty() {
            let segment =
                Segment::create(dir, log_start_offset, config.index_interval_bytes, now_ms)?;
            epochs::sync_dir(dir)?;
            segments.insert(log_start_offset, segment);
        }
        let mut state = LogState {
            config,
            segments,
            log_start_offset,
            producers: ProducerStateTable::default(),
            epochs: LeaderEpochCache::default(),
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            remote_end_offset: None,
            recovery_point: stored_recovery_point,
            pending_snapshot: None,
            drop_behind: DropBehind::default(),
        };
        if clean {
            // `close` fsynced everything and stored the point at the active segment's base; stored
            // here when it did not (an older binary's close): compaction cleans only below the
            // point, and recovery must never scan (and judge) a segment compaction has shortened.
            let active_base = state.active().base_offset();
            if stored_recovery_point != active_base {
                recovery::store(dir, active_base)?;
            }
            state.recovery_point = active_base;
        }
        state.producers = rebuild_producer_state(dir, &state)?;
        state.epochs = load_epochs(dir, &state)?;
        if clean {
            // Durably gone before anything is appended: a marker back after a machine crash
            // would have the next open trust segments that crash tore.
            fs::remove_file(&marker).map_err(|e| LogError::io(&marker, e))?;
            epochs::sync_dir(dir)?;
        } else if !bases.is_empty() {
            tracing::info!(log = %dir.display(), "recovered the log after an unclean shutdown");
        }
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            checkpoint: Mutex::new(()),
        })
    }

    /// Serialises what stores or lowers the recovery point (`log/recovery.rs`) and the cleaner
    /// checkpoint (`log/cleaned.rs`); taken before the state lock, never while holding it.
    fn checkpoint_lock(&self) -> MutexGuard<'_, ()> {
        self.checkpoint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves in-memory state that may not match the files;
        // the files stay the source of truth, so continuing with the last state is acceptable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Validates and appends the record batches in `records` (one or more whole v2 batches),
    /// assigning offsets. A retried batch of an idempotent producer is not written again: the
    /// outcome carries its original offsets and `duplicate`.
    pub fn append(&self, records: &[u8], options: AppendOptions) -> Result<AppendOutcome> {
        let ranges = batch::split_batches(records)?;
        if ranges.is_empty() {
            return Err(LogError::corrupt(
                "the produce request carried no record batch",
            ));
        }
        let mut headers = Vec::with_capacity(ranges.len());
        let mut state = self.lock();
        if let Some(latest) = state.epochs.latest_epoch()
            && options.leader_epoch < latest
        {
            // Written after a newer leader's batches, it would be a batch that leader never had,
            // at offsets where it has others: replicas would disagree without knowing.
            return Err(LogError::StaleLeaderEpoch {
                epoch: options.leader_epoch,
                latest,
            });
        }
        for range in &ranges {
            let bytes = &records[range.clone()];
            if bytes.len() > state.config.max_message_bytes {
                return Err(LogError::BatchTooLarge {
                    size: bytes.len(),
                    limit: state.config.max_message_bytes,
                });
            }
            headers.push(batch::validate_produced_batch(bytes)?);
        }
        let mut first = None;
        let mut last = 0;
        let log_append_time = options.log_append_time.then_some(options.now_ms);
        for (range, header) in ranges.iter().zip(&headers) {
            match state.producers.check(header)? {
                SequenceCheck::Duplicate(meta) if ranges.len() == 1 => {
                    return Ok(AppendOutcome {
                        base_offset: meta.base_offset,
                        last_offset: meta.last_offset,
                        log_append_time,
                        duplicate: true,
                        log_start_offset: state.log_start_offset,
                        leader_epoch: options.leader_epoch,
                    });
                }
                SequenceCheck::Duplicate(_) => {
                    return Err(LogError::InvalidRecord {
                        reason: "a retried batch arrived together with other batches".into(),
                    });
                }
                SequenceCheck::Append => {}
            }
            let bytes = &records[range.clone()];
            self.roll_if_needed(&mut state, header, options.now_ms)?;
            let base_offset = state.next_offset();
            record_epoch(&self.dir, &mut state, options.leader_epoch, base_offset)?;
            let stamped = batch::stamp_header(
                bytes,
                Stamp {
                    base_offset,
                    leader_epoch: options.leader_epoch,
                    log_append_time,
                },
            );
            let mut stored = *header;
            stored.base_offset = base_offset;
            stored.partition_leader_epoch = options.leader_epoch;
            if let Some(t) = log_append_time {
                stored.max_timestamp = t;
            }
            state
                .active_mut()
                .append(&stamped, &bytes[HEADER_SIZE..], &stored)?;
            state.producers.record(&stored);
            state.unflushed_messages += i64::from(stored.records_count);
            first.get_or_insert(base_offset);
            last = stored.last_offset();
        }
        flush_by_policy(&mut state, &self.dir, options.now_ms)?;
        Ok(AppendOutcome {
            base_offset: first.unwrap_or(last),
            last_offset: last,
            log_append_time,
            duplicate: false,
            log_start_offset: state.log_start_offset,
            leader_epoch: options.leader_epoch,
        })
    }

    fn roll_if_needed(
        &self,
        state: &mut LogState,
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<()> {
        let active = state.active();
        if active.is_empty() {
            return Ok(());
        }
        let too_big = active.size() + header.total_size() as u64 > state.config.segment_bytes;
        let too_old = now_ms.saturating_sub(active.created_at_ms()) >= state.config.segment_ms;
        let offsets_full = state.next_offset() + i64::from(header.last_offset_delta)
            - active.base_offset()
            > i64::from(u32::MAX);
        if !(too_big || too_old || offsets_full) {
            return Ok(());
        }
        self.roll(state, now_ms)
    }

    /// Seals the active segment and starts a new one at the log end.
    fn roll(&self, state: &mut LogState, now_ms: i64) -> Result<()> {
        let next = state.next_offset();
        state.active_mut().seal()?;
        state.pending_snapshot = Some((next, state.producers.clone()));
        let segment = Segment::create(&self.dir, next, state.config.index_interval_bytes, now_ms)?;
        state.segments.insert(next, segment);
        tracing::debug!(log = %self.dir.display(), base_offset = next, "rolled a new segment");
        Ok(())
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes` and
    /// below `upper_bound` (exclusive; the high watermark). With `min_one`, a first batch larger
    /// than `max_bytes` is returned whole. An empty result means there is nothing to read yet.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<Bytes> {
        let slice = {
            let state = self.lock();
            let end = state.next_offset();
            if offset < state.log_start_offset || offset > end {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: state.log_start_offset,
                    end,
                });
            }
            let mut found = None;
            let floor = state
                .segments
                .range(..=offset)
                .next_back()
                .map_or(offset, |(b, _)| *b);
            for segment in state.segments.range(floor..).map(|(_, s)| s) {
                if segment.base_offset() >= upper_bound {
                    break;
                }
                if let Some(slice) = segment.slice_from(offset, upper_bound, max_bytes)? {
                    found = Some(slice);
                    break;
                }
            }
            found
        };
        match slice {
            Some(slice) => slice.read(max_bytes, min_one),
            None => Ok(Bytes::new()),
        }
    }

    /// The first batch with a record timestamp at or after `timestamp`, at or above the log start;
    /// the caller finds the exact record inside it.
    pub fn batch_at_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>> {
        let state = self.lock();
        for segment in state.segments.values() {
            if segment.next_offset() <= state.log_start_offset {
                continue;
            }
            if let Some(batch) = segment.batch_at_timestamp(timestamp, state.log_start_offset)? {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    /// Offsets below this are durable (the recovery point).
    pub fn durable_end(&self) -> i64 {
        self.lock().recovery_point
    }

    /// The first offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.lock().next_offset()
    }

    /// The largest timestamp in the log and the base offset of the batch that carries it.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let state = self.lock();
        let mut best: Option<(i64, i64)> = None;
        for segment in state.segments.values() {
            let t = segment.max_timestamp();
            if t >= 0 && best.is_none_or(|(bt, _)| t > bt) {
                best = Some((t, segment.base_offset()));
            }
        }
        best
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.values().map(Segment::size).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Replaces the log's settings; they apply from the next append or retention pass.
    pub fn set_config(&self, config: LogConfig) {
        self.lock().config = config;
    }

    /// Moves the log start offset forward to `offset` (`DeleteRecords`) and deletes segments that
    /// fall wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64, now_ms: i64) -> Result<i64> {
        let mut state = self.lock();
        let end = state.next_offset();
        if offset > end || offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: state.log_start_offset,
                end,
            });
        }
        if offset > state.log_start_offset {
            state.log_start_offset = offset;
            write_log_start(&self.dir, offset)?;
        }
        self.delete_planned(&mut state, now_ms)?;
        Ok(state.log_start_offset)
    }

    /// Deletes whole segments past `retention.ms` / `retention.bytes` or below the log start,
    /// first rolling an idle active segment older than `segment.ms`. Returns how many were deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        self.roll_if_due(now_ms)?;
        let mut state = self.lock();
        self.delete_planned(&mut state, now_ms)
    }

    fn delete_planned(&self, state: &mut LogState, now_ms: i64) -> Result<usize> {
        let doomed = plan_retention(
            &state.summaries(),
            &state.config,
            state.log_start_offset,
            state.remote_end_offset,
            now_ms,
        );
        let start_before = state.log_start_offset;
        let mut deleted = Ok(());
        for base in &doomed {
            if let Some(segment) = state.segments.remove(base) {
                if let Err(e) = segment.delete() {
                    deleted = Err(e);
                    break;
                }
                let next = state
                    .segments
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(segment.next_offset());
                state.log_start_offset = state.log_start_offset.max(next);
                tracing::info!(
                    log = %self.dir.display(),
                    base_offset = base,
                    log_start_offset = state.log_start_offset,
                    "deleted a segment by retention"
                );
            }
        }
        // Once for the whole deletion, not per segment (each write is two fsyncs under the
        // lock appends wait for). A crash before it leaves the older start, and the open takes
        // the first remaining segment's base over it.
        if state.log_start_offset > start_before {
            write_log_start(&self.dir, state.log_start_offset)?;
        }
        deleted.map(|()| doomed.len())
    }

    /// Rolls the active segment if it holds data and is older than `segment.ms`, so an idle
    /// partition's tail can be offloaded and expired. Returns whether it rolled.
    pub fn roll_if_due(&self, now_ms: i64) -> Result<bool> {
        let mut state = self.lock();
        let active = state.active();
        if active.is_empty()
            || now_ms.saturating_sub(active.created_at_ms()) < state.config.segment_ms
        {
            return Ok(false);
        }
        self.roll(&mut state, now_ms)?;
        Ok(true)
    }

    /// Records that offsets below `offset` are durable in the remote tier, which lets local
    /// retention delete the segments that end there.
    pub fn set_remote_end_offset(&self, offset: i64) {
        let mut state = self.lock();
        state.remote_end_offset = Some(state.remote_end_offset.map_or(offset, |o| o.max(offset)));
    }

    /// Every sealed segment (all but the active one), oldest first, for offload.
    pub fn sealed_segments(&self) -> Result<Vec<SealedSegment>> {
        let state = self.lock();
        let count = state.segments.len().saturating_sub(1);
        state
            .segments
            .values()
            .take(count)
            .map(|s| {
                let stem = self.dir.join(crate::segment::file_stem(s.base_offset()));
                Ok(SealedSegment {
                    base_offset: s.base_offset(),
                    next_offset: s.next_offset(),
                    size: s.size(),
                    first_timestamp: s.first_timestamp()?,
                    max_timestamp: s.max_timestamp(),
                    log_path: stem.with_extension("log"),
                    offset_index_path: stem.with_extension("index"),
                    time_index_path: stem.with_extension("timeindex"),
                })
            })
            .collect()
    }

    /// Fsyncs the active segment if `flush.ms` has passed since the last flush.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<()> {
        let mut state = self.lock();
        if state.unflushed_messages > 0
            && now_ms.saturating_sub(state.last_flush_ms) >= state.config.flush_ms
        {
            flush_state(&mut state, &self.dir, now_ms)?;
        }
        Ok(())
    }

    /// Flushes and closes the log cleanly: the next open trusts its indexes and producer state.
    pub fn close(&self) -> Result<()> {
        let _checkpoint = self.checkpoint_lock();
        let mut state = self.lock();
        let next = state.next_offset();
        sync_pending(&state, &self.dir)?;
        state.active_mut().seal()?;
        state.active().durable_files().sync()?;
        state.pending_snapshot = None;
        state.producers.write_snapshot(&self.dir, next)?;
        // Everything is durable. The point goes to the active segment's base, not the end: a
        // roll after the next open seals that segment again, and its new index files must count
        // as not yet fsynced (see `open_at`).
        let active_base = state.active().base_offset();
        recovery::store(&self.dir, active_base)?;
        state.recovery_point = active_base;
        let marker = self.dir.join(CLEAN_SHUTDOWN);
        fs::write(&marker, b"").map_err(|e| LogError::io(&marker, e))
    }

    /// Removes the log's directory and everything in it.
    pub fn delete(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(|e| LogError::io(&self.dir, e))
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Fsyncs the active segment after an append if `flush.messages` or `flush.ms` says so.
fn flush_by_policy(state: &mut LogState, dir: &Path, now_ms: i64) -> Result<()> {
    let due = state.unflushed_messages >= state.config.flush_messages
        || now_ms.saturating_sub(state.last_flush_ms) >= state.config.flush_ms;
    if due {
        flush_state(state, dir, now_ms)?;
    }
    Ok(())
}

/// Fsyncs, under the lock, the sealed segments the flush scheduler has not reached yet (a flush
/// policy promises everything up to the log end), then the active segment.
fn flush_state(state: &mut LogState, dir: &Path, now_ms: i64) -> Result<()> {
    sync_pending(state, dir)?;
    state.active().flush()?;
    state.unflushed_messages = 0;
    state.last_flush_ms = now_ms;
    Ok(())
}

/// Fsyncs the sealed segments not yet known durable. The recovery point is left to the next
/// `flush_sealed` (which finds them clean): storing it here, under the state lock, would take the
/// checkpoint lock out of order.
fn sync_pending(state: &LogState, dir: &Path) -> Result<()> {
    let (files, _) = recovery::pending(state);
    if files.is_empty() {
        return Ok(());
    }
    recovery::sync_files(dir, &files)
}

/// Opens the segments at `bases` (sorted). After an unclean shutdown every segment not wholly below
/// the recovery point is scanned and cut at its first torn batch. When one before the last was cut
/// (scanned, or cut while its indexes were rebuilt), or was scanned and lost whole batches at its
/// end (it then ends below the next segment's base, with nothing torn to show), the later segments
/// are deleted, since their offsets no longer follow on. Only
/// compaction leaves a segment ending below the next base legitimately, and it cleans durable
/// segments only (below the recovery point, never scanned); segments it has cleaned, below
/// `cleaned_offset`, are spared the check all the same, for a recovery-point file that was lost.
fn open_segments(
    dir: &Path,
    bases: &[i64],
    clean: bool,
    recovery_point: i64,
    cleaned_offset: i64,
    config: &LogConfig,
    now_ms: i64,
) -> Result<BTreeMap<i64, Segment>> {
    let mut segments = BTreeMap::new();
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let recover = !clean && recovery::needs_recovery(next_base, recovery_point);
        let path = dir.join(format!("{}.log", segment::file_stem(base)));
        let stored = fs::metadata(&path)
            .map_err(|e| LogError::io(&path, e))?
            .len();
        let segment = Segment::open(dir, base, recover, config.index_interval_bytes, now_ms)?;
        let cut = segment.size() < stored;
        let ends_short =
            next_base.is_some_and(|next| next > cleaned_offset && segment.next_offset() < next);
        segments.insert(base, segment);
        if next_base.is_some() && (cut || (recover && ends_short)) {
            for &later in &bases[i + 1..] {
                tracing::warn!(
                    log = %dir.display(),
                    base_offset = later,
                    "deleting a segment whose offsets no longer follow on from the damaged one before it"
                );
                segment::delete_files(&dir.join(segment::file_stem(later)))?;
            }
            epochs::sync_dir(dir)?;
            // Snapshots past the new end describe batches that are gone.
            let end = segments
                .values()
                .next_back()
                .map_or(base, Segment::next_offset);
            producer_state::delete_snapshots_above(dir, end)?;
            break;
        }
    }
    // Sealed segments whose indexes were rebuilt get their files written again, durably: stale
    // files would be adopted at the next open, and the flush scheduler passes over segments
    // below the recovery point.
    let last = segments.keys().next_back().copied();
    for (base, segment) in &mut segments {
        if Some(*base) != last && segment.rebuilt() {
            segment.seal()?;
            segment.durable_files().sync()?;
        }
    }
    Ok(segments)
}

fn rebuild_producer_state(dir: &Path, state: &LogState) -> Result<ProducerStateTable> {
    let end = state.next_offset();
    let (mut table, from) = ProducerStateTable::load_snapshot(dir, end)?;
    let from = from.unwrap_or(i64::MIN);
    for segment in state.segments.values().filter(|s| s.next_offset() > from) {
        segment.for_each_header(|h| {
            if h.base_offset >= from {
                table.record(h);
            }
        })?;
    }
    Ok(table)
}

/// Loads the leader-epoch cache, rebuilding it from the batch headers when the checkpoint is
/// missing (a log written before the cache existed, or a crash during `reset_to`) or unreadable,
/// and drops entries at or past the recovered log end (a crash between the checkpoint and the
/// batch it announced).
fn load_epochs(dir: &Path, state: &LogState) -> Result<LeaderEpochCache> {
    let mut cache = match epochs::load(dir)? {
        Some(cache) => cache,
        None => {
            let mut cache = LeaderEpochCache::default();
            for segment in state.segments.values() {
                segment.for_each_header(|h| {
                    cache.assign(h.partition_leader_epoch, h.base_offset);
                })?;
            }
            epochs::store(dir, &cache)?;
            cache
        }
    };
    if cache.truncate_from_end(state.next_offset()) {
        epochs::store(dir, &cache)?;
    }
    Ok(cache)
}

/// Starts a new leader-epoch entry when the batch about to be written at `start_offset` carries
/// a newer epoch. The checkpoint is written before the batch, and the cache changes only once it
/// is: an entry the batch never followed is dropped on open.
fn record_epoch(dir: &Path, state: &mut LogState, epoch: i32, start_offset: i64) -> Result<()> {
    if !state.epochs.is_new_epoch(epoch) {
        return Ok(());
    }
    let mut updated = state.epochs.clone();
    updated.assign(epoch, start_offset);
    epochs::store(dir, &updated)?;
    state.epochs = updated;
    Ok(())
}

fn read_log_start(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(LOG_START_OFFSET);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io(&path, e)),
    }
}

/// Removes the stored log start offset: the log then starts at its first segment's base.
fn remove_log_start(dir: &Path) -> Result<()> {
    let path = dir.join(LOG_START_OFFSET);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(&path, e)),
    }
}

fn write_log_start(dir: &Path, offset: i64) -> Result<()> {
    epochs::write_durably(dir, LOG_START_OFFSET, offset.to_string().as_bytes())
}

mod cleaned;
mod drop_behind;
mod recovery;
mod replica;
#[cfg(test)]
mod tests;
