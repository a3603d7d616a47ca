//! ListGroups: every group this broker coordinates, filtered by state (v4) and type (v5).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// Every group here uses the classic protocol.
const GROUP_TYPE: &str = "classic";

/// Handles a ListGroups request.
pub async fn handle(broker: &Broker, request: ListGroupsRequest) -> ListGroupsResponse {
    let state_ok = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.eq_ignore_ascii_case(state))
    };
    let type_ok = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
    let groups = broker
        .groups()
        .list()
        .await
        .into_iter()
        .filter(|g| type_ok && state_ok(g.state))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from(g.id)))
                .with_protocol_type(StrBytes::from(g.protocol_type))
                .with_group_state(StrBytes::from_static_str(g.state))
                .with_group_type(StrBytes::from_static_str(GROUP_TYPE))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
