//! Settings of compaction and of the bucket sweep.

use super::{SettingsError, SettingsLayer, invalid, positive};

/// How this broker compacts and sweeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionSettings {
    /// Whether compaction runs at all.
    pub enable: bool,
    /// Whether the leaders compact the remote tier and sweep the bucket (else a service does).
    pub remote_in_broker: bool,
    /// How often it looks for work.
    pub backoff_ms: u64,
    /// Key-map memory of one pass.
    pub dedupe_buffer_bytes: usize,
    /// Bytes per second read and written, 0 for no limit.
    pub io_bytes_per_second: u64,
    /// Object-store requests per second, 0 for no limit.
    pub object_store_requests_per_second: u64,
    /// How often the bucket is swept.
    pub sweep_interval_ms: u64,
    /// Age an unlisted object needs before the sweep deletes it.
    pub sweep_grace_ms: u64,
}

/// Smallest key map: a few thousand keys, so every pass makes progress.
const MIN_DEDUPE_BUFFER: u64 = 64 << 10;

pub(super) fn compaction_settings(
    layer: &SettingsLayer,
) -> Result<CompactionSettings, SettingsError> {
    let dedupe = layer.log_cleaner_dedupe_buffer_size.unwrap_or(128 << 20);
    if dedupe < MIN_DEDUPE_BUFFER {
        return Err(invalid(
            "log-cleaner-dedupe-buffer-size",
            format!("{dedupe} is below the minimum of {MIN_DEDUPE_BUFFER} bytes"),
        ));
    }
    let remote_in_broker = match layer.remote_compaction.as_deref().unwrap_or("broker") {
        "broker" => true,
        "service" => false,
        other => {
            return Err(invalid(
                "remote-compaction",
                format!("'{other}' is neither 'broker' nor 'service'"),
            ));
        }
    };
    Ok(CompactionSettings {
        enable: layer.log_cleaner_enable.unwrap_or(true),
        remote_in_broker,
        backoff_ms: positive(
            "log-cleaner-backoff-ms",
            layer.log_cleaner_backoff_ms.unwrap_or(15_000),
        )?,
        dedupe_buffer_bytes: usize::try_from(dedupe).unwrap_or(usize::MAX),
        io_bytes_per_second: layer.log_cleaner_io_max_bytes_per_second.unwrap_or(0),
        object_store_requests_per_second: layer
            .log_cleaner_object_store_requests_per_second
            .unwrap_or(0),
        sweep_interval_ms: positive(
            "remote-sweep-interval-ms",
            layer.remote_sweep_interval_ms.unwrap_or(3_600_000),
        )?,
        sweep_grace_ms: layer.remote_sweep_grace_ms.unwrap_or(3_600_000),
    })
}
