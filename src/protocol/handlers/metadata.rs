//! Metadata: brokers, the controller, topics and partition leadership; creates unknown topics when
//! auto-creation is on and the client allows it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::broker::{Broker, Topic};
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
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(me)
                .with_host(StrBytes::from(settings.advertised_host.clone()))
                .with_port(settings.advertised_port),
        ])
        .with_cluster_id(Some(StrBytes::from(broker.cluster_id().to_string())))
        .with_controller_id(me)
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
    let me = BrokerId(broker.settings().broker_id);
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(0)
                .with_partition_index(p.index())
                .with_leader_id(me)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me])
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
