//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition
//! (the topic is created on first use, as Kafka does). Transactions have no coordinator yet:
//! their keys get COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::group::{GroupError, OFFSETS_TOPIC, partition_for};
use crate::protocol::errors::group_error;

/// FindCoordinator v4 moved from one key to a batch of keys.
const BATCHED_FROM: i16 = 4;
/// Key types: a consumer group, a transactional id.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a key's coordinator is, or why there is none.
struct Found {
    node: i32,
    host: StrBytes,
    port: i32,
    error: Option<(ResponseError, &'static str)>,
}

async fn find(broker: &Broker, key_type: i8, key: &str) -> Found {
    let error = match key_type {
        KEY_TYPE_GROUP if key.is_empty() => Some((
            group_error(GroupError::InvalidGroupId),
            "the group id is empty",
        )),
        KEY_TYPE_GROUP => match broker.groups().prepare(&broker.offsets_log()).await {
            Ok(()) => None,
            Err(e) => Some((group_error(e), "__consumer_offsets is not available")),
        },
        KEY_TYPE_TRANSACTION => Some((
            ResponseError::CoordinatorNotAvailable,
            "this broker has no transaction coordinator yet",
        )),
        _ => Some((
            ResponseError::InvalidRequest,
            "unknown coordinator key type",
        )),
    };
    let error = error
        .map(Err)
        .unwrap_or_else(|| leader_of_group(broker, key));
    match error {
        Ok((node, host, port)) => Found {
            node,
            host,
            port,
            error: None,
        },
        Err(e) => Found {
            node: -1,
            host: StrBytes::default(),
            port: -1,
            error: Some(e),
        },
    }
}

/// The broker leading the group's offsets partition: its id, host and port.
fn leader_of_group(
    broker: &Broker,
    group: &str,
) -> Result<(i32, StrBytes, i32), (ResponseError, &'static str)> {
    let unavailable = (
        ResponseError::CoordinatorNotAvailable,
        "the group's __consumer_offsets partition has no leader yet",
    );
    let topic = broker.topic(OFFSETS_TOPIC).ok_or(unavailable)?;
    let partition = partition_for(group, topic.partition_count());
    let view = broker.cluster();
    let leader = view
        .partition(topic.id(), partition)
        .map(|s| s.leader)
        .ok_or(unavailable)?;
    let record = view.brokers.get(&leader).ok_or(unavailable)?;
    Ok((leader, StrBytes::from(record.host.clone()), record.port))
}

/// Handles a FindCoordinator request.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let response = FindCoordinatorResponse::default();
    if version >= BATCHED_FROM {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let found = find(broker, request.key_type, &key).await;
            coordinators.push(
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(found.node))
                    .with_host(found.host)
                    .with_port(found.port)
                    .with_error_code(found.error.map_or(0, |(e, _)| e.code()))
                    .with_error_message(found.error.map(|(_, m)| StrBytes::from_static_str(m))),
            );
        }
        return response.with_coordinators(coordinators);
    }
    let found = find(broker, request.key_type, &request.key).await;
    response
        .with_node_id(BrokerId(found.node))
        .with_host(found.host)
        .with_port(found.port)
        .with_error_code(found.error.map_or(0, |(e, _)| e.code()))
        .with_error_message(found.error.map(|(_, m)| StrBytes::from_static_str(m)))
}
