//! The chunk cache of the remote tier: fixed-size chunks of remote objects, fetched with ranged
//! GETs and kept in a `foyer` hybrid cache (memory, then local disk). Concurrent misses on one
//! chunk share one GET.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use prometheus_client::metrics::counter::Counter;

use super::metrics::TieringMetrics;
use crate::error::{LogError, Result};

/// Sizes of the chunk cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of chunks kept in memory.
    pub memory_bytes: usize,
    /// Bytes of chunks kept on local disk.
    pub disk_bytes: usize,
    /// Directory of the disk cache.
    pub disk_dir: PathBuf,
    /// Size of one chunk, the unit of ranged GETs.
    pub chunk_bytes: u64,
}

/// The foyer disk engine's block size; the disk cache is at least two blocks.
const DISK_BLOCK_BYTES: usize = 16 << 20;

#[derive(Debug)]
struct EvictionCounter(Counter);

impl EventListener for EvictionCounter {
    type Key = String;
    type Value = Bytes;

    fn on_leave(&self, reason: Event, _key: &String, _value: &Bytes) {
        if reason == Event::Evict {
            self.0.inc();
        }
    }
}

/// Chunks of remote objects, cached.
pub struct ChunkCache {
    cache: HybridCache<String, Bytes>,
    store: Arc<dyn ObjectStore>,
    chunk_bytes: u64,
    metrics: TieringMetrics,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

impl ChunkCache {
    /// Opens the cache in front of `store`. The disk cache starts empty: its files are a cache.
    pub async fn open(
        settings: &CacheSettings,
        store: Arc<dyn ObjectStore>,
        metrics: TieringMetrics,
    ) -> Result<Self> {
        let io = |e: foyer::Error| {
            LogError::io(&settings.disk_dir, std::io::Error::other(e.to_string()))
        };
        std::fs::create_dir_all(&settings.disk_dir)
            .map_err(|e| LogError::io(&settings.disk_dir, e))?;
        let disk = settings.disk_bytes.max(2 * DISK_BLOCK_BYTES);
        let device = FsDeviceBuilder::new(&settings.disk_dir)
            .with_capacity(disk)
            .build()
            .map_err(io)?;
        let cache = HybridCacheBuilder::new()
            .with_name("strata-chunks")
            .with_event_listener(Arc::new(EvictionCounter(metrics.cache_evictions.clone())))
            .memory(settings.memory_bytes.max(1))
            .with_weighter(|key: &String, value: &Bytes| key.len() + value.len())
            .storage()
            .with_engine_config(BlockEngineConfig::new(device).with_block_size(DISK_BLOCK_BYTES))
            .build()
            .await
            .map_err(io)?;
        Ok(ChunkCache {
            cache,
            store,
            chunk_bytes: settings.chunk_bytes.max(4096),
            metrics,
        })
    }

    /// The chunk size.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// Chunk `index` of the object `key` of `object_bytes` bytes.
    pub async fn chunk(&self, key: &str, index: u64, object_bytes: u64) -> Result<Bytes> {
        let start = index * self.chunk_bytes;
        let end = (start + self.chunk_bytes).min(object_bytes);
        if start >= end {
            return Err(LogError::CorruptRemote {
                key: key.to_string(),
                reason: format!("chunk {index} is past the end of a {object_bytes}-byte object"),
            });
        }
        let fetched = Arc::new(AtomicBool::new(false));
        let store = Arc::clone(&self.store);
        let path = Path::from(key);
        let flag = Arc::clone(&fetched);
        let entry = self
            .cache
            .get_or_fetch(&format!("{key}#{index}"), move || async move {
                flag.store(true, Ordering::Relaxed);
                let bytes = store.get_range(&path, start..end).await?;
                if bytes.len() as u64 != end - start {
                    return Err(object_store::Error::Generic {
                        store: "chunk cache",
                        source: format!("asked for {} bytes, got {}", end - start, bytes.len())
                            .into(),
                    });
                }
                Ok::<_, object_store::Error>(bytes)
            })
            .await;
        if fetched.load(Ordering::Relaxed) {
            self.metrics.cache_misses.inc();
        } else {
            self.metrics.cache_hits.inc();
        }
        match entry {
            Ok(entry) => Ok(entry.value().clone()),
            Err(e) => Err(LogError::object_store(
                key,
                object_store::Error::Generic {
                    store: "chunk cache",
                    source: e.to_string().into(),
                },
            )),
        }
    }

    /// Bytes `range` of the object `key`, assembled from cached chunks.
    pub async fn read(&self, key: &str, object_bytes: u64, range: Range<u64>) -> Result<Bytes> {
        if range.end > object_bytes || range.start > range.end {
            return Err(LogError::CorruptRemote {
                key: key.to_string(),
                reason: format!("range {range:?} is outside a {object_bytes}-byte object"),
            });
        }
        let (first, last) = (
            range.start / self.chunk_bytes,
            range.end.saturating_sub(1) / self.chunk_bytes,
        );
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        if first == last {
            let chunk = self.chunk(key, first, object_bytes).await?;
            let offset = first * self.chunk_bytes;
            return Ok(chunk.slice((range.start - offset) as usize..(range.end - offset) as usize));
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for index in first..=last {
            let chunk = self.chunk(key, index, object_bytes).await?;
            let offset = index * self.chunk_bytes;
            let from = range.start.saturating_sub(offset) as usize;
            let to = ((range.end - offset) as usize).min(chunk.len());
            out.extend_from_slice(&chunk[from..to]);
        }
        Ok(out.freeze())
    }

    /// Flushes and closes the disk cache.
    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::warn!(error = %e, "closing the chunk cache failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    async fn test_cache(
        dir: &std::path::Path,
        store: Arc<dyn ObjectStore>,
        chunk: u64,
    ) -> ChunkCache {
        let settings = CacheSettings {
            memory_bytes: 1 << 20,
            disk_bytes: 32 << 20,
            disk_dir: dir.to_path_buf(),
            chunk_bytes: chunk,
        };
        ChunkCache::open(&settings, store, TieringMetrics::default())
            .await
            .expect("cache")
    }

    #[tokio::test]
    async fn ranges_spanning_chunks_read_back_exactly_and_hit_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put(&Path::from("obj"), PutPayload::from(data.clone()))
            .await
            .expect("put");
        let cache = test_cache(dir.path(), store, 4096).await;
        for range in [
            0..10,
            4090..4200,
            4096..8192,
            100..30_000,
            49_999..50_000,
            7..7,
        ] {
            let got = cache
                .read("obj", 50_000, range.clone())
                .await
                .expect("read");
            assert_eq!(
                &got[..],
                &data[range.start as usize..range.end as usize],
                "{range:?}"
            );
        }
        let misses = cache.metrics.cache_misses.get();
        cache.read("obj", 50_000, 100..30_000).await.expect("again");
        assert_eq!(
            cache.metrics.cache_misses.get(),
            misses,
            "a second read is served from the cache"
        );
        assert!(cache.metrics.cache_hits.get() > 0);
        assert!(cache.read("obj", 50_000, 0..50_001).await.is_err());
        assert!(cache.read("missing", 10, 0..5).await.is_err());
    }
}
