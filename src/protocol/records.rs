//! The few places the broker looks inside record batches, using the `kafka-protocol` record codec:
//! recompression for a topic's `compression.type`, finding the exact record for a timestamp
//! (ListOffsets), and the key/value records the group coordinator writes to and reads back from
//! `__consumer_offsets`. Produce and fetch never decode records.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata_tiering::batch::{BatchHeader, split_batches, validate_batch};

use crate::error::{BrokerError, Result};

fn compression_id(c: Compression) -> i16 {
    c as i16
}

/// Re-encodes every batch in `records` whose codec is not `target`; batches already in the target
/// codec are passed through untouched.
pub fn recompress(records: Bytes, target: Compression) -> Result<Bytes> {
    let ranges = split_batches(&records)?;
    let mut all_match = true;
    for r in &ranges {
        // The CRC is checked before anything is decoded: a corrupt batch is refused, not rewritten.
        all_match &= validate_batch(&records[r.clone()])?.compression() == compression_id(target);
    }
    if all_match {
        return Ok(records);
    }
    let mut out = BytesMut::with_capacity(records.len());
    for range in ranges {
        let mut batch = records.slice(range);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| BrokerError::InvalidRecords(format!("{e:#}")))?;
        RecordBatchEncoder::encode(
            &mut out,
            set.records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: target,
            },
        )
        .map_err(|e| BrokerError::InvalidRecords(format!("{e:#}")))?;
    }
    Ok(out.freeze())
}

/// The (timestamp, offset) of the first record in `batch` with a timestamp at or after
/// `timestamp` and an offset at or after `min_offset`.
pub fn first_record_at_or_after(
    batch: Bytes,
    timestamp: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>> {
    let header = BatchHeader::parse(&batch)?;
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BrokerError::InvalidRecords(format!("{e:#}")))?;
    Ok(set
        .records
        .iter()
        .map(|r| {
            let t = if r.timestamp_type == TimestampType::LogAppend {
                header.max_timestamp
            } else {
                r.timestamp
            };
            (t, r.offset)
        })
        .find(|&(t, o)| t >= timestamp && o >= min_offset))
}

/// One uncompressed batch of key/value records (a `None` value is a tombstone), as the broker
/// writes to its internal topics.
pub fn encode_key_values(records: &[(Bytes, Option<Bytes>)], timestamp: i64) -> Result<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Non-idempotent: base sequence -1, which the codec numbers records from; any other
            // numbering would split the records into one batch each.
            sequence: i as i32 - 1,
            timestamp,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| BrokerError::InvalidRecords(format!("{e:#}")))?;
    Ok(out.freeze())
}

/// The keyed records of `batches` (whole batches as read from a log); control records and
/// records without a key are skipped.
pub fn decode_key_values(batches: Bytes) -> Result<Vec<(Bytes, Option<Bytes>)>> {
    let mut out = Vec::new();
    for range in split_batches(&batches)? {
        let mut batch = batches.slice(range);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| BrokerError::InvalidRecords(format!("{e:#}")))?;
        out.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control)
                .filter_map(|r| Some((r.key?, r.value))),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{encode, records};

    const VALUES: [&str; 5] = ["v0", "v1", "v2", "v3", "v4"];

    #[test]
    fn recompression_changes_the_codec_and_keeps_the_records() {
        let original = records(&VALUES, 1_000, 10);
        for (from, to) in [
            (Compression::None, Compression::Zstd),
            (Compression::Gzip, Compression::None),
            (Compression::Lz4, Compression::Snappy),
        ] {
            let out = recompress(encode(&original, from), to).expect("recompress");
            let header = strata_tiering::batch::validate_batch(&out).expect("valid batch");
            assert_eq!(header.compression(), to as i16);
            let set = RecordBatchDecoder::decode(&mut out.clone()).expect("decode");
            assert_eq!(set.records, original);
        }
        let same = encode(&original, Compression::Zstd);
        assert_eq!(
            recompress(same.clone(), Compression::Zstd).expect("noop"),
            same
        );
    }

    #[test]
    fn key_values_round_trip_with_tombstones() {
        let kv = vec![
            (Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))),
            (Bytes::from_static(b"b"), None),
        ];
        let batch = encode_key_values(&kv, 5).expect("encode");
        strata_tiering::batch::validate_produced_batch(&batch).expect("a valid batch");
        let mut two = BytesMut::from(&batch[..]);
        two.extend_from_slice(&batch);
        let decoded = decode_key_values(two.freeze()).expect("decode");
        assert_eq!(decoded, [kv.clone(), kv].concat());
    }

    #[test]
    fn the_first_record_at_a_timestamp_is_found_inside_a_batch() {
        let batch = encode(&records(&VALUES, 1_000, 10), Compression::Lz4);
        assert_eq!(
            first_record_at_or_after(batch.clone(), 1_015, 0).expect("ok"),
            Some((1_020, 2))
        );
        assert_eq!(
            first_record_at_or_after(batch.clone(), 0, 3).expect("ok"),
            Some((1_030, 3))
        );
        assert_eq!(first_record_at_or_after(batch, 2_000, 0).expect("ok"), None);
    }
}
