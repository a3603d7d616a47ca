//! The chunk cache of the remote tier: fixed-size chunks of remote objects, fetched with ranged
//! GETs and kept in a `foyer` hybrid cache (memory, then local disk). Concurrent misses on one
//! chunk share one GET, and a miss may fetch a span of consecutive chunks in that one GET (a
//! sequential reader's next chunks): fewer, larger requests, which is what object stores bill and
//! serve best. A read-ahead claims the rest of a segment and streams it in one GET, paced by its
//! reader ([`super::pace`]).

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

use super::chunk_memory::ChunkBuffer;
use super::metrics::TieringMetrics;
use super::pace::{PaceGate, Paces};
use crate::error::{LogError, Result};

/// Chunks of one object claimed for a read-ahead GET ([`ChunkCache::claim`]), with the pace the
/// GET delivers them at.
#[derive(Debug)]
pub struct Claim {
    key: String,
    first: u64,
    last: u64,
    object_bytes: u64,
    gate: PaceGate,
    /// The pending cache fetch of each chunk, completed by the stream: a reader asking for a
    /// claimed chunk joins it. A chunk the stream does not deliver fails its fetch, and the
    /// reader fetches it itself.
    pending: VecDeque<oneshot::Sender<Bytes>>,
    fetches: Vec<tokio::task::JoinHandle<()>>,
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

/// Chunks evicted from memory that may wait to be written to disk, at least; foyer drops what
/// comes beyond (its default, 16 MiB, is four chunks: a replay faster than one disk write dropped
/// chunks that a second replay then fetched again).
const MIN_DISK_QUEUE_BYTES: usize = 64 << 20;

/// The disk tier's write queue: half the memory tier, room for twice the largest read-ahead
/// window (a quarter of it) evicted at once, so a burst of read-ahead does not drop chunks
/// (measured with 256 MiB segments and a 512 MiB memory tier: a 64 MiB queue lost chunks that the
/// cold replay fetched again, 20 GETs instead of 8, and the warm one 27 times). Chunks waiting
/// there, and foyer's write buffers of the same size, come on top of the memory tier.
fn disk_queue_bytes(memory_bytes: usize) -> usize {
    (memory_bytes / 2).max(MIN_DISK_QUEUE_BYTES)
}

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

/// The smallest chunk.
const MIN_CHUNK_BYTES: u64 = 4096;

/// How often a read that joined a read-ahead which ended before its chunk tries again.
const JOIN_RETRIES: usize = 3;

/// Chunks one shard of the memory tier holds at least. Each shard evicts on its own, and chunks
/// land in shards by hash: with foyer's default of 8 shards a 64 MiB tier of 4 MiB chunks held
/// two chunks a shard, so a read-ahead of a few chunks evicted its own (measured: the same ranges
/// fetched again and again). Chunks are large, so one lock per 64 of them is no contention.
const CHUNKS_PER_SHARD: u64 = 64;

/// How many shards the memory tier gets: at most foyer's default of 8.
fn memory_shards(memory_bytes: usize, chunk_bytes: u64) -> usize {
    let chunks = memory_bytes as u64 / chunk_bytes.max(1);
    (chunks / CHUNKS_PER_SHARD).clamp(1, 8) as usize
}

/// Whether files in `dir` open for direct I/O (tmpfs, for one, refuses it).
fn direct_io_works(dir: &std::path::Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let probe = dir.join(".direct-io-probe");
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok();
        let _ = std::fs::remove_file(&probe);
        opened
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
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
    /// How far each read-ahead stream may deliver.
    paces: Paces,
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
        // Direct I/O: a chunk written to the disk tier is not copied into the page cache too
        // (measured: that copy took 45% of the broker's CPU in a cold replay).
        let direct = direct_io_works(&settings.disk_dir);
        if !direct {
            tracing::info!(dir = %settings.disk_dir.display(), "the chunk cache's disk does not take direct I/O; it goes through the page cache");
        }
        let device = FsDeviceBuilder::new(&settings.disk_dir)
            .with_capacity(disk)
            .with_direct(direct)
            .build()
            .map_err(io)?;
        let cache = HybridCacheBuilder::new()
            .with_name("strata-chunks")
            .with_event_listener(Arc::new(EvictionCounter(metrics.cache_evictions.clone())))
            .memory(settings.memory_bytes.max(1))
            .with_shards(memory_shards(
                settings.memory_bytes,
                settings.chunk_bytes.max(MIN_CHUNK_BYTES),
            ))
            .with_weighter(|key: &String, value: &Bytes| key.len() + value.len())
            .storage()
            .with_engine_config(
                BlockEngineConfig::new(device)
                    .with_block_size(DISK_BLOCK_BYTES)
                    .with_buffer_pool_size(disk_queue_bytes(settings.memory_bytes))
                    .with_submit_queue_size_threshold(disk_queue_bytes(settings.memory_bytes)),
            )
            .build()
            .await
            .map_err(io)?;
        let chunk_bytes = settings.chunk_bytes.max(MIN_CHUNK_BYTES);
        Ok(ChunkCache {
            cache,
            store,
            chunk_bytes,
            memory_chunks: settings.memory_bytes as u64 / chunk_bytes,
            metrics,
            streaming: Mutex::new(HashSet::new()),
            paces: Paces::default(),
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
        let mut entry = self
            .fetch_span(key, index, span_end, Arc::clone(&fetched))
            .await;
        for _ in 0..JOIN_RETRIES {
            if entry.is_ok() || fetched.load(Ordering::Relaxed) {
                break;
            }
            // It joined a read-ahead that ended before this chunk (its reader jumped, it was held
            // back too long, or its GET failed): join the next one, moving it on, or fetch here.
            self.need(key, index, index);
            entry = self
                .fetch_span(key, index, span_end, Arc::clone(&fetched))
                .await;
        }
        if fetched.load(Ordering::Relaxed) {
            let chunks = (span_end - start).div_ceil(self.chunk_bytes);
            self.metrics.cache_misses.inc_by(chunks);
        } else {
            self.metrics.cache_hits.inc();
        }
        match entry {
            Ok(entry) => Ok(entry),
            Err(e) => Err(LogError::object_store(
                key,
                object_store::Error::Generic {
                    store: "chunk cache",
                    source: e.to_string().into(),
                },
            )),
        }
    }

    /// Chunk `index` of `key` from the cache, or, if nobody is fetching it, with one GET of the
    /// chunks `index..` up to byte `span_end` (the others cached too); `fetched` tells which.
    async fn fetch_span(
        &self,
        key: &str,
        index: u64,
        span_end: u64,
        fetched: Arc<AtomicBool>,
    ) -> std::result::Result<Bytes, foyer::Error> {
        let start = index * self.chunk_bytes;
        let end = (start + self.chunk_bytes).min(span_end);
        let store = Arc::clone(&self.store);
        let path = Path::from(key);
        let cache = self.cache.clone();
        let (chunk_bytes, object_key) = (self.chunk_bytes, key.to_string());
        let entry = self
            .cache
            .get_or_fetch(&chunk_key(key, index), move || async move {
                fetched.store(true, Ordering::Relaxed);
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
        entry.map(|e| e.value().clone())
    }

    /// Claims, at once, the rest of a segment for a read-ahead: from the first chunk in `window`
    /// that is neither cached nor claimed by another read-ahead, up to chunk `until` (or the first
    /// chunk taken before it), so that a read-ahead started later does not GET them too; `None`
    /// when the window holds nothing to fetch. The GET delivers only as far as the reader's
    /// window reaches (`window.end` for now; see [`super::pace`]). The claim is released by
    /// [`ChunkCache::stream_claimed`] or [`ChunkCache::release`].
    pub fn claim(
        &self,
        key: &str,
        window: Range<u64>,
        until: u64,
        object_bytes: u64,
    ) -> Option<Claim> {
        let until = until.min(object_bytes.div_ceil(self.chunk_bytes));
        let mut streaming = self
            .streaming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let busy = |i: u64| {
            let k = chunk_key(key, i);
            streaming.contains(&k) || self.cache.contains(&k)
        };
        let from = window.clone().find(|&i| !busy(i))?;
        let to = (from..until).find(|&i| busy(i)).unwrap_or(until);
        if from >= to {
            return None;
        }
        let mut pending = VecDeque::new();
        let mut fetches = Vec::new();
        for index in from..to {
            let chunk = chunk_key(key, index);
            // Registered now, not in the stream's task: a reader coming for the chunk before
            // that task runs must find the fetch to join, or it GETs the chunk a second time.
            let (tx, rx) = oneshot::channel::<Bytes>();
            let fetch = self.cache.get_or_fetch(&chunk, move || async move {
                rx.await.map_err(|_| object_store::Error::Generic {
                    store: "chunk cache",
                    source: "the read-ahead stream ended before this chunk".into(),
                })
            });
            pending.push_back(tx);
            fetches.push(tokio::spawn(async move {
                let _ = fetch.await;
            }));
            streaming.insert(chunk);
        }
        let reach = window.end - window.start;
        Some(Claim {
            key: key.to_string(),
            first: from,
            last: to,
            object_bytes,
            gate: self.paces.start(key, from..to, window.end, reach),
            pending,
            fetches,
        })
    }

    /// Loads the chunks of `chunks` that sit in the disk tier into memory, in the background, so
    /// a sequential reader finds them there instead of waiting for each disk read in turn.
    pub fn promote(&self, key: &str, chunks: Range<u64>) {
        for index in chunks {
            let chunk = chunk_key(key, index);
            if self.cache.memory().contains(&chunk) || !self.cache.contains(&chunk) {
                continue;
            }
            let load = self.cache.get(&chunk);
            tokio::spawn(async move {
                if let Err(e) = load.await {
                    tracing::debug!(error = %e, "loading a chunk from the disk cache failed");
                }
            });
        }
    }

    /// A reader's window now covers `window` of `key`: the read-ahead streams of those chunks
    /// may deliver that far.
    pub fn allow(&self, key: &str, window: Range<u64>) {
        self.paces.allow(key, window);
    }

    /// Releases a claim: its chunks not fetched by now are free to fetch again, once their
    /// pending fetches have failed (a claim made sooner would join those).
    pub async fn release(&self, mut claim: Claim) {
        claim.pending.clear();
        for fetch in claim.fetches.drain(..) {
            let _ = fetch.await;
        }
        let mut streaming = self
            .streaming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for i in claim.first..claim.last {
            streaming.remove(&chunk_key(&claim.key, i));
        }
        drop(streaming);
        self.paces.finish(claim.gate);
    }

    /// Read-ahead: fetches a claimed run with one streaming GET, caches each chunk the moment its
    /// bytes have arrived and its reader's window reaches it, and releases the claim. A reader
    /// asking for one of the chunks meanwhile waits for it instead of fetching it again. Only one
    /// chunk is buffered at a time, so a long read-ahead costs no memory beyond the cache.
    /// Returns how many chunks were delivered: fewer than claimed if the stream was stopped.
    pub async fn stream_claimed(&self, mut claim: Claim) -> Result<u64> {
        let pending = std::mem::take(&mut claim.pending);
        let streamed = self
            .fill(
                &claim.key,
                claim.first..claim.last,
                claim.object_bytes,
                pending,
                &mut claim.gate,
            )
            .await;
        if let Ok(delivered) = &streamed {
            self.metrics.cache_misses.inc_by(*delivered);
        }
        // Every chunk is cached (or its fetch failed) before the run is released.
        self.release(claim).await;
        streamed
    }

    /// Streams `chunks` of `key`, sending each to the next of `pending` when `gate` lets it;
    /// returns how many were sent (all, unless the gate stopped the stream).
    async fn fill(
        &self,
        key: &str,
        chunks: Range<u64>,
        object_bytes: u64,
        mut pending: VecDeque<oneshot::Sender<Bytes>>,
        gate: &mut PaceGate,
    ) -> Result<u64> {
        let start = chunks.start * self.chunk_bytes;
        let end = (chunks.end * self.chunk_bytes).min(object_bytes);
        // The whole object goes without a range: some stores (moto) answer a ranged GET by
        // copying the range out of the whole object.
        let whole = start == 0 && end == object_bytes;
        let options = GetOptions {
            range: (!whole).then_some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let mut stream = self
            .store
            .get_opts(&Path::from(key), options)
            .await
            .map_err(|e| LogError::object_store(key, e))?
            .into_stream();
        let mut position = start;
        let mut buffer: Option<ChunkBuffer> = None;
        while let Some(piece) = stream.next().await {
            let mut piece = piece.map_err(|e| LogError::object_store(key, e))?;
            let buffered = buffer.as_ref().map_or(0, ChunkBuffer::filled);
            if position + (buffered + piece.len()) as u64 > end {
                return Err(LogError::CorruptRemote {
                    key: key.to_string(),
                    reason: format!("the object runs past {end} bytes"),
                });
            }
            while !piece.is_empty() {
                let chunk_end = ((position / self.chunk_bytes + 1) * self.chunk_bytes).min(end);
                let chunk_len = (chunk_end - position) as usize;
                let complete = if buffer.is_none() && piece.len() >= chunk_len {
                    // A piece that holds the whole chunk is the chunk, without a copy.
                    piece.split_to(chunk_len)
                } else {
                    let mut chunk = buffer.take().unwrap_or_else(|| ChunkBuffer::new(chunk_len));
                    let _ = piece.split_to(chunk.fill(&piece));
                    if chunk.missing() > 0 {
                        buffer = Some(chunk);
                        continue;
                    }
                    chunk.freeze()
                };
                let index = position / self.chunk_bytes;
                if !gate.turn(index).await {
                    return Ok(index - chunks.start);
                }
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
        Ok(chunks.end - chunks.start)
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
        self.need(key, first, last);
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

    /// A reader needs chunks `first..=last` of `key`: a read-ahead that claimed the first of them
    /// not cached yet delivers them now (or ends, if the reader jumped past its window).
    fn need(&self, key: &str, first: u64, last: u64) {
        let waiting = {
            let streaming = self
                .streaming
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (first..=last).find(|&i| {
                let k = chunk_key(key, i);
                streaming.contains(&k) && !self.cache.contains(&k)
            })
        };
        if let Some(index) = waiting {
            self.paces.need(key, index, last);
        }
    }

    /// Flushes and closes the disk cache.
    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::warn!(error = %e, "closing the chunk cache failed");
        }
    }
}

#[cfg(test)]
mod tests;
