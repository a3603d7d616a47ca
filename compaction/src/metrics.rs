//! Counters and gauges of compaction, the sweep and retention, registered by the broker on its
//! `/metrics` registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::pass::PassReport;

/// Which copy of the log: `local` or `remote`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    /// `local` or `remote`.
    pub tier: String,
}

/// One partition in one tier.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionTierLabels {
    /// `topic/partition`.
    pub partition: String,
    /// `local` or `remote`.
    pub tier: String,
}

/// The metrics; clones share their values.
#[derive(Debug, Clone, Default)]
pub struct CompactionMetrics {
    /// Passes completed.
    pub passes: Family<TierLabels, Counter>,
    /// Passes that failed.
    pub failures: Family<TierLabels, Counter>,
    /// Bytes of segments read while rewriting.
    pub bytes_read: Family<TierLabels, Counter>,
    /// Bytes of cleaned segments written.
    pub bytes_written: Family<TierLabels, Counter>,
    /// Records removed (superseded, or tombstones past `delete.retention.ms`).
    pub records_removed: Family<TierLabels, Counter>,
    /// Objects the sweep deleted.
    pub swept_objects: Counter,
    /// How far past its retention the oldest data of a partition is, in milliseconds.
    pub retention_overdue_ms: Family<PartitionTierLabels, Gauge>,
}

impl CompactionMetrics {
    /// Registers every metric under `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "compaction_passes",
            "Compaction passes completed",
            self.passes.clone(),
        );
        registry.register(
            "compaction_failures",
            "Compaction passes that failed",
            self.failures.clone(),
        );
        registry.register(
            "compaction_read_bytes",
            "Bytes of segments compaction read",
            self.bytes_read.clone(),
        );
        registry.register(
            "compaction_written_bytes",
            "Bytes of cleaned segments compaction wrote",
            self.bytes_written.clone(),
        );
        registry.register(
            "compaction_removed_records",
            "Records compaction removed",
            self.records_removed.clone(),
        );
        registry.register(
            "remote_swept_objects",
            "Unreferenced objects the sweep deleted",
            self.swept_objects.clone(),
        );
        registry.register(
            "retention_overdue_ms",
            "How long past its retention the oldest data still held is, per partition and tier",
            self.retention_overdue_ms.clone(),
        );
    }

    /// Counts a completed pass.
    pub fn record_pass(&self, tier: &str, report: &PassReport) {
        let labels = TierLabels {
            tier: tier.to_string(),
        };
        self.passes.get_or_create(&labels).inc();
        self.bytes_read
            .get_or_create(&labels)
            .inc_by(report.bytes_read);
        self.bytes_written
            .get_or_create(&labels)
            .inc_by(report.bytes_written);
        self.records_removed
            .get_or_create(&labels)
            .inc_by(report.records_removed);
    }

    /// Counts a failed pass.
    pub fn record_failure(&self, tier: &str) {
        self.failures
            .get_or_create(&TierLabels {
                tier: tier.to_string(),
            })
            .inc();
    }
}
