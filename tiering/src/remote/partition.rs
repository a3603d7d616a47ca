//! The remote side of one partition: its published manifest, offload of sealed local segments,
//! reads, and moving its start (DeleteRecords, retention across tiers). The protocol is in the
//! module doc of `remote`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::Rng;
use tokio::sync::RwLock;
use tokio::time::Instant;
use uuid::Uuid;

use super::manifest::{Manifest, RemoteSegment};
use super::paths::PartitionPaths;
use super::pointer::{ManifestPointer, ManifestPointers, SwapGuard};
use super::reader::RemoteReader;
use super::uploader::Uploader;
use crate::config::LogConfig;
use crate::error::{LogError, Result};
use crate::log::PartitionLog;
use crate::remote::metrics::PartitionLabels;

/// What every remote partition of a broker shares.
#[derive(Debug)]
pub struct RemoteTier {
    /// The instrumented object store.
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store.
    pub prefix: String,
    /// Where manifest pointers live.
    pub pointers: Arc<dyn ManifestPointers>,
    /// Reads through the chunk cache.
    pub reader: Arc<RemoteReader>,
    /// Uploads segments.
    pub uploader: Uploader,
}

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Published {
    manifest: Arc<Manifest>,
    /// The held manifest's object key (none for the empty manifest).
    key: Option<String>,
    pointer: Option<ManifestPointer>,
}

impl Published {
    /// Whether `pointer` names an older manifest than the one held, or another one of the same
    /// version: it went back, which only a metadata store restored from a backup does (the
    /// pointer only moves forward, and never names two manifests of one version).
    fn is_behind(&self, pointer: Option<&ManifestPointer>) -> bool {
        let held = self.manifest.version;
        pointer.is_some_and(|p| {
            p.version < held
                || (p.version == held && self.key.as_ref().is_some_and(|k| *k != p.key))
        })
    }

    /// Whether the pointer, as last read, is behind the held manifest ([`Published::is_behind`]).
    fn pointer_behind(&self) -> bool {
        self.is_behind(self.pointer.as_ref())
    }
}

#[derive(Debug)]
struct Backoff {
    failures: u32,
    next_attempt: Instant,
}

/// The manifest the pointer names, fetched from the object store.
async fn load_published(tier: &RemoteTier, topic_id: Uuid, partition: i32) -> Result<Published> {
    let pointer = tier.pointers.get(topic_id, partition).await?;
    load_manifest(tier, topic_id, partition, pointer).await
}

/// Whether `manifest` holds a segment of a leader epoch above every one `held` has, counting
/// only segments past `held`'s log start (retention may have dropped all of its own).
fn newer_leader(manifest: &Manifest, held: &Manifest) -> bool {
    let latest = |m: &Manifest| {
        m.segments
            .iter()
            .filter(|s| s.next_offset > held.log_start_offset)
            .map(|s| s.leader_epoch)
            .max()
    };
    latest(manifest) > latest(held)
}

/// The manifest `pointer` names, fetched from the object store.
async fn load_manifest(
    tier: &RemoteTier,
    topic_id: Uuid,
    partition: i32,
    pointer: Option<ManifestPointer>,
) -> Result<Published> {
    let manifest = match &pointer {
        None => Manifest::empty(topic_id, partition),
        Some(p) => Manifest::fetch(&*tier.store, &p.key).await?,
    };
    Ok(Published {
        manifest: Arc::new(manifest),
        key: pointer.as_ref().map(|p| p.key.clone()),
        pointer,
    })
}

/// The remote side of one partition.
#[derive(Debug)]
pub struct RemotePartition {
    tier: Arc<RemoteTier>,
    topic_id: Uuid,
    partition: i32,
    paths: PartitionPaths,
    published: RwLock<Published>,
    /// One offload or manifest change at a time.
    writer: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoff>,
}

impl RemotePartition {
    /// Loads the partition's published manifest (none yet is an empty manifest).
    pub async fn open(tier: Arc<RemoteTier>, topic_id: Uuid, partition: i32) -> Result<Self> {
        let paths = PartitionPaths::new(&tier.prefix, topic_id, partition);
        let published = load_published(&tier, topic_id, partition).await?;
        Ok(RemotePartition {
            tier,
            topic_id,
            partition,
            paths,
            published: RwLock::new(published),
            writer: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(Backoff {
                failures: 0,
                next_attempt: Instant::now(),
            }),
        })
    }

    /// Reads the published manifest again: another broker (the previous leader) may have
    /// published newer versions since this one last did.
    pub async fn reload(&self) -> Result<()> {
        let _writer = self.writer.lock().await;
        let mut published = self.published.write().await;
        self.read_again(&mut published).await
    }

    /// Reads the pointer into `published`, and the manifest it names. When the pointer went back
    /// ([`Published::is_behind`]), the held manifest stays, with the pointer as it now is,
    /// so the leader's next offload publishes it again instead of building on the old one and
    /// losing the segments offloaded since; the manifest the pointer names may even be swept by
    /// then. It is taken all the same if it holds a segment of a leader epoch the held one does
    /// not reach: a newer leader published on the old pointer, and its word stands.
    async fn read_again(&self, published: &mut Published) -> Result<()> {
        let pointer = self
            .tier
            .pointers
            .get(self.topic_id, self.partition)
            .await?;
        let went_back = published.is_behind(pointer.as_ref());
        let loaded =
            load_manifest(&self.tier, self.topic_id, self.partition, pointer.clone()).await;
        match loaded {
            Err(e) if went_back && e.is_not_found() => {}
            Err(e) => return Err(e),
            Ok(loaded) if !went_back || newer_leader(&loaded.manifest, &published.manifest) => {
                *published = loaded;
                return Ok(());
            }
            Ok(_) => {}
        }
        tracing::warn!(
            partition = %self.label().partition,
            pointer = pointer.as_ref().map_or(0, |p| p.version),
            held = published.manifest.version,
            "the manifest pointer went back (metadata restored from a backup?); keeping the \
             newer manifest, which the leader publishes again"
        );
        published.pointer = pointer;
        Ok(())
    }

    fn label(&self) -> PartitionLabels {
        PartitionLabels {
            partition: format!("{}/{}", self.topic_id.simple(), self.partition),
        }
    }

    /// The metrics of a broker that does not lead the partition: its local bytes, and no upload
    /// lag series, which only the leader (the one broker that uploads) reports. A former
    /// leader's last figures would otherwise stay; a partition without a leader has no series.
    pub fn report_as_non_leader(&self, log: &PartitionLog) {
        self.report_local_bytes(log);
        let metrics = &self.tier.uploader.metrics;
        let label = self.label();
        metrics.upload_lag_bytes.remove(&label);
        metrics.upload_lag_segments.remove(&label);
    }

    fn report_local_bytes(&self, log: &PartitionLog) {
        self.tier
            .uploader
            .metrics
            .local_bytes
            .get_or_create(&self.label())
            .set(log.size_bytes() as i64);
    }

    /// The leader's upload lag: sealed segments not yet uploaded, and their bytes.
    fn report_upload_lag(&self, bytes: i64, segments: i64) {
        let metrics = &self.tier.uploader.metrics;
        let label = self.label();
        metrics.upload_lag_bytes.get_or_create(&label).set(bytes);
        metrics
            .upload_lag_segments
            .get_or_create(&label)
            .set(segments);
    }

    /// Counts `bytes` appended by producers on this broker: uploads are paced to that rate.
    pub fn record_ingest(&self, bytes: u64) {
        self.tier.uploader.limiter.record_ingest(bytes);
    }

    /// The published manifest.
    pub async fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&self.published.read().await.manifest)
    }

    /// Uploads every sealed local segment past the manifest's end and wholly below
    /// `committed_end` (the high watermark: nothing a new leader could truncate is uploaded),
    /// publishing a manifest after each, unless a previous failure's backoff has not passed. An
    /// idle active segment older than `segment.ms` at `now_ms` is rolled first. Uploads are
    /// fenced by `leader_epoch`: once the manifest holds a segment of a newer leader, this one
    /// gets [`LogError::Fenced`]. Returns how many were uploaded.
    pub async fn offload(
        &self,
        log: &Arc<PartitionLog>,
        leader_epoch: i32,
        committed_end: i64,
        now_ms: i64,
    ) -> Result<usize> {
        if Instant::now()
            < self
                .backoff
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_attempt
        {
            return Ok(0);
        }
        let _writer = self.writer.lock().await;
        let result = self
            .offload_pending(log, leader_epoch, committed_end, now_ms)
            .await;
        let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Ok(_) => backoff.failures = 0,
            Err(e) if e.is_retriable() => {
                backoff.failures += 1;
                let exp = FIRST_RETRY
                    .saturating_mul(1 << backoff.failures.min(8))
                    .min(LONGEST_RETRY);
                let jitter = rand::rng().random_range(0.5..1.0);
                backoff.next_attempt = Instant::now() + exp.mul_f64(jitter);
                self.tier.uploader.metrics.upload_failures.inc();
            }
            Err(_) => {}
        }
        result
    }

    async fn offload_pending(
        &self,
        log: &Arc<PartitionLog>,
        leader_epoch: i32,
        committed_end: i64,
        now_ms: i64,
    ) -> Result<usize> {
        // A segment goes to the bucket only once it is durable here (the flush scheduler's work,
        // done now if it has not come yet): a leader back from a power loss must never hold less
        // than the bucket, or its next appends would reuse offsets the bucket already has. The
        // roll and the fsyncs run on a blocking thread, off the async workers.
        let blocking = Arc::clone(log);
        tokio::task::spawn_blocking(move || {
            if blocking.roll_if_due(now_ms)? {
                tracing::debug!(log = %blocking.dir().display(), "rolled an idle active segment so it can be offloaded");
            }
            blocking.flush_sealed()
        })
        .await
        .map_err(|e| LogError::io(log.dir(), std::io::Error::other(e)))??;
        let sealed = log.sealed_segments()?;
        // A roll between the two calls above seals a segment the flush did not cover.
        let durable_end = log.durable_end();
        let local_start = log.log_start_offset();
        let manifest = self.manifest().await;
        if let Some(end) = manifest.end_offset() {
            log.set_remote_end_offset(end);
        }
        if manifest
            .segments
            .iter()
            .any(|s| s.leader_epoch > leader_epoch)
        {
            return Err(LogError::Fenced {
                partition: format!("{}/{}", self.topic_id.simple(), self.partition),
            });
        }
        if self.published.read().await.pointer_behind() {
            self.publish(Some(leader_epoch), None, |m| Ok(m.next_version()))
                .await?;
        }
        let end = manifest.end_offset().unwrap_or(i64::MIN);
        // Segments wholly below the log start (DeleteRecords) are never uploaded.
        let pending: Vec<_> = sealed
            .into_iter()
            .filter(|s| {
                s.next_offset > end
                    && s.next_offset > s.base_offset
                    && s.next_offset > local_start
                    && s.next_offset <= committed_end
                    && s.next_offset <= durable_end
            })
            .collect();
        self.report_local_bytes(log);
        let mut lag_bytes: i64 = pending.iter().map(|s| s.size as i64).sum();
        let mut lag_segments = pending.len() as i64;
        self.report_upload_lag(lag_bytes, lag_segments);
        let mut uploaded = 0;
        for segment in pending {
            let key = self.paths.new_segment(segment.base_offset, leader_epoch);
            let remote = self
                .tier
                .uploader
                .upload(&segment, &key, leader_epoch)
                .await?;
            self.publish(Some(leader_epoch), None, |m| m.with_segment(remote.clone()))
                .await?;
            log.set_remote_end_offset(segment.next_offset);
            uploaded += 1;
            lag_bytes -= segment.size as i64;
            lag_segments -= 1;
            self.report_upload_lag(lag_bytes, lag_segments);
        }
        Ok(uploaded)
    }

    /// Writes the manifest `change` makes of the published one, then moves the pointer to it.
    /// When another writer moved the pointer first (the compaction service, or a newer leader),
    /// the published manifest is read again and `change` applied to it, unless it holds a segment
    /// of a leader epoch newer than `fence_epoch`. Returns the manifest `change` was applied to and
    /// the one published.
    async fn publish(
        &self,
        fence_epoch: Option<i32>,
        guard: Option<&SwapGuard>,
        change: impl Fn(&Manifest) -> Result<Manifest>,
    ) -> Result<(Arc<Manifest>, Arc<Manifest>)> {
        const ATTEMPTS: usize = 4;
        for attempt in 1..=ATTEMPTS {
            let mut published = self.published.write().await;
            if attempt > 1 {
                self.read_again(&mut published).await?;
                if let Some(epoch) = fence_epoch
                    && published
                        .manifest
                        .segments
                        .iter()
                        .any(|s| s.leader_epoch > epoch)
                {
                    break;
                }
            }
            let next = change(&published.manifest)?;
            let key = self.paths.new_manifest(next.version);
            self.tier
                .store
                .put(&key, PutPayload::from(next.encode()))
                .await
                .map_err(|e| LogError::object_store(&key, e))?;
            let pointer = ManifestPointer {
                version: next.version,
                key: key.to_string(),
            };
            if self
                .tier
                .pointers
                .swap(
                    self.topic_id,
                    self.partition,
                    published.pointer.as_ref(),
                    &pointer,
                    guard,
                )
                .await?
            {
                let before = std::mem::replace(&mut published.manifest, Arc::new(next));
                published.key = Some(pointer.key.clone());
                published.pointer = Some(pointer);
                return Ok((before, Arc::clone(&published.manifest)));
            }
            tracing::debug!(partition = %self.label().partition, attempt, "the manifest pointer moved under a publish; reading it again");
        }
        Err(LogError::Fenced {
            partition: format!("{}/{}", self.topic_id, self.partition),
        })
    }

    /// Reads the published manifest again if its pointer moved (the compaction service swapped
    /// segments, or another broker published). Cheap when nothing changed: one pointer read.
    pub async fn refresh(&self) -> Result<bool> {
        let pointer = self
            .tier
            .pointers
            .get(self.topic_id, self.partition)
            .await?;
        if pointer == self.published.read().await.pointer {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    /// Publishes a manifest with compacted segments in place of the runs they replace (see
    /// [`Manifest::with_compacted`]). The replaced objects are not deleted here: a broker may
    /// still read them through the manifest it holds; the sweep removes them once they have been
    /// unreferenced for longer than its grace period. With a `guard` (a compactor's claim on
    /// the partition), the swap fails with [`LogError::Fenced`] once the claim is lost.
    pub async fn swap_compacted(
        &self,
        swaps: &[(Vec<String>, Option<RemoteSegment>)],
        cleaner: crate::log::CleanCheckpoint,
        guard: Option<&SwapGuard>,
    ) -> Result<Arc<Manifest>> {
        let _writer = self.writer.lock().await;
        let (_, published) = self
            .publish(None, guard, |m| m.with_compacted(swaps, cleaner))
            .await?;
        Ok(published)
    }

    /// What every remote partition of this broker shares.
    pub fn tier(&self) -> &Arc<RemoteTier> {
        &self.tier
    }

    /// The partition's object keys.
    pub fn paths(&self) -> &PartitionPaths {
        &self.paths
    }

    /// Reads from the remote tier (see [`RemoteReader::read`]).
    /// A failed object read may mean the manifest held here is stale (compaction replaced the
    /// segment and the sweep removed it): if the pointer moved, the manifest is read again and the
    /// read retried once.
    pub async fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<Bytes> {
        let manifest = self.manifest().await;
        let first = self
            .tier
            .reader
            .read(&manifest, offset, max_bytes, min_one)
            .await;
        match first {
            Err(LogError::ObjectStore { .. }) if self.refresh().await? => {
                let manifest = self.manifest().await;
                self.tier
                    .reader
                    .read(&manifest, offset, max_bytes, min_one)
                    .await
            }
            other => other,
        }
    }

    /// The first remote batch reaching `timestamp` at or above `min_offset`.
    pub async fn batch_at_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<Bytes>> {
        let manifest = self.manifest().await;
        self.tier
            .reader
            .batch_at_timestamp(&manifest, timestamp, min_offset)
            .await
    }

    /// Moves the remote log start to `offset`: publishes the manifest without the segments below
    /// it, then deletes their objects (a crash in between leaves unreferenced objects for the
    /// sweep).
    pub async fn move_start(&self, offset: i64) -> Result<()> {
        let _writer = self.writer.lock().await;
        let current = self.manifest().await;
        if current.log_start_offset >= offset || current.start_offset().is_some_and(|s| s >= offset)
        {
            return Ok(());
        }
        let (before, after) = self
            .publish(None, None, |m| Ok(m.with_log_start(offset).0))
            .await?;
        let dropped: Vec<RemoteSegment> = before
            .segments
            .iter()
            .filter(|s| !after.segments.iter().any(|kept| kept.key == s.key))
            .cloned()
            .collect();
        self.delete_objects(&dropped).await;
        Ok(())
    }

    async fn delete_objects(&self, segments: &[RemoteSegment]) {
        for segment in segments {
            let key = Path::from(segment.key.as_str());
            if let Err(e) = self.tier.store.delete(&key).await {
                tracing::warn!(key = %key, error = %e, "deleting an expired remote segment failed; the sweep will retry");
            }
        }
    }

    /// Applies `retention.ms` / `retention.bytes` across both tiers to the remote segments:
    /// `local_only_bytes` is what the local log holds beyond the manifest. Returns the new remote
    /// start when it moved, so the local log can follow.
    pub async fn apply_retention(
        &self,
        config: &LogConfig,
        local_only_bytes: u64,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let manifest = self.manifest().await;
        let mut total = manifest.log_bytes() + local_only_bytes;
        let mut new_start = None;
        for segment in &manifest.segments {
            let expired = config.retention_ms >= 0
                && now_ms.saturating_sub(segment.max_timestamp) > config.retention_ms;
            let oversize = config.retention_bytes >= 0
                && total.saturating_sub(segment.log_bytes) >= config.retention_bytes as u64;
            if !(expired || oversize) {
                break;
            }
            total -= segment.log_bytes;
            new_start = Some(segment.next_offset);
        }
        match new_start {
            Some(start) => {
                self.move_start(start).await?;
                tracing::info!(partition = %self.label().partition, log_start_offset = start, "remote retention moved the log start");
                Ok(Some(start))
            }
            None => Ok(None),
        }
    }

    /// Deletes every object of the partition and its pointer-visible manifest (topic deletion).
    /// Lists the partition's prefix: an admin path, never a read or write path.
    pub async fn delete_all(&self) -> Result<()> {
        use futures::TryStreamExt;
        let _writer = self.writer.lock().await;
        let root = self.paths.root();
        let keys: Vec<Path> = self
            .tier
            .store
            .list(Some(&root))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| LogError::object_store(&root, e))?;
        for key in keys {
            self.tier
                .store
                .delete(&key)
                .await
                .map_err(|e| LogError::object_store(&key, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
