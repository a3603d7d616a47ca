use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::records::Compression;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use strata_tiering::remote::cache::{CacheSettings, ChunkCache};
use strata_tiering::remote::limiter::RateLimiter;
use strata_tiering::remote::metrics::TieringMetrics;
use strata_tiering::remote::pointer::MemoryPointers;
use strata_tiering::remote::reader::RemoteReader;
use strata_tiering::remote::sweep::sweep_partition;
use strata_tiering::remote::uploader::Uploader;
use strata_tiering::remote::{RemotePartition, RemoteTier};
use strata_tiering::{AppendOptions, LogConfig, PartitionLog};
use uuid::Uuid;

use super::*;
use crate::test_support::{decode, keyed_batch};
use strata_tiering::LogError;
use strata_tiering::remote::SwapGuard;

async fn tier(
    store: Arc<dyn ObjectStore>,
    pointers: Arc<MemoryPointers>,
    dir: &Path,
) -> Arc<RemoteTier> {
    let metrics = TieringMetrics::default();
    let settings = CacheSettings {
        memory_bytes: 1 << 20,
        disk_bytes: 32 << 20,
        disk_dir: dir.to_path_buf(),
        chunk_bytes: 4096,
    };
    let cache = Arc::new(
        ChunkCache::open(&settings, Arc::clone(&store), metrics.clone())
            .await
            .expect("cache"),
    );
    Arc::new(RemoteTier {
        store: Arc::clone(&store),
        prefix: "test".into(),
        pointers,
        reader: Arc::new(RemoteReader::new(cache, 2, metrics.clone())),
        uploader: Uploader {
            store,
            part_bytes: 8 * 1024,
            limiter: RateLimiter::new(0),
            drop_read_pages: true,
            local_bucket: None,
            metrics,
        },
    })
}

async fn read_remote(remote: &RemotePartition) -> Vec<(i64, String, Option<String>)> {
    let manifest = remote.manifest().await;
    let end = manifest.end_offset().unwrap_or(0);
    let mut offset = manifest.start_offset().unwrap_or(0);
    let mut out = Vec::new();
    while offset < end {
        let bytes = remote.read(offset, 1 << 20, true).await.expect("read");
        if bytes.is_empty() {
            break;
        }
        let records = decode(&bytes, offset);
        offset = records.last().map_or(end, |r| r.0 + 1);
        out.extend(records);
    }
    out
}

/// A tiered log in `dir/log` holding `updates`, 20 records a batch.
fn tiered_log(
    dir: &Path,
    updates: &[(String, Option<String>)],
    compression: Compression,
) -> Arc<PartitionLog> {
    let log_config = LogConfig {
        segment_bytes: 3_000,
        index_interval_bytes: 300,
        remote_storage: true,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(&dir.join("log"), log_config, 0).expect("open");
    for chunk in updates.chunks(20) {
        let options = AppendOptions {
            now_ms: 1_000,
            leader_epoch: 0,
            log_append_time: false,
        };
        log.append(&keyed_batch(chunk, 1_000, compression), options)
            .expect("append");
    }
    Arc::new(log)
}

fn limits() -> RemoteLimits {
    RemoteLimits {
        bytes: Arc::new(Throttle::new(0)),
        requests: Arc::new(Throttle::new(0)),
    }
}

#[tokio::test]
async fn remote_segments_are_compacted_and_swapped_while_stale_readers_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let pointers = Arc::new(MemoryPointers::default());
    let topic = Uuid::new_v4();
    let mut updates: Vec<(String, Option<String>)> = (0..2_000)
        .map(|i| (format!("key-{}", i % 50), Some(format!("value-{i}"))))
        .collect();
    updates.push(("key-7".into(), None));
    let log = tiered_log(dir.path(), &updates, Compression::Zstd);
    let tier_a = tier(
        Arc::clone(&raw),
        Arc::clone(&pointers),
        &dir.path().join("cache-a"),
    )
    .await;
    let remote = RemotePartition::open(Arc::clone(&tier_a), topic, 0)
        .await
        .expect("open");
    let uploaded = remote
        .offload(&log, 0, i64::MAX, 2_000)
        .await
        .expect("offload");
    assert!(uploaded > 3, "{uploaded} segments");
    // A second broker's view, opened before compaction: it will hold a stale manifest.
    let tier_b = tier(
        Arc::clone(&raw),
        Arc::clone(&pointers),
        &dir.path().join("cache-b"),
    )
    .await;
    let stale = RemotePartition::open(tier_b, topic, 0).await.expect("open");
    let before = read_remote(&remote).await;
    let end = remote.manifest().await.end_offset().expect("end");

    let config = CompactionConfig {
        delete_retention_ms: 0,
        segment_bytes: 20_000,
        index_interval_bytes: 300,
        ..CompactionConfig::default()
    };
    let scratch = dir.path().join("scratch");
    let report = compact_remote(&remote, &config, &scratch, 1 << 20, &limits(), None, 5_000)
        .await
        .expect("pass")
        .expect("due");
    assert!(report.segments_replaced >= uploaded as u64);
    let manifest = remote.manifest().await;
    assert_eq!(manifest.cleaner.cleaned_offset, end);
    assert_eq!(
        manifest.end_offset(),
        Some(end),
        "the remote end never moves"
    );
    // The replaced objects are gone once the sweep ran (grace 0).
    let paths = remote.paths().clone();
    let swept = sweep_partition(
        raw.as_ref(),
        &paths,
        pointers.as_ref(),
        topic,
        0,
        Duration::ZERO,
        i64::MAX / 4,
    )
    .await
    .expect("sweep");
    assert!(swept.deleted >= uploaded, "{swept:?}");

    let mut latest = BTreeMap::new();
    for (offset, (k, v)) in updates.iter().enumerate() {
        if offset < end as usize {
            latest.insert(k.clone(), (offset as i64, v.clone()));
        }
    }
    let mut expected: Vec<_> = latest.into_iter().map(|(k, (o, v))| (o, k, v)).collect();
    expected.sort();
    let after = read_remote(&remote).await;
    assert_eq!(after, expected);
    // The stale reader's manifest names deleted objects (and its cache holds none of them): its
    // read fails, it reloads the manifest and reads the new data.
    assert_eq!(read_remote(&stale).await, expected);
    assert!(before.len() > after.len());

    // A second pass drops the tombstone that the first kept (delete.retention.ms is 0).
    if after.iter().any(|(_, _, v)| v.is_none()) {
        compact_remote(&remote, &config, &scratch, 1 << 20, &limits(), None, 6_000)
            .await
            .expect("pass")
            .expect("the tombstone deadline is due");
        let last = read_remote(&remote).await;
        assert!(last.iter().all(|(_, _, v)| v.is_some()));
        assert_eq!(last.len(), expected.len() - 1);
    }
    assert!(
        compact_remote(&remote, &config, &scratch, 1 << 20, &limits(), None, 7_000)
            .await
            .expect("pass")
            .is_none(),
        "nothing left to do"
    );
}

#[tokio::test]
async fn a_swap_under_a_lost_claim_is_fenced_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let pointers = Arc::new(MemoryPointers::default());
    let topic = Uuid::new_v4();
    let updates: Vec<(String, Option<String>)> = (0..500)
        .map(|i| (format!("key-{}", i % 10), Some(format!("value-{i}"))))
        .collect();
    let log = tiered_log(dir.path(), &updates, Compression::None);
    let tier = tier(
        Arc::clone(&raw),
        Arc::clone(&pointers),
        &dir.path().join("cache"),
    )
    .await;
    let remote = RemotePartition::open(tier, topic, 0).await.expect("open");
    remote
        .offload(&log, 0, i64::MAX, 2_000)
        .await
        .expect("offload");
    let before = remote.manifest().await;
    let config = CompactionConfig::default();
    let scratch = dir.path().join("scratch");
    pointers.set_guard("claims/p", Some(2));
    let lost = SwapGuard {
        key: "claims/p".into(),
        version: 1,
    };
    let fenced = compact_remote(
        &remote,
        &config,
        &scratch,
        1 << 20,
        &limits(),
        Some(&lost),
        5_000,
    )
    .await;
    assert!(
        matches!(fenced, Err(CompactionError::Log(LogError::Fenced { .. }))),
        "{fenced:?}"
    );
    remote.reload().await.expect("reload");
    assert_eq!(
        remote.manifest().await.segments,
        before.segments,
        "nothing swapped"
    );
    let held = SwapGuard {
        key: "claims/p".into(),
        version: 2,
    };
    let report = compact_remote(
        &remote,
        &config,
        &scratch,
        1 << 20,
        &limits(),
        Some(&held),
        5_000,
    )
    .await
    .expect("pass");
    assert!(report.is_some());
    assert_ne!(remote.manifest().await.segments, before.segments);
}
