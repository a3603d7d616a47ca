//! DescribeGroups: state, assignor and members with their subscriptions and assignments.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// Without an authorizer every group operation is allowed: READ(3), DELETE(6), DESCRIBE(8).
const ALL_GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Handles a DescribeGroups request. A group that does not exist is described as `Dead`, with
/// no error, as Kafka does.
pub async fn handle(broker: &Broker, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let operations = if request.include_authorized_operations {
        ALL_GROUP_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let mut groups = Vec::with_capacity(request.groups.len());
    for id in request.groups {
        let described = DescribedGroup::default()
            .with_group_id(id.clone())
            .with_authorized_operations(operations);
        let described = match broker.groups().describe(&id).await {
            None => described.with_group_state(StrBytes::from_static_str("Dead")),
            Some(g) => described
                .with_group_state(StrBytes::from_static_str(g.state))
                .with_protocol_type(StrBytes::from(g.protocol_type))
                .with_protocol_data(StrBytes::from(g.protocol))
                .with_members(
                    g.members
                        .into_iter()
                        .map(|(member, instance, client, host, metadata, assignment)| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from(member))
                                .with_group_instance_id(instance.map(StrBytes::from))
                                .with_client_id(StrBytes::from(client))
                                .with_client_host(StrBytes::from(host))
                                .with_member_metadata(metadata)
                                .with_member_assignment(assignment)
                        })
                        .collect(),
                ),
        };
        groups.push(described);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
