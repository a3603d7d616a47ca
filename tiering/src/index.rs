//! Sparse offset and time indexes of one segment.
//!
//! Both are kept in memory while a segment is active and written to disk when it is sealed or the
//! log is closed cleanly, in Kafka's file formats:
//! - `.index`: entries of (offset - segment base: u32, file position: u32), big-endian;
//! - `.timeindex`: entries of (max timestamp so far: i64, offset - segment base: u32).
//!
//! An index file is only a cache: when it is missing, malformed or points past the end of the
//! segment, the segment is scanned and the index rebuilt (see `segment.rs`).

use std::fs;
use std::path::Path;

use crate::error::{LogError, Result};

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// Maps offsets to file positions, one entry every `index.interval.bytes` of log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Records that the batch starting at `relative_offset` sits at `position`.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        self.entries.push((relative_offset, position));
    }

    /// Returns the (relative offset, position) of the last entry at or below `relative_offset`, or
    /// `(0, 0)` when there is none: the segment's start.
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 { (0, 0) } else { self.entries[i - 1] }
    }

    /// Drops entries that point at or past `position` (after truncation).
    pub fn truncate_to_position(&mut self, position: u32) {
        self.entries.retain(|&(_, p)| p < position);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the index to `path` in Kafka's format.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY);
        for &(o, p) in &self.entries {
            bytes.extend_from_slice(&o.to_be_bytes());
            bytes.extend_from_slice(&p.to_be_bytes());
        }
        write_file(path, &bytes)
    }

    /// Loads an index, or `None` when the file is missing or not a valid index for a segment of
    /// `segment_size` bytes.
    pub fn load(path: &Path, segment_size: u64) -> Option<Self> {
        Self::from_bytes(&fs::read(path).ok()?, segment_size)
    }

    /// Parses an index in Kafka's format, or `None` when it is not a valid index for a segment of
    /// `segment_size` bytes.
    pub fn from_bytes(bytes: &[u8], segment_size: u64) -> Option<Self> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY) {
            return None;
        }
        let mut index = OffsetIndex::default();
        for e in bytes.chunks_exact(OFFSET_ENTRY) {
            let o = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let p = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let ordered = index
                .entries
                .last()
                .is_none_or(|&(lo, lp)| o > lo && p > lp);
            if !ordered || u64::from(p) >= segment_size {
                return None;
            }
            index.push(o, p);
        }
        Some(index)
    }
}

/// Maps timestamps to offsets: each entry is the largest timestamp seen so far in the segment and
/// the offset of the batch that carried it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records a new maximum timestamp; ignored unless it is larger than the last entry's.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, _)| timestamp > t) {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// The relative offset from which to scan for the first batch with a timestamp at or after
    /// `timestamp`: the last entry whose timestamp is below it, or the segment start.
    pub fn lookup(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 { 0 } else { self.entries[i - 1].1 }
    }

    /// The largest timestamp indexed, if any.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|&(t, _)| t)
    }

    /// Drops entries at or past `relative_offset` (after truncation).
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        self.entries.retain(|&(_, o)| o < relative_offset);
    }

    /// Writes the index to `path` in Kafka's format.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::with_capacity(self.entries.len() * TIME_ENTRY);
        for &(t, o) in &self.entries {
            bytes.extend_from_slice(&t.to_be_bytes());
            bytes.extend_from_slice(&o.to_be_bytes());
        }
        write_file(path, &bytes)
    }

    /// Loads a time index, or `None` when the file is missing or malformed.
    pub fn load(path: &Path) -> Option<Self> {
        Self::from_bytes(&fs::read(path).ok()?)
    }

    /// Parses a time index in Kafka's format, or `None` when it is malformed.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(TIME_ENTRY) {
            return None;
        }
        let mut index = TimeIndex::default();
        for e in bytes.chunks_exact(TIME_ENTRY) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&e[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            if index
                .entries
                .last()
                .is_some_and(|&(lt, lo)| t <= lt || o < lo)
            {
                return None;
            }
            index.entries.push((t, o));
        }
        Some(index)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| LogError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_lookup_finds_the_floor_entry() {
        let mut index = OffsetIndex::default();
        index.push(10, 4096);
        index.push(20, 8192);
        assert_eq!(index.lookup(5), (0, 0));
        assert_eq!(index.lookup(10), (10, 4096));
        assert_eq!(index.lookup(19), (10, 4096));
        assert_eq!(index.lookup(1000), (20, 8192));
    }

    #[test]
    fn time_lookup_starts_before_the_target() {
        let mut index = TimeIndex::default();
        index.push(100, 0);
        index.push(90, 3); // not a new maximum: ignored
        index.push(200, 5);
        assert_eq!(index.lookup(50), 0);
        assert_eq!(index.lookup(150), 0);
        assert_eq!(index.lookup(201), 5);
        assert_eq!(index.max_timestamp(), Some(200));
    }

    #[test]
    fn an_index_pointing_past_the_segment_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::default();
        index.push(1, 100);
        index.write(&path).expect("write");
        assert!(OffsetIndex::load(&path, 101).is_some());
        assert!(OffsetIndex::load(&path, 100).is_none());
        std::fs::write(&path, [0u8; 5]).expect("write");
        assert!(OffsetIndex::load(&path, 1000).is_none());
    }

    proptest! {
        #[test]
        fn indexes_round_trip(steps in proptest::collection::vec((1u32..50, 1u32..5000, 1i64..100), 0..100)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (mut offsets, mut times) = (OffsetIndex::default(), TimeIndex::default());
            let (mut o, mut p, mut t) = (0u32, 0u32, 0i64);
            for (do_, dp, dt) in steps {
                o += do_; p += dp; t += dt;
                offsets.push(o, p);
                times.push(t, o);
            }
            offsets.write(&dir.path().join("a.index")).expect("write");
            times.write(&dir.path().join("a.timeindex")).expect("write");
            prop_assert_eq!(OffsetIndex::load(&dir.path().join("a.index"), u64::from(p) + 1), Some(offsets));
            prop_assert_eq!(TimeIndex::load(&dir.path().join("a.timeindex")), Some(times));
        }
    }
}
