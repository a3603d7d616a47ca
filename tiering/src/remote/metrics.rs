//! Counters and gauges of the remote tier, registered by the broker on its `/metrics` registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming an object store request kind: `PUT`, `GET`, `LIST`, `DELETE`, `HEAD`, `COPY`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The request kind.
    pub operation: String,
}

/// Labels naming a partition: `<topic id>/<partition>`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The partition.
    pub partition: String,
}

/// Every metric of the remote tier. Cloning shares the underlying counters.
#[derive(Debug, Clone, Default)]
pub struct TieringMetrics {
    /// Bytes of segment objects uploaded.
    pub uploaded_bytes: Counter,
    /// Segments uploaded.
    pub uploaded_segments: Counter,
    /// Upload attempts that failed and will be retried.
    pub upload_failures: Counter,
    /// Bytes of sealed local segments not yet uploaded, per partition.
    pub upload_lag_bytes: Family<PartitionLabels, Gauge>,
    /// Sealed local segments not yet uploaded, per partition.
    pub upload_lag_segments: Family<PartitionLabels, Gauge>,
    /// Bytes of local segments, per partition (to see disks fill while uploads are stuck).
    pub local_bytes: Family<PartitionLabels, Gauge>,
    /// Bytes free on the data directory's file system, so a disk filling while uploads are stuck
    /// shows before it is fatal.
    pub data_dir_available_bytes: Gauge,
    /// Record bytes served from the remote tier.
    pub remote_fetch_bytes: Counter,
    /// Fetch reads served from the remote tier.
    pub remote_fetch_requests: Counter,
    /// Chunk cache hits (memory or local disk).
    pub cache_hits: Counter,
    /// Chunk cache misses (fetched from the object store).
    pub cache_misses: Counter,
    /// Chunks evicted from the memory cache.
    pub cache_evictions: Counter,
    /// Object store requests by kind.
    pub object_store_requests: Family<OperationLabels, Counter>,
    /// Failed object store requests by kind.
    pub object_store_errors: Family<OperationLabels, Counter>,
}

impl TieringMetrics {
    /// Registers every metric under `registry` (the broker adds the `strata_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tiering_uploaded_bytes",
            "Bytes of segment objects uploaded",
            self.uploaded_bytes.clone(),
        );
        registry.register(
            "tiering_uploaded_segments",
            "Segments uploaded",
            self.uploaded_segments.clone(),
        );
        registry.register(
            "tiering_upload_failures",
            "Failed upload attempts (retried)",
            self.upload_failures.clone(),
        );
        registry.register(
            "tiering_upload_lag_bytes",
            "Bytes of sealed segments not yet uploaded",
            self.upload_lag_bytes.clone(),
        );
        registry.register(
            "tiering_upload_lag_segments",
            "Sealed segments not yet uploaded",
            self.upload_lag_segments.clone(),
        );
        registry.register(
            "tiering_local_bytes",
            "Bytes of local segments",
            self.local_bytes.clone(),
        );
        registry.register(
            "data_dir_available_bytes",
            "Bytes free on the data directory's file system",
            self.data_dir_available_bytes.clone(),
        );
        registry.register(
            "tiering_remote_fetch_bytes",
            "Record bytes read from the remote tier",
            self.remote_fetch_bytes.clone(),
        );
        registry.register(
            "tiering_remote_fetch_requests",
            "Reads served from the remote tier",
            self.remote_fetch_requests.clone(),
        );
        registry.register(
            "tiering_cache_hits",
            "Chunk cache hits",
            self.cache_hits.clone(),
        );
        registry.register(
            "tiering_cache_misses",
            "Chunk cache misses",
            self.cache_misses.clone(),
        );
        registry.register(
            "tiering_cache_evictions",
            "Chunks evicted from the memory cache",
            self.cache_evictions.clone(),
        );
        registry.register(
            "object_store_requests",
            "Object store requests by kind",
            self.object_store_requests.clone(),
        );
        registry.register(
            "object_store_errors",
            "Failed object store requests by kind",
            self.object_store_errors.clone(),
        );
    }

    /// Counts one request of `operation`, and an error if it failed.
    pub fn record_request(&self, operation: &str, ok: bool) {
        let labels = OperationLabels {
            operation: operation.to_string(),
        };
        self.object_store_requests.get_or_create(&labels).inc();
        if !ok {
            self.object_store_errors.get_or_create(&labels).inc();
        }
    }
}
