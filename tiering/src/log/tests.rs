use super::*;
use crate::batch::tests::{TestBatch, build_batch};
use proptest::prelude::*;
use std::io::Write;

pub(super) fn options(now_ms: i64) -> AppendOptions {
    AppendOptions {
        now_ms,
        leader_epoch: 0,
        log_append_time: false,
    }
}

pub(super) fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

/// Reads every batch from `from` to the end, returning their headers.
fn read_all(log: &PartitionLog, from: i64) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut offset = from;
    let end = log.log_end_offset();
    while offset < end {
        let bytes = log.read(offset, 10_000, end, true).expect("read");
        assert!(!bytes.is_empty(), "no progress at offset {offset}");
        for r in batch::split_batches(&bytes).expect("whole batches") {
            let h = batch::validate_batch(&bytes[r]).expect("stored batches stay valid");
            if h.last_offset() >= offset {
                offset = h.next_offset();
                out.push(h);
            }
        }
    }
    out
}

#[test]
fn appends_get_consecutive_offsets_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    let mut expected = 0;
    for i in 0..50 {
        let b = build_batch(TestBatch {
            records: 1 + i % 3,
            ..TestBatch::default()
        });
        let out = log.append(&b, options(0)).expect("append");
        assert_eq!(out.base_offset, expected);
        expected = out.last_offset + 1;
    }
    assert_eq!(log.log_end_offset(), expected);
    assert!(log.segment_count() > 3, "small segments roll");
    let headers = read_all(&log, 0);
    assert_eq!(headers.len(), 50);
    assert_eq!(headers.last().map(BatchHeader::next_offset), Some(expected));
    // Reading from the middle of a batch returns that whole batch.
    let mid = headers[10].base_offset + i64::from(headers[10].last_offset_delta);
    let bytes = log.read(mid, 10_000, expected, true).expect("read");
    assert_eq!(
        BatchHeader::parse(&bytes).expect("header").base_offset,
        headers[10].base_offset
    );
}

#[test]
fn reads_stop_at_the_upper_bound_and_max_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).expect("open");
    let b = build_batch(TestBatch {
        payload: 100,
        ..TestBatch::default()
    });
    for _ in 0..10 {
        log.append(&b, options(0)).expect("append");
    }
    assert_eq!(
        batch::split_batches(&log.read(0, 1 << 20, 4, true).expect("read"))
            .expect("split")
            .len(),
        4
    );
    assert_eq!(
        batch::split_batches(&log.read(0, 2 * b.len() + 5, 10, true).expect("read"))
            .expect("split")
            .len(),
        2
    );
    // A first batch bigger than max bytes still comes back whole, unless min_one is off.
    assert_eq!(log.read(0, 10, 10, true).expect("read").len(), b.len());
    assert!(log.read(0, 10, 10, false).expect("read").is_empty());
    assert!(log.read(10, 100, 10, true).expect("read").is_empty());
    assert!(matches!(
        log.read(11, 100, 11, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn a_clean_reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
        for _ in 0..30 {
            log.append(&build_batch(TestBatch::default()), options(0))
                .expect("append");
        }
        log.close().expect("close");
    }
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(read_all(&log, 0).len(), 30);
    assert_eq!(
        log.append(&build_batch(TestBatch::default()), options(0))
            .expect("append")
            .base_offset,
        30
    );
}

#[test]
fn a_torn_tail_is_cut_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last_segment;
    {
        let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
        for _ in 0..20 {
            log.append(&build_batch(TestBatch::default()), options(0))
                .expect("append");
        }
        last_segment = dir.path().join(format!(
            "{}.log",
            crate::segment::file_stem(*log.lock().segments.keys().next_back().expect("segment"),)
        ));
        // No close: the process "dies" here, with half a batch written after the last good one.
    }
    let torn = build_batch(TestBatch {
        payload: 50,
        ..TestBatch::default()
    });
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&last_segment)
        .expect("open segment");
    f.write_all(&torn[..40]).expect("write");
    drop(f);
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("recover");
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(read_all(&log, 0).len(), 20);
    assert_eq!(
        log.append(&torn, options(0)).expect("append").base_offset,
        20
    );
}

#[test]
fn missing_or_garbled_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
        for _ in 0..40 {
            log.append(&build_batch(TestBatch::default()), options(0))
                .expect("append");
        }
        log.close().expect("close");
    }
    let mut damaged = 0;
    for entry in fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("index") if damaged % 2 == 0 => {
                fs::remove_file(&path).expect("remove");
                damaged += 1;
            }
            Some("index") => {
                fs::write(&path, [0xff; 13]).expect("garble");
                damaged += 1;
            }
            _ => {}
        }
    }
    assert!(damaged >= 2);
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    let headers = read_all(&log, 0);
    assert_eq!(headers.len(), 40);
    for offset in [0, 7, 19, 33, 39] {
        let bytes = log.read(offset, 100, 40, true).expect("read");
        let h = BatchHeader::parse(&bytes).expect("header");
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
}

#[test]
fn idempotent_retries_are_recognised_across_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batch = |seq| {
        build_batch(TestBatch {
            producer_id: 9,
            producer_epoch: 0,
            base_sequence: seq,
            records: 2,
            ..TestBatch::default()
        })
    };
    {
        let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
        for seq in (0..20).step_by(2) {
            assert!(
                !log.append(&batch(seq), options(0))
                    .expect("append")
                    .duplicate
            );
        }
    }
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("recover");
    let dup = log.append(&batch(18), options(0)).expect("retry");
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (18, 19));
    assert!(matches!(
        log.append(&batch(24), options(0)),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    assert_eq!(
        log.append(&batch(20), options(0))
            .expect("next")
            .base_offset,
        20
    );
}

#[test]
fn timestamps_find_the_first_batch_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    for i in 0..30 {
        log.append(
            &build_batch(TestBatch {
                timestamp: 1_000 * i,
                ..TestBatch::default()
            }),
            options(0),
        )
        .expect("append");
    }
    for (target, expected) in [
        (0, Some(0)),
        (1, Some(1)),
        (5_000, Some(5)),
        (5_001, Some(6)),
        (29_000, Some(29)),
        (29_001, None),
    ] {
        let found = log.batch_at_timestamp(target).expect("lookup");
        let base = found.map(|b| BatchHeader::parse(&b).expect("header").base_offset);
        assert_eq!(base, expected, "timestamp {target}");
    }
    assert_eq!(log.max_timestamp().map(|(t, _)| t), Some(29_000));
}

#[test]
fn log_append_time_replaces_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).expect("open");
    let out = log
        .append(
            &build_batch(TestBatch::default()),
            AppendOptions {
                now_ms: 777,
                leader_epoch: 3,
                log_append_time: true,
            },
        )
        .expect("append");
    assert_eq!(out.log_append_time, Some(777));
    let bytes = log.read(0, 1000, 1, true).expect("read");
    let h = batch::validate_batch(&bytes).expect("valid");
    assert_eq!((h.max_timestamp, h.partition_leader_epoch), (777, 3));
}

#[test]
fn oversized_and_corrupt_batches_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        max_message_bytes: 100,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config, 0).expect("open");
    let big = build_batch(TestBatch {
        payload: 200,
        ..TestBatch::default()
    });
    assert!(matches!(
        log.append(&big, options(0)),
        Err(LogError::BatchTooLarge { .. })
    ));
    let mut bad = build_batch(TestBatch::default());
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert!(matches!(
        log.append(&bad, options(0)),
        Err(LogError::CorruptBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn retention_and_delete_records_move_the_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: 10_000,
        ..small_segments()
    };
    let log = PartitionLog::open(dir.path(), config, 0).expect("open");
    for i in 0..40 {
        log.append(
            &build_batch(TestBatch {
                timestamp: i * 1_000,
                ..TestBatch::default()
            }),
            options(0),
        )
        .expect("append");
    }
    let before = log.segment_count();
    assert_eq!(log.delete_records_before(5, 0).expect("delete records"), 5);
    assert!(matches!(
        log.read(4, 100, 40, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log, 5).first().map(|h| h.base_offset), Some(5));
    let deleted = log.apply_retention(45_000).expect("retention");
    assert!(deleted > 0 && log.segment_count() == before - deleted);
    let start = log.log_start_offset();
    assert!(start > 5);
    drop(log);
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!(log.log_start_offset(), start);
    assert!(matches!(
        log.delete_records_before(41, 0),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever the batch sizes, the log hands back every batch in order with consecutive offsets,
    /// and a crash that cuts the last segment anywhere loses only a suffix.
    #[test]
    fn appends_read_back_and_survive_any_cut(
        batches in proptest::collection::vec((1i32..6, 0usize..300), 1..60),
        cut in 0usize..400,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes: 2_000, index_interval_bytes: 300, ..LogConfig::default() };
        let mut ends = Vec::new();
        {
            let log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
            for (records, payload) in &batches {
                let b = build_batch(TestBatch { records: *records, payload: *payload, ..TestBatch::default() });
                ends.push(log.append(&b, options(0)).expect("append").last_offset + 1);
            }
            let headers = read_all(&log, 0);
            prop_assert_eq!(headers.iter().map(BatchHeader::next_offset).collect::<Vec<_>>(), ends.clone());
        }
        let mut logs: Vec<_> = fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
        logs.sort();
        let last = logs.last().expect("a segment");
        let len = fs::metadata(last).expect("meta").len();
        fs::OpenOptions::new().write(true).open(last).expect("open").set_len(len.saturating_sub(cut as u64)).expect("cut");
        let log = PartitionLog::open(dir.path(), config, 0).expect("recover");
        let end = log.log_end_offset();
        prop_assert!(end == 0 || ends.contains(&end), "recovered to a batch boundary");
        let headers = read_all(&log, 0);
        prop_assert_eq!(headers.iter().map(BatchHeader::next_offset).collect::<Vec<_>>(),
            ends.iter().copied().filter(|e| *e <= end).collect::<Vec<_>>());
    }
}

/// Appends `count` default batches; the log rolls every few of them with `small_segments`.
fn append_default(log: &PartitionLog, count: usize) {
    for _ in 0..count {
        log.append(&build_batch(TestBatch::default()), options(0))
            .expect("append");
    }
}

fn segment_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}.log", crate::segment::file_stem(base)))
}

#[test]
fn sealed_segments_become_durable_through_flush_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    append_default(&log, 30);
    assert!(log.segment_count() > 2);
    assert_eq!(log.lock().recovery_point, i64::MIN, "a roll only seals");
    assert_eq!(recovery::load(dir.path()), i64::MIN);
    let active = log.lock().active().base_offset();
    let snapshot = dir
        .path()
        .join(format!("{}.snapshot", crate::segment::file_stem(active)));
    assert!(
        !snapshot.exists(),
        "the roll left the snapshot to the flush"
    );
    log.flush_sealed().expect("flush");
    assert_eq!(log.lock().recovery_point, active);
    assert_eq!(recovery::load(dir.path()), active);
    assert!(snapshot.exists());
    append_default(&log, 10);
    log.flush_sealed().expect("flush");
    let active = log.lock().active().base_offset();
    assert_eq!(recovery::load(dir.path()), active);
}

/// A log of several segments with sealed ones above the recovery point, left without close or
/// flush as a machine crash would. Returns the segment bases and the index of the first segment
/// above the recovery point, which has later segments after it.
fn crash_with_unflushed_sealed_segments(dir: &Path) -> (Vec<i64>, usize) {
    let bases: Vec<i64>;
    {
        let log = PartitionLog::open(dir, small_segments(), 0).expect("open");
        append_default(&log, 12);
        log.flush_sealed().expect("flush");
        append_default(&log, 30);
        bases = log.lock().segments.keys().copied().collect();
    }
    let durable = recovery::load(dir);
    let victim = bases
        .iter()
        .position(|b| *b >= durable)
        .expect("a segment above the recovery point");
    assert!(victim + 2 < bases.len(), "segments follow the victim");
    (bases, victim)
}

/// Reopens the log and checks it ends inside the damaged segment `bases[victim]`, with no gap,
/// the later segments gone, and appends going on from its end.
fn assert_recovered_inside(dir: &Path, bases: &[i64], victim: usize) {
    let log = PartitionLog::open(dir, small_segments(), 0).expect("recover");
    let end = log.log_end_offset();
    assert!(
        end > bases[victim] && end < bases[victim + 1],
        "ends inside the damaged segment: {end}"
    );
    assert_eq!(
        read_all(&log, 0).len() as i64,
        end,
        "one record per batch, no gaps"
    );
    for later in &bases[victim + 1..] {
        assert!(!segment_path(dir, *later).exists());
    }
    assert_eq!(
        log.append(&build_batch(TestBatch::default()), options(0))
            .expect("append")
            .base_offset,
        end
    );
}

#[test]
fn a_torn_segment_before_the_last_drops_the_segments_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bases, victim) = crash_with_unflushed_sealed_segments(dir.path());
    let path = segment_path(dir.path(), bases[victim]);
    let mut bytes = fs::read(&path).expect("read");
    // A block that never reached the disk: the file keeps its length, a batch no longer its CRC.
    let at = bytes.len() - 30;
    bytes[at] ^= 0xff;
    fs::write(&path, &bytes).expect("damage");
    assert_recovered_inside(dir.path(), &bases, victim);
}

#[test]
fn a_segment_that_lost_whole_batches_at_its_end_drops_the_segments_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bases, victim) = crash_with_unflushed_sealed_segments(dir.path());
    let path = segment_path(dir.path(), bases[victim]);
    let mut bytes = fs::read(&path).expect("read");
    // The file's size never reached the disk past its last batch but one: what is left is whole,
    // nothing is torn, and only the next segment's base shows offsets are missing.
    let mut starts = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        starts.push(at);
        let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        at += batch::LOG_OVERHEAD + length as usize;
    }
    assert!(starts.len() > 1, "the segment holds several batches");
    bytes.truncate(starts[starts.len() - 1]);
    fs::write(&path, &bytes).expect("damage");
    assert_recovered_inside(dir.path(), &bases, victim);
}

#[test]
fn a_clean_shutdown_stores_the_recovery_point_at_the_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    append_default(&log, 30);
    let active = log.lock().active().base_offset();
    assert!(active > 0 && recovery::load(dir.path()) < active);
    log.close().expect("close");
    drop(log);
    assert_eq!(recovery::load(dir.path()), active);
    // A clean shutdown that did not store it (an older binary): the open does.
    recovery::store(dir.path(), 3).expect("store");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(
        recovery::load(dir.path()),
        active,
        "compaction may clean the sealed segments at once"
    );
}

#[test]
fn truncation_lowers_the_recovery_point_before_it_rewrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    append_default(&log, 30);
    log.flush_sealed().expect("flush");
    let durable = recovery::load(dir.path());
    assert!(durable > 10);
    log.truncate_to(10).expect("truncate");
    assert!(recovery::load(dir.path()) <= 10);
    assert!(log.lock().recovery_point <= 10);
    log.reset_to(40, 0).expect("reset");
    assert!(
        recovery::load(dir.path()) <= 10,
        "a restart above it leaves it where it was"
    );
    append_default(&log, 20);
    log.flush_sealed().expect("flush");
    assert!(recovery::load(dir.path()) > 40);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A machine crash can leave any segment not yet flushed torn, not only the last: whatever is
    /// cut, the log recovers to a prefix of what was appended, ending at a batch boundary.
    #[test]
    fn a_crash_leaves_a_prefix_whichever_unflushed_segment_is_torn(
        batches in proptest::collection::vec((1i32..6, 0usize..300), 1..60),
        flushed_after in 0usize..60,
        victim in 0usize..100,
        cut in 1u64..400,
        flip in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes: 2_000, index_interval_bytes: 300, ..LogConfig::default() };
        let mut ends = Vec::new();
        let durable;
        {
            let log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
            for (i, (records, payload)) in batches.iter().enumerate() {
                let b = build_batch(TestBatch { records: *records, payload: *payload, ..TestBatch::default() });
                ends.push(log.append(&b, options(0)).expect("append").last_offset + 1);
                if i == flushed_after {
                    log.flush_sealed().expect("flush");
                }
            }
            durable = log.lock().recovery_point;
        }
        let mut bases: Vec<i64> = fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .filter_map(|p| p.file_stem()?.to_str()?.parse().ok()).collect();
        bases.sort_unstable();
        let exposed: Vec<i64> = bases.iter().enumerate()
            .filter(|(i, _)| bases.get(i + 1).is_none_or(|next| *next > durable))
            .map(|(_, b)| *b).collect();
        let victim = exposed[victim % exposed.len()];
        let path = segment_path(dir.path(), victim);
        let mut bytes = fs::read(&path).expect("read");
        if flip && !bytes.is_empty() {
            // A bad block: the length stays, the CRC of one batch no longer matches (the last byte
            // of a batch is a record's, inside what the CRC covers).
            let mut ends = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                at += batch::LOG_OVERHEAD + i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
                ends.push(at);
            }
            let at = ends[cut as usize % ends.len()] - 1;
            bytes[at] ^= 0xff;
        } else {
            bytes.truncate(bytes.len().saturating_sub(cut as usize));
        }
        fs::write(&path, &bytes).expect("damage");
        let log = PartitionLog::open(dir.path(), config, 0).expect("recover");
        let end = log.log_end_offset();
        prop_assert!(end == victim || ends.contains(&end), "recovered to a batch boundary");
        prop_assert!(end >= durable.min(victim), "nothing durable lost");
        let headers = read_all(&log, 0);
        prop_assert_eq!(headers.iter().map(BatchHeader::next_offset).collect::<Vec<_>>(),
            ends.iter().copied().filter(|e| *e <= end).collect::<Vec<_>>());
    }
}

#[test]
fn flush_sealed_and_truncations_run_side_by_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                log.flush_sealed().expect("flush");
            }
        });
        for round in 0..200 {
            append_default(&log, 7);
            if round % 3 == 0 {
                let end = log.log_end_offset();
                log.truncate_to(end - 5).expect("truncate");
                assert!(recovery::load(dir.path()) <= end - 5);
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    log.flush_sealed().expect("flush");
    assert!(recovery::load(dir.path()) <= log.log_end_offset());
    assert_eq!(read_all(&log, 0).len() as i64, log.log_end_offset());
}

#[test]
fn a_log_that_a_crash_left_ending_below_its_start_starts_over_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start;
    let active;
    {
        let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
        append_default(&log, 30);
        active = log.lock().active().base_offset();
        while log.log_end_offset() < active + 3 {
            append_default(&log, 1);
        }
        start = active + 2;
        log.delete_records_before(start, 0).expect("delete records");
        assert_eq!(log.log_start_offset(), start);
    }
    // The stored start reached the disk; the active segment's data did not.
    fs::OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), active))
        .expect("open segment")
        .set_len(0)
        .expect("lose the data");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("recover");
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(
        log.log_end_offset(),
        start,
        "nothing readable is left below the start"
    );
    assert_eq!(log.segment_count(), 1);
    let appended = log
        .append(&build_batch(TestBatch::default()), options(0))
        .expect("append");
    assert_eq!(appended.base_offset, start);
    assert_eq!(read_all(&log, start).len(), 1);
}

/// A crash can leave a sealed segment's time index empty (its file written at the roll, not yet
/// fsynced). Opening takes it for stale, rebuilds it and writes it again, so time-based retention
/// and timestamp lookups keep seeing the segment's timestamps.
#[test]
fn an_empty_time_index_of_a_sealed_segment_is_rebuilt_and_written_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    append_default(&log, 30);
    let first = log.sealed_segments().expect("sealed")[0].clone();
    assert_eq!(first.max_timestamp, 1_000);
    log.close().expect("close");
    drop(log);
    fs::write(&first.time_index_path, b"").expect("empty the time index");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!(
        log.sealed_segments().expect("sealed")[0].max_timestamp,
        1_000
    );
    assert!(
        fs::metadata(&first.time_index_path).expect("stat").len() > 0,
        "written again"
    );
}
