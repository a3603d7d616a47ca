//! Decoding a request frame, routing it to its handler and encoding the response.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::handlers;
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

/// Handles one request frame. Returns the response body (header included, size prefix not), or
/// `None` when the request expects no response (Produce with acks=0).
pub async fn dispatch(broker: &Broker, mut frame: Bytes) -> Result<Option<Bytes>, ProtocolError> {
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
        return encode(api, 0, correlation_id, &ResponseKind::ApiVersions(body)).map(Some);
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
    let request = RequestKind::decode(api, &mut frame, version).map_err(malformed)?;
    let Some(response) = handlers::handle(broker, &header, api, request).await? else {
        return Ok(None);
    };
    encode(api, version, header.correlation_id, &response).map(Some)
}

fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, ProtocolError> {
    let failed = |e: anyhow::Error| ProtocolError::Encode {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .map_err(failed)?;
    response.encode(&mut buf, version).map_err(failed)?;
    Ok(buf.freeze())
}
