//! Compaction decisions as pure functions of the log's shape, its checkpoint, its configuration
//! and the time: whether a pass runs and over which offsets, how sealed segments are grouped into
//! cleaned ones, and whether one record survives. The executors (`local`, `remote`) do the I/O.

use std::ops::Range;

use strata_tiering::log::CleanCheckpoint;

use crate::config::CompactionConfig;

/// What planning needs to know about one sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First offset.
    pub base_offset: i64,
    /// Offset after its last batch.
    pub next_offset: i64,
    /// Bytes of record batches.
    pub size: u64,
    /// Timestamp of its first batch, -1 when unknown.
    pub first_timestamp: i64,
    /// Largest record timestamp, -1 when unknown.
    pub max_timestamp: i64,
}

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The uncleaned share of the cleanable log reached `min.cleanable.dirty.ratio`.
    DirtyRatio,
    /// The oldest uncleaned record is older than `max.compaction.lag.ms`.
    MaxLag,
    /// A tombstone kept by an earlier pass has outlived `delete.retention.ms`.
    Tombstones,
}

/// A pass to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassPlan {
    /// First offset not yet cleaned: the key map is built from here.
    pub dirty_start: i64,
    /// End of the cleanable log: nothing at or past it is read or rewritten.
    pub cleanable_end: i64,
    /// How many leading segments lie in the cleanable log.
    pub segments: usize,
    /// Why it runs.
    pub trigger: Trigger,
}

impl PassPlan {
    /// How many offsets the key map may see: no more distinct keys than that can come, so the
    /// map is never sized beyond it.
    pub fn dirty_offsets(&self) -> usize {
        usize::try_from((self.cleanable_end - self.dirty_start).max(0)).unwrap_or(usize::MAX)
    }
}

/// Decides whether a pass runs. `segments` are sealed, oldest first; `first_uncleanable` bounds
/// what may be cleaned (the active segment, the high watermark, the recovery point, and for the
/// local copy of a tiered log, the remote end). Segments younger than `min.compaction.lag.ms` end the cleanable
/// log. `remote_cleaned_offset` is how far the remote tier is clean, for the local copy of a
/// tiered log (`i64::MIN` otherwise): a tombstone that waited for it may now go.
pub fn plan_pass(
    segments: &[SegmentInfo],
    checkpoint: &CleanCheckpoint,
    first_uncleanable: i64,
    remote_cleaned_offset: i64,
    config: &CompactionConfig,
    now_ms: i64,
) -> Option<PassPlan> {
    let cleanable = segments
        .iter()
        .take_while(|s| {
            s.next_offset <= first_uncleanable
                && (s.max_timestamp < 0
                    || now_ms.saturating_sub(s.max_timestamp) >= config.min_compaction_lag_ms)
        })
        .count();
    let range = &segments[..cleanable];
    let (first, last) = (range.first()?, range.last()?);
    let dirty_start = checkpoint.cleaned_offset.max(first.base_offset);
    let dirty: Vec<&SegmentInfo> = range
        .iter()
        .filter(|s| s.next_offset > dirty_start && s.size > 0)
        .collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
    let total_bytes: u64 = range.iter().map(|s| s.size).sum();
    let trigger = if dirty_bytes > 0
        && dirty_bytes as f64 >= config.min_cleanable_dirty_ratio * total_bytes as f64
    {
        Trigger::DirtyRatio
    } else if dirty.first().is_some_and(|s| {
        s.first_timestamp >= 0
            && now_ms.saturating_sub(s.first_timestamp) > config.max_compaction_lag_ms
    }) {
        Trigger::MaxLag
    } else if checkpoint
        .tombstone_deadline_ms
        .is_some_and(|deadline| now_ms >= deadline)
        || checkpoint
            .tombstone_waits_for_remote
            .is_some_and(|offset| remote_cleaned_offset > offset)
    {
        Trigger::Tombstones
    } else {
        return None;
    };
    Some(PassPlan {
        dirty_start,
        cleanable_end: last.next_offset,
        segments: cleanable,
        trigger,
    })
}

/// Groups the segments that hold offsets below `pass_end` into runs that become one cleaned
/// segment each: consecutive, at most `segment_bytes` of input (a larger segment is a run of its
/// own), spanning fewer than 2^31 offsets so relative offsets fit the index.
pub fn group_segments(
    segments: &[SegmentInfo],
    pass_end: i64,
    segment_bytes: u64,
) -> Vec<Range<usize>> {
    let count = segments
        .iter()
        .take_while(|s| s.base_offset < pass_end)
        .count();
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, s) in segments[..count].iter().enumerate() {
        let span = s.next_offset - segments[start].base_offset;
        if i > start && (bytes + s.size > segment_bytes || span > i64::from(i32::MAX)) {
            groups.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += s.size;
    }
    if count > start {
        groups.push(start..count);
    }
    groups
}

/// Where a pass stands, for the per-record decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRules {
    /// Records at or after this were not cleaned before this pass.
    pub dirty_start: i64,
    /// Records at or after this are beyond the key map and kept as they are.
    pub pass_end: i64,
    /// Tombstones in batches whose newest timestamp is at or before this may go.
    pub tombstone_horizon_ms: i64,
    /// Tombstones at or after this stay. In the local copy of a tiered log it is how far the
    /// remote tier is clean: older records of a key may live in the bucket until the remote pass
    /// removed them. `i64::MAX` elsewhere.
    pub tombstone_limit: i64,
    /// The last offset of the sealed log, whose record always stays: without it a consumer at an
    /// offset past every remaining record but below the log end would wait for data forever.
    pub protected_offset: i64,
}

/// Whether a record survives: not when a later record of its key is in the key map
/// (`latest_for_key`), nor when it is a tombstone that an earlier pass already kept (so every
/// older record of its key is gone) and that has outlived `delete.retention.ms`. Records without a
/// key, records past the key map and the protected last record are kept.
pub fn keep_record(
    offset: i64,
    has_key: bool,
    is_tombstone: bool,
    latest_for_key: Option<i64>,
    batch_max_timestamp: i64,
    rules: &RecordRules,
) -> bool {
    if !has_key || offset >= rules.pass_end || offset == rules.protected_offset {
        return true;
    }
    if latest_for_key.is_some_and(|latest| latest > offset) {
        return false;
    }
    !(is_tombstone
        && offset < rules.tombstone_limit
        && offset < rules.dirty_start
        && batch_max_timestamp <= rules.tombstone_horizon_ms)
}

#[cfg(test)]
mod tests;
