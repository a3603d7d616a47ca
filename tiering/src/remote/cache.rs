//! The chunk cache of the remote tier: fixed-size chunks of remote objects, fetched with ranged
//! GETs and kept in a `foyer` hybrid cache (memory, then local disk). Concurrent misses on one
//! chunk share one GET, and a miss may fetch a span of consecutive chunks in that one GET (a
//! sequential reader's next chunks): fewer, larger requests, which is what object stores bill and
//! serve best.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder,
};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

use super::metrics::TieringMetrics;
use crate::error::{LogError, Result};

/// Chunks of one object claimed for a read-ahead GET ([`ChunkCache::claim`]).
#[derive(Debug)]
pub struct Claim {
    key: String,
    first: u64,
    last: u64,
    object_bytes: u64,
}

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

fn chunk_key(key: &str, index: u64) -> String {
    format!("{key}#{index}")
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
    /// Chunks the memory tier holds.
    memory_chunks: u64,
    metrics: TieringMetrics,
    /// Chunks a read-ahead stream is fetching now, so overlapping read-aheads skip them.
    streaming: Mutex<HashSet<String>>,
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
        let chunk_bytes = settings.chunk_bytes.max(4096);
        Ok(ChunkCache {
            cache,
            store,
            chunk_bytes,
            memory_chunks: settings.memory_bytes as u64 / chunk_bytes,
            metrics,
            streaming: Mutex::new(HashSet::new()),
        })
    }

    /// The chunk size.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// How many chunks the memory tier holds.
    pub fn memory_chunks(&self) -> u64 {
        self.memory_chunks
    }

    /// Chunk `index` of the object `key` of `object_bytes` bytes. On a miss, up to `span`
    /// consecutive chunks from `index` that are not cached yet come in the same GET and are
    /// cached before this returns.
    pub async fn chunk(
        &self,
        key: &str,
        index: u64,
        object_bytes: u64,
        span: u64,
    ) -> Result<Bytes> {
        let start = index * self.chunk_bytes;
        let end = (start + self.chunk_bytes).min(object_bytes);
        if start >= end {
            return Err(LogError::CorruptRemote {
                key: key.to_string(),
                reason: format!("chunk {index} is past the end of a {object_bytes}-byte object"),
            });
        }
        // The span stops at the object's end and at the first chunk already cached.
        let mut span_end = end;
        for next in index + 1..index + span.max(1) {
            let next_start = next * self.chunk_bytes;
            if next_start >= object_bytes || self.cache.contains(&chunk_key(key, next)) {
                break;
            }
            span_end = (next_start + self.chunk_bytes).min(object_bytes);
        }
        let fetched = Arc::new(AtomicBool::new(false));
        let store = Arc::clone(&self.store);
        let path = Path::from(key);
        let flag = Arc::clone(&fetched);
        let cache = self.cache.clone();
        let (chunk_bytes, object_key) = (self.chunk_bytes, key.to_string());
        let entry = self
            .cache
            .get_or_fetch(&chunk_key(key, index), move || async move {
                flag.store(true, Ordering::Relaxed);
                let bytes = store.get_range(&path, start..span_end).await?;
                if bytes.len() as u64 != span_end - start {
                    return Err(object_store::Error::Generic {
                        store: "chunk cache",
                        source: format!(
                            "asked for {} bytes, got {}",
                            span_end - start,
                            bytes.len()
                        )
                        .into(),
                    });
                }
                // The chunks after the one asked for go in first, so a sequential reader that
                // comes for them once this returns finds them.
                let mut next = index + 1;
                let mut from = end - start;
                while from < bytes.len() as u64 {
                    let to = (from + chunk_bytes).min(bytes.len() as u64);
                    cache.insert(
                        chunk_key(&object_key, next),
                        bytes.slice(from as usize..to as usize),
                    );
                    next += 1;
                    from = to;
                }
                Ok::<_, object_store::Error>(bytes.slice(..(end - start) as usize))
            })
            .await;
        if fetched.load(Ordering::Relaxed) {
            let chunks = (span_end - start).div_ceil(self.chunk_bytes);
            self.metrics.cache_misses.inc_by(chunks);
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

    /// How many chunks from `first` on (at most `max`) are cached or being fetched, in a row.
    pub fn ready_ahead(&self, key: &str, first: u64, max: u64) -> u64 {
        let streaming = self
            .streaming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (first..first + max)
            .take_while(|&i| {
                let k = chunk_key(key, i);
                streaming.contains(&k) || self.cache.contains(&k)
            })
            .count() as u64
    }

    /// Claims, at once, the first run of chunks in `first..last` of `key` that are neither cached
    /// nor claimed by another read-ahead, so that a read-ahead started later (the reader moved on
    /// meanwhile) does not GET them too; `None` when there is nothing to fetch. The claim is
    /// released by [`ChunkCache::stream_claimed`].
    pub fn claim(&self, key: &str, first: u64, last: u64, object_bytes: u64) -> Option<Claim> {
        let last = last.min(object_bytes.div_ceil(self.chunk_bytes));
        let mut streaming = self
            .streaming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let busy = |i: u64| {
            let k = chunk_key(key, i);
            streaming.contains(&k) || self.cache.contains(&k)
        };
        let from = (first..last).find(|&i| !busy(i)).unwrap_or(last);
        let to = (from..last).find(|&i| busy(i)).unwrap_or(last);
        for i in from..to {
            streaming.insert(chunk_key(key, i));
        }
        (from < to).then(|| Claim {
            key: key.to_string(),
            first: from,
            last: to,
            object_bytes,
        })
    }

    /// Releases a claim without fetching its chunks.
    pub fn release(&self, claim: Claim) {
        let mut streaming = self
            .streaming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for i in claim.first..claim.last {
            streaming.remove(&chunk_key(&claim.key, i));
        }
    }

    /// Read-ahead: fetches a claimed run with one streaming GET, caches each chunk the moment its
    /// bytes have arrived, and releases the claim. A reader asking for one of the chunks meanwhile
    /// waits for it instead of fetching it again. Only one chunk is buffered at a time, so a long
    /// read-ahead costs no extra memory beyond the cache. Returns how many chunks were fetched.
    pub async fn stream_claimed(&self, claim: Claim) -> Result<u64> {
        let Claim {
            key,
            first,
            last,
            object_bytes,
        } = claim;
        let result = self.stream_run(&key, first, last, object_bytes).await;
        self.release(Claim {
            key,
            first,
            last,
            object_bytes,
        });
        result.map(|()| last - first)
    }

    async fn stream_run(&self, key: &str, first: u64, last: u64, object_bytes: u64) -> Result<()> {
        // One pending cache fetch per chunk, completed by the stream below: concurrent readers of
        // a chunk join its pending fetch.
        let mut pending: VecDeque<oneshot::Sender<Bytes>> = VecDeque::new();
        let mut fetches = Vec::new();
        for index in first..last {
            let (tx, rx) = oneshot::channel::<Bytes>();
            pending.push_back(tx);
            let cache = self.cache.clone();
            let chunk = chunk_key(key, index);
            fetches.push(tokio::spawn(async move {
                let _ = cache
                    .get_or_fetch(&chunk, move || async move {
                        rx.await.map_err(|_| object_store::Error::Generic {
                            store: "chunk cache",
                            source: "the read-ahead stream failed".into(),
                        })
                    })
                    .await;
            }));
        }
        self.metrics.cache_misses.inc_by(last - first);
        let streamed = self.fill(key, first, last, object_bytes, pending).await;
        // Every chunk is cached (or its fetch failed) before the run is released.
        for fetch in fetches {
            let _ = fetch.await;
        }
        streamed
    }

    /// Streams chunks `first..last` of `key`, sending each to the next of `pending`.
    async fn fill(
        &self,
        key: &str,
        first: u64,
        last: u64,
        object_bytes: u64,
        mut pending: VecDeque<oneshot::Sender<Bytes>>,
    ) -> Result<()> {
        let start = first * self.chunk_bytes;
        let end = (last * self.chunk_bytes).min(object_bytes);
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let mut stream = self
            .store
            .get_opts(&Path::from(key), options)
            .await
            .map_err(|e| LogError::object_store(key, e))?
            .into_stream();
        let mut position = start;
        let mut buffer = BytesMut::new();
        while let Some(piece) = stream.next().await {
            let mut piece = piece.map_err(|e| LogError::object_store(key, e))?;
            while !piece.is_empty() {
                let chunk_end = ((position / self.chunk_bytes + 1) * self.chunk_bytes).min(end);
                let need = (chunk_end - position) as usize - buffer.len();
                let take = piece.split_to(need.min(piece.len()));
                let complete = if buffer.is_empty() && take.len() == need {
                    take
                } else {
                    buffer.extend_from_slice(&take);
                    if buffer.len() < (chunk_end - position) as usize {
                        continue;
                    }
                    buffer.split().freeze()
                };
                position = chunk_end;
                if let Some(tx) = pending.pop_front() {
                    let _ = tx.send(complete);
                }
            }
        }
        if position < end {
            return Err(LogError::CorruptRemote {
                key: key.to_string(),
                reason: format!("the object ended at {position}, before {end}"),
            });
        }
        Ok(())
    }

    /// Bytes `range` of the object `key`, assembled from cached chunks; a miss fetches up to
    /// `span` chunks at once (see [`ChunkCache::chunk`]).
    pub async fn read(
        &self,
        key: &str,
        object_bytes: u64,
        range: Range<u64>,
        span: u64,
    ) -> Result<Bytes> {
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
            let chunk = self.chunk(key, first, object_bytes, span).await?;
            let offset = first * self.chunk_bytes;
            return Ok(chunk.slice((range.start - offset) as usize..(range.end - offset) as usize));
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for index in first..=last {
            let chunk = self.chunk(key, index, object_bytes, span).await?;
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
                .read("obj", 50_000, range.clone(), 1)
                .await
                .expect("read");
            assert_eq!(
                &got[..],
                &data[range.start as usize..range.end as usize],
                "{range:?}"
            );
        }
        let misses = cache.metrics.cache_misses.get();
        cache
            .read("obj", 50_000, 100..30_000, 1)
            .await
            .expect("again");
        assert_eq!(
            cache.metrics.cache_misses.get(),
            misses,
            "a second read is served from the cache"
        );
        assert!(cache.metrics.cache_hits.get() > 0);
        assert!(cache.read("obj", 50_000, 0..50_001, 1).await.is_err());
        assert!(cache.read("missing", 10, 0..5, 1).await.is_err());
    }

    /// A cache of 4 KiB chunks over a 40,000-byte object "obj", with request counters.
    async fn counted_cache(dir: &std::path::Path) -> (ChunkCache, Vec<u8>, TieringMetrics) {
        let metrics = TieringMetrics::default();
        let store: Arc<dyn ObjectStore> = Arc::new(super::super::store::HookedStore::new(
            Arc::new(InMemory::new()),
            Arc::new(metrics.clone()),
        ));
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        store
            .put(&Path::from("obj"), PutPayload::from(data.clone()))
            .await
            .expect("put");
        (test_cache(dir, store, 4096).await, data, metrics)
    }

    fn get_count(metrics: &TieringMetrics) -> u64 {
        metrics
            .object_store_requests
            .get_or_create(&super::super::metrics::OperationLabels {
                operation: "GET".into(),
            })
            .get()
    }

    #[tokio::test]
    async fn a_miss_fetches_a_span_of_chunks_in_one_get() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, data, metrics) = counted_cache(dir.path()).await;
        let gets = || get_count(&metrics);
        // Chunks 0..4 in one GET; reading them all back costs nothing more.
        let first = cache.read("obj", 40_000, 0..100, 4).await.expect("read");
        assert_eq!(&first[..], &data[..100]);
        assert_eq!((gets(), cache.metrics.cache_misses.get()), (1, 4));
        let four = cache.read("obj", 40_000, 0..16_384, 4).await.expect("read");
        assert_eq!(&four[..], &data[..16_384]);
        assert_eq!(gets(), 1, "the span was cached whole");
        // A span stops at the object's end (chunk 9 is the last, 3,136 bytes).
        let tail = cache
            .read("obj", 40_000, 32_768..40_000, 8)
            .await
            .expect("tail");
        assert_eq!(&tail[..], &data[32_768..]);
        assert_eq!(gets(), 2);
    }

    /// Claims what is free in `first..last` and streams it, as the reader's read-ahead does.
    async fn stream(
        cache: &ChunkCache,
        key: &str,
        first: u64,
        last: u64,
        size: u64,
    ) -> Result<u64> {
        match cache.claim(key, first, last, size) {
            Some(claim) => cache.stream_claimed(claim).await,
            None => Ok(0),
        }
    }

    #[tokio::test]
    async fn a_read_ahead_stream_caches_every_chunk_with_one_get() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, data, metrics) = counted_cache(dir.path()).await;
        let gets = || get_count(&metrics);
        cache.chunk("obj", 2, 40_000, 1).await.expect("chunk 2");
        // A run stops at a cached chunk: chunks 0 and 1, then (skipping the cached chunk 2)
        // 3 to the end, one GET each; then nothing is left to fetch.
        assert_eq!(
            stream(&cache, "obj", 0, 100, 40_000).await.expect("stream"),
            2
        );
        assert_eq!(
            stream(&cache, "obj", 0, 100, 40_000).await.expect("stream"),
            7
        );
        assert_eq!(
            stream(&cache, "obj", 0, 100, 40_000).await.expect("stream"),
            0
        );
        assert_eq!(gets(), 3);
        let all = cache.read("obj", 40_000, 0..40_000, 1).await.expect("read");
        assert_eq!(&all[..], &data[..]);
        assert_eq!(gets(), 3, "everything was cached by the streams");
        assert!(stream(&cache, "missing", 0, 4, 40_000).await.is_err());
    }

    #[tokio::test]
    async fn claimed_chunks_are_fetched_once_and_released_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, data, metrics) = counted_cache(dir.path()).await;
        let gets = || get_count(&metrics);
        // Chunks 0..4 claimed by one read-ahead: a later one claims only what follows.
        let first = cache.claim("obj", 0, 4, 40_000).expect("claim");
        assert_eq!(
            cache.ready_ahead("obj", 0, 10),
            4,
            "claimed counts as on its way"
        );
        let second = cache.claim("obj", 0, 8, 40_000).expect("claim the rest");
        assert!(
            cache.claim("obj", 0, 8, 40_000).is_none(),
            "nothing left to claim"
        );
        // A released claim can be claimed again; a streamed one is cached, not claimable.
        cache.release(second);
        let second = cache.claim("obj", 2, 8, 40_000).expect("claim again");
        assert_eq!(cache.stream_claimed(first).await.expect("stream"), 4);
        assert_eq!(cache.stream_claimed(second).await.expect("stream"), 4);
        assert_eq!(gets(), 2);
        assert!(cache.claim("obj", 0, 8, 40_000).is_none());
        let head = cache.read("obj", 40_000, 0..32_768, 1).await.expect("read");
        assert_eq!(&head[..], &data[..32_768]);
        assert_eq!(gets(), 2, "read from what the claims streamed");
    }
}
