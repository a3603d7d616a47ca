//! Settings of compaction: per topic (Kafka's topic configs of the same names) and per service.

/// How one partition is compacted; derived from its topic's configuration by the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionConfig {
    /// `delete.retention.ms`: how long a tombstone stays after the pass that first saw it.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: the share of the cleanable log not yet cleaned that starts a
    /// pass.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a pass starts, whatever the dirty ratio, once the oldest
    /// uncleaned record is older than this.
    pub max_compaction_lag_ms: i64,
    /// `segment.bytes`: cleaned segments are merged up to this size.
    pub segment_bytes: u64,
    /// `index.interval.bytes` of the cleaned segments.
    pub index_interval_bytes: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            segment_bytes: 1 << 30,
            index_interval_bytes: strata_tiering::config::DEFAULT_INDEX_INTERVAL_BYTES,
        }
    }
}
