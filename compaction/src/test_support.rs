//! Helpers shared by the unit tests of this crate.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata_tiering::batch::split_batches;

/// A key and a value (`None`: a tombstone).
pub(crate) type Update = (String, Option<String>);

/// One batch of keyed records of a non-idempotent producer, offsets from 0.
pub(crate) fn keyed_batch(records: &[Update], timestamp: i64, compression: Compression) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp,
            key: Some(Bytes::from(k.clone())),
            value: v.clone().map(Bytes::from),
            headers: Default::default(),
        })
        .collect();
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

/// The records of whole batches at or after `from`: (offset, key, value).
pub(crate) fn decode(bytes: &Bytes, from: i64) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    for range in split_batches(bytes).expect("batches") {
        let mut batch = bytes.slice(range);
        for r in RecordBatchDecoder::decode(&mut batch)
            .expect("decode")
            .records
        {
            if r.offset < from {
                continue;
            }
            out.push((
                r.offset,
                String::from_utf8(r.key.expect("key").to_vec()).expect("utf8"),
                r.value
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf8")),
            ));
        }
    }
    out
}
