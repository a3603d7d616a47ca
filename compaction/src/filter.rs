//! Rewriting one record batch without the records compaction removes, with the
//! `kafka-protocol` record codec: the batch is decompressed, filtered and encoded again with its
//! own codec; offsets, timestamps, producer fields and the leader epoch are kept, the CRC is
//! new. Transactional and control batches are never rewritten.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};
use strata_tiering::batch::{BatchHeader, restore_header_fields};

use crate::error::{CompactionError, Result};

/// One record as the keep decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Its offset.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<&'a [u8]>,
    /// Whether its value is null.
    pub is_tombstone: bool,
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record was kept: the original bytes stand.
    Unchanged,
    /// Some records were removed: the new batch.
    Rewritten(Bytes),
    /// Every record was removed.
    Empty,
}

fn codec(id: i16) -> Option<Compression> {
    Some(match id {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => return None,
    })
}

/// Calls `visit` for each record of a batch that compaction may look into (neither transactional
/// nor control); returns false for the batches it may not.
pub fn for_each_record(
    batch: &Bytes,
    header: &BatchHeader,
    mut visit: impl FnMut(RecordView<'_>) -> bool,
) -> Result<bool> {
    if header.is_transactional() || header.is_control() {
        return Ok(false);
    }
    let set =
        RecordBatchDecoder::decode(&mut batch.clone()).map_err(|e| records_error(header, e))?;
    for r in &set.records {
        let view = RecordView {
            offset: r.offset,
            key: r.key.as_deref(),
            is_tombstone: r.value.is_none(),
        };
        if !visit(view) {
            break;
        }
    }
    Ok(true)
}

/// Filters the records of `batch` (whose parsed header is `header`) by `keep`.
pub fn filter_batch(
    batch: &Bytes,
    header: &BatchHeader,
    mut keep: impl FnMut(RecordView<'_>) -> bool,
) -> Result<Filtered> {
    if header.is_transactional() || header.is_control() {
        return Ok(Filtered::Unchanged);
    }
    let set =
        RecordBatchDecoder::decode(&mut batch.clone()).map_err(|e| records_error(header, e))?;
    let total = set.records.len();
    let kept: Vec<_> = set
        .records
        .iter()
        .filter(|r| {
            keep(RecordView {
                offset: r.offset,
                key: r.key.as_deref(),
                is_tombstone: r.value.is_none(),
            })
        })
        .collect();
    if kept.len() == total {
        return Ok(Filtered::Unchanged);
    }
    if kept.is_empty() {
        return Ok(Filtered::Empty);
    }
    let compression = codec(header.compression()).ok_or_else(|| CompactionError::Records {
        offset: header.base_offset,
        reason: format!("unknown codec {}", header.compression()),
    })?;
    let mut out = BytesMut::with_capacity(batch.len());
    RecordBatchEncoder::encode(
        &mut out,
        kept,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| records_error(header, e))?;
    restore_header_fields(&mut out, header)?;
    Ok(Filtered::Rewritten(out.freeze()))
}

fn records_error(header: &BatchHeader, e: impl std::fmt::Display) -> CompactionError {
    CompactionError::Records {
        offset: header.base_offset,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Record, TimestampType};
    use strata_tiering::batch::validate_batch;

    fn record(offset: i64, key: &str, value: Option<&str>, producer_id: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 7,
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 0 },
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: if producer_id < 0 {
                (offset - 100) as i32 - 1
            } else {
                (offset - 100) as i32 + 5
            },
            timestamp: 1_000 + offset,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        }
    }

    fn batch(records: &[Record], compression: Compression) -> Bytes {
        let mut out = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut out,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        out.freeze()
    }

    #[test]
    fn removed_records_leave_a_valid_batch_with_the_same_offsets() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for producer_id in [-1, 42] {
                let records: Vec<Record> = (100..110)
                    .map(|o| record(o, &format!("k{}", o % 3), Some("v"), producer_id))
                    .collect();
                let original = batch(&records, compression);
                let header = validate_batch(&original).expect("valid");
                let keep_odd = |r: RecordView<'_>| r.offset % 2 == 1;
                let Filtered::Rewritten(out) =
                    filter_batch(&original, &header, keep_odd).expect("filter")
                else {
                    panic!("expected a rewrite");
                };
                let h = validate_batch(&out).expect("the new CRC is valid");
                assert_eq!(h.compression(), compression as i16);
                assert_eq!(h.partition_leader_epoch, 7);
                assert_eq!((h.base_offset, h.last_offset()), (101, 109));
                assert_eq!(h.producer_id, producer_id);
                let expected_sequence = if producer_id < 0 { -1 } else { 6 };
                assert_eq!(h.base_sequence, expected_sequence);
                let set = RecordBatchDecoder::decode(&mut out.clone()).expect("decode");
                let offsets: Vec<i64> = set.records.iter().map(|r| r.offset).collect();
                assert_eq!(offsets, vec![101, 103, 105, 107, 109]);
                assert!(set.records.iter().all(|r| r.timestamp == 1_000 + r.offset));
                assert_eq!(
                    filter_batch(&original, &header, |_| true).expect("all"),
                    Filtered::Unchanged
                );
                assert_eq!(
                    filter_batch(&original, &header, |_| false).expect("none"),
                    Filtered::Empty
                );
            }
        }
    }

    #[test]
    fn log_append_time_and_tombstones_survive_a_rewrite() {
        let records = vec![
            record(100, "a", Some("1"), -1),
            record(101, "b", None, -1),
            record(102, "a", Some("2"), -1),
        ];
        let original = batch(&records, Compression::None);
        let mut stamped = original.to_vec();
        let header = validate_batch(&original).expect("valid");
        let mut lat = header;
        lat.attributes |= 0x08;
        lat.max_timestamp = 99_999;
        restore_header_fields(&mut stamped, &lat).expect("stamp");
        let stamped = Bytes::from(stamped);
        let header = validate_batch(&stamped).expect("valid");
        assert!(header.is_log_append_time());
        let Filtered::Rewritten(out) =
            filter_batch(&stamped, &header, |r| r.offset != 100).expect("filter")
        else {
            panic!("expected a rewrite");
        };
        let h = validate_batch(&out).expect("valid");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
        let set = RecordBatchDecoder::decode(&mut out.clone()).expect("decode");
        assert_eq!(
            set.records[0].value, None,
            "the tombstone stays a tombstone"
        );
        let mut seen = Vec::new();
        for_each_record(&out, &h, |r| {
            seen.push((r.offset, r.is_tombstone));
            true
        })
        .expect("visit");
        assert_eq!(seen, vec![(101, true), (102, false)]);
    }
}
