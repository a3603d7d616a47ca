//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;
use crate::group::Committer;
use crate::protocol::errors::group_code;

/// Handles a Heartbeat request.
pub async fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let member = Committer {
        member_id: &request.member_id,
        generation: request.generation_id,
        instance_id: instance.as_deref(),
    };
    let result = broker
        .groups()
        .heartbeat(&broker.offsets_log(), &request.group_id, member)
        .await;
    HeartbeatResponse::default().with_error_code(group_code(result.err()))
}
