//! The record batch (magic v2) header: parsing, validation and the fields the broker assigns.
//!
//! The log stores batches exactly as producers sent them; only the header fields that are outside
//! the CRC (base offset, partition leader epoch) and, for `LogAppendTime` topics, the timestamp
//! fields are rewritten. Records inside a batch are never decoded here.
//!
//! Layout (big-endian), from the Kafka protocol guide:
//! ```text
//! 0  baseOffset i64        8  batchLength i32     12 partitionLeaderEpoch i32
//! 16 magic i8              17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16        23 lastOffsetDelta i32 27 baseTimestamp i64
//! 35 maxTimestamp i64      43 producerId i64      51 producerEpoch i16
//! 53 baseSequence i32      57 recordsCount i32    61 records...
//! ```

use crate::error::{LogError, Result};

/// Size of the fixed batch header.
pub const HEADER_SIZE: usize = 61;
/// Bytes before `batchLength` counts: base offset and the length field itself.
pub const LOG_OVERHEAD: usize = 12;
/// The only record batch format Strata accepts.
pub const MAGIC_V2: i8 = 2;

const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const COMPRESSION_MASK: i16 = 0x07;

/// The decoded fixed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 once validated.
    pub magic: i8,
    /// CRC-32C stored in the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// `last offset - base offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `bytes`. Only the length of `bytes` is checked, not the
    /// CRC; see [`validate_batch`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < HEADER_SIZE {
            return Err(LogError::corrupt(format!(
                "{} bytes is shorter than a batch header",
                bytes.len()
            )));
        }
        Ok(BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length: be_i32(bytes, 8),
            partition_leader_epoch: be_i32(bytes, 12),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
            attributes: be_i16(bytes, 21),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, 35),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            records_count: be_i32(bytes, 57),
        })
    }

    /// Total size of the batch on disk, header included.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset that follows this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    /// Whether the batch's timestamps were set by the broker (`LogAppendTime`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Whether the batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch is a control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether the batch was written by an idempotent producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// Adds `delta` to a producer sequence, wrapping at `i32::MAX` as Kafka does.
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

/// Checks one complete batch: magic, length field, record count and CRC-32C.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != MAGIC_V2 {
        return Err(LogError::corrupt(format!(
            "unsupported magic {} (only record batch v2 is accepted)",
            header.magic
        )));
    }
    if header.total_size() != batch.len() || header.total_size() < HEADER_SIZE {
        return Err(LogError::corrupt(format!(
            "batch length field says {} bytes but {} are present",
            header.total_size(),
            batch.len()
        )));
    }
    if header.last_offset_delta < 0 || header.records_count <= 0 {
        return Err(LogError::corrupt(format!(
            "batch claims {} records with last offset delta {}",
            header.records_count, header.last_offset_delta
        )));
    }
    let computed = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    if computed != header.crc {
        return Err(LogError::corrupt(format!(
            "CRC mismatch: stored {:#010x}, computed {computed:#010x}",
            header.crc
        )));
    }
    Ok(header)
}

/// Checks a batch arriving from a producer: everything [`validate_batch`] checks, plus that the
/// record count agrees with the offset range, as Kafka's log validator requires of new batches.
/// (Stored batches may legitimately differ once compaction has removed records.)
pub fn validate_produced_batch(batch: &[u8]) -> Result<BatchHeader> {
    let header = validate_batch(batch)?;
    if header.is_control() {
        return Err(LogError::InvalidRecord {
            reason: "producers may not write control batches".into(),
        });
    }
    if i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(LogError::InvalidRecord {
            reason: format!(
                "batch claims {} records but spans {} offsets",
                header.records_count,
                i64::from(header.last_offset_delta) + 1
            ),
        });
    }
    Ok(header)
}

/// Splits a buffer of concatenated batches into complete batches. A trailing partial batch is an
/// error: a produce request must carry whole batches.
pub fn split_batches(bytes: &[u8]) -> Result<Vec<std::ops::Range<usize>>> {
    let mut ranges = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err(LogError::corrupt(
                "trailing bytes shorter than a batch header",
            ));
        }
        let length = be_i32(rest, 8);
        if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(LogError::corrupt(format!(
                "batch length {length} is too small"
            )));
        }
        let size = LOG_OVERHEAD + length as usize;
        if size > rest.len() {
            return Err(LogError::corrupt(format!(
                "batch of {size} bytes is truncated to {} bytes",
                rest.len()
            )));
        }
        ranges.push(pos..pos + size);
        pos += size;
    }
    Ok(ranges)
}

/// How the broker rewrites a batch's header before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Leader epoch of the partition.
    pub leader_epoch: i32,
    /// For `LogAppendTime` topics, the broker's append time in milliseconds.
    pub log_append_time: Option<i64>,
}

/// Returns a copy of the 61-byte header of `batch` with the broker-assigned fields set. When the
/// timestamp changes the CRC is recomputed over the new header and the unchanged records.
pub fn stamp_header(batch: &[u8], stamp: Stamp) -> [u8; HEADER_SIZE] {
    let mut header = [0u8; HEADER_SIZE];
    header.copy_from_slice(&batch[..HEADER_SIZE]);
    header[0..8].copy_from_slice(&stamp.base_offset.to_be_bytes());
    header[12..16].copy_from_slice(&stamp.leader_epoch.to_be_bytes());
    if let Some(time) = stamp.log_append_time {
        let attributes = be_i16(&header, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
        header[21..23].copy_from_slice(&attributes.to_be_bytes());
        header[35..43].copy_from_slice(&time.to_be_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&header[ATTRIBUTES_OFFSET..]),
            &batch[HEADER_SIZE..],
        );
        header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }
    header
}

/// After a batch was re-encoded with fewer records (compaction), restores what the encoder does
/// not carry over from the `original` header — the timestamp type and, for `LogAppendTime`, the
/// append time; the partition leader epoch; base sequence -1 without a producer id — and
/// recomputes the CRC. `rewritten` must be one whole v2 batch.
pub fn restore_header_fields(rewritten: &mut [u8], original: &BatchHeader) -> Result<()> {
    if rewritten.len() < HEADER_SIZE {
        return Err(LogError::corrupt(
            "a rewritten batch is shorter than its header",
        ));
    }
    rewritten[12..16].copy_from_slice(&original.partition_leader_epoch.to_be_bytes());
    if original.is_log_append_time() {
        let attributes = be_i16(rewritten, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
        rewritten[21..23].copy_from_slice(&attributes.to_be_bytes());
        rewritten[35..43].copy_from_slice(&original.max_timestamp.to_be_bytes());
    }
    if original.producer_id < 0 {
        rewritten[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    }
    let crc = crc32c::crc32c(&rewritten[ATTRIBUTES_OFFSET..]);
    rewritten[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
