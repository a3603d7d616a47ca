//! Decoding a request frame, routing it to its handler and encoding the response.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::SharedBytesMut;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::handlers;
use super::response::Response;
use super::versions;
use crate::broker::Broker;

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The size prefix is negative or above `socket-request-max-bytes`.
    #[error("request frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The claimed size.
        size: i64,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("the connection closed in the middle of a request frame")]
    Truncated,
    /// The API key is not a Kafka API at all.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The API exists but this broker does not offer it at this version.
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The requested version.
        version: i16,
    },
    /// The frame could not be decoded as the request it claims to be.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The decoder's complaint.
        reason: String,
    },
    /// The frame is shorter than a request header.
    #[error("a {0}-byte frame is too short for a request header")]
    ShortFrame(usize),
    /// The response could not be encoded (a broker bug, reported rather than hidden).
    #[error("could not encode the {api:?} v{version} response: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The encoder's complaint.
        reason: String,
    },
    /// Reading from the socket failed.
    #[error("socket error: {0}")]
    Io(std::io::Error),
}

/// A response still to come: a Produce's acknowledgement, encoded when it arrives.
pub type PendingResponse = BoxFuture<'static, Result<Option<Response>, ProtocolError>>;

/// How far [`begin`] took a request.
pub enum Begun {
    /// Handled: the response body, or `None` when none is expected.
    Answered(Option<Response>),
    /// A Produce whose batches are appended; its response waits for the acknowledgement.
    Acknowledging(PendingResponse),
}

impl std::fmt::Debug for Begun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Begun::Answered(r) => f.debug_tuple("Answered").field(r).finish(),
            Begun::Acknowledging(_) => f.write_str("Acknowledging"),
        }
    }
}

/// Handles one request frame from `client_host` (the peer's address, as group descriptions show
/// it) as far as it must go before the connection's next request may start: a Produce until its
/// batches are appended, any other request to its response. A response is the body (header
/// included, size prefix not), or `None` when the request expects none (Produce with acks=0).
pub async fn begin(
    broker: &Broker,
    mut frame: Bytes,
    client_host: &str,
) -> Result<Begun, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::ShortFrame(frame.len()));
    }
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api = ApiKey::try_from(raw_key).map_err(|()| ProtocolError::UnknownApiKey(raw_key))?;
    if api == ApiKey::ApiVersions && !versions::is_supported(api, version) {
        // Kafka's fallback: a v0 body saying UNSUPPORTED_VERSION and listing what is supported,
        // so the client can retry at a version both sides know.
        let body = handlers::api_versions::response(ResponseError::UnsupportedVersion.code());
        let response = encode(api, 0, correlation_id, &ResponseKind::ApiVersions(body))?;
        return Ok(Begun::Answered(Some(response)));
    }
    if !versions::is_supported(api, version) {
        return Err(ProtocolError::UnsupportedVersion { api, version });
    }
    let malformed = |e: anyhow::Error| ProtocolError::Malformed {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(malformed)?;
    if api == ApiKey::ListOffsets && version == 0 {
        let request = handlers::list_offsets_v0::decode(frame).map_err(|e| malformed(e.into()))?;
        let body = handlers::list_offsets_v0::handle(broker, request).await;
        let mut out = BytesMut::with_capacity(4 + body.len());
        out.put_i32(header.correlation_id);
        out.extend_from_slice(&body);
        return Ok(Begun::Answered(Some(out.freeze().into())));
    }
    let request = RequestKind::decode(api, &mut frame, version).map_err(malformed)?;
    if let RequestKind::Produce(request) = request {
        let appended = handlers::produce::append(broker, version, request).await;
        return Ok(Begun::Acknowledging(Box::pin(async move {
            let Some(response) = appended.acknowledged().await else {
                return Ok(None);
            };
            let response = ResponseKind::Produce(response);
            encode(api, version, correlation_id, &response).map(Some)
        })));
    }
    let Some(response) = handlers::handle(broker, &header, client_host, api, request).await? else {
        return Ok(Begun::Answered(None));
    };
    encode(api, version, header.correlation_id, &response).map(|r| Begun::Answered(Some(r)))
}

/// A Fetch response's records of at least this many bytes are written from their own buffer;
/// smaller ones are copied into the response (a copy is cheaper than one more piece to write).
const SHARED_RECORDS_MIN_BYTES: usize = 4096;

fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Response, ProtocolError> {
    let failed = |e: anyhow::Error| ProtocolError::Encode {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    if let ResponseKind::Fetch(fetch) = response {
        // Record batches stay in their buffers (the log's reads, the chunk cache's entries).
        let shared: usize = fetch
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
            .filter_map(|partition| partition.records.as_ref().map(Bytes::len))
            .filter(|len| *len >= SHARED_RECORDS_MIN_BYTES)
            .sum();
        let mut buf = SharedBytesMut::new(SHARED_RECORDS_MIN_BYTES);
        // What is copied, in one allocation.
        buf.reserve(fetch.compute_size(version).map_err(failed)? - shared + 16);
        header.encode(&mut buf, header_version).map_err(failed)?;
        fetch.encode(&mut buf, version).map_err(failed)?;
        return Ok(buf.into_pieces().into());
    }
    let mut buf = BytesMut::new();
    header.encode(&mut buf, header_version).map_err(failed)?;
    response.encode(&mut buf, version).map_err(failed)?;
    Ok(buf.freeze().into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::test_support::open_broker;

    fn broker(dir: &std::path::Path) -> (tokio::runtime::Runtime, Arc<Broker>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let broker = rt.block_on(open_broker(dir));
        (rt, broker)
    }

    /// `frame` handled to its response, acknowledgement included.
    async fn dispatch(
        broker: &Broker,
        frame: Bytes,
        client_host: &str,
    ) -> Result<Option<Bytes>, ProtocolError> {
        let response = match begin(broker, frame, client_host).await? {
            Begun::Answered(response) => response,
            Begun::Acknowledging(pending) => pending.await?,
        };
        Ok(response.map(|r| r.to_bytes()))
    }

    fn frame(api: i16, version: i16, body: &[u8]) -> Bytes {
        let mut f = BytesMut::new();
        f.extend_from_slice(&api.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&7i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
        f.extend_from_slice(body);
        f.freeze()
    }

    #[test]
    fn unsupported_api_versions_get_the_v0_fallback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rt, broker) = broker(dir.path());
        let response = rt
            .block_on(dispatch(&broker, frame(18, 99, &[]), ""))
            .expect("answered")
            .expect("response");
        let mut r = response;
        assert_eq!(r.get_i32(), 7, "correlation id, response header v0");
        assert_eq!(r.get_i16(), ResponseError::UnsupportedVersion.code());
        let count = r.get_i32();
        assert_eq!(count as usize, versions::SUPPORTED.len());
        assert_eq!(
            r.remaining(),
            count as usize * 6,
            "v0 entries and no throttle field"
        );
    }

    #[test]
    fn unknown_and_unoffered_apis_close_the_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rt, broker) = broker(dir.path());
        assert!(matches!(
            rt.block_on(dispatch(&broker, frame(999, 0, &[]), "")),
            Err(ProtocolError::UnknownApiKey(999))
        ));
        assert!(matches!(
            rt.block_on(dispatch(&broker, frame(11, 99, &[]), "")),
            Err(ProtocolError::UnsupportedVersion {
                api: ApiKey::JoinGroup,
                ..
            })
        ));
        assert!(matches!(
            rt.block_on(dispatch(&broker, Bytes::from_static(&[0, 1]), "")),
            Err(ProtocolError::ShortFrame(2))
        ));
    }

    /// A Fetch response's large records go out as their own pieces, not copied, and the pieces
    /// make the same bytes as the crate's plain encoding, at every offered version.
    #[test]
    fn fetch_responses_share_large_records_and_encode_the_same() {
        use kafka_protocol::messages::TopicName;
        use kafka_protocol::messages::fetch_response::{
            FetchResponse, FetchableTopicResponse, PartitionData,
        };
        let large = Bytes::from(vec![7u8; SHARED_RECORDS_MIN_BYTES * 3]);
        let small = Bytes::from(vec![9u8; 100]);
        let partitions = [Some(large.clone()), Some(small), None, Some(large.clone())]
            .into_iter()
            .enumerate()
            .map(|(i, records)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(records)
            })
            .collect();
        let response = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(TopicName::from(
                        kafka_protocol::protocol::StrBytes::from_static_str("t"),
                    ))
                    .with_partitions(partitions),
            ]));
        let (_, min, max) = versions::SUPPORTED
            .iter()
            .copied()
            .find(|(api, _, _)| *api == ApiKey::Fetch)
            .expect("fetch is offered");
        for version in min..=max {
            let encoded = encode(ApiKey::Fetch, version, 42, &response).expect("encode");
            let mut plain = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(42)
                .encode(&mut plain, ApiKey::Fetch.response_header_version(version))
                .expect("header");
            response.encode(&mut plain, version).expect("body");
            assert_eq!(encoded.to_bytes(), plain.freeze(), "version {version}");
            let shared = encoded
                .pieces()
                .iter()
                .filter(|p| p.as_ptr() == large.as_ptr())
                .count();
            assert_eq!(
                shared, 2,
                "version {version}: the large records are not copied"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever bytes follow a valid header of an offered API, dispatch answers or refuses;
        /// it never panics and never allocates what the bytes claim.
        #[test]
        fn random_bodies_never_panic(
            which in 0..versions::SUPPORTED.len(),
            version_pick in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (rt, broker) = broker(dir.path());
            let (api, min, max) = versions::SUPPORTED[which];
            let version = min + (version_pick % (max - min + 1) as u16) as i16;
            let _ = rt.block_on(dispatch(&broker, frame(api as i16, version, &body), ""));
        }
    }
}
