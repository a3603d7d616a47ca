//! Local retention as a pure decision: which whole segments to delete, given the log's shape, its
//! configuration and the time. The log executes the plan.

use crate::config::LogConfig;

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// First offset of the segment.
    pub base_offset: i64,
    /// Offset after its last batch.
    pub next_offset: i64,
    /// Size in bytes.
    pub size: u64,
    /// Largest record timestamp, -1 when unknown or empty.
    pub max_timestamp: i64,
}

/// Base offsets of the oldest local segments to delete. `segments` are in offset order and the
/// last one is the active segment, which is never deleted. A segment goes when it lies wholly below
/// `log_start_offset`, when its newest record is older than the time limit, or while the log is
/// larger than the size limit without it. The limits are `retention.ms` / `retention.bytes`, or,
/// with remote storage, the local ones, and then only segments the remote manifest already lists
/// (ending at or below `remote_end_offset`) may go. Deletion is always a prefix, so the log stays
/// contiguous.
pub fn plan_retention(
    segments: &[SegmentSummary],
    config: &LogConfig,
    log_start_offset: i64,
    remote_end_offset: Option<i64>,
    now_ms: i64,
) -> Vec<i64> {
    let Some((_active, sealed)) = segments.split_last() else {
        return Vec::new();
    };
    let (retention_ms, retention_bytes) = config.local_limits();
    let mut remaining: u64 = segments.iter().map(|s| s.size).sum();
    let mut doomed = Vec::new();
    for s in sealed {
        if config.remote_storage && remote_end_offset.is_none_or(|end| s.next_offset > end) {
            break;
        }
        // An empty sealed segment (compaction removed every batch) holds nothing to keep.
        let below_start = s.next_offset <= log_start_offset || s.size == 0;
        let expired = retention_ms >= 0
            && s.max_timestamp >= 0
            && now_ms.saturating_sub(s.max_timestamp) > retention_ms;
        let oversize =
            retention_bytes >= 0 && remaining.saturating_sub(s.size) >= retention_bytes as u64;
        if !(below_start || expired || oversize) {
            break;
        }
        remaining -= s.size;
        doomed.push(s.base_offset);
    }
    doomed
}

/// How long past `retention_ms` the oldest data still held is, in milliseconds: for the oldest
/// segment whose newest record has a known timestamp (`>= 0`), `now_ms - max_timestamp -
/// retention_ms`, floored at 0. A healthy log stays near 0; a growing value means retention is
/// not running or is blocked (for example by segments not yet offloaded). 0 when retention by time
/// is off (`retention_ms < 0`) or no segment has a known timestamp.
pub fn overdue_ms(
    segment_max_timestamps_oldest_first: impl IntoIterator<Item = i64>,
    retention_ms: i64,
    now_ms: i64,
) -> i64 {
    if retention_ms < 0 {
        return 0;
    }
    segment_max_timestamps_oldest_first
        .into_iter()
        .find(|&ts| ts >= 0)
        .map_or(0, |ts| {
            now_ms
                .saturating_sub(ts)
                .saturating_sub(retention_ms)
                .max(0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> SegmentSummary {
        SegmentSummary {
            base_offset: base,
            next_offset: next,
            size,
            max_timestamp: ts,
        }
    }

    fn config(retention_ms: i64, retention_bytes: i64) -> LogConfig {
        LogConfig {
            retention_ms,
            retention_bytes,
            ..LogConfig::default()
        }
    }

    #[test]
    fn table() {
        let log = [
            seg(0, 10, 100, 1_000),
            seg(10, 20, 100, 2_000),
            seg(20, 30, 100, 3_000),
        ];
        // (retention.ms, retention.bytes, log start, now, expected)
        let cases: &[(i64, i64, i64, i64, &[i64])] = &[
            (-1, -1, 0, 10_000, &[]),
            (5_000, -1, 0, 5_500, &[]),
            (5_000, -1, 0, 6_500, &[0]),
            (5_000, -1, 0, 100_000, &[0, 10]), // the active segment stays
            (-1, 200, 0, 0, &[0]),
            (-1, 100, 0, 0, &[0, 10]),
            (-1, 0, 0, 0, &[0, 10]),
            (-1, 1_000, 0, 0, &[]),
            (-1, -1, 10, 0, &[0]),
            (-1, -1, 15, 0, &[0]),
            (-1, -1, 25, 0, &[0, 10]),
        ];
        for &(ms, bytes, start, now, expected) in cases {
            assert_eq!(
                plan_retention(&log, &config(ms, bytes), start, None, now),
                expected,
                "retention.ms={ms} retention.bytes={bytes} start={start} now={now}"
            );
        }
    }

    #[test]
    fn deletion_stops_at_the_first_segment_to_keep() {
        // The middle segment is old, but the first is not: nothing is deleted out of order.
        let log = [
            seg(0, 10, 1, 9_000),
            seg(10, 20, 1, 1_000),
            seg(20, 30, 1, 9_000),
        ];
        assert!(plan_retention(&log, &config(5_000, -1), 0, None, 10_000).is_empty());
    }

    #[test]
    fn with_remote_storage_only_offloaded_segments_go_by_the_local_limits() {
        let log = [
            seg(0, 10, 100, 1_000),
            seg(10, 20, 100, 2_000),
            seg(20, 30, 100, 3_000),
        ];
        let tiered = |local_ms, local_bytes| LogConfig {
            remote_storage: true,
            local_retention_ms: local_ms,
            local_retention_bytes: local_bytes,
            retention_ms: -1,
            retention_bytes: -1,
            ..LogConfig::default()
        };
        // Nothing offloaded yet: nothing goes, however small the local limit.
        assert!(plan_retention(&log, &tiered(-2, 0), 0, None, 0).is_empty());
        assert!(plan_retention(&log, &tiered(0, 0), 0, Some(5), 0).is_empty());
        // Offloaded up to 10: only the first segment may go, and only past a local limit.
        assert_eq!(
            plan_retention(&log, &tiered(-1, 0), 0, Some(10), 0),
            vec![0]
        );
        assert!(plan_retention(&log, &tiered(-1, -1), 0, Some(30), 0).is_empty());
        assert_eq!(
            plan_retention(&log, &tiered(500, -1), 0, Some(30), 2_000),
            vec![0]
        );
        // -2 falls back to the totals.
        let mut fallback = tiered(-2, -2);
        fallback.retention_bytes = 100;
        assert_eq!(plan_retention(&log, &fallback, 0, Some(30), 0), vec![0, 10]);
    }

    #[test]
    fn an_empty_log_plans_nothing() {
        assert!(plan_retention(&[], &config(0, 0), 0, None, 0).is_empty());
    }

    #[test]
    fn overdue_table() {
        // (max timestamps oldest first, retention.ms, now, expected)
        let cases: &[(&[i64], i64, i64, i64)] = &[
            (&[], 1_000, 10_000, 0),                 // nothing held
            (&[1_000, 5_000], -1, 10_000, 0),        // time retention off
            (&[1_000, 5_000], 2_000, 10_000, 7_000), // the oldest counts, not the newest
            (&[1_000], 9_000, 10_000, 0),            // exactly at the limit
            (&[1_000], 8_999, 10_000, 1),            // one past it
            (&[1_000], 20_000, 10_000, 0),           // well within
            (&[-1, 4_000], 1_000, 10_000, 5_000),    // unknown timestamps are skipped
            (&[-1, -1], 0, 10_000, 0),               // no known timestamp
            (&[9_000], 0, 10_000, 1_000),            // retention of 0
            (&[20_000], 0, 10_000, 0),               // a timestamp from the future
            (&[0], 0, i64::MAX, i64::MAX),
        ];
        for &(timestamps, retention_ms, now, expected) in cases {
            assert_eq!(
                overdue_ms(timestamps.iter().copied(), retention_ms, now),
                expected,
                "timestamps={timestamps:?} retention.ms={retention_ms} now={now}"
            );
        }
    }
}
