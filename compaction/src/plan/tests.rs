use super::*;

fn seg(base: i64, next: i64, size: u64, ts: i64) -> SegmentInfo {
    SegmentInfo {
        base_offset: base,
        next_offset: next,
        size,
        first_timestamp: ts - 10,
        max_timestamp: ts,
    }
}

/// (case, checkpoint, first uncleanable offset, config, expected plan)
type Case = (
    &'static str,
    CleanCheckpoint,
    i64,
    CompactionConfig,
    Option<(i64, i64, usize, Trigger)>,
);

fn checkpoint(cleaned: i64, deadline: Option<i64>) -> CleanCheckpoint {
    CleanCheckpoint {
        cleaned_offset: cleaned,
        tombstone_deadline_ms: deadline,
        tombstone_waits_for_remote: None,
    }
}

fn config(ratio: f64, min_lag: i64, max_lag: i64) -> CompactionConfig {
    CompactionConfig {
        min_cleanable_dirty_ratio: ratio,
        min_compaction_lag_ms: min_lag,
        max_compaction_lag_ms: max_lag,
        ..CompactionConfig::default()
    }
}

#[test]
fn when_a_pass_runs() {
    let segments = [
        seg(0, 10, 100, 1_000),
        seg(10, 20, 100, 2_000),
        seg(20, 30, 100, 3_000),
    ];
    let now = 10_000;
    // (case, checkpoint, first uncleanable, config, expected (dirty_start, end, segments, trigger))
    let cases: Vec<Case> = vec![
        (
            "never cleaned",
            checkpoint(0, None),
            30,
            config(0.5, 0, i64::MAX),
            Some((0, 30, 3, Trigger::DirtyRatio)),
        ),
        (
            "a third dirty is below the ratio",
            checkpoint(20, None),
            30,
            config(0.5, 0, i64::MAX),
            None,
        ),
        (
            "a third dirty reaches a lower ratio",
            checkpoint(20, None),
            30,
            config(0.3, 0, i64::MAX),
            Some((20, 30, 3, Trigger::DirtyRatio)),
        ),
        (
            "the uncleanable bound ends the range",
            checkpoint(0, None),
            25,
            config(0.5, 0, i64::MAX),
            Some((0, 20, 2, Trigger::DirtyRatio)),
        ),
        (
            "min lag keeps young segments out",
            checkpoint(0, None),
            30,
            config(0.5, 8_500, i64::MAX),
            Some((0, 10, 1, Trigger::DirtyRatio)),
        ),
        (
            "everything too young",
            checkpoint(0, None),
            30,
            config(0.5, 9_500, i64::MAX),
            None,
        ),
        (
            "max lag forces a pass below the ratio",
            checkpoint(20, None),
            30,
            config(0.9, 0, 5_000),
            Some((20, 30, 3, Trigger::MaxLag)),
        ),
        (
            "max lag not reached",
            checkpoint(20, None),
            30,
            config(0.9, 0, 8_000),
            None,
        ),
        (
            "fully clean",
            checkpoint(30, None),
            30,
            config(0.0, 0, i64::MAX),
            None,
        ),
        (
            "a due tombstone deadline",
            checkpoint(30, Some(9_000)),
            30,
            config(0.5, 0, i64::MAX),
            Some((30, 30, 3, Trigger::Tombstones)),
        ),
        (
            "a tombstone deadline not due",
            checkpoint(30, Some(11_000)),
            30,
            config(0.5, 0, i64::MAX),
            None,
        ),
        (
            "nothing sealed below the bound",
            checkpoint(0, None),
            5,
            config(0.5, 0, i64::MAX),
            None,
        ),
    ];
    for (case, cp, bound, cfg, expected) in cases {
        let plan = plan_pass(&segments, &cp, bound, i64::MIN, &cfg, now)
            .map(|p| (p.dirty_start, p.cleanable_end, p.segments, p.trigger));
        assert_eq!(plan, expected, "{case}");
    }
}

#[test]
fn a_tombstone_waiting_for_the_bucket_triggers_once_the_bucket_is_clean_past_it() {
    let segments = [seg(0, 10, 100, 1_000)];
    let waiting = CleanCheckpoint {
        cleaned_offset: 10,
        tombstone_deadline_ms: None,
        tombstone_waits_for_remote: Some(4),
    };
    let cfg = config(0.5, 0, i64::MAX);
    assert_eq!(plan_pass(&segments, &waiting, 10, 4, &cfg, 5_000), None);
    assert_eq!(
        plan_pass(&segments, &waiting, 10, 5, &cfg, 5_000).map(|p| p.trigger),
        Some(Trigger::Tombstones)
    );
}

#[test]
fn segments_group_by_size_up_to_the_pass_end() {
    let segments = [
        seg(0, 10, 40, 0),
        seg(10, 20, 40, 0),
        seg(20, 30, 40, 0),
        seg(30, 40, 200, 0),
        seg(40, 50, 10, 0),
    ];
    assert_eq!(
        group_segments(&segments, 50, 100),
        vec![0..2, 2..3, 3..4, 4..5]
    );
    assert_eq!(
        group_segments(&segments, 25, 100),
        vec![0..2, 2..3],
        "segments past the end stay"
    );
    assert_eq!(group_segments(&segments, 50, 1_000), vec![0..5]);
    assert_eq!(
        group_segments(&segments, 0, 1_000),
        Vec::<Range<usize>>::new()
    );
    let wide = [
        seg(0, 10, 1, 0),
        seg(i64::from(i32::MAX), i64::from(i32::MAX) + 5, 1, 0),
    ];
    assert_eq!(
        group_segments(&wide, i64::MAX, 1_000),
        vec![0..1, 1..2],
        "offset span"
    );
}

#[test]
fn which_records_survive() {
    let rules = RecordRules {
        dirty_start: 100,
        pass_end: 200,
        tombstone_horizon_ms: 5_000,
        tombstone_limit: i64::MAX,
        protected_offset: 60,
    };
    // (case, offset, has key, tombstone, latest for key, batch max timestamp, kept)
    let cases = [
        ("superseded", 50, true, false, Some(150), 0, false),
        ("the latest", 150, true, false, Some(150), 0, true),
        ("key not in the map", 50, true, false, None, 0, true),
        ("no key", 50, false, false, Some(150), 0, true),
        ("past the pass end", 250, true, false, Some(150), 0, true),
        (
            "old tombstone cleaned before",
            50,
            true,
            true,
            None,
            1_000,
            false,
        ),
        (
            "young tombstone cleaned before",
            50,
            true,
            true,
            None,
            6_000,
            true,
        ),
        (
            "old tombstone seen first now",
            150,
            true,
            true,
            Some(150),
            1_000,
            true,
        ),
        (
            "superseded tombstone",
            50,
            true,
            true,
            Some(150),
            9_000,
            false,
        ),
        (
            "the protected last record",
            60,
            true,
            true,
            Some(150),
            1_000,
            true,
        ),
    ];
    for (case, offset, key, tombstone, latest, ts, kept) in cases {
        assert_eq!(
            keep_record(offset, key, tombstone, latest, ts, &rules),
            kept,
            "{case}"
        );
    }
    let local = RecordRules {
        tombstone_limit: 50,
        ..rules
    };
    assert!(
        keep_record(50, true, true, None, 1_000, &local),
        "a tiered local copy keeps tombstones the bucket is not clean past"
    );
    assert!(!keep_record(49, true, true, None, 1_000, &local));
}
