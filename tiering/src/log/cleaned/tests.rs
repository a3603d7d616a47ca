use super::*;
use crate::batch::tests::{TestBatch, build_batch};
use crate::batch::{self, BatchHeader};
use crate::log::tests::{options, small_segments};

/// A log of 30 one-record batches over several small segments, the sealed ones made durable (as
/// compaction requires of what it cleans).
fn log_with_segments(dir: &Path) -> PartitionLog {
    let log = unflushed_log_with_segments(dir);
    log.flush_sealed().expect("flush");
    log
}

/// [`log_with_segments`] before the flush scheduler reached it.
fn unflushed_log_with_segments(dir: &Path) -> PartitionLog {
    let log = PartitionLog::open(dir, small_segments(), 0).expect("open");
    for i in 0..30 {
        let b = build_batch(TestBatch {
            payload: 100,
            timestamp: 1_000 + i,
            ..TestBatch::default()
        });
        log.append(&b, options(0)).expect("append");
    }
    log
}

/// The batches of one sealed segment, read through the log.
fn batches_of(log: &PartitionLog, segment: &SealedSegment) -> Vec<Vec<u8>> {
    let bytes = log
        .read(segment.base_offset, 1 << 20, segment.next_offset, true)
        .expect("read");
    batch::split_batches(&bytes)
        .expect("batches")
        .into_iter()
        .map(|r| bytes[r].to_vec())
        .collect()
}

fn checkpoint(cleaned_offset: i64) -> CleanCheckpoint {
    CleanCheckpoint {
        cleaned_offset,
        tombstone_deadline_ms: Some(7),
        tombstone_waits_for_remote: None,
    }
}

fn bases(log: &PartitionLog) -> Vec<i64> {
    let end = log.log_end_offset();
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < end {
        let bytes = log.read(offset, 1 << 20, end, true).expect("read");
        for r in batch::split_batches(&bytes).expect("batches") {
            let h = BatchHeader::parse(&bytes[r]).expect("header");
            out.push(h.base_offset);
            offset = h.next_offset();
        }
    }
    out
}

/// One cleaned segment in `cleaning/`, for the first two sealed segments of a log.
struct FirstTwo {
    /// The swap that puts it in place.
    replacements: Vec<Replacement>,
    /// The batches it keeps (their base offsets).
    kept: Vec<i64>,
    /// Where the second replaced segment ends.
    second_end: i64,
    /// The log's batches once it is swapped in.
    expected: Vec<i64>,
}

/// Writes, into `cleaning/`, one cleaned segment replacing the first two sealed segments that keeps
/// only their even offsets.
fn clean_first_two(log: &PartitionLog) -> FirstTwo {
    let before = bases(log);
    let view = log.compaction_view().expect("view");
    assert!(view.sealed.len() >= 3, "{} sealed", view.sealed.len());
    let dir = log.cleaning_dir().expect("cleaning dir");
    let first = &view.sealed[0];
    let mut cleaned = CleanedSegment::create(&dir, first.base_offset, 200, 0).expect("create");
    let mut kept = Vec::new();
    for segment in &view.sealed[..2] {
        for b in batches_of(log, segment) {
            let h = BatchHeader::parse(&b).expect("header");
            if h.base_offset % 2 == 0 {
                cleaned.append(&b).expect("append");
                kept.push(h.base_offset);
            }
        }
    }
    let sealed = cleaned.seal().expect("seal");
    assert_eq!(sealed.base_offset, first.base_offset);
    let replacement = Replacement {
        replaced: view.sealed[..2]
            .iter()
            .map(|s| (s.base_offset, s.size))
            .collect(),
    };
    let second_end = view.sealed[1].next_offset;
    let expected = kept
        .iter()
        .copied()
        .chain(before.into_iter().filter(|b| *b >= second_end))
        .collect();
    FirstTwo {
        replacements: vec![replacement],
        kept,
        second_end,
        expected,
    }
}

#[test]
fn a_swap_replaces_segments_and_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with_segments(dir.path());
    let segments = log.segment_count();
    let FirstTwo {
        replacements,
        second_end,
        expected,
        ..
    } = clean_first_two(&log);
    assert!(
        log.swap_cleaned(&replacements, checkpoint(second_end), 0)
            .expect("swap")
    );
    assert_eq!(log.segment_count(), segments - 1);
    assert_eq!(bases(&log), expected);
    assert_eq!(
        log.compaction_view().expect("view").checkpoint,
        checkpoint(second_end)
    );
    assert!(!dir.path().join(CLEANING_DIR).exists());
    log.close().expect("close");
    let reopened = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!(bases(&reopened), expected);
    assert_eq!(reopened.log_end_offset(), 30);
}

#[test]
fn a_swap_is_abandoned_when_a_replaced_segment_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with_segments(dir.path());
    let before = bases(&log);
    let mut replacements = clean_first_two(&log).replacements;
    replacements[0].replaced[1].1 += 1;
    assert!(
        !log.swap_cleaned(&replacements, checkpoint(10), 0)
            .expect("swap")
    );
    assert_eq!(bases(&log), before);
    assert!(!dir.path().join(CLEANING_DIR).exists());
    assert_eq!(
        log.compaction_view().expect("view").checkpoint,
        CleanCheckpoint::default()
    );
}

#[test]
fn a_committed_swap_is_finished_on_open_and_an_uncommitted_one_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with_segments(dir.path());
    let before = bases(&log);
    let FirstTwo {
        replacements,
        expected,
        ..
    } = clean_first_two(&log);
    drop(log);
    // Uncommitted: cleaned files but no marker. Opening keeps the originals.
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!(bases(&log), before);
    assert!(!dir.path().join(CLEANING_DIR).exists());
    // Committed: the marker was written, then the process died before renaming anything.
    assert_eq!(clean_first_two(&log).replacements, replacements);
    drop(log);
    let marker = dir.path().join(CLEANING_DIR).join(SWAP_MARKER);
    fs::write(&marker, serde_json::to_vec(&replacements).expect("json")).expect("marker");
    // ...and after renaming the index files only.
    let stem = file_stem(replacements[0].replaced[0].0);
    fs::rename(
        dir.path()
            .join(CLEANING_DIR)
            .join(&stem)
            .with_extension("index"),
        dir.path().join(&stem).with_extension("index"),
    )
    .expect("rename");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!(bases(&log), expected);
    assert!(!dir.path().join(CLEANING_DIR).exists());
}

#[test]
fn only_durable_segments_are_swapped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = unflushed_log_with_segments(dir.path());
    let before = bases(&log);
    let replacements = clean_first_two(&log).replacements;
    assert!(
        !log.swap_cleaned(&replacements, checkpoint(10), 0)
            .expect("swap"),
        "not fsynced yet: a crash could still shorten them"
    );
    assert_eq!(bases(&log), before);
    log.flush_sealed().expect("flush");
    let replacements = clean_first_two(&log).replacements;
    assert!(
        log.swap_cleaned(&replacements, checkpoint(10), 0)
            .expect("swap")
    );
}

/// A cleaned segment ends below the next segment's base. Recovery does not scan it (it is below
/// the recovery point); with the recovery point's file lost it does, and the cleaner checkpoint
/// spares it the check for lost batches.
#[test]
fn a_compacted_segment_survives_a_crash_that_lost_the_recovery_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with_segments(dir.path());
    let FirstTwo {
        replacements,
        kept,
        second_end,
        expected,
    } = clean_first_two(&log);
    assert!(
        kept.last().expect("kept") + 1 < second_end,
        "the cleaned segment ends short"
    );
    assert!(
        log.swap_cleaned(&replacements, checkpoint(second_end), 0)
            .expect("swap")
    );
    drop(log);
    fs::remove_file(dir.path().join("recovery-point")).expect("lose the recovery point");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("recover");
    assert_eq!(bases(&log), expected);
}

/// A log whose first two segments were cleaned and swapped in, checkpointed past them; and the
/// batches the cleaned segment kept.
fn swapped_log(dir: &Path) -> (PartitionLog, Vec<i64>) {
    let log = log_with_segments(dir);
    let FirstTwo {
        replacements,
        kept,
        second_end,
        ..
    } = clean_first_two(&log);
    assert!(
        log.swap_cleaned(&replacements, checkpoint(second_end), 0)
            .expect("swap")
    );
    (log, kept)
}

fn cleaned_offset(dir: &Path) -> i64 {
    read_checkpoint(dir).expect("checkpoint").cleaned_offset
}

#[test]
fn truncations_and_restarts_lower_the_cleaner_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, kept) = swapped_log(dir.path());
    let inside = kept[kept.len() / 2];
    log.truncate_to(inside).expect("truncate");
    let lowered = read_checkpoint(dir.path()).expect("checkpoint");
    assert!(
        lowered.cleaned_offset <= inside,
        "what comes from there is new: {lowered:?}"
    );
    assert_eq!(lowered.tombstone_deadline_ms, Some(7), "the rest is kept");

    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = swapped_log(dir.path());
    log.reset_to(2, 0).expect("restart");
    assert_eq!(cleaned_offset(dir.path()), 2);
    log.reset_to(50, 0).expect("restart above");
    assert_eq!(cleaned_offset(dir.path()), 2, "never raised");
}
