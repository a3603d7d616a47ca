//! Metadata: the live brokers, the controller, topics and each partition's leader, replicas and
//! ISR as the cluster's partition states say; creates unknown topics when
//! auto-creation is on and the client allows it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use kafka_protocol::error::ResponseError;

use crate::broker::{Broker, Topic};
use crate::cluster::state::NO_LEADER;
use crate::error::BrokerError;
use crate::protocol::errors::response_error;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// Without an authorizer every topic operation is allowed: READ(3), WRITE(4), CREATE(5),
/// DELETE(6), ALTER(7), DESCRIBE(8), DESCRIBE_CONFIGS(10), ALTER_CONFIGS(11).
const ALL_TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Handles a Metadata request.
pub async fn handle(broker: &Broker, version: i16, request: MetadataRequest) -> MetadataResponse {
    let settings = broker.settings();
    let me = BrokerId(settings.broker_id);
    let operations = if version >= 8 && request.include_topic_authorized_operations {
        ALL_TOPIC_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    // v0 asks for every topic with an empty list; v1+ with a null one.
    let wanted = match request.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let allow_create =
        (version < 4 || request.allow_auto_topic_creation) && settings.auto_create_topics;
    let topics = match wanted {
        None => broker
            .topics()
            .iter()
            .map(|t| describe(broker, t, operations))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for requested in list {
                let entry = match requested.name {
                    Some(name) => by_name(broker, name, allow_create).await,
                    None => by_id(broker, requested.topic_id),
                };
                out.push(match entry {
                    Ok(topic) => describe(broker, &topic, operations),
                    Err((name, id, error)) => MetadataResponseTopic::default()
                        .with_error_code(response_error(&error).code())
                        .with_name(name)
                        .with_topic_id(id)
                        .with_topic_authorized_operations(operations),
                });
            }
            out
        }
    };
    let view = broker.cluster();
    let mut brokers: Vec<MetadataResponseBroker> = view
        .brokers
        .values()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(StrBytes::from(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(StrBytes::from))
        })
        .collect();
    if brokers.is_empty() {
        // Not registered yet (the first moments of startup): at least this broker.
        brokers.push(
            MetadataResponseBroker::default()
                .with_node_id(me)
                .with_host(StrBytes::from(settings.advertised_host.clone()))
                .with_port(settings.advertised_port),
        );
    }
    // Any broker accepts admin requests (they go through the metadata store), so while no
    // controller is elected (an election after an etcd outage) this broker stands in, as a KRaft
    // broker names a random live broker: clients never wait for a controller to appear.
    let controller = view.controller.map_or(me, |c| BrokerId(c.broker_id));
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from(broker.cluster_id().to_string())))
        .with_controller_id(controller)
        .with_topics(topics)
}

type Failure = (Option<TopicName>, Uuid, BrokerError);

async fn by_name(
    broker: &Broker,
    name: TopicName,
    allow_create: bool,
) -> Result<std::sync::Arc<Topic>, Failure> {
    if let Some(topic) = broker.topic(&name) {
        return Ok(topic);
    }
    let error = if allow_create {
        match broker.get_or_create_topic(&name).await {
            Ok(topic) => return Ok(topic),
            Err(e) => e,
        }
    } else {
        match crate::broker::validate_topic_name(&name) {
            Err(e) => e,
            Ok(()) => BrokerError::UnknownTopicOrPartition(name.to_string()),
        }
    };
    Err((Some(name), Uuid::nil(), error))
}

fn by_id(broker: &Broker, id: Uuid) -> Result<std::sync::Arc<Topic>, Failure> {
    broker
        .topic_by_id(id)
        .ok_or((None, id, BrokerError::UnknownTopicId(id)))
}

fn describe(broker: &Broker, topic: &Topic, operations: i32) -> MetadataResponseTopic {
    let view = broker.cluster();
    let partitions = (0..topic.partition_count())
        .map(|index| {
            let response = MetadataResponsePartition::default().with_partition_index(index);
            let Some(state) = view.partition(topic.id(), index) else {
                return response
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_leader_epoch(-1);
            };
            let ids = |ids: &[i32]| ids.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
            let offline: Vec<i32> = state
                .replicas
                .iter()
                .copied()
                .filter(|r| !view.brokers.contains_key(r))
                .collect();
            let error = if state.leader == NO_LEADER {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            response
                .with_error_code(error)
                .with_leader_id(BrokerId(state.leader))
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(ids(&state.replicas))
                .with_isr_nodes(ids(&state.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(StrBytes::from(topic.name().to_string()))))
        .with_topic_id(topic.id())
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}
