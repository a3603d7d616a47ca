//! The records of `__consumer_offsets`, in Apache Kafka's own format, so tools that read the topic
//! (Burrow, kcat with a decoder, Kafka's console consumer formatter) understand them.
//!
//! Every record's key starts with an int16 version:
//! - versions 0 and 1: an offset commit, key `group: string, topic: string, partition: int32`;
//!   the value is `OffsetCommitValue` v3: `version: int16 = 3, offset: int64,
//!   leader_epoch: int32, metadata: string, commit_timestamp: int64`.
//! - version 2: a group's membership, key `group: string`; the value is `GroupMetadataValue` v3:
//!   `version: int16 = 3, protocol_type: string, generation: int32, protocol: nullable string,
//!   leader: nullable string, current_state_timestamp: int64, members: [member]` with each member
//!   `member_id: string, group_instance_id: nullable string, client_id: string,
//!   client_host: string, rebalance_timeout: int32, session_timeout: int32,
//!   subscription: bytes, assignment: bytes`.
//!
//! A null value is a tombstone: the offset or the group was deleted. Strings are int16-length
//! prefixed UTF-8 (-1 for null), bytes and arrays int32-length prefixed. Values of older versions
//! (0, 1 for offsets; 0–2 for groups) are read too.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{StoredGroup, StoredMember};

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the record before it, or -1.
    pub leader_epoch: i32,
    /// The consumer's metadata string.
    pub metadata: String,
    /// When it was committed.
    pub commit_timestamp_ms: i64,
}

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// An offset commit of one partition.
    Offset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A group's membership.
    Group {
        /// The group.
        group: String,
    },
}

impl RecordKey {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

/// A `__consumer_offsets` record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable __consumer_offsets record: {0}")]
pub struct RecordFormatError(&'static str);

type Decoded<T> = Result<T, RecordFormatError>;

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn need(buf: &Bytes, n: usize) -> Decoded<()> {
    if buf.remaining() < n {
        return Err(RecordFormatError("truncated"));
    }
    Ok(())
}

fn get_i16(buf: &mut Bytes) -> Decoded<i16> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut Bytes) -> Decoded<i32> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut Bytes) -> Decoded<i64> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn get_nullable_string(buf: &mut Bytes) -> Decoded<Option<String>> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize)?;
    let raw = buf.split_to(len as usize);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| RecordFormatError("a string is not UTF-8"))
}

fn get_string(buf: &mut Bytes) -> Decoded<String> {
    get_nullable_string(buf)?.ok_or(RecordFormatError("a required string is null"))
}

fn get_bytes(buf: &mut Bytes) -> Decoded<Bytes> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(buf, len as usize)?;
    Ok(buf.split_to(len as usize))
}

/// Encodes a record key.
pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut buf = BytesMut::new();
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            buf.put_i16(OFFSET_KEY_VERSION);
            put_string(&mut buf, group);
            put_string(&mut buf, topic);
            buf.put_i32(*partition);
        }
        RecordKey::Group { group } => {
            buf.put_i16(GROUP_KEY_VERSION);
            put_string(&mut buf, group);
        }
    }
    buf.freeze()
}

/// Decodes a record key; `Ok(None)` for key versions this broker does not know (skipped, as
/// Kafka skips them).
pub fn decode_key(mut buf: Bytes) -> Decoded<Option<RecordKey>> {
    match get_i16(&mut buf)? {
        0 | 1 => Ok(Some(RecordKey::Offset {
            group: get_string(&mut buf)?,
            topic: get_string(&mut buf)?,
            partition: get_i32(&mut buf)?,
        })),
        2 => Ok(Some(RecordKey::Group {
            group: get_string(&mut buf)?,
        })),
        _ => Ok(None),
    }
}

/// Encodes a committed offset.
pub fn encode_offset(value: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_string(&mut buf, &value.metadata);
    buf.put_i64(value.commit_timestamp_ms);
    buf.freeze()
}

/// Decodes a committed offset of value version 0, 1, 3 or 4.
pub fn decode_offset(mut buf: Bytes) -> Decoded<CommittedOffset> {
    let version = get_i16(&mut buf)?;
    let offset = get_i64(&mut buf)?;
    let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
    let metadata = get_string(&mut buf)?;
    let commit_timestamp_ms = match version {
        0 | 1 | 3 | 4 => get_i64(&mut buf)?,
        _ => return Err(RecordFormatError("unknown offset value version")),
    };
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

/// Encodes a group's membership.
pub fn encode_group(group: &StoredGroup) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut buf, &group.protocol_type);
    buf.put_i32(group.generation);
    put_nullable_string(&mut buf, group.protocol.as_deref());
    put_nullable_string(&mut buf, group.leader.as_deref());
    buf.put_i64(group.state_timestamp_ms);
    buf.put_i32(group.members.len() as i32);
    for m in &group.members {
        put_string(&mut buf, &m.id);
        put_nullable_string(&mut buf, m.instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// Decodes a group's membership of value version 0 to 3.
pub fn decode_group(mut buf: Bytes) -> Decoded<StoredGroup> {
    let version = get_i16(&mut buf)?;
    if !(0..=3).contains(&version) {
        return Err(RecordFormatError("unknown group value version"));
    }
    let protocol_type = get_string(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol = get_nullable_string(&mut buf)?;
    let leader = get_nullable_string(&mut buf)?;
    let state_timestamp_ms = if version >= 2 { get_i64(&mut buf)? } else { -1 };
    let count = get_i32(&mut buf)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let id = get_string(&mut buf)?;
        let instance_id = if version >= 3 {
            get_nullable_string(&mut buf)?
        } else {
            None
        };
        let client_id = get_string(&mut buf)?;
        let client_host = get_string(&mut buf)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { 0 };
        let session_timeout_ms = get_i32(&mut buf)?;
        let rebalance_timeout_ms = if version >= 1 {
            rebalance_timeout_ms
        } else {
            session_timeout_ms
        };
        members.push(StoredMember {
            id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: get_bytes(&mut buf)?,
            assignment: get_bytes(&mut buf)?,
        });
    }
    Ok(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_offset_key_matches_kafkas_bytes() {
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(
            encode_key(&key).as_ref(),
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]
        );
        assert_eq!(decode_key(encode_key(&key)).expect("ok"), Some(key));
        assert_eq!(
            decode_key(Bytes::from_static(&[0, 9, 0])).expect("ok"),
            None
        );
        assert!(decode_key(Bytes::from_static(&[0, 1, 0, 5, b'g'])).is_err());
    }

    #[test]
    fn an_offset_value_round_trips_and_old_versions_decode() {
        let value = CommittedOffset {
            offset: 42,
            leader_epoch: 7,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        assert_eq!(decode_offset(encode_offset(&value)).expect("ok"), value);
        // Version 1: offset, metadata, commit and expire timestamps.
        let mut v1 = BytesMut::new();
        v1.put_i16(1);
        v1.put_i64(9);
        put_string(&mut v1, "");
        v1.put_i64(5);
        v1.put_i64(6);
        let old = decode_offset(v1.freeze()).expect("ok");
        assert_eq!(
            (old.offset, old.leader_epoch, old.commit_timestamp_ms),
            (9, -1, 5)
        );
    }

    proptest! {
        #[test]
        fn group_values_round_trip(
            generation in any::<i32>(),
            members in proptest::collection::vec(("[a-z0-9-]{1,20}", proptest::option::of("[a-z]{1,5}"), any::<Vec<u8>>()), 0..5),
        ) {
            let group = StoredGroup {
                protocol_type: "consumer".into(),
                generation,
                protocol: Some("range".into()),
                leader: members.first().map(|m| m.0.clone()),
                state_timestamp_ms: 12,
                members: members.iter().map(|(id, instance, bytes)| StoredMember {
                    id: id.clone(),
                    instance_id: instance.clone(),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from(bytes.clone()),
                    assignment: Bytes::from(bytes.clone()),
                }).collect(),
            };
            prop_assert_eq!(decode_group(encode_group(&group)).expect("ok"), group);
        }

        #[test]
        fn garbage_never_panics(bytes in any::<Vec<u8>>()) {
            let _ = decode_key(Bytes::from(bytes.clone()));
            let _ = decode_offset(Bytes::from(bytes.clone()));
            let _ = decode_group(Bytes::from(bytes));
        }
    }
}
