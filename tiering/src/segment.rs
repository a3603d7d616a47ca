//! One segment of a partition log: a file of record batches named after its base offset, with
//! its sparse offset and time indexes.
//!
//! Files: `<base offset, 20 digits>.log`, `.index`, `.timeindex`. Batches are appended whole and
//! never rewritten; only a follower's truncation cuts whole batches off the end. A segment is
//! *sealed* when the log rolls past it: its final indexes are written. Its data and indexes are
//! fsynced later, off the append path ([`DurableFiles`], see the log's recovery point). The active
//! segment's indexes live in memory; after an unclean shutdown every segment not yet known durable
//! is scanned, cut at the first torn or corrupt batch, and its indexes rebuilt.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use crate::error::{LogError, Result};
use crate::index::{OffsetIndex, TimeIndex};

/// File name stem of a segment: its base offset, zero-padded to 20 digits as Kafka does.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Removes the files of the segment at `stem` (its path without extension): the indexes first,
/// then the data.
pub fn delete_files(stem: &Path) -> Result<()> {
    for ext in ["index", "timeindex"] {
        match fs::remove_file(stem.with_extension(ext)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(stem.with_extension(ext), e)),
        }
    }
    let log_path = stem.with_extension("log");
    fs::remove_file(&log_path).map_err(|e| LogError::io(&log_path, e))
}

/// A segment of record batches on local disk.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    file: Arc<File>,
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
    index_interval: u64,
    created_at_ms: i64,
    /// Whether opening rebuilt the indexes from the data (their files are stale until written).
    rebuilt: bool,
}

/// The files of a sealed segment, fsynced by [`DurableFiles::sync`] outside the log's lock.
#[derive(Debug, Clone)]
pub struct DurableFiles {
    data: Arc<File>,
    stem: PathBuf,
}

impl DurableFiles {
    /// Fsyncs the segment's data and both index files. A segment deleted meanwhile (retention,
    /// compaction) is not an error: its data handle stays valid and its index files are gone.
    pub fn sync(&self) -> Result<()> {
        let log_path = self.stem.with_extension("log");
        self.data
            .sync_data()
            .map_err(|e| LogError::io(&log_path, e))?;
        for ext in ["index", "timeindex"] {
            let path = self.stem.with_extension(ext);
            match File::open(&path).and_then(|f| f.sync_all()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(&path, e)),
            }
        }
        Ok(())
    }
}

/// Where a read found its data: a byte range of one segment file.
#[derive(Debug, Clone)]
pub struct SegmentSlice {
    /// The segment file, shared so the read can happen outside the log's lock.
    pub file: Arc<File>,
    /// The file the slice belongs to, for error messages.
    pub path: PathBuf,
    /// Position of the first byte.
    pub position: u64,
    /// Bytes available from `position` up to the read's upper bound.
    pub available: u64,
}

impl SegmentSlice {
    /// Reads up to `max_bytes` of whole batches from the slice; when `min_one` is set and the first
    /// batch is larger than `max_bytes`, that whole batch is returned anyway (KIP-74).
    pub fn read(&self, max_bytes: usize, min_one: bool) -> Result<Bytes> {
        let want = (self.available as usize).min(max_bytes.max(LOG_OVERHEAD));
        let mut buf = vec![0u8; want];
        self.file
            .read_exact_at(&mut buf, self.position)
            .map_err(|e| LogError::io(&self.path, e))?;
        let mut end = 0;
        while end + LOG_OVERHEAD <= buf.len() {
            let size = batch_size_at(&buf[end..]);
            if end + size > buf.len() {
                break;
            }
            end += size;
        }
        if end == 0 && min_one && buf.len() >= LOG_OVERHEAD {
            let size = batch_size_at(&buf);
            if size as u64 <= self.available {
                let mut whole = vec![0u8; size];
                self.file
                    .read_exact_at(&mut whole, self.position)
                    .map_err(|e| LogError::io(&self.path, e))?;
                return Ok(Bytes::from(whole));
            }
        }
        buf.truncate(end);
        Ok(Bytes::from(buf))
    }
}

fn batch_size_at(bytes: &[u8]) -> usize {
    let length = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    LOG_OVERHEAD + length.max(0) as usize
}

impl Segment {
    /// Creates an empty segment in `dir`, indexing every `index_interval` bytes.
    pub fn create(dir: &Path, base_offset: i64, index_interval: u64, now_ms: i64) -> Result<Self> {
        let log_path = dir.join(format!("{}.log", file_stem(base_offset)));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| LogError::io(&log_path, e))?;
        Ok(Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index_entry: 0,
            index_interval,
            created_at_ms: now_ms,
            rebuilt: false,
        })
    }

    /// Opens an existing segment. With `recover`, every batch is checked and the file is cut at
    /// the first torn or corrupt one; otherwise indexes are loaded and rebuilt only if unusable.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        recover: bool,
        index_interval: u64,
        now_ms: i64,
    ) -> Result<Self> {
        let stem = file_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| LogError::io(&log_path, e))?;
        let size = file
            .metadata()
            .map_err(|e| LogError::io(&log_path, e))?
            .len();
        let mut segment = Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index_entry: 0,
            index_interval,
            created_at_ms: now_ms,
            rebuilt: false,
        };
        let indexes = if recover {
            None
        } else {
            OffsetIndex::load(&dir.join(format!("{stem}.index")), size)
                .zip(TimeIndex::load(&dir.join(format!("{stem}.timeindex"))))
        };
        match indexes {
            Some((offsets, times)) => segment.adopt_indexes(offsets, times)?,
            None => segment.rebuild()?,
        }
        Ok(segment)
    }

    /// Uses loaded indexes, finding the segment's end offset by scanning the batch headers after
    /// the last index entry.
    fn adopt_indexes(&mut self, offsets: OffsetIndex, times: TimeIndex) -> Result<()> {
        let (_, position) = offsets.lookup(u32::MAX);
        let mut next_offset = self.base_offset;
        let end = scan(
            &self.file,
            &self.log_path,
            u64::from(position),
            false,
            |_, h| {
                next_offset = h.next_offset();
            },
        )?;
        if end != self.size || (self.size > 0 && times.max_timestamp().is_none()) {
            // The index promised whole batches up to the end, and sealing always leaves a time
            // index entry: anything else means a file is stale (torn or empty after a crash).
            return self.rebuild();
        }
        self.next_offset = next_offset;
        if let Some(t) = times.max_timestamp() {
            self.max_timestamp = t;
            self.offset_of_max_timestamp = self.base_offset + i64::from(times.lookup(i64::MAX));
        }
        self.offset_index = offsets;
        self.time_index = times;
        Ok(())
    }

    /// Scans every batch, validating CRCs, rebuilding both indexes, and truncating the file after
    /// the last valid batch.
    fn rebuild(&mut self) -> Result<()> {
        self.rebuilt = true;
        self.offset_index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.bytes_since_index_entry = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        let file = Arc::clone(&self.file);
        let path = self.log_path.clone();
        let mut entries = Vec::new();
        let valid_end = scan(&file, &path, 0, true, |pos, h| entries.push((pos, *h)))?;
        self.size = 0;
        for (pos, h) in entries {
            self.track(pos, &h);
            self.size = pos + h.total_size() as u64;
        }
        if valid_end < file.metadata().map_err(|e| LogError::io(&path, e))?.len() {
            tracing::warn!(
                segment = %path.display(),
                valid_bytes = valid_end,
                "truncating a torn or corrupt tail of the segment"
            );
            file.set_len(valid_end)
                .map_err(|e| LogError::io(&path, e))?;
        }
        Ok(())
    }

    /// Updates the in-memory state after the batch `h` was placed at `position`.
    fn track(&mut self, position: u64, h: &BatchHeader) {
        let relative = (h.base_offset - self.base_offset) as u32;
        if self.bytes_since_index_entry >= self.index_interval {
            self.offset_index.push(relative, position as u32);
            self.time_index
                .push(self.max_timestamp.max(h.max_timestamp), relative);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += h.total_size() as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
        self.next_offset = h.next_offset();
    }

    /// Appends one stamped batch: its rewritten header and its unchanged body.
    pub fn append(
        &mut self,
        header_bytes: &[u8; HEADER_SIZE],
        body: &[u8],
        header: &BatchHeader,
    ) -> Result<()> {
        let position = self.size;
        let mut file = &*self.file;
        file.seek(SeekFrom::Start(position))
            .map_err(|e| LogError::io(&self.log_path, e))?;
        file.write_all(header_bytes)
            .map_err(|e| LogError::io(&self.log_path, e))?;
        file.write_all(body)
            .map_err(|e| LogError::io(&self.log_path, e))?;
        self.track(position, header);
        self.size = position + (HEADER_SIZE + body.len()) as u64;
        Ok(())
    }

    /// Finds where to start reading for `offset`: the position of the batch that contains it
    /// (or the first batch after it), limited to data below `upper_bound`. The slice covers whole
    /// batches up to `max_bytes` (at least one): headers past that are not read, so a read from
    /// the start of a large segment costs what it returns, not the segment's batch count.
    pub fn slice_from(
        &self,
        offset: i64,
        upper_bound: i64,
        max_bytes: usize,
    ) -> Result<Option<SegmentSlice>> {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let (_, from) = self.offset_index.lookup(relative);
        let mut start = None;
        let mut end = u64::from(from);
        let path = &self.log_path;
        scan_until(&self.file, path, u64::from(from), self.size, |pos, h| {
            if h.base_offset >= upper_bound {
                return false;
            }
            if start.is_none() && h.last_offset() >= offset {
                start = Some(pos);
            }
            end = pos + h.total_size() as u64;
            start.is_none_or(|s| end - s < max_bytes as u64)
        })?;
        Ok(start.map(|position| SegmentSlice {
            file: Arc::clone(&self.file),
            path: self.log_path.clone(),
            position,
            available: end - position,
        }))
    }

    /// Returns the first batch whose max timestamp is at or after `timestamp`, skipping batches
    /// that end below `min_offset`.
    pub fn batch_at_timestamp(&self, timestamp: i64, min_offset: i64) -> Result<Option<Bytes>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let relative = self.time_index.lookup(timestamp);
        let (_, from) = self.offset_index.lookup(relative);
        let mut found = None;
        scan_until(
            &self.file,
            &self.log_path,
            u64::from(from),
            self.size,
            |pos, h| {
                if h.max_timestamp >= timestamp && h.last_offset() >= min_offset {
                    found = Some((pos, h.total_size()));
                    return false;
                }
                true
            },
        )?;
        let Some((pos, size)) = found else {
            return Ok(None);
        };
        let mut buf = vec![0u8; size];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(|e| LogError::io(&self.log_path, e))?;
        Ok(Some(Bytes::from(buf)))
    }

    /// The position and header of the first batch whose last offset is at or after `offset`: the
    /// batch holding `offset`, or the first one after it.
    fn batch_ending_at_or_after(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let (_, from) = self.offset_index.lookup(relative);
        let mut found = None;
        scan_until(
            &self.file,
            &self.log_path,
            u64::from(from),
            self.size,
            |pos, h| {
                if h.last_offset() >= offset {
                    found = Some((pos, *h));
                    return false;
                }
                true
            },
        )?;
        Ok(found)
    }

    /// Base offset of the batch holding `offset` (or of the first batch after it), `None` when
    /// every batch ends below `offset`: where [`Segment::truncate_to`] would end the segment.
    pub fn batch_start(&self, offset: i64) -> Result<Option<i64>> {
        Ok(self
            .batch_ending_at_or_after(offset)?
            .map(|(_, h)| h.base_offset))
    }

    /// Removes every batch whose last offset is at or after `offset` (whole batches: one holding
    /// `offset` goes too), cuts both indexes, fsyncs the file and rewrites the index files. The
    /// segment can then take appends again, even if it had been sealed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let Some((position, cut)) = self.batch_ending_at_or_after(offset)? else {
            return Ok(());
        };
        self.file
            .set_len(position)
            .map_err(|e| LogError::io(&self.log_path, e))?;
        self.size = position;
        self.offset_index
            .truncate_to_position(u32::try_from(position).unwrap_or(u32::MAX));
        self.time_index
            .truncate_to_offset((cut.base_offset - self.base_offset) as u32);
        // The indexes now describe the batches up to their last entries; replay the few batches
        // after the last offset index entry to restore the end offset and the largest timestamp.
        self.next_offset = self.base_offset;
        self.bytes_since_index_entry = 0;
        self.max_timestamp = self.time_index.max_timestamp().unwrap_or(-1);
        self.offset_of_max_timestamp =
            self.base_offset + i64::from(self.time_index.lookup(i64::MAX));
        let (_, from) = self.offset_index.lookup(u32::MAX);
        let mut tail = Vec::new();
        scan_until(
            &self.file,
            &self.log_path,
            u64::from(from),
            self.size,
            |pos, h| {
                tail.push((pos, *h));
                true
            },
        )?;
        for (pos, h) in tail {
            self.track(pos, &h);
        }
        self.flush()?;
        self.write_indexes()
    }

    /// Calls `f` with the header of every batch in the segment, in order.
    pub fn for_each_header(&self, f: impl FnMut(&BatchHeader)) -> Result<()> {
        let mut f = f;
        scan_until(&self.file, &self.log_path, 0, self.size, |_, h| {
            f(h);
            true
        })
    }

    /// Whether opening rebuilt the indexes from the data: a sealed segment's index files are then
    /// stale until [`Segment::seal`] writes them again.
    pub fn rebuilt(&self) -> bool {
        self.rebuilt
    }

    /// Writes the indexes with the final maximum timestamp; nothing more is appended after this.
    /// Nothing is fsynced: [`Segment::durable_files`] does that later, off the append path.
    pub fn seal(&mut self) -> Result<()> {
        let relative = (self.offset_of_max_timestamp - self.base_offset) as u32;
        self.time_index.push(self.max_timestamp, relative);
        self.write_indexes()
    }

    /// The segment's files, to fsync without holding the log's lock.
    pub fn durable_files(&self) -> DurableFiles {
        DurableFiles {
            data: Arc::clone(&self.file),
            stem: self.log_path.with_extension(""),
        }
    }

    /// The segment's data file and its path, for advice to the kernel outside the log's lock.
    pub fn data_file(&self) -> (Arc<File>, PathBuf) {
        (Arc::clone(&self.file), self.log_path.clone())
    }

    /// Writes both index files next to the segment.
    pub fn write_indexes(&self) -> Result<()> {
        let stem = self.log_path.with_extension("");
        self.offset_index.write(&stem.with_extension("index"))?;
        self.time_index.write(&stem.with_extension("timeindex"))
    }

    /// Fsyncs the segment's data.
    pub fn flush(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io(&self.log_path, e))
    }

    /// Removes the segment's files.
    pub fn delete(&self) -> Result<()> {
        delete_files(&self.log_path.with_extension(""))
    }

    /// Base timestamp of the first batch, or -1 when empty.
    pub fn first_timestamp(&self) -> Result<i64> {
        if self.size < HEADER_SIZE as u64 {
            return Ok(-1);
        }
        let mut head = [0u8; HEADER_SIZE];
        self.file
            .read_exact_at(&mut head, 0)
            .map_err(|e| LogError::io(&self.log_path, e))?;
        Ok(BatchHeader::parse(&head)?.base_timestamp)
    }

    /// Offset of the first batch (the file name).
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the last batch; equal to the base offset when empty.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Size of the segment file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Largest record timestamp in the segment, or -1 when empty.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// When the segment was created or opened, for `segment.ms`.
    pub fn created_at_ms(&self) -> i64 {
        self.created_at_ms
    }

    /// Whether the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

/// Reads batches from `from` to the end of the file and calls `f(position, header)` for each whole
/// (and, with `check_crc`, valid) batch. Returns the position after the last good batch.
fn scan(
    file: &File,
    path: &Path,
    from: u64,
    check_crc: bool,
    mut f: impl FnMut(u64, &BatchHeader),
) -> Result<u64> {
    let file_len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader
        .seek(SeekFrom::Start(from))
        .map_err(|e| LogError::io(path, e))?;
    let mut pos = from;
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; HEADER_SIZE];
        if read_full(&mut reader, &mut head).map_err(|e| LogError::io(path, e))? < HEADER_SIZE {
            return Ok(pos);
        }
        let Ok(header) = BatchHeader::parse(&head) else {
            return Ok(pos);
        };
        let size = header.total_size();
        // A torn tail may claim any length: check it against the file before allocating it.
        if size < HEADER_SIZE || header.magic != batch::MAGIC_V2 || pos + size as u64 > file_len {
            return Ok(pos);
        }
        buf.clear();
        buf.extend_from_slice(&head);
        buf.resize(size, 0);
        if read_full(&mut reader, &mut buf[HEADER_SIZE..]).map_err(|e| LogError::io(path, e))?
            < size - HEADER_SIZE
        {
            return Ok(pos);
        }
        if check_crc && batch::validate_batch(&buf).is_err() {
            return Ok(pos);
        }
        f(pos, &header);
        pos += size as u64;
    }
}

/// Walks batch headers from `from` to `end` with positional reads (no data copied), calling `f`
/// until it returns false.
fn scan_until(
    file: &File,
    path: &Path,
    from: u64,
    end: u64,
    mut f: impl FnMut(u64, &BatchHeader) -> bool,
) -> Result<()> {
    let mut pos = from;
    let mut head = [0u8; HEADER_SIZE];
    while pos + HEADER_SIZE as u64 <= end {
        file.read_exact_at(&mut head, pos)
            .map_err(|e| LogError::io(path, e))?;
        let header = BatchHeader::parse(&head)?;
        if header.total_size() < HEADER_SIZE {
            return Err(LogError::corrupt(format!(
                "batch at position {pos} of {} has length {}",
                path.display(),
                header.batch_length
            )));
        }
        if !f(pos, &header) {
            return Ok(());
        }
        pos += header.total_size() as u64;
    }
    Ok(())
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
