//! AlterPartitionReassignments: start moving partitions to new replicas, or cancel a move
//! (null replicas). The controller completes each move once the new replicas are in sync.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

use crate::broker::Broker;
use crate::protocol::errors::code_and_message;

/// Handles an AlterPartitionReassignments request.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    // v1 (KIP-860) may forbid changing the replication factor; v0 always allowed it.
    let allow_change = version < 1 || request.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
            let outcome = broker
                .reassign_partition(
                    &topic.name,
                    p.partition_index,
                    target.as_deref(),
                    allow_change,
                )
                .await;
            let response =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => response,
                Err(e) => {
                    let (code, message) = code_and_message(&e);
                    response.with_error_code(code).with_error_message(message)
                }
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_change)
        .with_responses(responses)
}
