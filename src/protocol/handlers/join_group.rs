//! JoinGroup: a member (re)joins its group; the response comes when the join phase ends.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::group::state::JoinRequest;
use crate::protocol::errors::group_code;

/// JoinGroup v1 added the rebalance timeout; before it the session timeout served as both.
const REBALANCE_TIMEOUT_FROM: i16 = 1;
/// From v4 a new member first gets its id with MEMBER_ID_REQUIRED, then joins with it.
const KNOWN_MEMBER_ID_FROM: i16 = 4;

/// Handles a JoinGroup request.
pub async fn handle(
    broker: &Broker,
    header: &RequestHeader,
    client_host: &str,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let version = header.request_api_version;
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: client_host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= REBALANCE_TIMEOUT_FROM {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= KNOWN_MEMBER_ID_FROM,
    };
    let result = broker
        .groups()
        .join(&broker.offsets_log(), &request.group_id, join)
        .await;
    JoinGroupResponse::default()
        .with_error_code(group_code(result.error))
        .with_generation_id(result.generation)
        .with_protocol_type(result.protocol_type.map(StrBytes::from))
        .with_protocol_name(result.protocol.map(StrBytes::from))
        .with_leader(StrBytes::from(result.leader))
        .with_member_id(StrBytes::from(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from(id))
                        .with_group_instance_id(instance.map(StrBytes::from))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}
