//! The leader-epoch cache of one partition: the first offset written under each leader epoch, which
//! is what a follower and a leader compare to find where their logs diverge (KIP-101, KIP-279).
//!
//! The cache is a pure data structure; its file I/O is in [`load`], [`store`] and [`remove`].
//!
//! # The `leader-epoch-checkpoint` file
//! Kafka's own format, in the partition directory: text lines, each ending in `\n`.
//! ```text
//! 0                      version
//! 2                      number of entries
//! 0 0                    <leader epoch> <start offset>, epochs and offsets strictly increasing
//! 3 120
//! ```
//! It changes rarely, only when a batch of a newer epoch is appended or the log is truncated, and
//! is replaced whole (temporary file, fsync, rename, fsync of the directory). The log writes it
//! *before* the first batch of a new epoch: a crash in between leaves an entry at or past the
//! recovered log end, and such entries are dropped when the log is opened. A missing or unreadable
//! file is rebuilt from the batch headers of the local segments.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{LogError, Result};

/// Name of the checkpoint file in the partition directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

const VERSION: u32 = 0;

/// One leader epoch and the first offset written under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The first offset of the log written under `epoch`.
    pub start_offset: i64,
}

/// The leader epochs of a log in order, each with its start offset. Epochs and start offsets are
/// both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// The entries, oldest epoch first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Whether a batch stamped with `epoch` starts a new entry: the epoch is defined (not
    /// negative) and newer than every cached one.
    pub fn is_new_epoch(&self, epoch: i32) -> bool {
        epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest)
    }

    /// Records that `epoch` starts at `start_offset` when it [is new](Self::is_new_epoch); entries
    /// starting at or after `start_offset` (which a truncation should already have dropped) are
    /// replaced. Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if !self.is_new_epoch(epoch) {
            return false;
        }
        self.truncate_from_end(start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops the entries whose start offset is at or after `end_offset` (the log was truncated
    /// there, or recovered to it). Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// OffsetsForLeaderEpoch: the largest cached epoch at or below `epoch`, with its end offset
    /// (the start of the next cached epoch, or `log_end_offset` for the newest one). `None` when
    /// every cached epoch is above `epoch` or the cache is empty.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|e| e.epoch <= epoch);
        let found = self.entries.get(i.checked_sub(1)?)?;
        let end = self
            .entries
            .get(i)
            .map_or(log_end_offset, |next| next.start_offset);
        Some((found.epoch, end))
    }

    /// The checkpoint file's text (see the module documentation).
    pub fn encode(&self) -> String {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        text
    }

    /// Parses a checkpoint file's text; `None` when it is not a valid checkpoint (wrong version,
    /// a count that disagrees with the entries, or entries out of order).
    pub fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()?.trim().parse::<u32>().ok()? != VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut cache = LeaderEpochCache::default();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let entry = EpochEntry {
                epoch: fields.next()?.parse().ok()?,
                start_offset: fields.next()?.parse().ok()?,
            };
            let ordered = cache.entries.last().is_none_or(|last| {
                entry.epoch > last.epoch && entry.start_offset > last.start_offset
            });
            if fields.next().is_some() || entry.epoch < 0 || !ordered {
                return None;
            }
            cache.entries.push(entry);
        }
        (cache.entries.len() == count).then_some(cache)
    }
}

/// Reads the checkpoint in `dir`: `None` when there is none, or when it is unreadable (with a
/// warning), in which case the caller rebuilds the cache from the log.
pub fn load(dir: &Path) -> Result<Option<LeaderEpochCache>> {
    let path = dir.join(CHECKPOINT_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => String::new(),
        Err(e) => return Err(LogError::io(&path, e)),
    };
    let cache = LeaderEpochCache::decode(&text);
    if cache.is_none() {
        tracing::warn!(checkpoint = %path.display(), "ignoring an unreadable leader-epoch checkpoint");
    }
    Ok(cache)
}

/// Replaces the checkpoint in `dir` with `cache`: a temporary file, fsynced, renamed over the old
/// one, then the directory fsynced, so a crash leaves either the old or the new checkpoint.
pub fn store(dir: &Path, cache: &LeaderEpochCache) -> Result<()> {
    write_durably(dir, CHECKPOINT_FILE, cache.encode().as_bytes())
}

/// Replaces the file `name` in `dir` with `bytes` so that a crash leaves the old or the new
/// content, whole: a temporary file fsynced, renamed over it, and the directory fsynced.
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| LogError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))?;
    sync_dir(dir)
}

/// Deletes the checkpoint in `dir`, if there is one.
pub fn remove(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(&path, e)),
    }
}

/// Fsyncs a directory, making the renames and deletions in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for &(epoch, start) in entries {
            assert!(cache.assign(epoch, start), "assign {epoch}@{start}");
        }
        cache
    }

    #[test]
    fn end_offsets_follow_offsets_for_leader_epoch() {
        let c = cache(&[(1, 0), (3, 100), (4, 250)]);
        let log_end = 300;
        for (epoch, expected) in [
            (0, None),
            (1, Some((1, 100))),
            (2, Some((1, 100))),
            (3, Some((3, 250))),
            (4, Some((4, 300))),
            (7, Some((4, 300))),
            (-1, None),
        ] {
            assert_eq!(c.end_offset_for(epoch, log_end), expected, "epoch {epoch}");
        }
        assert_eq!(LeaderEpochCache::default().end_offset_for(5, 10), None);
    }

    #[test]
    fn only_newer_defined_epochs_are_assigned() {
        let mut c = cache(&[(2, 10)]);
        assert!(!c.assign(2, 20), "same epoch");
        assert!(!c.assign(1, 20), "older epoch");
        assert!(!c.assign(-1, 20), "undefined epoch");
        assert_eq!(c.latest_epoch(), Some(2));
        // A stale entry at or past the new start is replaced.
        assert!(c.assign(5, 10));
        assert_eq!(
            c.entries(),
            [EpochEntry {
                epoch: 5,
                start_offset: 10
            }]
        );
    }

    #[test]
    fn truncation_drops_entries_starting_at_or_after_the_end() {
        for (end, kept) in [(301, 3), (250, 2), (101, 2), (100, 1), (1, 1), (0, 0)] {
            let mut c = cache(&[(1, 0), (3, 100), (4, 250)]);
            assert_eq!(c.truncate_from_end(end), kept < 3, "end {end}");
            assert_eq!(c.entries().len(), kept, "end {end}");
        }
    }

    #[test]
    fn checkpoints_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("load"), None);
        let c = cache(&[(0, 0), (3, 120)]);
        store(dir.path(), &c).expect("store");
        let text = fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).expect("read");
        assert_eq!(text, "0\n2\n0 0\n3 120\n");
        assert_eq!(load(dir.path()).expect("load"), Some(c));
        store(dir.path(), &LeaderEpochCache::default()).expect("store");
        assert_eq!(
            load(dir.path()).expect("load"),
            Some(LeaderEpochCache::default())
        );
        remove(dir.path()).expect("remove");
        remove(dir.path()).expect("removing twice is fine");
        assert_eq!(load(dir.path()).expect("load"), None);
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        for text in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 5\n",
            "0\n2\n3 0\n2 5\n",
            "0\n2\n1 5\n2 5\n",
            "0\n1\n-1 0\n",
            "0\n1\n1 0 9\n",
            "0\n1\nx 0\n",
        ] {
            assert_eq!(LeaderEpochCache::decode(text), None, "{text:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(CHECKPOINT_FILE), b"0\n\xff").expect("write");
        assert_eq!(load(dir.path()).expect("load"), None);
    }
}
