//! SyncGroup: the leader hands out the assignment; every member receives its own once the
//! assignment is persisted.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use crate::broker::Broker;
use crate::group::Committer;
use crate::protocol::errors::group_error;

/// Handles a SyncGroup request.
pub async fn handle(broker: &Broker, request: SyncGroupRequest) -> SyncGroupResponse {
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let member = Committer {
        member_id: &request.member_id,
        generation: request.generation_id,
        instance_id: instance.as_deref(),
    };
    let assignments = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let result = broker
        .groups()
        .sync(
            &broker.offsets_log(),
            &request.group_id,
            member,
            (
                request.protocol_type.as_deref(),
                request.protocol_name.as_deref(),
            ),
            assignments,
        )
        .await;
    let response = SyncGroupResponse::default()
        .with_protocol_type(request.protocol_type)
        .with_protocol_name(request.protocol_name);
    match result {
        Ok(assignment) => response.with_assignment(assignment),
        Err(e) => response.with_error_code(group_error(e).code()),
    }
}
