use std::collections::BTreeMap;

use kafka_protocol::records::Compression;
use proptest::prelude::*;
use strata_tiering::{AppendOptions, LogConfig, PartitionLog};

use super::*;

const UNBOUNDED: LocalBounds = LocalBounds {
    committed_end: i64::MAX,
    remote_cleaned_offset: None,
};
use crate::test_support::{decode, keyed_batch};

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

fn config(delete_retention_ms: i64) -> CompactionConfig {
    CompactionConfig {
        delete_retention_ms,
        min_cleanable_dirty_ratio: 0.0,
        segment_bytes: 6_000,
        index_interval_bytes: 200,
        ..CompactionConfig::default()
    }
}

/// Every record from the log start: (offset, key, value).
fn read_all(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut out = Vec::new();
    while offset < end {
        let bytes = log.read(offset, 1 << 20, end, true).expect("read");
        assert!(!bytes.is_empty(), "stuck at {offset}");
        let records = decode(&bytes, offset);
        offset = records.last().map_or(end, |r| r.0 + 1);
        out.extend(records);
    }
    out
}

/// Appends `updates` one batch of `per_batch` records at a time, then rolls so all are sealed.
fn write(log: &PartitionLog, updates: &[(String, Option<String>)], per_batch: usize, ts: i64) {
    for chunk in updates.chunks(per_batch) {
        let options = AppendOptions {
            now_ms: ts,
            leader_epoch: 0,
            log_append_time: false,
        };
        log.append(&keyed_batch(chunk, ts, Compression::Lz4), options)
            .expect("append");
    }
}

/// Rolls so every batch is in a sealed segment, and fsyncs them as the flush scheduler would:
/// compaction cleans durable segments only.
fn seal(log: &PartitionLog) {
    let mut config = log_config();
    config.segment_ms = 0;
    log.set_config(config);
    log.roll_if_due(i64::MAX / 2).expect("roll");
    log.set_config(log_config());
    log.flush_sealed().expect("flush");
}

/// Runs passes until none is due.
fn compact_fully(log: &PartitionLog, config: &CompactionConfig, budget: usize, now: i64) -> u32 {
    let throttle = Throttle::new(0);
    let mut passes = 0;
    while compact_local(log, config, UNBOUNDED, budget, &throttle, now)
        .expect("pass")
        .is_some()
    {
        passes += 1;
        assert!(passes < 1_000, "passes never end");
    }
    passes
}

fn latest(updates: &[(String, Option<String>)]) -> BTreeMap<String, (i64, Option<String>)> {
    let mut model = BTreeMap::new();
    for (offset, (k, v)) in updates.iter().enumerate() {
        model.insert(k.clone(), (offset as i64, v.clone()));
    }
    model
}

/// Writes 600 updates of 40 keys, 7 to a batch, and returns them.
fn write_overwrites(log: &PartitionLog) -> Vec<(String, Option<String>)> {
    let updates: Vec<_> = (0..600)
        .map(|i| (format!("key-{}", i % 40), Some(format!("value-{i}"))))
        .collect();
    write(log, &updates, 7, 1_000);
    updates
}

#[test]
fn keeps_the_latest_record_per_key_at_its_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), log_config(), 0).expect("open");
    let updates = write_overwrites(&log);
    seal(&log);
    let segments = log.segment_count();
    let report = compact_local(
        &log,
        &config(0),
        UNBOUNDED,
        1 << 20,
        &Throttle::new(0),
        2_000,
    )
    .expect("pass")
    .expect("a pass was due");
    assert_eq!(report.keys, 40);
    assert_eq!(report.records_removed, 560);
    let records = read_all(&log);
    let expected: Vec<_> = latest(&updates)
        .into_iter()
        .map(|(k, (o, v))| (o, k, v))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(records, expected);
    assert!(
        log.segment_count() < segments,
        "{} >= {segments}",
        log.segment_count()
    );
    assert_eq!(log.log_end_offset(), 600, "the log end never moves");
    assert!(
        compact_local(
            &log,
            &config(0),
            UNBOUNDED,
            1 << 20,
            &Throttle::new(0),
            2_000
        )
        .expect("pass")
        .is_none(),
        "nothing dirty is left"
    );
    log.close().expect("close");
    let reopened = PartitionLog::open(dir.path(), log_config(), 0).expect("reopen");
    assert_eq!(read_all(&reopened), expected);
}

#[test]
fn only_segments_made_durable_are_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), log_config(), 0).expect("open");
    write_overwrites(&log);
    assert!(log.segment_count() > 2);
    let throttle = Throttle::new(0);
    let pass = || compact_local(&log, &config(0), UNBOUNDED, 1 << 20, &throttle, 2_000);
    assert!(
        pass().expect("pass").is_none(),
        "a crash could still tear these segments"
    );
    log.flush_sealed().expect("flush");
    let report = pass().expect("pass").expect("a pass was due");
    assert!(report.segments_replaced > 0);
}

#[test]
fn tombstones_go_after_delete_retention_and_an_earlier_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), log_config(), 0).expect("open");
    let mut updates: Vec<_> = (0..200)
        .map(|i| (format!("key-{}", i % 10), Some(format!("v{i}"))))
        .collect();
    updates.push(("key-3".into(), None));
    updates.push(("key-4".into(), None));
    updates.push(("key-0".into(), Some("last".into())));
    write(&log, &updates, 5, 1_000);
    seal(&log);
    let retention = 10_000;
    compact_fully(&log, &config(retention), 1 << 20, 2_000);
    let records = read_all(&log);
    assert_eq!(
        records.len(),
        10,
        "the tombstones stay within delete.retention.ms"
    );
    assert!(records.iter().any(|(_, k, v)| k == "key-3" && v.is_none()));
    let deadline = log
        .compaction_view()
        .expect("view")
        .checkpoint
        .tombstone_deadline_ms
        .expect("a deadline");
    assert_eq!(deadline, 1_000 + retention);
    assert_eq!(
        compact_fully(&log, &config(retention), 1 << 20, deadline - 1),
        0
    );
    assert_eq!(
        compact_fully(&log, &config(retention), 1 << 20, deadline),
        1
    );
    let records = read_all(&log);
    assert_eq!(records.len(), 8);
    assert!(records.iter().all(|(_, _, v)| v.is_some()));
    assert!(records.iter().all(|(_, k, _)| k != "key-3" && k != "key-4"));
}

#[test]
fn a_small_key_map_takes_several_passes_to_the_same_result() {
    let updates: Vec<_> = (0..3_000)
        .map(|i| (format!("key-{}", (i * 7) % 500), Some(format!("v{i}"))))
        .collect();
    let mut results = Vec::new();
    for budget in [1 << 20, 64 * 25] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = PartitionLog::open(dir.path(), log_config(), 0).expect("open");
        write(&log, &updates, 10, 1_000);
        seal(&log);
        let passes = compact_fully(&log, &config(0), budget, 2_000);
        results.push((passes, read_all(&log)));
    }
    assert_eq!(results[0].0, 1);
    assert!(results[1].0 > 1, "a small map needs several passes");
    assert_eq!(results[0].1, results[1].1);
    assert_eq!(results[0].1.len(), 500);
}

#[test]
fn the_tiered_local_copy_compacts_offloaded_segments_and_waits_for_the_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = log_config();
    cfg.remote_storage = true;
    cfg.local_retention_ms = -1;
    let log = PartitionLog::open(dir.path(), cfg, 0).expect("open");
    let mut updates: Vec<_> = (0..100)
        .map(|i| (format!("key-{}", i % 5), Some(format!("v{i}"))))
        .collect();
    updates.push(("key-1".into(), None));
    updates.extend((0..300).map(|i| (format!("key-{}", i % 4 * 2), Some(format!("w{i}")))));
    let tombstone = 100;
    write(&log, &updates, 10, 1_000);
    log.flush_sealed().expect("flush");
    let throttle = Throttle::new(0);
    let bounds = |remote| LocalBounds {
        committed_end: i64::MAX,
        remote_cleaned_offset: remote,
    };
    let pass = |remote| compact_local(&log, &config(0), bounds(remote), 1 << 20, &throttle, 99_000);
    assert!(
        pass(None).expect("pass").is_none(),
        "nothing is in the bucket yet"
    );
    let sealed = log.sealed_segments().expect("sealed");
    let offloaded_end = sealed[sealed.len() * 2 / 3].next_offset;
    assert!(offloaded_end > tombstone + 1);
    log.set_remote_end_offset(offloaded_end);
    while pass(None).expect("pass").is_some() {}
    let records = read_all(&log);
    let below: Vec<_> = records
        .iter()
        .filter(|(o, _, _)| *o < offloaded_end)
        .collect();
    assert!(
        below.len() <= 6,
        "one record per key below the remote end: {below:?}"
    );
    assert_eq!(
        records
            .iter()
            .filter(|(o, _, _)| *o >= offloaded_end)
            .count(),
        updates.len() - offloaded_end as usize,
        "nothing above the remote end is touched"
    );
    assert!(
        records
            .iter()
            .any(|(o, _, v)| *o == tombstone && v.is_none()),
        "the tombstone waits for the bucket to be clean past it"
    );
    let checkpoint = log.compaction_view().expect("view").checkpoint;
    assert_eq!(checkpoint.tombstone_waits_for_remote, Some(tombstone));
    assert!(
        pass(Some(tombstone)).expect("pass").is_none(),
        "not past it yet"
    );
    assert!(
        pass(Some(tombstone + 1)).expect("pass").is_some(),
        "now it may go"
    );
    assert!(!read_all(&log).iter().any(|(o, _, _)| *o == tombstone));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn compaction_matches_a_model(
        ops in proptest::collection::vec((0u8..30, any::<bool>()), 1..400),
        per_batch in 1usize..12,
        budget_keys in 1usize..40,
    ) {
        let updates: Vec<_> = ops
            .iter()
            .enumerate()
            .map(|(i, (k, tombstone))| (format!("k{k}"), (!tombstone).then(|| format!("v{i}"))))
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = PartitionLog::open(dir.path(), log_config(), 0).expect("open");
        write(&log, &updates, per_batch, 1_000);
        seal(&log);
        // delete.retention.ms of 0: every tombstone may go once a pass has kept it.
        compact_fully(&log, &config(0), budget_keys * 25 * 8 / 7 * 2, 5_000);
        let records = read_all(&log);
        // The last record always stays, tombstone or not.
        let last = updates.len() as i64 - 1;
        let expected: Vec<_> = latest(&updates)
            .into_iter()
            .filter(|(_, (o, v))| v.is_some() || *o == last)
            .map(|(k, (o, v))| (o, k, v))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        prop_assert_eq!(records, expected);
        prop_assert_eq!(log.log_end_offset(), updates.len() as i64);
    }
}
