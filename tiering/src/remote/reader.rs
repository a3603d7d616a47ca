//! Reads from the remote tier: locate the batch holding an offset (or a timestamp) through the
//! manifest and the segment's own indexes, read whole batches through the chunk cache, check their
//! CRCs, and prefetch what a sequential reader will ask for next. A sequential reader goes on from
//! where its last read ended without consulting the indexes (they sit at the segment object's
//! end, where a read-ahead streaming the segment comes last).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::cache::{ChunkCache, Claim};
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

/// Where a partition's last remote read started and ended, the offsets asked for and after it,
/// and its read-ahead window.
#[derive(Debug)]
struct ReadState {
    key: String,
    start: u64,
    end: u64,
    offset: i64,
    next_offset: i64,
    window: u64,
}

/// A remote read just served: `start..end` of `segment`, asked for `offset`, ending before
/// `next_offset`.
struct Served<'a> {
    segment: &'a RemoteSegment,
    start: u64,
    end: u64,
    offset: i64,
    next_offset: i64,
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
        let from = match self.resume_position(manifest, segment, offset) {
            Some(position) => position,
            None if offset <= segment.base_offset => 0,
            None => {
                let (offsets, _) = self.indexes(segment).await?;
                let relative = (offset - segment.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
                u64::from(offsets.lookup(relative).1)
            }
        };
        self.stream_from(segment, from);
        let Some(start) = self
            .scan(segment, from, |h| h.last_offset() >= offset)
            .await?
        else {
            return Ok(Bytes::new());
        };
        let available = segment.log_bytes - start;
        let want = (max_bytes as u64).min(available);
        // Batches within the chunk holding `start` are served as a slice of it, while a range
        // over several chunks is copied together (measured: 12% of the broker's CPU in a warm
        // replay): a read ends at that chunk's end, or after the one batch that crosses it.
        let chunk = self.cache.chunk_bytes();
        let in_chunk = want.min((start / chunk + 1) * chunk - start);
        let mut data = self.read_range(segment, start..start + in_chunk).await?;
        let mut end = whole_batches(&data);
        if end == 0 && (min_one || in_chunk < want) {
            // The first batch runs past the chunk (or past `max_bytes`): that batch alone.
            let header = self.header_at(segment, start).await?;
            let size = header.total_size() as u64;
            if size > available {
                return Err(corrupt(
                    segment,
                    format!("batch at {start} runs past the segment's end"),
                ));
            }
            if size <= want || min_one {
                data = self.read_range(segment, start..start + size).await?;
                end = data.len();
            }
        }
        let data = data.slice(..end);
        let mut next_offset = offset;
        for range in batch::split_batches(&data)? {
            let batch = &data[range];
            let header =
                batch::validate_batch(batch).map_err(|e| corrupt(segment, e.to_string()))?;
            next_offset = header.next_offset();
        }
        self.metrics.remote_fetch_requests.inc();
        self.metrics.remote_fetch_bytes.inc_by(data.len() as u64);
        let served = Served {
            segment,
            start,
            end: start + data.len() as u64,
            offset,
            next_offset,
        };
        self.prefetch(manifest, &served);
        Ok(data)
    }

    async fn read_range(&self, segment: &RemoteSegment, range: Range<u64>) -> Result<Bytes> {
        self.cache
            .read(
                &segment.key,
                segment.object_bytes(),
                range,
                self.read_ahead_chunks,
            )
            .await
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

    /// Where the batch holding `offset` starts if the partition's last read in `segment` ended
    /// just before it, or asked for it too (a fetch that timed out while its read went on is
    /// asked again).
    fn resume_position(
        &self,
        manifest: &Manifest,
        segment: &RemoteSegment,
        offset: i64,
    ) -> Option<u64> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let state = windows.get(&(manifest.topic_id, manifest.partition))?;
        if state.key != segment.key {
            return None;
        }
        if state.next_offset == offset && state.end < segment.log_bytes {
            Some(state.end)
        } else {
            (state.offset == offset).then_some(state.start)
        }
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

    /// The read-ahead window of a partition after `served`: it starts at `read_ahead_chunks`,
    /// doubles while reads follow each other (up to [`MAX_WINDOW_FACTOR`] times that), and
    /// starts over after a jump.
    fn window(&self, manifest: &Manifest, served: &Served<'_>) -> u64 {
        let base = self.read_ahead_chunks.max(1);
        // A chunk read ahead waits longest unread, so LRU evicts it first: with a window of half
        // the memory tier, shards filled unevenly evicted read-ahead before the reader got there
        // (measured: the same chunks fetched again). A quarter leaves room.
        let max = (base * MAX_WINDOW_FACTOR)
            .min(self.cache.memory_chunks() / 4)
            .max(base);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let partition = (manifest.topic_id, manifest.partition);
        if windows.len() >= PARSED_INDEXES && !windows.contains_key(&partition) {
            // One partition's state makes room, not every partition's: a reader that loses its
            // state looks its position up in the index, which ends its read-ahead as a jump.
            if let Some(old) = windows.keys().next().copied() {
                windows.remove(&old);
            }
        }
        let state = windows.entry(partition).or_insert_with(|| ReadState {
            key: String::new(),
            start: u64::MAX,
            end: u64::MAX,
            offset: -1,
            next_offset: -1,
            window: base,
        });
        let (key, start) = (&served.segment.key, served.start);
        let same = state.key == *key;
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
        state.key.clone_from(key);
        state.start = start;
        state.end = served.end;
        state.offset = served.offset;
        state.next_offset = served.next_offset;
        state.window
    }

    /// A read about to start at `position` of `segment`: starts a read-ahead stream at the first
    /// chunk of the first window's worth from there that is neither cached nor streamed already,
    /// which the read then joins. A reader's first read of a segment would otherwise GET a span
    /// of its own before the read-ahead GETs the rest: two requests per segment where one does,
    /// and a store that serves a ranged GET at the cost of the whole object (moto) pays twice.
    fn stream_from(&self, segment: &RemoteSegment, position: u64) {
        let chunk = self.cache.chunk_bytes();
        let log_chunks = segment.log_bytes.div_ceil(chunk);
        let first = position / chunk;
        if first >= log_chunks {
            return;
        }
        let reach = (first + self.read_ahead_chunks.max(1)).min(log_chunks);
        if let Some(claim) = self.cache.claim(
            &segment.key,
            first..reach,
            log_chunks,
            segment.object_bytes(),
        ) {
            self.stream(claim);
        }
    }

    /// Streams a claimed run of chunks in the background.
    fn stream(&self, claim: Claim) {
        let cache = Arc::clone(&self.cache);
        tokio::spawn(async move {
            if let Err(e) = cache.stream_claimed(claim).await {
                tracing::debug!(error = %e, "read-ahead failed");
            }
        });
    }

    /// Read-ahead after `served`: for each segment the partition's window reaches into (it
    /// continues into the next segments), one GET of the rest of the segment, started once and
    /// delivering chunks only as far as the window reaches; each later read moves that limit on.
    /// Chunks of the window in the disk tier are loaded into memory.
    fn prefetch(&self, manifest: &Manifest, served: &Served<'_>) {
        let chunk = self.cache.chunk_bytes();
        let mut remaining = self.window(manifest, served);
        let mut current = served.segment;
        let mut index = served.end / chunk;
        while remaining > 0 {
            let log_chunks = current.log_bytes.div_ceil(chunk);
            if index >= log_chunks {
                let Some(next) = manifest.next_after(&current.key) else {
                    break;
                };
                current = next;
                index = 0;
                continue;
            }
            let reach = index + remaining.min(log_chunks - index);
            self.cache.allow(&current.key, index..reach);
            self.cache.promote(&current.key, index..reach);
            let claim = self.cache.claim(
                &current.key,
                index..reach,
                log_chunks,
                current.object_bytes(),
            );
            if let Some(claim) = claim {
                self.stream(claim);
            }
            remaining -= reach - index;
            index = reach;
        }
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
