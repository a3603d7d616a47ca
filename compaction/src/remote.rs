//! Compacting the remote tier of one partition: segment objects are downloaded one at a time
//! into a scratch directory, rewritten into cleaned segments there, uploaded under fresh keys, and
//! swapped into the manifest in one version (`RemotePartition::swap_compacted`).
//!
//! # What a crash leaves behind
//! - Before the swap: uploaded cleaned objects no manifest lists; the sweep deletes them after its
//!   grace period. The manifest is untouched, so readers see the old segments.
//! - After the swap: the replaced objects are no longer listed and the sweep deletes them; a
//!   broker still reading through an older manifest gets a failed read, reloads the manifest
//!   (its pointer moved) and reads the cleaned segment instead.
//!
//! The scratch directory is emptied at the start of every pass.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use strata_tiering::LogError;
use strata_tiering::log::{CleanCheckpoint, CleanedSegment};
use strata_tiering::remote::{Manifest, RemotePartition, RemoteSegment, SwapGuard};
use tokio::io::AsyncWriteExt;

use crate::config::CompactionConfig;
use crate::error::{CompactionError, Result};
use crate::keymap::KeyMap;
use crate::pass::{MapBuilder, PassReport, Rewriter};
use crate::plan::{PassPlan, RecordRules, SegmentInfo, group_segments, plan_pass};
use crate::throttle::Throttle;

/// The rate limits of remote passes.
#[derive(Debug)]
pub struct RemoteLimits {
    /// Bytes read and written.
    pub bytes: Arc<Throttle>,
    /// Object-store requests.
    pub requests: Arc<Throttle>,
}

/// Runs one pass over the remote segments of `remote` if its plan says so, using `scratch` (a
/// directory of its own) for files. A `guard` (a compactor's claim on the partition) fences the
/// swap. Returns what it did, or `None` when no pass was due.
pub async fn compact_remote(
    remote: &RemotePartition,
    config: &CompactionConfig,
    scratch: &Path,
    map_budget_bytes: usize,
    limits: &RemoteLimits,
    guard: Option<&SwapGuard>,
    now_ms: i64,
) -> Result<Option<PassReport>> {
    let manifest = remote.manifest().await;
    let (segments, infos) = readable_segments(&manifest);
    let Some(plan) = plan_remote(&manifest, config, now_ms) else {
        return Ok(None);
    };
    reset_dir(scratch).await?;
    let map = KeyMap::new(map_budget_bytes, plan.dirty_offsets());
    let mut builder = MapBuilder::new(map, plan.dirty_start, plan.cleanable_end);
    for s in segments[..plan.segments]
        .iter()
        .filter(|s| s.next_offset > plan.dirty_start)
    {
        let file = download(remote, s, scratch, limits).await?;
        let (size, bytes) = (s.log_bytes, Arc::clone(&limits.bytes));
        let (b, more) = blocking(move || {
            let more = builder.add_segment(&file, size, &bytes);
            let _ = std::fs::remove_file(&file);
            (builder, more)
        })
        .await?;
        builder = b;
        if !more? {
            break;
        }
    }
    let (map, pass_end) = builder.finish();
    let map = Arc::new(map);
    let rules = RecordRules {
        dirty_start: plan.dirty_start,
        pass_end,
        tombstone_horizon_ms: now_ms.saturating_sub(config.delete_retention_ms),
        tombstone_limit: i64::MAX,
        protected_offset: manifest.end_offset().map_or(-1, |end| end - 1),
    };
    let mut report = PassReport {
        pass_end,
        keys: map.len() as u64,
        ..PassReport::default()
    };
    let out_dir = scratch.join("cleaned");
    let mut swaps = Vec::new();
    for group in group_segments(&infos[..plan.segments], pass_end, config.segment_bytes) {
        let inputs = &segments[group];
        reset_dir(&out_dir).await?;
        let mut out = CleanedSegment::create(
            &out_dir,
            inputs[0].base_offset,
            config.index_interval_bytes,
            now_ms,
        )?;
        let mut changed = inputs.len() > 1;
        for s in inputs {
            let file = download(remote, s, scratch, limits).await?;
            let (size, map, bytes) = (s.log_bytes, Arc::clone(&map), Arc::clone(&limits.bytes));
            let retention = config.delete_retention_ms;
            let (o, r, result) = blocking(move || {
                let rewriter = Rewriter {
                    map: &map,
                    rules,
                    delete_retention_ms: retention,
                    throttle: &bytes,
                };
                let result = rewriter.rewrite_segment(&file, size, &mut out, &mut report);
                let _ = std::fs::remove_file(&file);
                (out, report, result)
            })
            .await?;
            (out, report) = (o, r);
            changed |= result?;
        }
        let sealed = blocking(move || out.seal()).await??;
        if !changed {
            continue;
        }
        report.segments_replaced += inputs.len() as u64;
        let replaced: Vec<String> = inputs.iter().map(|s| s.key.clone()).collect();
        if sealed.size == 0 {
            swaps.push((replaced, None));
            continue;
        }
        let epoch = inputs.iter().map(|s| s.leader_epoch).max().unwrap_or(0);
        let key = remote.paths().new_segment(sealed.base_offset, epoch);
        limits.requests.acquire(1).await;
        let uploaded = remote.tier().uploader.upload(&sealed, &key, epoch).await?;
        report.segments_written += 1;
        swaps.push((replaced, Some(uploaded)));
    }
    let checkpoint = CleanCheckpoint {
        cleaned_offset: pass_end,
        tombstone_deadline_ms: report.tombstone_deadline_ms,
        tombstone_waits_for_remote: None,
    };
    limits.requests.acquire(2).await;
    remote.swap_compacted(&swaps, checkpoint, guard).await?;
    reset_dir(scratch).await?;
    Ok(Some(report))
}

/// The segments of `manifest` at or past its log start, and what planning needs of them.
fn readable_segments(manifest: &Manifest) -> (Vec<&RemoteSegment>, Vec<SegmentInfo>) {
    let segments: Vec<&RemoteSegment> = manifest
        .segments
        .iter()
        .filter(|s| s.next_offset > manifest.log_start_offset)
        .collect();
    let infos = segments
        .iter()
        .map(|s| SegmentInfo {
            base_offset: s.base_offset,
            next_offset: s.next_offset,
            size: s.log_bytes,
            first_timestamp: s.first_timestamp,
            max_timestamp: s.max_timestamp,
        })
        .collect();
    (segments, infos)
}

/// Whether a pass over the remote segments of `manifest` is due, and over which offsets: a
/// compaction service asks this before it claims the partition.
pub fn plan_remote(
    manifest: &Manifest,
    config: &CompactionConfig,
    now_ms: i64,
) -> Option<PassPlan> {
    let (_, infos) = readable_segments(manifest);
    plan_pass(
        &infos,
        &manifest.cleaner,
        i64::MAX,
        i64::MIN,
        config,
        now_ms,
    )
}

/// Downloads the object of `segment` into `dir`, checking its size and CRC; returns the file, whose
/// first `log_bytes` bytes are the segment's batches.
async fn download(
    remote: &RemotePartition,
    segment: &RemoteSegment,
    dir: &Path,
    limits: &RemoteLimits,
) -> Result<PathBuf> {
    limits.requests.acquire(1).await;
    let key = ObjectPath::from(segment.key.as_str());
    let failed = |e| LogError::object_store(&key, e);
    let mut stream = remote
        .tier()
        .store
        .get(&key)
        .await
        .map_err(failed)?
        .into_stream();
    let path = dir.join(format!("{:020}.download", segment.base_offset));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| LogError::io(&path, e))?;
    let (mut crc, mut size) = (0u32, 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(failed)?;
        crc = crc32c::crc32c_append(crc, &chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| LogError::io(&path, e))?;
    }
    file.flush().await.map_err(|e| LogError::io(&path, e))?;
    if size != segment.object_bytes() || crc != segment.crc32c {
        return Err(LogError::CorruptRemote {
            key: segment.key.clone(),
            reason: format!(
                "downloaded {size} bytes with CRC {crc:#x}, the manifest says {} and {:#x}",
                segment.object_bytes(),
                segment.crc32c
            ),
        }
        .into());
    }
    Ok(path)
}

async fn reset_dir(dir: &Path) -> Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io(dir, e).into()),
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| LogError::io(dir, e).into())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CompactionError::Task(e.to_string()))
}

#[cfg(test)]
mod tests;
