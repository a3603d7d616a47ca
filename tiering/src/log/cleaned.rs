//! What compaction needs from the local log: a view of its sealed segments, segments written
//! outside the log (in `cleaning/`), and the swap that puts them in place of the originals.
//! The compaction service (`strata-compaction`) decides what to keep; this module only moves files.
//!
//! # The swap: what is written in which order
//! 1. Cleaned segments are written into `<partition>/cleaning/` under the name of the first segment
//!    each replaces, sealed (data fsynced, indexes written).
//! 2. Under the log's lock the replaced segments are checked to be unchanged (same base, same size,
//!    not the active segment) and durable (below the recovery point, see `log/recovery.rs`);
//!    otherwise the swap is abandoned and `cleaning/` emptied.
//! 3. `cleaning/swap.json` lists the replacements, written to a temporary name, fsynced and renamed:
//!    this is the commit point.
//! 4. Each cleaned file is renamed over the first replaced segment's file, the other replaced
//!    segments are deleted, and the directory is fsynced.
//! 5. `swap.json` is removed, then `cleaner-checkpoint.json` records how far the log has been
//!    cleaned.
//!
//! # What a crash leaves behind
//! - Before 3: cleaned files without `swap.json`; opening the log deletes `cleaning/`. The
//!   originals are untouched.
//! - After 3, before 5: opening the log finds `swap.json` and finishes step 4 (renames of files
//!   still in `cleaning/`, deletion of replaced segments still present); both steps are idempotent.
//! - After 5, before the checkpoint: the next pass starts from the older checkpoint and cleans
//!   those segments again, which changes nothing.
//!
//! Readers holding a replaced segment's file keep reading the old inode; its content is a superset
//! of the cleaned one, so a read during a swap sees either version.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{PartitionLog, SealedSegment};
use crate::batch::{BatchHeader, HEADER_SIZE};
use crate::config::LogConfig;
use crate::epochs::{sync_dir, write_durably};
use crate::error::{LogError, Result};
use crate::segment::{Segment, file_stem};

/// Directory under the partition directory where cleaned segments are written.
pub const CLEANING_DIR: &str = "cleaning";
const SWAP_MARKER: &str = "swap.json";
const CHECKPOINT: &str = "cleaner-checkpoint.json";
const EXTENSIONS: [&str; 3] = ["log", "index", "timeindex"];

/// A segment written by compaction outside the log, in offset order, keeping batch offsets.
#[derive(Debug)]
pub struct CleanedSegment {
    segment: Segment,
    dir: PathBuf,
}

impl CleanedSegment {
    /// Starts an empty segment named after `base_offset` in `dir`.
    pub fn create(dir: &Path, base_offset: i64, index_interval: u64, now_ms: i64) -> Result<Self> {
        Ok(CleanedSegment {
            segment: Segment::create(dir, base_offset, index_interval, now_ms)?,
            dir: dir.to_path_buf(),
        })
    }

    /// Appends one whole batch (header and body, CRC already valid).
    pub fn append(&mut self, batch: &[u8]) -> Result<()> {
        let header = BatchHeader::parse(batch)?;
        let (head, body) = batch
            .split_first_chunk::<HEADER_SIZE>()
            .ok_or_else(|| LogError::corrupt("a batch is shorter than its header"))?;
        self.segment.append(head, body, &header)
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.segment.size()
    }

    /// Seals the segment (indexes written, data and indexes fsynced: a swap commits only durable
    /// files) and describes its files.
    pub fn seal(mut self) -> Result<SealedSegment> {
        self.segment.seal()?;
        self.segment.durable_files().sync()?;
        let stem = self.dir.join(file_stem(self.segment.base_offset()));
        Ok(SealedSegment {
            base_offset: self.segment.base_offset(),
            next_offset: self.segment.next_offset(),
            size: self.segment.size(),
            first_timestamp: self.segment.first_timestamp()?,
            max_timestamp: self.segment.max_timestamp(),
            log_path: stem.with_extension("log"),
            offset_index_path: stem.with_extension("index"),
            time_index_path: stem.with_extension("timeindex"),
        })
    }
}

/// One swap: the sealed segments `replaced` — `(base offset, size)`, consecutive, oldest first —
/// give way to the cleaned segment in `cleaning/` named after the first of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// The replaced segments.
    pub replaced: Vec<(i64, u64)>,
}

/// How far a log has been compacted: persisted with each swap (in `cleaner-checkpoint.json`
/// locally, in the manifest remotely).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanCheckpoint {
    /// Offsets below this were cleaned by a completed pass; 0 before the first.
    pub cleaned_offset: i64,
    /// When the oldest tombstone a pass kept may be removed, if any was kept.
    pub tombstone_deadline_ms: Option<i64>,
    /// The lowest tombstone the local copy of a tiered log kept only because the remote tier was
    /// not yet cleaned past it.
    #[serde(default)]
    pub tombstone_waits_for_remote: Option<i64>,
}

/// What compaction sees of a local log.
#[derive(Debug, Clone)]
pub struct CompactionView {
    /// Sealed segments, oldest first (never the active one).
    pub sealed: Vec<SealedSegment>,
    /// Base offset of the active segment.
    pub active_base_offset: i64,
    /// Offsets below this are durable (the recovery point). Compaction cleans nothing above it:
    /// recovery after a machine crash scans the segments above it and takes one that ends below
    /// the next segment's base for one that lost batches.
    pub durable_end: i64,
    /// The first offset still readable.
    pub log_start_offset: i64,
    /// How far the log has been compacted.
    pub checkpoint: CleanCheckpoint,
    /// Offsets below this are in the remote tier, if anything was offloaded.
    pub remote_end_offset: Option<i64>,
    /// The log's settings.
    pub config: LogConfig,
}

impl PartitionLog {
    /// The log's sealed segments and cleaning checkpoint.
    pub fn compaction_view(&self) -> Result<CompactionView> {
        let sealed = self.sealed_segments()?;
        let checkpoint = read_checkpoint(&self.dir)?;
        let state = self.lock();
        Ok(CompactionView {
            sealed,
            active_base_offset: state.active().base_offset(),
            durable_end: state.recovery_point,
            log_start_offset: state.log_start_offset,
            checkpoint,
            remote_end_offset: state.remote_end_offset,
            config: state.config.clone(),
        })
    }

    /// An empty `cleaning/` directory to write cleaned segments into (leftovers are removed).
    pub fn cleaning_dir(&self) -> Result<PathBuf> {
        let dir = self.dir.join(CLEANING_DIR);
        remove_dir_if_present(&dir)?;
        fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        sync_dir(&self.dir)?;
        Ok(dir)
    }

    /// Puts the cleaned segments of `replacements` in place (see the module doc) and records
    /// `checkpoint`. Returns false, changing nothing, when a replaced
    /// segment changed meanwhile (retention, truncation, a roll); `cleaning/` is emptied either way.
    pub fn swap_cleaned(
        &self,
        replacements: &[Replacement],
        checkpoint: CleanCheckpoint,
        now_ms: i64,
    ) -> Result<bool> {
        let cleaning = self.dir.join(CLEANING_DIR);
        // Held until the checkpoint is written: a truncation or restart, which lowers the
        // checkpoint, waits for it rather than lowering one this swap then raises again.
        let _checkpoint = self.checkpoint_lock();
        let mut state = self.lock();
        let active = state.active().base_offset();
        // Only durable segments (below the recovery point) may be replaced: recovery takes a
        // segment above it that ends short of the next one for one that lost batches.
        let durable = state.recovery_point;
        let unchanged = replacements.iter().all(|r| {
            !r.replaced.is_empty()
                && r.replaced.iter().all(|(base, size)| {
                    *base != active
                        && state
                            .segments
                            .get(base)
                            .is_some_and(|s| s.size() == *size && s.next_offset() <= durable)
                })
        });
        if !unchanged {
            drop(state);
            remove_dir_if_present(&cleaning)?;
            return Ok(false);
        }
        let marker = cleaning.join(SWAP_MARKER);
        let body = serde_json::to_vec(replacements).map_err(|e| LogError::io(&marker, e.into()))?;
        write_durably(&cleaning, SWAP_MARKER, &body)?;
        apply_swap(&self.dir, replacements)?;
        let interval = state.config.index_interval_bytes;
        for r in replacements {
            for (base, _) in &r.replaced {
                state.segments.remove(base);
            }
            let base = r.replaced[0].0;
            let segment = Segment::open(&self.dir, base, false, interval, now_ms)?;
            state.segments.insert(base, segment);
        }
        drop(state);
        remove_dir_if_present(&cleaning)?;
        write_checkpoint(&self.dir, &checkpoint, false)?;
        Ok(true)
    }
}

/// Lowers the stored cleaner checkpoint to `offset` (durably) when it is above: the log is about
/// to be rewritten from there (a truncation, a restart at a new offset), and what comes there is
/// not clean.
pub(super) fn lower_checkpoint(dir: &Path, offset: i64) -> Result<()> {
    let checkpoint = read_checkpoint(dir)?;
    if checkpoint.cleaned_offset <= offset {
        return Ok(());
    }
    let lowered = CleanCheckpoint {
        cleaned_offset: offset.max(0),
        ..checkpoint
    };
    write_checkpoint(dir, &lowered, true)
}

/// Stores `checkpoint` (temporary file and rename; fsynced when `durable`).
fn write_checkpoint(dir: &Path, checkpoint: &CleanCheckpoint, durable: bool) -> Result<()> {
    let path = dir.join(CHECKPOINT);
    let body = serde_json::to_vec(checkpoint).map_err(|e| LogError::io(&path, e.into()))?;
    if durable {
        return write_durably(dir, CHECKPOINT, &body);
    }
    let tmp = dir.join(format!("{CHECKPOINT}.tmp"));
    fs::write(&tmp, body).map_err(|e| LogError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))
}

/// Finishes a swap a crash interrupted, or discards an uncommitted one; called before the log's
/// segments are listed on open.
pub(super) fn recover_swap(dir: &Path) -> Result<()> {
    let cleaning = dir.join(CLEANING_DIR);
    let marker = cleaning.join(SWAP_MARKER);
    match fs::read(&marker) {
        Ok(bytes) => {
            let replacements: Vec<Replacement> = serde_json::from_slice(&bytes)
                .map_err(|e| LogError::corrupt(format!("{}: {e}", marker.display())))?;
            apply_swap(dir, &replacements)?;
            tracing::info!(log = %dir.display(), "finished a compaction swap interrupted by a crash");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io(&marker, e)),
    }
    remove_dir_if_present(&cleaning)
}

/// Step 4 of the swap; safe to repeat.
fn apply_swap(dir: &Path, replacements: &[Replacement]) -> Result<()> {
    let cleaning = dir.join(CLEANING_DIR);
    for r in replacements {
        let Some(((first, _), rest)) = r.replaced.split_first() else {
            continue;
        };
        let stem = file_stem(*first);
        // The log file last: while it is still the old one, the index files are rebuilt on open.
        for ext in ["index", "timeindex", "log"] {
            let from = cleaning.join(&stem).with_extension(ext);
            let to = dir.join(&stem).with_extension(ext);
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(&from, e)),
            }
        }
        for (base, _) in rest {
            let stem = dir.join(file_stem(*base));
            for ext in EXTENSIONS {
                let path = stem.with_extension(ext);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(LogError::io(&path, e)),
                }
            }
        }
    }
    sync_dir(dir)
}

/// The stored checkpoint; an unreadable one counts as none (the next pass cleans everything again).
pub(super) fn read_checkpoint(dir: &Path) -> Result<CleanCheckpoint> {
    let path = dir.join(CHECKPOINT);
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CleanCheckpoint::default()),
        Err(e) => Err(LogError::io(&path, e)),
    }
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(dir, e)),
    }
}

#[cfg(test)]
mod tests;
