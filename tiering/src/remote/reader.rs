//! Reads from the remote tier: locate the batch holding an offset (or a timestamp) through the
//! manifest and the segment's own indexes, read whole batches through the chunk cache, check their
//! CRCs, and prefetch what a sequential reader will ask for next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::cache::ChunkCache;
use super::manifest::{Manifest, RemoteSegment};
use super::metrics::TieringMetrics;
use crate::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use crate::error::{LogError, Result};
use crate::index::{OffsetIndex, TimeIndex};

/// Parsed indexes kept per object; a bounded map, since the chunks under it are cached anyway.
const PARSED_INDEXES: usize = 256;

/// How far the read-ahead window of a sequential reader grows, as a multiple of
/// `read_ahead_chunks`.
const MAX_WINDOW_FACTOR: u64 = 16;

/// Where a partition's last remote read started and ended, and its read-ahead window.
#[derive(Debug)]
struct ReadState {
    key: String,
    start: u64,
    end: u64,
    window: u64,
}

/// The parsed offset and time indexes of one remote segment.
type SegmentIndexes = (Arc<OffsetIndex>, Arc<TimeIndex>);

/// Reads record batches from segments in object storage.
#[derive(Debug)]
pub struct RemoteReader {
    cache: Arc<ChunkCache>,
    read_ahead_chunks: u64,
    indexes: Mutex<HashMap<String, SegmentIndexes>>,
    windows: Mutex<HashMap<(uuid::Uuid, i32), ReadState>>,
    metrics: TieringMetrics,
}

fn corrupt(segment: &RemoteSegment, reason: impl Into<String>) -> LogError {
    LogError::CorruptRemote {
        key: segment.key.clone(),
        reason: reason.into(),
    }
}

impl RemoteReader {
    /// A reader over `cache` whose read-ahead starts at `read_ahead_chunks` chunks after a read
    /// and grows while a partition is read sequentially.
    pub fn new(cache: Arc<ChunkCache>, read_ahead_chunks: u64, metrics: TieringMetrics) -> Self {
        RemoteReader {
            cache,
            read_ahead_chunks,
            indexes: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Reads whole batches starting with the one holding `offset`, at most `max_bytes` (at least
    /// one batch with `min_one`), from the one segment that holds it. Empty when the manifest holds
    /// nothing at or after `offset`.
    pub async fn read(
        &self,
        manifest: &Manifest,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Bytes> {
        let Some(segment) = manifest.find(offset) else {
            return Ok(Bytes::new());
        };
        let (offsets, _) = self.indexes(segment).await?;
        let relative = (offset - segment.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let (_, from) = offsets.lookup(relative);
        let Some(start) = self
            .scan(segment, u64::from(from), |h| h.last_offset() >= offset)
            .await?
        else {
            return Ok(Bytes::new());
        };
        let available = segment.log_bytes - start;
        let want = (max_bytes as u64).min(available);
        let mut data = self
            .cache
            .read(
                &segment.key,
                segment.object_bytes(),
                start..start + want,
                self.read_ahead_chunks,
            )
            .await?;
        let mut end = whole_batches(&data);
        if end == 0 && min_one {
            let header = self.header_at(segment, start).await?;
            let size = header.total_size() as u64;
            if size > available {
                return Err(corrupt(
                    segment,
                    format!("batch at {start} runs past the segment's end"),
                ));
            }
            data = self
                .cache
                .read(
                    &segment.key,
                    segment.object_bytes(),
                    start..start + size,
                    self.read_ahead_chunks,
                )
                .await?;
            end = data.len();
        }
        let data = data.slice(..end);
        for range in batch::split_batches(&data)? {
            batch::validate_batch(&data[range]).map_err(|e| corrupt(segment, e.to_string()))?;
        }
        self.metrics.remote_fetch_requests.inc();
        self.metrics.remote_fetch_bytes.inc_by(data.len() as u64);
        self.prefetch(manifest, segment, start, start + data.len() as u64);
        Ok(data)
    }

    /// Flushes and closes the chunk cache.
    pub async fn close(&self) {
        self.cache.close().await;
    }

    /// The first batch whose records reach `timestamp`, at or above `min_offset`.
    pub async fn batch_at_timestamp(
        &self,
        manifest: &Manifest,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<Bytes>> {
        for segment in manifest
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= timestamp && s.next_offset > min_offset)
        {
            let (offsets, times) = self.indexes(segment).await?;
            let (_, from) = offsets.lookup(times.lookup(timestamp));
            let found = self
                .scan(segment, u64::from(from), |h| {
                    h.max_timestamp >= timestamp && h.last_offset() >= min_offset
                })
                .await?;
            if let Some(position) = found {
                let header = self.header_at(segment, position).await?;
                let end = position + header.total_size() as u64;
                let batch = self
                    .cache
                    .read(&segment.key, segment.object_bytes(), position..end, 1)
                    .await?;
                batch::validate_batch(&batch).map_err(|e| corrupt(segment, e.to_string()))?;
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    async fn header_at(&self, segment: &RemoteSegment, position: u64) -> Result<BatchHeader> {
        if position + HEADER_SIZE as u64 > segment.log_bytes {
            return Err(corrupt(
                segment,
                format!("no batch header fits at {position}"),
            ));
        }
        let bytes = self
            .cache
            .read(
                &segment.key,
                segment.object_bytes(),
                position..position + HEADER_SIZE as u64,
                self.read_ahead_chunks,
            )
            .await?;
        let header = BatchHeader::parse(&bytes)?;
        if header.total_size() < HEADER_SIZE {
            return Err(corrupt(
                segment,
                format!("batch at {position} has length {}", header.batch_length),
            ));
        }
        Ok(header)
    }

    /// Walks batch headers from `position` to the segment's end; returns the position of the first
    /// batch for which `stop` holds.
    async fn scan(
        &self,
        segment: &RemoteSegment,
        mut position: u64,
        stop: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<u64>> {
        while position < segment.log_bytes {
            let header = self.header_at(segment, position).await?;
            if stop(&header) {
                return Ok(Some(position));
            }
            position += header.total_size() as u64;
        }
        Ok(None)
    }

    async fn indexes(&self, segment: &RemoteSegment) -> Result<SegmentIndexes> {
        if let Some(found) = self
            .indexes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&segment.key)
        {
            return Ok(found.clone());
        }
        let object = segment.object_bytes();
        let offsets_end = segment.log_bytes + segment.offset_index_bytes;
        let offset_bytes = self
            .cache
            .read(&segment.key, object, segment.log_bytes..offsets_end, 1)
            .await?;
        let time_bytes = self
            .cache
            .read(&segment.key, object, offsets_end..object, 1)
            .await?;
        let offsets = OffsetIndex::from_bytes(&offset_bytes, segment.log_bytes)
            .ok_or_else(|| corrupt(segment, "the offset index is malformed"))?;
        let times = TimeIndex::from_bytes(&time_bytes)
            .ok_or_else(|| corrupt(segment, "the time index is malformed"))?;
        let parsed = (Arc::new(offsets), Arc::new(times));
        let mut map = self.indexes.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= PARSED_INDEXES {
            map.clear();
        }
        map.insert(segment.key.clone(), parsed.clone());
        Ok(parsed)
    }

    /// The read-ahead window of a partition after a read of `start..end` in `segment`: it starts
    /// at `read_ahead_chunks`, doubles while reads follow each other (up to
    /// [`MAX_WINDOW_FACTOR`] times that), and starts over after a jump.
    fn window(&self, manifest: &Manifest, segment: &RemoteSegment, start: u64, end: u64) -> u64 {
        let base = self.read_ahead_chunks.max(1);
        // Read-ahead beyond half the memory tier evicts its own chunks before the reader gets
        // there (measured: the same object fetched again in 4 MiB pieces, cold replay halved).
        let max = (base * MAX_WINDOW_FACTOR)
            .min(self.cache.memory_chunks() / 2)
            .max(base);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= PARSED_INDEXES {
            windows.clear();
        }
        let state = windows
            .entry((manifest.topic_id, manifest.partition))
            .or_insert_with(|| ReadState {
                key: String::new(),
                start: u64::MAX,
                end: u64::MAX,
                window: base,
            });
        let same = state.key == segment.key;
        let follows = (same && state.end == start) || (!same && start == 0);
        // A fetch that reads the same place again (it waited for more data, or its response was
        // lost) is still the same sequential reader: only a jump elsewhere starts over.
        let rereads = same && (state.start..state.end).contains(&start);
        state.window = if follows {
            (state.window * 2).min(max)
        } else if rereads {
            state.window
        } else {
            base
        };
        state.key = segment.key.clone();
        state.start = start;
        state.end = end;
        state.window
    }

    /// Streams the chunks after `end` into the cache in the background, continuing into the next
    /// segment, as far as the partition's read-ahead window reaches.
    fn prefetch(&self, manifest: &Manifest, segment: &RemoteSegment, start: u64, end: u64) {
        let chunk = self.cache.chunk_bytes();
        let mut remaining = self.window(manifest, segment, start, end);
        let mut runs = Vec::new();
        let mut current = segment;
        let mut index = end / chunk;
        while remaining > 0 {
            let log_chunks = current.log_bytes.div_ceil(chunk);
            if index < log_chunks {
                let n = remaining.min(log_chunks - index);
                runs.push((
                    current.key.clone(),
                    index,
                    index + n,
                    current.object_bytes(),
                ));
                remaining -= n;
                index += n;
            } else {
                let Some(next) = manifest.next_after(&current.key) else {
                    break;
                };
                current = next;
                index = 0;
            }
        }
        // Refill in large steps: nothing while half the window ahead is fetched or on its way,
        // so each GET is long (object stores charge, and some serve, per request).
        // Ready chunks are counted across segments: counting only the current one refilled after
        // every read near a segment's end, one read's worth at a time (measured: 8 MiB GETs).
        let window: u64 = runs.iter().map(|(_, first, last, _)| last - first).sum();
        let mut ready = 0;
        for (key, first, last, _) in &runs {
            let run = self.cache.ready_ahead(key, *first, last - first);
            ready += run;
            if run < last - first {
                break;
            }
        }
        if runs.is_empty() || ready * 2 >= window {
            return;
        }
        // Claimed now, streamed in the background: the next read's prefetch, which may come
        // before the first GET ends, finds the whole window taken and does not GET it again.
        let claims: Vec<_> = runs
            .into_iter()
            .filter_map(|(key, first, last, size)| self.cache.claim(&key, first, last, size))
            .collect();
        if claims.is_empty() {
            return;
        }
        let cache = Arc::clone(&self.cache);
        tokio::spawn(async move {
            let mut claims = claims.into_iter();
            for claim in claims.by_ref() {
                if let Err(e) = cache.stream_claimed(claim).await {
                    tracing::debug!(error = %e, "read-ahead failed");
                    break;
                }
            }
            // After a failure, the claims not streamed are released for the reader to fetch.
            for claim in claims {
                cache.release(claim);
            }
        });
    }
}

/// Length of the longest prefix of `data` made of whole batches.
fn whole_batches(data: &[u8]) -> usize {
    let mut end = 0;
    while end + LOG_OVERHEAD <= data.len() {
        let length =
            i32::from_be_bytes([data[end + 8], data[end + 9], data[end + 10], data[end + 11]]);
        let size = LOG_OVERHEAD + length.max(0) as usize;
        if size < HEADER_SIZE || end + size > data.len() {
            break;
        }
        end += size;
    }
    end
}
