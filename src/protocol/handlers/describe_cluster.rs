//! DescribeCluster: the cluster id, the controller and the brokers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// DescribeCluster v1's endpoint type for brokers.
const ENDPOINT_BROKERS: i8 = 1;

/// Handles a DescribeCluster request.
pub fn handle(broker: &Broker, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let settings = broker.settings();
    let me = BrokerId(settings.broker_id);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from(broker.cluster_id().to_string()))
        .with_controller_id(me)
        .with_cluster_authorized_operations(i32::MIN);
    if request.endpoint_type != ENDPOINT_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "only broker endpoints are described",
            )));
    }
    response.with_brokers(vec![
        DescribeClusterBroker::default()
            .with_broker_id(me)
            .with_host(StrBytes::from(settings.advertised_host.clone()))
            .with_port(settings.advertised_port),
    ])
}
