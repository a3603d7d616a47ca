//! Settings of one partition log, derived from its topic's configuration by the broker.

/// Kafka's default for `index.interval.bytes`.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;

/// How a partition log rolls, flushes, indexes and expires its segments. Field meanings and
/// defaults follow Kafka's topic configs of the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps them forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 for no limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes of log between two offset index entries.
    pub index_interval_bytes: u64,
    /// `flush.messages`: fsync after this many messages; `i64::MAX` leaves it to the page cache.
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the last flush is older than this; `i64::MAX` disables it.
    pub flush_ms: i64,
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: usize,
    /// `remote.storage.enable`: sealed segments are offloaded, and a local segment is deleted only
    /// once the remote manifest lists it, by the local retention limits.
    pub remote_storage: bool,
    /// `local.retention.ms`: with remote storage, how long segments stay on local disk; -2 means
    /// `retention.ms`.
    pub local_retention_ms: i64,
    /// `local.retention.bytes`: with remote storage, how much stays on local disk; -2 means
    /// `retention.bytes`.
    pub local_retention_bytes: i64,
}

impl LogConfig {
    /// The limits local retention applies: the local ones with remote storage, else the totals.
    pub fn local_limits(&self) -> (i64, i64) {
        if !self.remote_storage {
            return (self.retention_ms, self.retention_bytes);
        }
        let resolve = |local: i64, total: i64| if local == -2 { total } else { local };
        (
            resolve(self.local_retention_ms, self.retention_ms),
            resolve(self.local_retention_bytes, self.retention_bytes),
        )
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            remote_storage: false,
            local_retention_ms: -2,
            local_retention_bytes: -2,
        }
    }
}
