//! CreateTopics: validate and create topics, or only validate with `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::{Broker, NewTopic};
use crate::error::{BrokerError, Result};
use crate::protocol::errors::code_and_message;
use crate::protocol::handlers::describe_configs::config_source;
use crate::topic_config::TopicConfig;

/// Handles a CreateTopics request.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let result = CreatableTopicResult::default().with_name(name.clone());
        results.push(match create(broker, topic, request.validate_only).await {
            Ok((id, partitions, replication, config)) => {
                let configs = config
                    .describe()
                    .into_iter()
                    .map(|e| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_static_str(e.name))
                            .with_value(Some(StrBytes::from(e.value)))
                            .with_config_source(config_source(e.source))
                    })
                    .collect();
                result
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication)
                    .with_configs(Some(configs))
            }
            Err(e) => {
                tracing::debug!(topic = %name.0, error = %e, "create topic failed");
                let (code, message) = code_and_message(&e);
                let result = result
                    .with_error_code(code)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1);
                if version >= 1 {
                    result.with_error_message(message)
                } else {
                    result
                }
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<(uuid::Uuid, i32, i16, TopicConfig)> {
    let mut configs = BTreeMap::new();
    for c in topic.configs {
        let value = c
            .value
            .ok_or_else(|| BrokerError::InvalidConfig(format!("null value for {}", c.name)))?;
        configs.insert(c.name.to_string(), value.to_string());
    }
    let assignment = (!topic.assignments.is_empty()).then(|| {
        let mut a: Vec<_> = topic
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>(),
                )
            })
            .collect();
        a.sort_by_key(|(i, _)| *i);
        a.into_iter().map(|(_, b)| b).collect()
    });
    let new = NewTopic {
        name: topic.name.to_string(),
        partitions: (topic.num_partitions != -1).then_some(topic.num_partitions),
        replication_factor: (topic.replication_factor != -1).then_some(topic.replication_factor),
        assignment,
        configs,
    };
    if validate_only {
        let (partitions, replication, config) = broker.check_new_topic(&new)?;
        return Ok((uuid::Uuid::nil(), partitions, replication, config));
    }
    let created = broker.create_topic(new).await?;
    let replication = broker
        .cluster()
        .partition(created.id(), 0)
        .map_or(1, |s| s.replicas.len() as i16);
    Ok((
        created.id(),
        created.partition_count(),
        replication,
        created.config(),
    ))
}
