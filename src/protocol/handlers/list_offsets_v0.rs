//! ListOffsets v0, which Kafka 4 dropped and the `kafka-protocol` crate does not decode, but which
//! older clients still send without asking ApiVersions first (Burrow 1.2's sarama, among them).
//! Hand-written from the protocol spec; it answers through the same lookup as later versions.
//!
//! Request: `replica_id: int32, topics: [name: string, partitions: [partition: int32,
//! timestamp: int64, max_num_offsets: int32]]`. Response: `topics: [name: string,
//! partitions: [partition: int32, error_code: int16, old_style_offsets: [int64]]]`, with at most
//! one offset per partition (the one later versions return; none when there is none).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::list_offsets;
use crate::broker::Broker;

/// Why a v0 body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed ListOffsets v0 request: {0}")]
pub struct MalformedV0(&'static str);

fn need(buf: &Bytes, n: usize) -> Result<(), MalformedV0> {
    if buf.remaining() < n {
        return Err(MalformedV0("truncated"));
    }
    Ok(())
}

fn count(buf: &mut Bytes, min_entry: usize) -> Result<usize, MalformedV0> {
    need(buf, 4)?;
    let n = buf.get_i32();
    // Each entry takes at least `min_entry` bytes: a count the body cannot hold is refused
    // before anything is allocated for it.
    if n < 0 || n as usize > buf.remaining() / min_entry {
        return Err(MalformedV0("an array count does not fit the request"));
    }
    Ok(n as usize)
}

fn string(buf: &mut Bytes) -> Result<String, MalformedV0> {
    need(buf, 2)?;
    let len = buf.get_i16();
    if len < 0 {
        return Err(MalformedV0("a null topic name"));
    }
    need(buf, len as usize)?;
    String::from_utf8(buf.split_to(len as usize).to_vec())
        .map_err(|_| MalformedV0("a topic name is not UTF-8"))
}

/// Decodes a v0 body into the request later versions use.
pub fn decode(mut body: Bytes) -> Result<ListOffsetsRequest, MalformedV0> {
    need(&body, 4)?;
    let replica_id = body.get_i32();
    let mut topics = Vec::new();
    for _ in 0..count(&mut body, 6)? {
        let name = string(&mut body)?;
        let mut partitions = Vec::new();
        for _ in 0..count(&mut body, 16)? {
            need(&body, 16)?;
            let partition = body.get_i32();
            let timestamp = body.get_i64();
            let _max_num_offsets = body.get_i32();
            partitions.push(
                ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp),
            );
        }
        topics.push(
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from(name)))
                .with_partitions(partitions),
        );
    }
    Ok(ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(replica_id))
        .with_topics(topics))
}

/// Answers a decoded v0 request; returns the v0 response body.
pub async fn handle(broker: &Broker, request: ListOffsetsRequest) -> Bytes {
    let response = list_offsets::handle(broker, 0, request).await;
    let mut out = BytesMut::new();
    out.put_i32(response.topics.len() as i32);
    for t in response.topics {
        out.put_i16(t.name.len() as i16);
        out.put_slice(t.name.as_bytes());
        out.put_i32(t.partitions.len() as i32);
        for p in t.partitions {
            out.put_i32(p.partition_index);
            out.put_i16(p.error_code);
            if p.error_code == 0 && p.offset >= 0 {
                out.put_i32(1);
                out.put_i64(p.offset);
            } else {
                out.put_i32(0);
            }
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v0_body_decodes_and_garbage_is_refused() {
        let mut body = BytesMut::new();
        body.put_i32(-1);
        body.put_i32(1);
        body.put_i16(1);
        body.put_slice(b"t");
        body.put_i32(1);
        body.put_i32(3);
        body.put_i64(-2);
        body.put_i32(1);
        let request = decode(body.freeze()).expect("decoded");
        assert_eq!(request.topics[0].name.as_str(), "t");
        assert_eq!(request.topics[0].partitions[0].partition_index, 3);
        assert_eq!(request.topics[0].partitions[0].timestamp, -2);
        let huge = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
        assert!(decode(huge).is_err(), "a count the body cannot hold");
        assert!(decode(Bytes::from_static(&[0, 0])).is_err());
    }
}
