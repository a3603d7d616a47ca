//! DeleteGroups: removes empty groups and their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;
use crate::protocol::errors::group_code;

/// Handles a DeleteGroups request.
pub async fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let outcome = broker.groups().delete(&broker.offsets_log(), &id).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(group_code(outcome.err())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
