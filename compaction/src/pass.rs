//! The two halves of a pass over segment files, on a blocking thread: building the key map from
//! the dirty segments, then rewriting segments into cleaned ones. Both read a file's batches in
//! order, one at a time, so memory is the key map plus one batch.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use bytes::Bytes;
use strata_tiering::LogError;
use strata_tiering::batch::{BatchHeader, LOG_OVERHEAD};
use strata_tiering::log::CleanedSegment;

use crate::error::Result;
use crate::filter::{Filtered, filter_batch, for_each_record};
use crate::keymap::KeyMap;
use crate::plan::{RecordRules, keep_record};
use crate::throttle::Throttle;

/// Calls `f` with each whole batch in the first `size` bytes of the file at `path`, until it
/// returns false. Reads are charged to `throttle`.
pub fn for_each_batch(
    path: &Path,
    size: u64,
    throttle: &Throttle,
    mut f: impl FnMut(Bytes, &BatchHeader) -> Result<bool>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| LogError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file.take(size));
    let mut read = 0u64;
    while read < size {
        let mut head = [0u8; LOG_OVERHEAD];
        reader
            .read_exact(&mut head)
            .map_err(|e| LogError::io(path, e))?;
        let length = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        if length <= 0 {
            return Err(LogError::corrupt(format!(
                "{}: a batch of length {length}",
                path.display()
            ))
            .into());
        }
        let mut batch = vec![0u8; LOG_OVERHEAD + length as usize];
        batch[..LOG_OVERHEAD].copy_from_slice(&head);
        reader
            .read_exact(&mut batch[LOG_OVERHEAD..])
            .map_err(|e| LogError::io(path, e))?;
        read += batch.len() as u64;
        throttle.acquire_blocking(batch.len() as u64)?;
        let header = BatchHeader::parse(&batch)?;
        if !f(Bytes::from(batch), &header)? {
            break;
        }
    }
    Ok(())
}

/// Builds the key map of a pass from the dirty segments, in offset order.
#[derive(Debug)]
pub struct MapBuilder {
    map: KeyMap,
    dirty_start: i64,
    cleanable_end: i64,
    /// Where the map filled up, if it did.
    full_at: Option<i64>,
    /// Records mapped.
    pub records: u64,
}

impl MapBuilder {
    /// Maps keys of records in `[dirty_start, cleanable_end)` into `map`.
    pub fn new(map: KeyMap, dirty_start: i64, cleanable_end: i64) -> Self {
        MapBuilder {
            map,
            dirty_start,
            cleanable_end,
            full_at: None,
            records: 0,
        }
    }

    /// Maps the records of one segment file. Returns false once the map is full (the pass ends
    /// there) or the cleanable end was reached.
    pub fn add_segment(&mut self, path: &Path, size: u64, throttle: &Throttle) -> Result<bool> {
        if self.full_at.is_some() {
            return Ok(false);
        }
        let mut more = true;
        for_each_batch(path, size, throttle, |batch, header| {
            if header.base_offset >= self.cleanable_end {
                more = false;
                return Ok(false);
            }
            if header.next_offset() <= self.dirty_start {
                return Ok(true);
            }
            let (map, dirty_start, end) = (&mut self.map, self.dirty_start, self.cleanable_end);
            let mut full_at = None;
            let mut records = 0;
            for_each_record(&batch, header, |r| {
                if r.offset < dirty_start || r.offset >= end {
                    return true;
                }
                records += 1;
                match r.key {
                    Some(key) if !map.insert(key, r.offset) => {
                        full_at = Some(r.offset);
                        false
                    }
                    _ => true,
                }
            })?;
            self.records += records;
            if full_at.is_some() {
                self.full_at = full_at;
                more = false;
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(more)
    }

    /// The map, and where the pass ends: the offset where the map filled up, else the cleanable
    /// end.
    pub fn finish(self) -> (KeyMap, i64) {
        let end = self.full_at.unwrap_or(self.cleanable_end);
        (self.map, end)
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Offsets below this are now clean.
    pub pass_end: i64,
    /// Bytes of segments read while rewriting.
    pub bytes_read: u64,
    /// Bytes of cleaned segments written.
    pub bytes_written: u64,
    /// Records looked at while rewriting (transactional and control batches not counted).
    pub records_read: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Tombstones removed for good.
    pub tombstones_removed: u64,
    /// Keys in the map.
    pub keys: u64,
    /// Segments replaced, and cleaned segments that replaced them.
    pub segments_replaced: u64,
    /// Cleaned segments written.
    pub segments_written: u64,
    /// When the oldest tombstone kept may go.
    pub tombstone_deadline_ms: Option<i64>,
    /// The lowest tombstone kept because the remote tier is not clean past it.
    pub tombstone_waits_for_remote: Option<i64>,
}

/// Rewrites segments by a pass's key map and rules.
#[derive(Debug)]
pub struct Rewriter<'a> {
    /// The pass's key map.
    pub map: &'a KeyMap,
    /// The pass's rules.
    pub rules: RecordRules,
    /// `delete.retention.ms`, for the deadline of kept tombstones.
    pub delete_retention_ms: i64,
    /// The rate limit reads and writes are charged to.
    pub throttle: &'a Throttle,
}

impl Rewriter<'_> {
    /// Rewrites the first `size` bytes of the segment file at `path` into `out`. Returns whether
    /// anything was removed.
    pub fn rewrite_segment(
        &self,
        path: &Path,
        size: u64,
        out: &mut CleanedSegment,
        report: &mut PassReport,
    ) -> Result<bool> {
        let (map, rules, throttle) = (self.map, &self.rules, self.throttle);
        let delete_retention_ms = self.delete_retention_ms;
        let mut changed = false;
        for_each_batch(path, size, throttle, |batch, header| {
            report.bytes_read += batch.len() as u64;
            let (mut deadline, mut waits): (Option<i64>, Option<i64>) = (None, None);
            let (mut seen, mut tombstones_removed) = (0u64, 0u64);
            let filtered = filter_batch(&batch, header, |r| {
                seen += 1;
                let latest = r.key.and_then(|k| map.latest(k));
                let keep = keep_record(
                    r.offset,
                    r.key.is_some(),
                    r.is_tombstone,
                    latest,
                    header.max_timestamp,
                    rules,
                );
                if r.is_tombstone && r.key.is_some() && r.offset < rules.pass_end {
                    let superseded = latest.is_some_and(|l| l > r.offset);
                    if !keep && !superseded {
                        tombstones_removed += 1;
                    } else if keep && r.offset != rules.protected_offset {
                        if r.offset >= rules.tombstone_limit {
                            waits = Some(waits.map_or(r.offset, |w| w.min(r.offset)));
                        } else {
                            let due = header.max_timestamp.saturating_add(delete_retention_ms);
                            deadline = Some(deadline.map_or(due, |d| d.min(due)));
                        }
                    }
                }
                keep
            })?;
            report.records_read += seen;
            report.tombstones_removed += tombstones_removed;
            if let Some(due) = deadline {
                report.tombstone_deadline_ms =
                    Some(report.tombstone_deadline_ms.map_or(due, |d| d.min(due)));
            }
            if let Some(offset) = waits {
                report.tombstone_waits_for_remote = Some(
                    report
                        .tombstone_waits_for_remote
                        .map_or(offset, |w| w.min(offset)),
                );
            }
            let written = match filtered {
                Filtered::Unchanged => Some(batch),
                Filtered::Rewritten(bytes) => {
                    report.records_removed += count_removed(&bytes, header);
                    changed = true;
                    Some(bytes)
                }
                Filtered::Empty => {
                    report.records_removed += seen;
                    changed = true;
                    None
                }
            };
            if let Some(bytes) = written {
                throttle.acquire_blocking(bytes.len() as u64)?;
                report.bytes_written += bytes.len() as u64;
                out.append(&bytes)?;
            }
            Ok(true)
        })?;
        Ok(changed)
    }
}

/// Records the rewrite of a batch removed: its original count less the new one.
fn count_removed(rewritten: &[u8], original: &BatchHeader) -> u64 {
    let kept = BatchHeader::parse(rewritten).map_or(0, |h| h.records_count.max(0));
    u64::from((original.records_count.max(0) - kept).max(0) as u32)
}
