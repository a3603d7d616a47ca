use std::fs;

use proptest::prelude::*;

use super::*;
use crate::batch::tests::{TestBatch, build_batch};
use crate::batch::{BatchHeader, Stamp};
use crate::config::LogConfig;
use crate::log::AppendOptions;
use crate::log::tests::{options, small_segments};

fn leader(epoch: i32) -> AppendOptions {
    AppendOptions {
        leader_epoch: epoch,
        ..options(0)
    }
}

/// A batch as a leader stored it: `spec` with `base_offset` and `epoch` stamped in.
fn replicated(spec: TestBatch, base_offset: i64, epoch: i32) -> Vec<u8> {
    let b = build_batch(spec);
    let stamp = Stamp {
        base_offset,
        leader_epoch: epoch,
        log_append_time: None,
    };
    let mut out = batch::stamp_header(&b, stamp).to_vec();
    out.extend_from_slice(&b[HEADER_SIZE..]);
    out
}

/// Every batch from the log start to the end, byte for byte.
fn stored_batches(log: &PartitionLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let bytes = log.read(offset, 1 << 20, end, true).expect("read");
        assert!(!bytes.is_empty(), "no progress at offset {offset}");
        for r in batch::split_batches(&bytes).expect("whole batches") {
            let h = batch::validate_batch(&bytes[r.clone()]).expect("stored batches stay valid");
            if h.last_offset() >= offset {
                offset = h.next_offset();
                out.push(bytes[r].to_vec());
            }
        }
    }
    out
}

fn header(bytes: &[u8]) -> BatchHeader {
    BatchHeader::parse(bytes).expect("header")
}

fn segment_bases(log: &PartitionLog) -> Vec<i64> {
    log.lock().segments.keys().copied().collect()
}

fn epochs_of(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.lock()
        .epochs
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// A leader log of 40 two-record batches over several segments: epoch 1 for the first ten
/// batches, 3 for the next twenty, 4 for the rest.
fn leader_log(dir: &std::path::Path) -> PartitionLog {
    let log = PartitionLog::open(dir, small_segments(), 0).expect("open");
    for i in 0..40 {
        let epoch = match i {
            0..10 => 1,
            10..30 => 3,
            _ => 4,
        };
        let b = build_batch(TestBatch {
            records: 2,
            timestamp: 1_000 + i64::from(i),
            payload: 50,
            ..TestBatch::default()
        });
        log.append(&b, leader(epoch)).expect("append");
    }
    log
}

#[test]
fn replica_appends_keep_the_leaders_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leader_log = leader_log(&dir.path().join("leader"));
    let batches = stored_batches(&leader_log);
    let follower = PartitionLog::open(&dir.path().join("follower"), small_segments(), 0)
        .expect("open follower");
    for chunk in batches.chunks(3) {
        let out = follower
            .append_replica(&chunk.concat(), 0)
            .expect("replica append");
        let first = header(&chunk[0]);
        let last = header(&chunk[chunk.len() - 1]);
        assert_eq!(
            out,
            AppendOutcome {
                base_offset: first.base_offset,
                last_offset: last.last_offset(),
                log_append_time: None,
                duplicate: false,
                log_start_offset: 0,
                leader_epoch: last.partition_leader_epoch,
            }
        );
    }
    assert_eq!(stored_batches(&follower), batches);
    assert_eq!(follower.log_end_offset(), leader_log.log_end_offset());
    assert!(follower.segment_count() > 3, "replica appends roll too");
    assert_eq!(follower.latest_epoch(), Some(4));
    for epoch in -1..6 {
        assert_eq!(
            follower.end_offset_for_epoch(epoch),
            leader_log.end_offset_for_epoch(epoch),
            "epoch {epoch}"
        );
    }
    assert_eq!(epochs_of(&follower), [(1, 0), (3, 20), (4, 60)]);
}

#[test]
fn a_replica_append_must_continue_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).expect("open");
    let at = |base, records| {
        replicated(
            TestBatch {
                records,
                ..TestBatch::default()
            },
            base,
            0,
        )
    };
    let overlap = [at(0, 2), at(1, 1)].concat();
    assert!(matches!(
        log.append_replica(&overlap, 0),
        Err(LogError::OffsetMismatch {
            expected: 2,
            got: 1
        })
    ));
    let mut corrupt = at(0, 1);
    let n = corrupt.len();
    corrupt[n - 1] ^= 0xff;
    assert!(matches!(
        log.append_replica(&corrupt, 0),
        Err(LogError::CorruptBatch { .. })
    ));
    assert!(matches!(
        log.append_replica(&[], 0),
        Err(LogError::CorruptBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 0, "nothing was written");
    assert_eq!(log.latest_epoch(), None);
    log.append_replica(&at(0, 3), 0).expect("append");
    assert!(matches!(
        log.append_replica(&at(0, 3), 0),
        Err(LogError::OffsetMismatch {
            expected: 3,
            got: 0
        })
    ));
    // Whole batches a leader's compaction removed leave gaps, which a follower keeps.
    let gapped = [at(5, 1), at(9, 2)].concat();
    let outcome = log.append_replica(&gapped, 0).expect("gaps are accepted");
    assert_eq!((outcome.base_offset, outcome.last_offset), (5, 10));
    assert_eq!(log.log_end_offset(), 11);
    let read = log.read(3, 1 << 20, 11, true).expect("read in a gap");
    assert_eq!(
        batch_bases(&read),
        vec![5, 9],
        "a read inside a gap starts at the next batch"
    );
}

fn batch_bases(bytes: &[u8]) -> Vec<i64> {
    crate::batch::split_batches(bytes)
        .expect("batches")
        .into_iter()
        .map(|r| {
            crate::batch::BatchHeader::parse(&bytes[r])
                .expect("header")
                .base_offset
        })
        .collect()
}

#[test]
fn replica_appends_skip_the_producer_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        max_message_bytes: 100,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config, 0).expect("open");
    // A batch compaction thinned out: three offsets, two records. Producers may not send it, a
    // leader may hold it.
    let mut thinned = replicated(
        TestBatch {
            records: 3,
            payload: 200,
            ..TestBatch::default()
        },
        0,
        2,
    );
    thinned[57..61].copy_from_slice(&2i32.to_be_bytes());
    let crc = crc32c::crc32c(&thinned[21..]);
    thinned[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append(&thinned, options(0)),
        Err(LogError::BatchTooLarge { .. })
    ));
    log.append_replica(&thinned, 0).expect("replica append");
    assert_eq!(stored_batches(&log), [thinned]);
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn replica_appends_record_producer_state_without_checking_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = |seq| TestBatch {
        producer_id: 9,
        producer_epoch: 0,
        base_sequence: seq,
        records: 2,
        ..TestBatch::default()
    };
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    log.append_replica(&replicated(spec(0), 0, 1), 0)
        .expect("first");
    // A gap the leader accepted (its state for the producer had expired) is not re-checked.
    log.append_replica(&replicated(spec(10), 2, 1), 0)
        .expect("gap");
    // Promoted to leader, the replica recognises a retry and keeps checking sequences.
    let dup = log
        .append(&build_batch(spec(10)), leader(2))
        .expect("retry");
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (2, 3));
    assert!(matches!(
        log.append(&build_batch(spec(14)), leader(2)),
        Err(LogError::OutOfOrderSequence { expected: 12, .. })
    ));
    assert_eq!(
        log.append(&build_batch(spec(12)), leader(2))
            .expect("next")
            .base_offset,
        4
    );
}

#[test]
fn leader_appends_record_each_new_epoch_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    assert_eq!(log.latest_epoch(), None);
    for epoch in [0, 0, 2, 2] {
        log.append(&build_batch(TestBatch::default()), leader(epoch))
            .expect("append");
    }
    // A leader append of an older epoch after a newer one's batches is refused: this broker
    // stopped leading at epoch 1 while the append waited.
    assert!(matches!(
        log.append(&build_batch(TestBatch::default()), leader(1)),
        Err(LogError::StaleLeaderEpoch {
            epoch: 1,
            latest: 2
        })
    ));
    assert_eq!(log.log_end_offset(), 4);
    // A replica copies an older epoch's batch after a newer one as the leader has it.
    log.append_replica(&replicated(TestBatch::default(), 4, 1), 0)
        .expect("replica append");
    log.append(&build_batch(TestBatch::default()), leader(3))
        .expect("append");
    // Epoch 1 came after 2: no entry.
    assert_eq!(epochs_of(&log), [(0, 0), (2, 2), (3, 5)]);
    assert_eq!(log.latest_epoch(), Some(3));
    for (epoch, expected) in [
        (-1, None),
        (0, Some((0, 2))),
        (1, Some((0, 2))),
        (2, Some((2, 5))),
        (3, Some((3, 6))),
        (9, Some((3, 6))),
    ] {
        assert_eq!(log.end_offset_for_epoch(epoch), expected, "epoch {epoch}");
    }
    let checkpoint = dir.path().join(epochs::CHECKPOINT_FILE);
    assert_eq!(
        fs::read_to_string(&checkpoint).expect("checkpoint"),
        "0\n3\n0 0\n2 2\n3 5\n"
    );
    log.close().expect("close");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!(epochs_of(&log), [(0, 0), (2, 2), (3, 5)]);
    drop(log);
    // A log written before the checkpoint existed, or one whose checkpoint is unreadable, gets
    // its cache back from the batch headers.
    for damage in [None, Some("garbage")] {
        match damage {
            None => fs::remove_file(&checkpoint).expect("remove"),
            Some(text) => fs::write(&checkpoint, text).expect("garble"),
        }
        let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
        assert_eq!(epochs_of(&log), [(0, 0), (2, 2), (3, 5)], "{damage:?}");
    }
}

#[test]
fn an_epoch_announced_but_never_written_is_dropped_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
        for epoch in [1, 1, 2] {
            log.append(&build_batch(TestBatch::default()), leader(epoch))
                .expect("append");
        }
    }
    // The process died after writing the checkpoint for epoch 5 but before its batch.
    fs::write(
        dir.path().join(epochs::CHECKPOINT_FILE),
        "0\n3\n1 0\n2 2\n5 3\n",
    )
    .expect("write");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("recover");
    assert_eq!(epochs_of(&log), [(1, 0), (2, 2)]);
    assert_eq!(log.end_offset_for_epoch(5), Some((2, 3)));
    assert_eq!(
        fs::read_to_string(dir.path().join(epochs::CHECKPOINT_FILE)).expect("checkpoint"),
        "0\n2\n1 0\n2 2\n",
        "the checkpoint is rewritten"
    );
}

#[test]
fn truncation_removes_whole_batches_from_the_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = leader_log(&dir.path().join("layout"));
    let bases = segment_bases(&layout);
    let end = layout.log_end_offset();
    assert!(bases.len() > 4, "the log spans several segments: {bases:?}");
    let cases = [
        ("past the end", end + 5),
        ("at the end", end),
        ("at the last batch", end - 2),
        ("inside the last batch", end - 1),
        ("mid segment", bases[2] + 4),
        ("at a segment boundary", bases[3]),
        ("inside the first batch of a segment", bases[3] + 1),
        ("across several segments", bases[1] + 2),
        ("inside the first batch", 1),
        ("at the log start", 0),
    ];
    for (i, (name, offset)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("case-{i}"));
        let log = leader_log(&path);
        let before = stored_batches(&log);
        // Every batch holds two records, so a cut inside one lands on its (even) base.
        let expected_end = offset.min(end) / 2 * 2;
        log.truncate_to(offset).expect(name);
        assert_eq!(log.log_end_offset(), expected_end, "{name}");
        assert_eq!(log.log_start_offset(), 0, "{name}");
        let kept = stored_batches(&log);
        assert_eq!(kept, before[..kept.len()], "{name}: a prefix survives");
        let segments = bases.iter().filter(|b| **b < expected_end).count().max(1);
        assert_eq!(log.segment_count(), segments, "{name}");
        assert_eq!(
            log.sealed_segments().expect("sealed").len(),
            segments - 1,
            "{name}"
        );
        let epochs: Vec<_> = [(1, 0), (3, 20), (4, 60)]
            .into_iter()
            .filter(|(_, start)| *start < expected_end)
            .collect();
        assert_eq!(epochs_of(&log), epochs, "{name}");
        // Appending continues at the new end, in the truncated (maybe formerly sealed) segment.
        let out = log
            .append(&build_batch(TestBatch::default()), leader(7))
            .expect("append after truncation");
        assert_eq!(out.base_offset, expected_end, "{name}");
        assert_eq!(log.latest_epoch(), Some(7));
        let state = stored_batches(&log);
        let epochs = epochs_of(&log);
        let segments = log.segment_count();
        for clean in [true, false] {
            if clean {
                log.close().expect("close");
            }
            let reopened = PartitionLog::open(&path, small_segments(), 0).expect("reopen");
            assert_eq!(stored_batches(&reopened), state, "{name}, clean {clean}");
            assert_eq!(epochs_of(&reopened), epochs, "{name}, clean {clean}");
            assert_eq!(reopened.segment_count(), segments, "{name}, clean {clean}");
        }
        drop(log);
    }
}

#[test]
fn a_truncated_segment_finds_offsets_and_timestamps_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config, 0).expect("open");
    for i in 0..30 {
        log.append(
            &build_batch(TestBatch {
                timestamp: 1_000 * i,
                payload: 40,
                ..TestBatch::default()
            }),
            leader(0),
        )
        .expect("append");
    }
    assert_eq!(
        segment_bases(&log),
        [0, 19],
        "the cut is in a sealed segment"
    );
    log.truncate_to(17).expect("truncate");
    assert_eq!(segment_bases(&log), [0]);
    assert_eq!(log.max_timestamp(), Some((16_000, 0)));
    for offset in [0, 5, 12, 16] {
        let bytes = log.read(offset, 100, 17, true).expect("read");
        assert_eq!(header(&bytes).base_offset, offset);
    }
    let found = log.batch_at_timestamp(16_000).expect("lookup");
    assert_eq!(found.map(|b| header(&b).base_offset), Some(16));
    assert_eq!(log.batch_at_timestamp(16_001).expect("lookup"), None);
    log.append(
        &build_batch(TestBatch {
            timestamp: 50_000,
            ..TestBatch::default()
        }),
        leader(0),
    )
    .expect("append");
    assert_eq!(log.max_timestamp(), Some((50_000, 0)));
    let found = log.batch_at_timestamp(20_000).expect("lookup");
    assert_eq!(found.map(|b| header(&b).base_offset), Some(17));
}

#[test]
fn truncation_forgets_the_producer_batches_it_removes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batch = |seq| {
        build_batch(TestBatch {
            producer_id: 9,
            producer_epoch: 0,
            base_sequence: seq,
            records: 2,
            payload: 400,
            ..TestBatch::default()
        })
    };
    let config = LogConfig {
        segment_bytes: 500,
        ..LogConfig::default()
    };
    {
        // One batch per segment: every roll writes a producer snapshot, the last one at 6.
        let log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
        for seq in [0, 2, 4, 6] {
            log.append(&batch(seq), leader(0)).expect("append");
        }
        assert_eq!(log.segment_count(), 4);
        log.truncate_to(2).expect("truncate");
        assert!(
            log.append(&batch(0), leader(0)).expect("retry").duplicate,
            "a batch that survived is still a duplicate"
        );
    }
    let log = PartitionLog::open(dir.path(), config, 0).expect("reopen after a crash");
    assert!(log.append(&batch(0), leader(0)).expect("retry").duplicate);
    let again = log.append(&batch(2), leader(0)).expect("append");
    assert!(
        !again.duplicate,
        "a truncated batch is no longer a duplicate"
    );
    assert_eq!(again.base_offset, 2);
}

#[test]
fn truncating_at_or_below_the_log_start_empties_the_log_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    for _ in 0..20 {
        log.append(&build_batch(TestBatch::default()), leader(1))
            .expect("append");
    }
    log.delete_records_before(7, 0).expect("delete records");
    log.truncate_to(5).expect("truncate");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (7, 7));
    assert_eq!((log.segment_count(), log.latest_epoch()), (1, None));
    assert!(log.read(7, 100, 7, true).expect("read").is_empty());
    assert_eq!(
        log.append(&build_batch(TestBatch::default()), leader(2))
            .expect("append")
            .base_offset,
        7
    );
    drop(log);
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (7, 8));
    assert_eq!(epochs_of(&log), [(2, 7)]);
}

#[test]
fn a_crash_in_the_middle_of_a_truncation_leaves_a_valid_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bases = {
        let log = leader_log(dir.path());
        segment_bases(&log)
    };
    // The process died while deleting segments, newest first: the last one is gone.
    let last = bases[bases.len() - 1];
    let stem = dir.path().join(crate::segment::file_stem(last));
    fs::remove_file(stem.with_extension("log")).expect("remove");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("recover");
    assert_eq!(log.log_end_offset(), last);
    assert_eq!(stored_batches(&log).len() as i64, last / 2);
    let epochs: Vec<_> = [(1, 0), (3, 20), (4, 60)]
        .into_iter()
        .filter(|(_, start)| *start < last)
        .collect();
    assert_eq!(epochs_of(&log), epochs);
    // The follower truncates again and carries on.
    log.truncate_to(bases[1] + 1).expect("truncate");
    assert_eq!(log.log_end_offset(), bases[1]);
    log.append(&build_batch(TestBatch::default()), leader(5))
        .expect("append");
}

#[test]
fn reset_restarts_the_log_empty_at_the_given_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    let batch = |seq| {
        build_batch(TestBatch {
            producer_id: 9,
            producer_epoch: 0,
            base_sequence: seq,
            ..TestBatch::default()
        })
    };
    for seq in 0..30 {
        log.append(&batch(seq), leader(3)).expect("append");
    }
    log.delete_records_before(4, 0).expect("delete records");
    log.set_remote_end_offset(10);
    for (start, now_ms) in [(100, 5_000), (20, 6_000)] {
        log.reset_to(start, now_ms).expect("reset");
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (start, start)
        );
        assert_eq!((log.segment_count(), log.latest_epoch()), (1, None));
        assert_eq!(log.end_offset_for_epoch(3), None);
        assert_eq!(log.lock().remote_end_offset, Some(10));
        assert_eq!(log.lock().active().created_at_ms(), now_ms);
        assert!(log.read(start, 100, start, true).expect("read").is_empty());
        let mut files: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                format!("{}.log", crate::segment::file_stem(start)),
                epochs::CHECKPOINT_FILE.to_string()
            ]
        );
    }
    // Producer state went with the batches: an old sequence is new again.
    let out = log.append(&batch(29), leader(4)).expect("append");
    assert_eq!((out.base_offset, out.duplicate), (20, false));
    assert!(matches!(
        log.reset_to(-1, 0),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("reopen");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (20, 21));
    assert_eq!(epochs_of(&log), [(4, 20)]);
}

/// One step of the replication model test.
#[derive(Debug, Clone)]
enum Step {
    /// A leader append; `bump` starts a new leader epoch first.
    Lead {
        bump: bool,
        records: i32,
        payload: usize,
    },
    /// A replica append of batches (records, payload) stamped by a leader.
    Follow {
        bump: bool,
        batches: Vec<(i32, usize)>,
    },
    /// Truncation to `per_mille` of the way from the log start to the end.
    Truncate { per_mille: i64 },
    /// Restart the log empty, `gap` offsets past its end.
    Reset { gap: i64 },
    /// Close (or crash) and reopen.
    Reopen { clean: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<bool>(), 1i32..4, 0usize..200)
            .prop_map(|(bump, records, payload)| Step::Lead { bump, records, payload }),
        3 => (any::<bool>(), proptest::collection::vec((1i32..4, 0usize..200), 1..4))
            .prop_map(|(bump, batches)| Step::Follow { bump, batches }),
        2 => (0i64..=1000).prop_map(|per_mille| Step::Truncate { per_mille }),
        1 => (0i64..5).prop_map(|gap| Step::Reset { gap }),
        1 => any::<bool>().prop_map(|clean| Step::Reopen { clean }),
    ]
}

/// The log as a model: its start, its batches (base offset, leader epoch, bytes) and the current
/// leader epoch.
#[derive(Debug, Default)]
struct Model {
    start: i64,
    batches: Vec<(i64, i32, Vec<u8>)>,
    epoch: i32,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.start, |(_, _, b)| header(b).next_offset())
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let (_, found, _) = self.batches.iter().rev().find(|(_, e, _)| *e <= epoch)?;
        let end = self
            .batches
            .iter()
            .find(|(_, e, _)| e > found)
            .map_or(self.end(), |(base, _, _)| *base);
        Some((*found, end))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Leader appends under rising epochs, replica appends, truncations, resets and reopens keep
    /// the log equal to a list of batches, and its epoch cache equal to the epochs of that list.
    #[test]
    fn replication_steps_match_a_model(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = small_segments();
        let mut log = PartitionLog::open(dir.path(), config.clone(), 0).expect("open");
        let mut model = Model::default();
        for step in steps {
            match step {
                Step::Lead { bump, records, payload } => {
                    model.epoch += i32::from(bump);
                    let spec = TestBatch { records, payload, ..TestBatch::default() };
                    let out = log.append(&build_batch(spec), leader(model.epoch)).expect("append");
                    prop_assert_eq!(out.base_offset, model.end());
                    model.batches.push((out.base_offset, model.epoch, replicated(spec, out.base_offset, model.epoch)));
                }
                Step::Follow { bump, batches } => {
                    model.epoch += i32::from(bump);
                    let mut bytes = Vec::new();
                    for (records, payload) in batches {
                        let base = model.end();
                        let b = replicated(TestBatch { records, payload, ..TestBatch::default() }, base, model.epoch);
                        bytes.extend_from_slice(&b);
                        model.batches.push((base, model.epoch, b));
                    }
                    log.append_replica(&bytes, 0).expect("replica append");
                }
                Step::Truncate { per_mille } => {
                    let offset = model.start + (model.end() - model.start) * per_mille / 1000;
                    log.truncate_to(offset).expect("truncate");
                    model.batches.retain(|(_, _, b)| header(b).last_offset() < offset);
                }
                Step::Reset { gap } => {
                    let start = model.end() + gap;
                    log.reset_to(start, 0).expect("reset");
                    model.start = start;
                    model.batches.clear();
                }
                Step::Reopen { clean } => {
                    if clean {
                        log.close().expect("close");
                    }
                    drop(log);
                    log = PartitionLog::open(dir.path(), config.clone(), 0).expect("reopen");
                }
            }
            prop_assert_eq!(log.log_start_offset(), model.start);
            prop_assert_eq!(log.log_end_offset(), model.end());
            let expected: Vec<_> = model.batches.iter().map(|(_, _, b)| b.clone()).collect();
            prop_assert_eq!(stored_batches(&log), expected);
            prop_assert_eq!(log.latest_epoch(), model.batches.last().map(|(_, e, _)| *e));
            for epoch in -1..=model.epoch + 1 {
                prop_assert_eq!(log.end_offset_for_epoch(epoch), model.end_offset_for_epoch(epoch), "epoch {}", epoch);
            }
        }
    }
}

/// A follower's log copies the gaps compaction left in the leader's. A truncation whose offset
/// falls in a gap ends the log where the kept batches end, below the first batch removed, and
/// the recovery point and producer snapshots follow that end, not the removed batch's base.
#[test]
fn truncating_into_a_gap_ends_the_log_where_the_kept_batches_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), small_segments(), 0).expect("open");
    let two = TestBatch {
        records: 2,
        ..TestBatch::default()
    };
    let bases: Vec<i64> = (0..10)
        .map(|i| i * 2)
        .chain((0..10).map(|i| 40 + i * 2))
        .collect();
    for base in &bases {
        log.append_replica(&replicated(two, *base, 1), 0)
            .expect("append");
    }
    log.flush_sealed().expect("flush");
    log.truncate_to(30).expect("truncate");
    assert_eq!(log.log_end_offset(), 20);
    assert!(
        recovery::load(dir.path()) <= 20,
        "the recovery point is at or below the end"
    );
    let snapshots: Vec<i64> = fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| {
            let path = e.expect("entry").path();
            (path.extension()? == "snapshot").then(|| path.file_stem()?.to_str()?.parse().ok())?
        })
        .collect();
    assert!(
        snapshots.iter().all(|s| *s <= 20),
        "snapshots above the end: {snapshots:?}"
    );
    // The leader's next batches continue after the gap; a crash then loses nothing.
    log.append_replica(&replicated(two, 40, 2), 0)
        .expect("append");
    let kept = stored_batches(&log);
    drop(log);
    let reopened = PartitionLog::open(dir.path(), small_segments(), 0).expect("recover");
    assert_eq!(stored_batches(&reopened), kept);
    assert_eq!(reopened.log_end_offset(), 42);
}
