//! LeaveGroup: members leave at once instead of waiting for their session to expire.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;
use crate::protocol::errors::group_code;

/// LeaveGroup v3 replaced the single member id with a batch of member identities.
const BATCHED_FROM: i16 = 3;

/// Handles a LeaveGroup request.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= BATCHED_FROM {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let results = broker
        .groups()
        .leave(&broker.offsets_log(), &request.group_id, &members)
        .await;
    match results {
        Err(e) => LeaveGroupResponse::default().with_error_code(group_code(Some(e))),
        Ok(results) if version < BATCHED_FROM => LeaveGroupResponse::default()
            .with_error_code(group_code(results.into_iter().next().and_then(Result::err))),
        Ok(results) => LeaveGroupResponse::default().with_members(
            request
                .members
                .into_iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(group_code(r.err()))
                })
                .collect(),
        ),
    }
}
