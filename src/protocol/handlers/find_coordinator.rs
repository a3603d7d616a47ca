//! FindCoordinator: this broker coordinates every consumer group (it leads every partition of
//! `__consumer_offsets`, which is created here on first use, as Kafka does). Transactions have no
//! coordinator yet: their keys get COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::group::GroupError;
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
    let settings = broker.settings();
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
    match error {
        None => Found {
            node: settings.broker_id,
            host: StrBytes::from(settings.advertised_host.clone()),
            port: settings.advertised_port,
            error: None,
        },
        Some(e) => Found {
            node: -1,
            host: StrBytes::default(),
            port: -1,
            error: Some(e),
        },
    }
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
