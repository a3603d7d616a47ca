use std::sync::atomic::Ordering;

use futures::TryStreamExt;
use object_store::memory::InMemory;

use super::*;
use crate::batch::tests::{TestBatch, build_batch};
use crate::batch::{BatchHeader, split_batches, validate_batch};
use crate::log::AppendOptions;
use crate::remote::cache::{CacheSettings, ChunkCache};
use crate::remote::limiter::RateLimiter;
use crate::remote::metrics::TieringMetrics;
use crate::remote::pointer::MemoryPointers;
use crate::remote::store::{FailSwitch, HookedStore};

struct Fixture {
    dir: tempfile::TempDir,
    raw: Arc<InMemory>,
    switch: Arc<FailSwitch>,
    pointers: Arc<MemoryPointers>,
    topic: Uuid,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
            raw: Arc::new(InMemory::new()),
            switch: Arc::new(FailSwitch::default()),
            pointers: Arc::new(MemoryPointers::default()),
            topic: Uuid::new_v4(),
        }
    }

    /// A fresh tier (new, empty cache) over the same bucket and pointers.
    async fn tier(&self, cache_dir: &str) -> Arc<RemoteTier> {
        self.tier_with(cache_dir, 1 << 20).await.0
    }

    /// A fresh tier whose cache keeps `memory_bytes` in memory, and the metrics that count its
    /// requests.
    async fn tier_with(
        &self,
        cache_dir: &str,
        memory_bytes: usize,
    ) -> (Arc<RemoteTier>, TieringMetrics) {
        let metrics = TieringMetrics::default();
        let failing: Arc<dyn ObjectStore> =
            Arc::new(HookedStore::new(self.raw.clone(), Arc::clone(&self.switch)));
        let store: Arc<dyn ObjectStore> =
            Arc::new(HookedStore::new(failing, Arc::new(metrics.clone())));
        let settings = CacheSettings {
            memory_bytes,
            disk_bytes: 32 << 20,
            disk_dir: self.dir.path().join(cache_dir),
            chunk_bytes: 4096,
        };
        let cache = Arc::new(
            ChunkCache::open(&settings, Arc::clone(&store), metrics.clone())
                .await
                .expect("cache"),
        );
        let tier = Arc::new(RemoteTier {
            store: Arc::clone(&store),
            prefix: "test".into(),
            pointers: self.pointers.clone(),
            reader: Arc::new(RemoteReader::new(cache, 2, metrics.clone())),
            uploader: Uploader {
                store,
                part_bytes: 8 * 1024,
                limiter: RateLimiter::new(0),
                drop_read_pages: true,
                local_bucket: None,
                metrics: metrics.clone(),
            },
        });
        (tier, metrics)
    }

    fn log(&self, name: &str, start: i64) -> Arc<PartitionLog> {
        let dir = self.dir.path().join(name);
        Arc::new(PartitionLog::open_at(&dir, config(), start, 0).expect("log"))
    }

    async fn object_count(&self) -> usize {
        let all: Vec<_> = self.raw.list(None).try_collect().await.expect("list");
        all.iter()
            .filter(|m| m.location.as_ref().ends_with(".seg"))
            .count()
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 3_000,
        index_interval_bytes: 500,
        remote_storage: true,
        local_retention_bytes: 0,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn fill(log: &PartitionLog, batches: i64) -> Vec<Vec<u8>> {
    let options = AppendOptions {
        now_ms: 0,
        leader_epoch: 0,
        log_append_time: false,
    };
    (0..batches)
        .map(|i| {
            let payload = 100 + (i as usize * 37) % 900; // some segments exceed one part
            let batch = build_batch(TestBatch {
                records: 2,
                timestamp: i * 1_000,
                payload,
                ..TestBatch::default()
            });
            log.append(&batch, options).expect("append");
            batch[16..].to_vec() // what follows the offset, length and epoch the log stamps
        })
        .collect()
}

/// Reads every batch from `from` through the remote tier, returning the batches' bytes after
/// their offset, length and leader epoch.
async fn read_remote(remote: &RemotePartition, from: i64, end: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < end {
        let bytes = remote.read(offset, 5_000, true).await.expect("remote read");
        assert!(!bytes.is_empty(), "no progress at {offset}");
        for range in split_batches(&bytes).expect("whole") {
            let header = validate_batch(&bytes[range.clone()]).expect("valid");
            if header.last_offset() >= offset {
                offset = header.next_offset();
                out.push(bytes[range.start + 16..range.end].to_vec());
            }
        }
    }
    out
}

#[tokio::test]
async fn offloaded_segments_read_back_identically_and_only_then_leave_local_disk() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    let original = fill(&log, 60);
    assert_eq!(
        log.apply_retention(0).expect("retention"),
        0,
        "nothing is offloaded yet"
    );
    let remote = RemotePartition::open(f.tier("c1").await, f.topic, 0)
        .await
        .expect("open");
    let sealed = log.sealed_segments().expect("sealed");
    assert_eq!(
        remote.offload(&log, 0, i64::MAX, 0).await.expect("offload"),
        sealed.len()
    );
    let manifest = remote.manifest().await;
    assert_eq!(manifest.end_offset(), sealed.last().map(|s| s.next_offset));
    assert_eq!(f.object_count().await, sealed.len());
    assert!(sealed.iter().any(|s| s.size > 8 * 1024) || sealed.len() > 1);
    assert!(
        Some(log.durable_end()) >= manifest.end_offset(),
        "what the bucket holds is durable locally first"
    );

    // Local retention may now delete everything offloaded.
    assert_eq!(log.apply_retention(0).expect("retention"), sealed.len());
    assert_eq!(Some(log.log_start_offset()), manifest.end_offset());

    let end = manifest.end_offset().expect("end");
    let from_bucket = read_remote(&remote, 0, end).await;
    assert!(
        from_bucket[..] == original[..from_bucket.len()],
        "remote batches differ from what was produced"
    );
    // A second pass is served by the cache, byte for byte the same.
    assert_eq!(read_remote(&remote, 0, end).await, from_bucket);
    // Reading from the middle of a batch returns that batch.
    let mid = remote.read(11, 100, true).await.expect("read");
    let header = BatchHeader::parse(&mid).expect("header");
    assert!(header.base_offset <= 11 && 11 <= header.last_offset());
    // Timestamps resolve remotely too (batch i holds offsets 2i, 2i+1 at time 1000 i).
    let at = remote
        .batch_at_timestamp(7_500, 0)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(BatchHeader::parse(&at).expect("header").base_offset, 16);

    // Another broker with an empty disk sees the same manifest and continues the offsets.
    let again = RemotePartition::open(f.tier("c2").await, f.topic, 0)
        .await
        .expect("reopen");
    assert_eq!(again.manifest().await, manifest);
    let fresh = f.log("p0-fresh", end);
    assert_eq!(fresh.log_end_offset(), end);
    assert_eq!(read_remote(&again, 0, end).await, from_bucket);
}

#[tokio::test]
async fn a_sequential_replay_gets_each_segment_once() {
    let f = Fixture::new();
    let log = Arc::new(
        PartitionLog::open_at(
            &f.dir.path().join("p0"),
            LogConfig {
                segment_bytes: 40_000,
                ..config()
            },
            0,
            0,
        )
        .expect("log"),
    );
    let original = fill(&log, 500);
    let (writer, _) = f.tier_with("c1", 1 << 20).await;
    let remote = RemotePartition::open(writer, f.topic, 0)
        .await
        .expect("open");
    remote.offload(&log, 0, i64::MAX, 0).await.expect("offload");
    let segments = remote.manifest().await.segments.len() as u64;
    assert!(segments >= 5, "{segments} segments");
    // A reader whose memory tier (16 chunks of 4 KiB) holds less than a segment (10 chunks)
    // plus the window: the read-ahead must follow the reader, not run ahead of it.
    let (tier, metrics) = f.tier_with("c2", 64 << 10).await;
    let reader = RemotePartition::open(tier, f.topic, 0).await.expect("open");
    let end = reader.manifest().await.end_offset().expect("end");
    let mut replayed = Vec::new();
    let mut offset = 0;
    while offset < end {
        // Every fetch is asked twice, as when one times out while its read goes on.
        reader.read(offset, 5_000, true).await.expect("read");
        let bytes = reader.read(offset, 5_000, true).await.expect("read again");
        for range in split_batches(&bytes).expect("whole") {
            let header = validate_batch(&bytes[range.clone()]).expect("valid");
            if header.last_offset() >= offset {
                offset = header.next_offset();
                replayed.push(bytes[range.start + 16..range.end].to_vec());
            }
        }
    }
    assert!(replayed[..] == original[..replayed.len()]);
    assert_eq!(replayed.len() as i64, end / 2, "two records a batch");
    let gets = metrics
        .object_store_requests
        .get_or_create(&crate::remote::metrics::OperationLabels {
            operation: "GET".into(),
        })
        .get();
    // One GET per segment, the first read's included, and the manifest's.
    assert!(gets <= segments + 1, "{gets} GETs for {segments} segments");
}

#[tokio::test]
async fn a_store_outage_delays_offload_without_losing_or_duplicating() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    fill(&log, 30);
    let remote = RemotePartition::open(f.tier("c").await, f.topic, 0)
        .await
        .expect("open");
    f.switch.failing.store(true, Ordering::SeqCst);
    let err = remote
        .offload(&log, 0, i64::MAX, 0)
        .await
        .expect_err("store is down");
    assert!(err.is_retriable(), "{err}");
    assert_eq!(
        log.apply_retention(0).expect("retention"),
        0,
        "local segments stay while uploads fail"
    );
    fill(&log, 30);
    assert_eq!(
        remote
            .offload(&log, 0, i64::MAX, 0)
            .await
            .expect("backing off"),
        0,
        "retries wait for the backoff"
    );
    f.switch.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(LONGEST_RETRY.min(Duration::from_millis(1_100))).await;
    let sealed = log.sealed_segments().expect("sealed");
    assert_eq!(
        remote
            .offload(&log, 0, i64::MAX, 0)
            .await
            .expect("caught up"),
        sealed.len()
    );
    let manifest = remote.manifest().await;
    for pair in manifest.segments.windows(2) {
        assert_eq!(
            pair[0].next_offset, pair[1].base_offset,
            "no gap, no overlap"
        );
    }
    assert_eq!(manifest.segments.first().map(|s| s.base_offset), Some(0));
    assert_eq!(
        remote.offload(&log, 0, i64::MAX, 0).await.expect("idle"),
        0,
        "nothing uploaded twice"
    );
}

#[tokio::test]
async fn upload_lag_shows_while_the_store_is_down_and_goes_when_no_longer_leading() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    fill(&log, 30);
    let tier = f.tier("c").await;
    let remote = RemotePartition::open(Arc::clone(&tier), f.topic, 0)
        .await
        .expect("open");
    f.switch.failing.store(true, Ordering::SeqCst);
    remote
        .offload(&log, 0, i64::MAX, 0)
        .await
        .expect_err("store is down");
    let metrics = &tier.uploader.metrics;
    let label = remote.label();
    let lag = || {
        (
            metrics.upload_lag_bytes.get(&label).map(|g| g.get()),
            metrics.upload_lag_segments.get(&label).map(|g| g.get()),
        )
    };
    let (Some(bytes), Some(segments)) = lag() else {
        panic!("the leader reports its lag");
    };
    assert!(
        bytes > 0 && segments > 0,
        "{bytes} bytes, {segments} segments"
    );
    fill(&log, 5);
    remote.report_as_non_leader(&log);
    assert_eq!(lag(), (None, None), "only the leader reports upload lag");
    let local = metrics.local_bytes.get(&label).map(|g| g.get());
    assert_eq!(
        local,
        Some(log.size_bytes() as i64),
        "local bytes stay current"
    );
}

#[tokio::test]
async fn a_stale_writer_is_fenced() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    fill(&log, 30);
    let stale = RemotePartition::open(f.tier("c1").await, f.topic, 0)
        .await
        .expect("open");
    let current = RemotePartition::open(f.tier("c2").await, f.topic, 0)
        .await
        .expect("open");
    current
        .offload(&log, 1, i64::MAX, 0)
        .await
        .expect("offload");
    fill(&log, 30);
    let err = stale
        .offload(&log, 0, i64::MAX, 0)
        .await
        .expect_err("fenced");
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
}

/// A leader over `log` that offloaded 30 batches, then 30 more after the pointer was backed up,
/// and the pointer restored from that backup: what a metadata store restored from a backup
/// leaves.
struct Restored {
    leader: RemotePartition,
    /// The batches written.
    written: Vec<Vec<u8>>,
    /// The restored pointer.
    backup: ManifestPointer,
    /// The end offset of the manifest it names.
    backup_end: i64,
}

impl Fixture {
    async fn pointer(&self) -> ManifestPointer {
        let pointer = self.pointers.get(self.topic, 0).await.expect("get");
        pointer.expect("a pointer")
    }

    async fn offload_across_a_restore(&self, log: &Arc<PartitionLog>) -> Restored {
        let mut written = fill(log, 30);
        let leader = RemotePartition::open(self.tier("c1").await, self.topic, 0)
            .await
            .expect("open");
        leader.offload(log, 0, i64::MAX, 0).await.expect("offload");
        let backup = self.pointer().await;
        let backup_end = leader.manifest().await.end_offset().expect("segments");
        written.extend(fill(log, 30));
        leader.offload(log, 0, i64::MAX, 0).await.expect("offload");
        assert!(leader.manifest().await.version > backup.version + 1);
        let current = self.pointer().await;
        let restored = self
            .pointers
            .swap(self.topic, 0, Some(&current), &backup, None);
        assert!(restored.await.expect("swap"));
        Restored {
            leader,
            written,
            backup,
            backup_end,
        }
    }
}

/// A metadata store restored from a backup takes the pointer back to an older manifest, maybe
/// one swept since. The leader keeps the newer one it holds and publishes it again, even with
/// nothing new to offload, so the segments offloaded since the backup stay listed, and offload
/// goes on from its end.
#[tokio::test]
async fn a_pointer_that_went_back_is_moved_past_the_newer_manifest_again() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    let Restored {
        leader,
        mut written,
        backup,
        ..
    } = f.offload_across_a_restore(&log).await;
    let newer = leader.manifest().await;
    // Swept long ago: the manifest the restored pointer names is gone.
    let swept = Path::from(backup.key.as_str());
    f.raw.delete(&swept).await.expect("delete");

    leader.refresh().await.expect("refresh");
    assert_eq!(leader.manifest().await.segments, newer.segments);
    assert_eq!(
        leader.offload(&log, 0, i64::MAX, 0).await.expect("offload"),
        0
    );
    assert!(f.pointer().await.version > newer.version, "published again");
    written.extend(fill(&log, 30));
    assert!(leader.offload(&log, 0, i64::MAX, 0).await.expect("offload") > 0);

    let reader = RemotePartition::open(f.tier("c2").await, f.topic, 0)
        .await
        .expect("open");
    let manifest = reader.manifest().await;
    assert!(manifest.segments.starts_with(&newer.segments));
    let end = manifest.end_offset().expect("segments");
    let read = read_remote(&reader, 0, end).await;
    assert_eq!(read, written[..read.len()], "no gap, nothing lost");
    assert!(read.len() > 60);
}

/// After the restore another writer of the same epoch (a compaction service, say) published on
/// the old pointer up to the very version the leader holds: a pointer naming another manifest of
/// that version went back all the same, and the leader publishes its own again.
#[tokio::test]
async fn a_pointer_at_the_held_version_but_another_manifest_went_back_too() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    let Restored { leader, .. } = f.offload_across_a_restore(&log).await;
    let held = leader.manifest().await;
    let other = RemotePartition::open(f.tier("c2").await, f.topic, 0)
        .await
        .expect("open");
    for segment in &held.segments {
        if other.manifest().await.version < held.version {
            other
                .offload(&log, 0, segment.next_offset, 0)
                .await
                .expect("offload");
        }
    }
    assert_eq!(f.pointer().await.version, held.version);
    assert_ne!(other.manifest().await, held);

    leader.refresh().await.expect("refresh");
    assert_eq!(leader.manifest().await.segments, held.segments);
    leader.offload(&log, 0, i64::MAX, 0).await.expect("offload");
    assert_eq!(f.pointer().await.version, held.version + 1);
}

/// A newer leader that published on the old pointer after the restore is not overridden by
/// the old leader's newer manifest: the old leader takes the new leader's and is fenced.
#[tokio::test]
async fn a_newer_leader_that_published_on_the_old_pointer_stands() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    let Restored {
        leader: old,
        backup_end,
        ..
    } = f.offload_across_a_restore(&log).await;

    // The new leader, from the restored pointer, offloads one segment at its epoch.
    let new = RemotePartition::open(f.tier("c2").await, f.topic, 0)
        .await
        .expect("open");
    let held = old.manifest().await;
    let next = held.segments.iter().find(|s| s.base_offset == backup_end);
    let committed = next.expect("a later segment").next_offset;
    assert_eq!(
        new.offload(&log, 1, committed, 0).await.expect("offload"),
        1
    );
    let published = new.manifest().await;
    assert!(published.version < held.version);

    old.refresh().await.expect("refresh");
    assert_eq!(old.manifest().await, published);
    let err = old.offload(&log, 0, i64::MAX, 0).await.expect_err("fenced");
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
}

#[tokio::test]
async fn an_older_leader_is_fenced_even_with_the_current_manifest() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    fill(&log, 30);
    let old = RemotePartition::open(f.tier("c1").await, f.topic, 0)
        .await
        .expect("open");
    let new = RemotePartition::open(f.tier("c2").await, f.topic, 0)
        .await
        .expect("open");
    new.offload(&log, 5, i64::MAX, 0).await.expect("offload");
    fill(&log, 30);
    old.reload().await.expect("reload");
    let err = old.offload(&log, 4, i64::MAX, 0).await.expect_err("fenced");
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    assert!(new.offload(&log, 5, i64::MAX, 0).await.expect("offload") > 0);
}

#[tokio::test]
async fn only_segments_below_the_committed_end_are_uploaded() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    fill(&log, 30);
    let remote = RemotePartition::open(f.tier("c1").await, f.topic, 0)
        .await
        .expect("open");
    let sealed = log.sealed_segments().expect("sealed");
    assert!(sealed.len() >= 2, "the fixture rolls segments");
    let committed = sealed[1].next_offset - 1;
    remote
        .offload(&log, 0, committed, 0)
        .await
        .expect("offload");
    assert_eq!(
        remote.manifest().await.end_offset(),
        Some(sealed[0].next_offset),
        "a segment reaching past the committed end waits"
    );
}

#[tokio::test]
async fn corrupt_or_missing_objects_are_errors_not_data() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    fill(&log, 30);
    let remote = RemotePartition::open(f.tier("c1").await, f.topic, 0)
        .await
        .expect("open");
    remote.offload(&log, 0, i64::MAX, 0).await.expect("offload");
    let first = remote.manifest().await.segments[0].clone();
    let key = Path::from(first.key.as_str());
    let mut bytes = f
        .raw
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    bytes[100] ^= 0xff;
    f.raw
        .put(&key, PutPayload::from(bytes))
        .await
        .expect("corrupt it");
    let fresh = RemotePartition::open(f.tier("c2").await, f.topic, 0)
        .await
        .expect("open");
    let err = fresh.read(0, 10_000, true).await.expect_err("CRC");
    assert!(matches!(err, LogError::CorruptRemote { .. }), "{err}");
    f.raw.delete(&key).await.expect("delete");
    let gone = RemotePartition::open(f.tier("c3").await, f.topic, 0)
        .await
        .expect("open");
    assert!(gone.read(0, 10_000, true).await.is_err());
}

#[tokio::test]
async fn retention_across_tiers_drops_remote_segments_and_their_objects() {
    let f = Fixture::new();
    let log = f.log("p0", 0);
    fill(&log, 60);
    let remote = RemotePartition::open(f.tier("c").await, f.topic, 0)
        .await
        .expect("open");
    remote.offload(&log, 0, i64::MAX, 0).await.expect("offload");
    let before = f.object_count().await;
    let total = remote.manifest().await.log_bytes();
    let keep = LogConfig {
        retention_bytes: (total / 2) as i64,
        ..config()
    };
    let start = remote
        .apply_retention(&keep, 0, 0)
        .await
        .expect("retention")
        .expect("moved");
    let manifest = remote.manifest().await;
    assert_eq!(manifest.start_offset(), Some(start));
    assert!(manifest.log_bytes() >= total / 2 && manifest.log_bytes() < total);
    assert_eq!(
        f.object_count().await,
        before - (before - manifest.segments.len())
    );
    assert!(f.object_count().await < before);
    let expired = LogConfig {
        retention_ms: 1,
        ..config()
    };
    remote
        .apply_retention(&expired, 0, 1_000_000)
        .await
        .expect("retention");
    assert_eq!(f.object_count().await, 0);
    assert!(remote.manifest().await.segments.is_empty());
}
