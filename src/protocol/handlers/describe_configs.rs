//! DescribeConfigs: the effective configs of topics and of this broker.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::protocol::errors::code_and_message;
use crate::settings::Settings;
use crate::topic_config::{ConfigSource, ConfigType};

/// Kafka's config resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's config resource type of a broker.
pub const RESOURCE_BROKER: i8 = 4;

const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's `ConfigSource` id for a described value.
pub fn config_source(source: ConfigSource) -> i8 {
    match source {
        ConfigSource::Topic => SOURCE_TOPIC,
        ConfigSource::Broker => SOURCE_STATIC_BROKER,
        ConfigSource::Default => SOURCE_DEFAULT,
    }
}

struct Described {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    config_type: ConfigType,
    doc: &'static str,
    synonyms: Vec<(String, String, i8)>,
}

/// Handles a DescribeConfigs request.
pub fn handle(
    broker: &Broker,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match describe(broker, resource.resource_type, &resource.resource_name) {
                Ok(entries) => {
                    let keys = resource.configuration_keys.as_ref();
                    let configs = entries
                        .into_iter()
                        .filter(|d| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == d.name)))
                        .map(|d| {
                            entry(
                                d,
                                version,
                                request.include_synonyms,
                                request.include_documentation,
                            )
                        })
                        .collect();
                    result.with_configs(configs)
                }
                Err(e) => {
                    let (code, message) = code_and_message(&e);
                    result.with_error_code(code).with_error_message(message)
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn entry(
    d: Described,
    version: i16,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from(d.name))
        .with_value(Some(StrBytes::from(d.value)))
        .with_read_only(d.read_only)
        .with_config_source(d.source);
    if synonyms {
        result = result.with_synonyms(
            d.synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from(name))
                        .with_value(Some(StrBytes::from(value)))
                        .with_source(source)
                })
                .collect(),
        );
    }
    if version >= 3 {
        result = result.with_config_type(d.config_type as i8);
        if documentation {
            result = result.with_documentation(Some(StrBytes::from_static_str(d.doc)));
        }
    }
    result
}

fn describe(broker: &Broker, resource_type: i8, name: &str) -> Result<Vec<Described>, BrokerError> {
    match resource_type {
        RESOURCE_TOPIC => {
            let topic = broker
                .topic(name)
                .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
            Ok(topic
                .config()
                .describe()
                .into_iter()
                .map(|e| {
                    let source = config_source(e.source);
                    let synonyms = match (e.source, kafka_broker_name(e.name)) {
                        (ConfigSource::Topic, _) => {
                            vec![(e.name.to_string(), e.value.clone(), source)]
                        }
                        (_, Some(broker_name)) => {
                            vec![(broker_name.to_string(), e.value.clone(), source)]
                        }
                        (_, None) => Vec::new(),
                    };
                    Described {
                        name: e.name.to_string(),
                        value: e.value,
                        source,
                        read_only: false,
                        config_type: e.config_type,
                        doc: e.doc,
                        synonyms,
                    }
                })
                .collect())
        }
        RESOURCE_BROKER => {
            let me = broker.settings().broker_id.to_string();
            if !name.is_empty() && name != me {
                return Err(BrokerError::InvalidRequest(format!(
                    "this broker is {me}, not '{name}'"
                )));
            }
            Ok(broker_configs(broker.settings()))
        }
        other => Err(BrokerError::InvalidRequest(format!(
            "config resource type {other} is not supported"
        ))),
    }
}

/// Kafka's broker-level name of a topic config default.
fn kafka_broker_name(topic_config: &str) -> Option<&'static str> {
    Some(match topic_config {
        "max.message.bytes" => "message.max.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "compression.type" => "compression.type",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.insync.replicas" => "min.insync.replicas",
        _ => return None,
    })
}

fn broker_configs(settings: &Settings) -> Vec<Described> {
    let listener = format!("PLAINTEXT://{}", settings.listen);
    let advertised = format!(
        "PLAINTEXT://{}:{}",
        settings.advertised_host, settings.advertised_port
    );
    let mut values: Vec<(String, String, ConfigType)> = vec![
        (
            "broker.id".into(),
            settings.broker_id.to_string(),
            ConfigType::Int,
        ),
        ("listeners".into(), listener, ConfigType::String),
        (
            "advertised.listeners".into(),
            advertised,
            ConfigType::String,
        ),
        (
            "log.dirs".into(),
            settings.data_dir.display().to_string(),
            ConfigType::String,
        ),
        (
            "num.partitions".into(),
            settings.num_partitions.to_string(),
            ConfigType::Int,
        ),
        (
            "default.replication.factor".into(),
            "1".into(),
            ConfigType::Int,
        ),
        (
            "auto.create.topics.enable".into(),
            settings.auto_create_topics.to_string(),
            ConfigType::Boolean,
        ),
        (
            "socket.request.max.bytes".into(),
            settings.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "log.retention.check.interval.ms".into(),
            settings.retention_check_interval_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.flush.scheduler.interval.ms".into(),
            settings.flush_scheduler_interval_ms.to_string(),
            ConfigType::Long,
        ),
    ];
    for (topic_name, value) in &settings.topic_defaults {
        if let Some(name) = kafka_broker_name(topic_name) {
            let config_type =
                if matches!(*topic_name, "compression.type" | "message.timestamp.type") {
                    ConfigType::String
                } else {
                    ConfigType::Long
                };
            values.push((name.to_string(), value.clone(), config_type));
        }
    }
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values
        .into_iter()
        .map(|(name, value, config_type)| Described {
            synonyms: vec![(name.clone(), value.clone(), SOURCE_STATIC_BROKER)],
            name,
            value,
            source: SOURCE_STATIC_BROKER,
            read_only: true,
            config_type,
            doc: "set at broker startup",
        })
        .collect()
}
