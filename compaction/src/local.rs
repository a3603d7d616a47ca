//! Compacting the local log of one replica. Every replica compacts its own copy, as in Kafka; the
//! pass runs on a blocking thread and swaps its result in with `PartitionLog::swap_cleaned`.

use strata_tiering::log::{CleanCheckpoint, CleanedSegment, Replacement};
use strata_tiering::{LogError, PartitionLog};

use crate::config::CompactionConfig;
use crate::error::{CompactionError, Result};
use crate::keymap::KeyMap;
use crate::pass::{MapBuilder, PassReport, Rewriter};
use crate::plan::{RecordRules, SegmentInfo, group_segments, plan_pass};
use crate::throttle::Throttle;

/// Where a local pass must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalBounds {
    /// The high watermark: nothing above it is compacted.
    pub committed_end: i64,
    /// For a tiered log, how far its remote tier is clean (the manifest's checkpoint).
    pub remote_cleaned_offset: Option<i64>,
}

/// Runs one pass over `log` if its plan says so. Only durable segments (below the log's recovery
/// point) are compacted: crash recovery reads a segment ending short of the next one above that
/// point as one that lost batches. For a tiered log only segments already in the
/// bucket are compacted (the uploader never reads a file compaction replaces), and tombstones
/// stay until the remote tier is clean past them: older records of their keys may live in the
/// bucket. Returns what the pass did, or `None` when no pass was due or it lost a race with
/// retention or truncation.
pub fn compact_local(
    log: &PartitionLog,
    config: &CompactionConfig,
    bounds: LocalBounds,
    map_budget_bytes: usize,
    throttle: &Throttle,
    now_ms: i64,
) -> Result<Option<PassReport>> {
    match pass(log, config, bounds, map_budget_bytes, throttle, now_ms) {
        // Retention or truncation removed a segment the pass was reading.
        Err(CompactionError::Log(LogError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            tracing::debug!(log = %log.dir().display(), "a segment went away during compaction; the pass is dropped");
            Ok(None)
        }
        other => other,
    }
}

fn pass(
    log: &PartitionLog,
    config: &CompactionConfig,
    bounds: LocalBounds,
    map_budget_bytes: usize,
    throttle: &Throttle,
    now_ms: i64,
) -> Result<Option<PassReport>> {
    let view = log.compaction_view()?;
    let tiered = view.config.remote_storage;
    let mut first_uncleanable = view
        .active_base_offset
        .min(bounds.committed_end)
        .min(view.durable_end);
    if tiered {
        first_uncleanable = first_uncleanable.min(view.remote_end_offset.unwrap_or(i64::MIN));
    }
    let remote_cleaned = if tiered {
        bounds.remote_cleaned_offset.unwrap_or(i64::MIN)
    } else {
        i64::MAX
    };
    let infos: Vec<SegmentInfo> = view
        .sealed
        .iter()
        .map(|s| SegmentInfo {
            base_offset: s.base_offset,
            next_offset: s.next_offset,
            size: s.size,
            first_timestamp: s.first_timestamp,
            max_timestamp: s.max_timestamp,
        })
        .collect();
    let Some(plan) = plan_pass(
        &infos,
        &view.checkpoint,
        first_uncleanable,
        if tiered { remote_cleaned } else { i64::MIN },
        config,
        now_ms,
    ) else {
        return Ok(None);
    };
    let cleanable = &view.sealed[..plan.segments];
    let map = KeyMap::new(map_budget_bytes, plan.dirty_offsets());
    let mut builder = MapBuilder::new(map, plan.dirty_start, plan.cleanable_end);
    for s in cleanable
        .iter()
        .filter(|s| s.next_offset > plan.dirty_start)
    {
        if !builder.add_segment(&s.log_path, s.size, throttle)? {
            break;
        }
    }
    let (map, pass_end) = builder.finish();
    let rules = RecordRules {
        dirty_start: plan.dirty_start,
        pass_end,
        tombstone_horizon_ms: now_ms.saturating_sub(config.delete_retention_ms),
        tombstone_limit: remote_cleaned,
        protected_offset: view.sealed.last().map_or(-1, |s| s.next_offset - 1),
    };
    let mut report = PassReport {
        pass_end,
        keys: map.len() as u64,
        ..PassReport::default()
    };
    let rewriter = Rewriter {
        map: &map,
        rules,
        delete_retention_ms: config.delete_retention_ms,
        throttle,
    };
    let cleaning = log.cleaning_dir()?;
    let mut replacements = Vec::new();
    for group in group_segments(&infos[..plan.segments], pass_end, config.segment_bytes) {
        let inputs = &cleanable[group];
        let mut out = CleanedSegment::create(
            &cleaning,
            inputs[0].base_offset,
            config.index_interval_bytes,
            now_ms,
        )?;
        let mut changed = inputs.len() > 1;
        for s in inputs {
            changed |= rewriter.rewrite_segment(&s.log_path, s.size, &mut out, &mut report)?;
        }
        out.seal()?;
        if changed {
            report.segments_replaced += inputs.len() as u64;
            report.segments_written += 1;
            replacements.push(Replacement {
                replaced: inputs.iter().map(|s| (s.base_offset, s.size)).collect(),
            });
        }
    }
    let checkpoint = CleanCheckpoint {
        cleaned_offset: pass_end,
        tombstone_deadline_ms: report.tombstone_deadline_ms,
        tombstone_waits_for_remote: report.tombstone_waits_for_remote,
    };
    if !log.swap_cleaned(&replacements, checkpoint, now_ms)? {
        tracing::debug!(log = %log.dir().display(), "a replaced segment changed during compaction; the pass is dropped");
        return Ok(None);
    }
    Ok(Some(report))
}

#[cfg(test)]
mod tests;
