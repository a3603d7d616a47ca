//! Criterion micro-benchmarks of the Kafka codec at the broker's edge.
//!
//! `cargo bench -p strata --bench protocol` encodes and decodes, with the `kafka-protocol` crate
//! and the header versions the broker's dispatch uses:
//! - a Produce v9 request (header included) carrying one 16 KiB record batch: decode is what the
//!   broker does with every produce frame, encode is the client's side of the round trip;
//! - a Fetch v12 response (header included) carrying 1 MiB of records (64 batches of 16 KiB):
//!   encode the way `dispatch.rs` does (into a `BytesMut::new()` that grows as it goes) and into a
//!   buffer presized with `compute_size`, and decode, the client's side.
//!
//! Each group's baseline, measured in the same run, is a memcpy of the same frame into a fresh
//! buffer: records are opaque `Bytes` to the codec, so one copy of them is the floor of an encode.
//! Defaults are short (1 s warm-up, 3 s measurement); criterion's `--warm-up-time` and
//! `--measurement-time` override them.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const MIB: usize = 1 << 20;
/// Records per batch; with 1,011-byte values a batch is 16,381 bytes.
const RECORDS_PER_BATCH: usize = 16;
const VALUE_BYTES: usize = 1_011;

/// One uncompressed v2 batch of 16 records of about 1 KiB.
fn record_batch() -> Bytes {
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from(
                (0..VALUE_BYTES)
                    .map(|b| ((b + i) % 251) as u8)
                    .collect::<Vec<u8>>(),
            )),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut out, records.iter(), &options).expect("encode the batch");
    let count = i32::from_be_bytes([out[57], out[58], out[59], out[60]]);
    assert_eq!(
        count, RECORDS_PER_BATCH as i32,
        "one batch holds every record"
    );
    assert_eq!(out.len(), 16_381, "a batch of 16 KiB less 3 bytes");
    out.freeze()
}

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("bench-topic"))
}

fn produce_request(records: Bytes) -> (RequestHeader, ProduceRequest) {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_VERSION)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench-client")));
    let body = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    (header, body)
}

fn encode_request(header: &RequestHeader, body: &ProduceRequest) -> Bytes {
    let mut buf = BytesMut::new();
    header
        .encode(
            &mut buf,
            ApiKey::Produce.request_header_version(PRODUCE_VERSION),
        )
        .expect("encode the header");
    body.encode(&mut buf, PRODUCE_VERSION)
        .expect("encode the request");
    buf.freeze()
}

fn decode_request(mut frame: Bytes) -> (RequestHeader, ProduceRequest) {
    let header = RequestHeader::decode(
        &mut frame,
        ApiKey::Produce.request_header_version(PRODUCE_VERSION),
    )
    .expect("decode the header");
    let body = ProduceRequest::decode(&mut frame, PRODUCE_VERSION).expect("decode the request");
    (header, body)
}

fn fetch_response(records: Bytes) -> FetchResponse {
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(topic())
                .with_partitions(vec![
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_high_watermark(1 << 20)
                        .with_last_stable_offset(1 << 20)
                        .with_log_start_offset(0)
                        .with_records(Some(records)),
                ]),
        ])
}

/// Encodes a response as the broker's dispatch does; `presized` reserves the exact size first.
fn encode_response(body: &FetchResponse, presized: bool) -> Bytes {
    let header_version = ApiKey::Fetch.response_header_version(FETCH_VERSION);
    let header = ResponseHeader::default().with_correlation_id(7);
    let mut buf = if presized {
        let size = header
            .compute_size(header_version)
            .expect("size the header")
            + body.compute_size(FETCH_VERSION).expect("size the response");
        BytesMut::with_capacity(size)
    } else {
        BytesMut::new()
    };
    header
        .encode(&mut buf, header_version)
        .expect("encode the header");
    body.encode(&mut buf, FETCH_VERSION)
        .expect("encode the response");
    buf.freeze()
}

fn decode_response(mut frame: Bytes) -> FetchResponse {
    ResponseHeader::decode(
        &mut frame,
        ApiKey::Fetch.response_header_version(FETCH_VERSION),
    )
    .expect("decode the header");
    FetchResponse::decode(&mut frame, FETCH_VERSION).expect("decode the response")
}

fn memcpy(frame: &Bytes) -> Bytes {
    Bytes::copy_from_slice(black_box(&frame[..]))
}

fn produce(c: &mut Criterion) {
    let batch = record_batch();
    let (header, body) = produce_request(batch.clone());
    let frame = encode_request(&header, &body);
    let (_, decoded) = decode_request(frame.clone());
    assert_eq!(decoded, body, "the request round-trips");
    let mut group = c.benchmark_group("produce_v9_16KiB_batch");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| decode_request(black_box(frame.clone())));
    });
    group.bench_function("encode", |b| {
        b.iter(|| encode_request(black_box(&header), black_box(&body)));
    });
    group.bench_function("baseline_memcpy", |b| b.iter(|| memcpy(&frame)));
    group.finish();
}

fn fetch(c: &mut Criterion) {
    let batch = record_batch();
    let mut records = BytesMut::with_capacity(MIB);
    while records.len() + batch.len() <= MIB {
        records.extend_from_slice(&batch);
    }
    let body = fetch_response(records.freeze());
    let frame = encode_response(&body, false);
    assert_eq!(
        decode_response(frame.clone()),
        body,
        "the response round-trips"
    );
    let mut group = c.benchmark_group("fetch_v12_1MiB_records");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode_as_dispatch", |b| {
        b.iter(|| encode_response(black_box(&body), false));
    });
    group.bench_function("encode_presized", |b| {
        b.iter(|| encode_response(black_box(&body), true));
    });
    group.bench_function("decode", |b| {
        b.iter(|| decode_response(black_box(frame.clone())));
    });
    group.bench_function("baseline_memcpy", |b| b.iter(|| memcpy(&frame)));
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = protocol;
    config = config();
    targets = produce, fetch
}
criterion_main!(protocol);
