//! The recovery point: the offset below which every segment of the log is known to be durable
//! (data and indexes fsynced), as Kafka's `recovery-point-offset-checkpoint`.
//!
//! Rolling does not fsync the segment it seals, nor write the producer snapshot at the roll: an
//! fsync of a whole segment under the log's lock held every append of the partition for as long as
//! the disk took to write a gigabyte back (~0.3 s measured), and creating a file can wait on a
//! disk read of an inode bitmap (~40 ms measured). Instead [`PartitionLog::flush_sealed`] (the
//! broker's flush scheduler) fsyncs sealed segments and writes the snapshot outside that lock, then
//! moves the recovery point past them, stored in the `recovery-point` file.
//!
//! # Crash safety
//! A killed process loses nothing either way: appended batches are in the page cache. After a
//! machine crash, a segment wholly below the stored recovery point is trusted as it is; every later
//! segment is scanned and cut at its first torn batch, and when a segment other than the last is
//! cut or ends below the next segment's base (whole batches lost), the segments after it are
//! deleted (their offsets would no longer follow on). `close` stores the point at the active
//! segment's base, and compaction cleans only below the point (`swap_cleaned` refuses anything
//! else), so recovery does not scan a segment compaction shortened; should the point's file be
//! lost, segments below the cleaner checkpoint are spared that check, and lowering the point lowers
//! that checkpoint too. The stored point may only lag the truth: it is written (temporary file,
//! fsync, rename, directory fsync) after the fsyncs it stands for, and lowered, before any file
//! changes, by truncation and by a restart of the log at a new offset. Both hold the log's
//! checkpoint lock (taken before the state lock) from start to end, so a truncation never
//! interleaves with a flush that would store a point above the data it rewrote. A missing or
//! unreadable file means "scan every segment". A snapshot not yet written when the machine stops
//! only means a longer replay of producer state on open.

use std::fs;
use std::path::Path;

use super::{LogState, PartitionLog};
use crate::epochs::sync_dir;
use crate::error::Result;
use crate::segment::DurableFiles;

const RECOVERY_POINT: &str = "recovery-point";

/// The stored recovery point of the log in `dir`; `i64::MIN` (nothing known durable) when there is
/// none or it cannot be read.
pub(super) fn load(dir: &Path) -> i64 {
    fs::read_to_string(dir.join(RECOVERY_POINT))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(i64::MIN)
}

/// Stores `offset` as the recovery point of the log in `dir`, durably.
pub(super) fn store(dir: &Path, offset: i64) -> Result<()> {
    crate::epochs::write_durably(dir, RECOVERY_POINT, offset.to_string().as_bytes())
}

/// Whether a segment followed by one starting at `next_base` (none: the active segment) must be
/// scanned after an unclean shutdown.
pub(super) fn needs_recovery(next_base: Option<i64>, recovery_point: i64) -> bool {
    next_base.is_none_or(|next| next > recovery_point)
}

/// The sealed segments not yet known durable (a suffix of the sealed ones, newest first), and the
/// offset the recovery point may move to once they are fsynced (the active segment's base).
pub(super) fn pending(state: &LogState) -> (Vec<DurableFiles>, i64) {
    let active_base = state.active().base_offset();
    let files = state
        .segments
        .range(..active_base)
        .rev()
        .take_while(|(_, s)| s.next_offset() > state.recovery_point)
        .map(|(_, s)| s.durable_files())
        .collect();
    (files, active_base)
}

/// Fsyncs `files` and then the log's directory (new segment files' names).
pub(super) fn sync_files(dir: &Path, files: &[DurableFiles]) -> Result<()> {
    for file in files {
        file.sync()?;
    }
    sync_dir(dir)
}

/// Lowers the recovery point to `offset` (stored before the caller changes any file), and the
/// cleaner checkpoint with it (offsets from there on are rewritten, not clean), and drops a
/// producer snapshot not yet written. The caller holds the checkpoint lock.
pub(super) fn lower(dir: &Path, state: &mut LogState, offset: i64) -> Result<()> {
    state.pending_snapshot = None;
    super::cleaned::lower_checkpoint(dir, offset)?;
    if offset < state.recovery_point {
        store(dir, offset)?;
        state.recovery_point = offset;
    }
    Ok(())
}

impl PartitionLog {
    /// Fsyncs the sealed segments not yet known durable and writes the producer snapshot of the
    /// last roll, without holding the log's state lock (appends go on), then moves the recovery
    /// point past them. Called by the broker's flush scheduler; a roll only seals.
    pub fn flush_sealed(&self) -> Result<()> {
        let _checkpoint = self.checkpoint_lock();
        let (files, end, snapshot) = {
            let mut state = self.lock();
            let (files, end) = pending(&state);
            (files, end, state.pending_snapshot.take())
        };
        if !files.is_empty() {
            sync_files(&self.dir, &files)?;
        }
        // After the segments it describes are durable: a snapshot durable above durable data
        // would be trusted once the log grew past it again.
        if let Some((offset, producers)) = snapshot {
            producers.write_snapshot(&self.dir, offset)?;
        }
        if files.is_empty() {
            return Ok(());
        }
        store(&self.dir, end)?;
        let mut state = self.lock();
        state.recovery_point = state.recovery_point.max(end);
        Ok(())
    }
}
