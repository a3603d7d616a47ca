//! Topic configs with Kafka's names, types, defaults and validation, and how they resolve against
//! the broker's defaults.
//!
//! Every config Kafka clients commonly set is accepted and described. Those the local log acts on
//! today: `segment.bytes`, `segment.ms`, `retention.ms`, `retention.bytes`, `flush.messages`,
//! `flush.ms`, `index.interval.bytes`, `max.message.bytes`, `message.timestamp.type`,
//! `compression.type`, `min.insync.replicas`, `remote.storage.enable`, `local.retention.ms`,
//! `local.retention.bytes`, `unclean.leader.election.enable`; compaction acts on `cleanup.policy`,
//! `delete.retention.ms`, `min.cleanable.dirty.ratio`, `min.compaction.lag.ms` and
//! `max.compaction.lag.ms`. The rest are stored, validated and described.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_tiering::LogConfig;

use crate::error::{BrokerError, Result};

/// The value type of a config, with its range.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Long { min: i64 },
    Int { min: i32 },
    Double { min: f64, max: f64 },
    Bool,
    Choice(&'static [&'static str]),
    List(&'static [&'static str]),
}

/// Kafka's `ConfigType` ids in DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// A boolean.
    Boolean = 1,
    /// A string.
    String = 2,
    /// A 32-bit integer.
    Int = 3,
    /// A 64-bit integer.
    Long = 5,
    /// A floating point number.
    Double = 6,
    /// A comma-separated list.
    List = 7,
}

impl Kind {
    fn config_type(self) -> ConfigType {
        match self {
            Kind::Long { .. } => ConfigType::Long,
            Kind::Int { .. } => ConfigType::Int,
            Kind::Double { .. } => ConfigType::Double,
            Kind::Bool => ConfigType::Boolean,
            Kind::Choice(_) => ConfigType::String,
            Kind::List(_) => ConfigType::List,
        }
    }
}

#[derive(Debug)]
struct Definition {
    name: &'static str,
    kind: Kind,
    default: &'static str,
    doc: &'static str,
}

const COMPRESSION: &[&str] = &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"];

const DEFINITIONS: &[Definition] = &[
    Definition {
        name: "cleanup.policy",
        kind: Kind::List(&["delete", "compact"]),
        default: "delete",
        doc: "delete and/or compact old segments",
    },
    Definition {
        name: "compression.type",
        kind: Kind::Choice(COMPRESSION),
        default: "producer",
        doc: "codec batches are stored with; producer keeps the producer's",
    },
    Definition {
        name: "delete.retention.ms",
        kind: Kind::Long { min: 0 },
        default: "86400000",
        doc: "how long tombstones are kept on compacted topics",
    },
    Definition {
        name: "file.delete.delay.ms",
        kind: Kind::Long { min: 0 },
        default: "60000",
        doc: "delay before a deleted segment's file is removed",
    },
    Definition {
        name: "flush.messages",
        kind: Kind::Long { min: 1 },
        default: "9223372036854775807",
        doc: "fsync after this many messages",
    },
    Definition {
        name: "flush.ms",
        kind: Kind::Long { min: 0 },
        default: "9223372036854775807",
        doc: "fsync when the last flush is this old",
    },
    Definition {
        name: "index.interval.bytes",
        kind: Kind::Int { min: 0 },
        default: "4096",
        doc: "bytes between offset index entries",
    },
    Definition {
        name: "local.retention.bytes",
        kind: Kind::Long { min: -2 },
        default: "-2",
        doc: "bytes kept on local disk when tiered; -2 means retention.bytes",
    },
    Definition {
        name: "local.retention.ms",
        kind: Kind::Long { min: -2 },
        default: "-2",
        doc: "time kept on local disk when tiered; -2 means retention.ms",
    },
    Definition {
        name: "max.compaction.lag.ms",
        kind: Kind::Long { min: 1 },
        default: "9223372036854775807",
        doc: "longest a record stays uncompacted",
    },
    Definition {
        name: "max.message.bytes",
        kind: Kind::Int { min: 0 },
        default: "1048588",
        doc: "largest record batch accepted",
    },
    Definition {
        name: "message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        doc: "whether record timestamps come from the producer or the broker",
    },
    Definition {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::Double { min: 0.0, max: 1.0 },
        default: "0.5",
        doc: "dirty share of the log that triggers compaction",
    },
    Definition {
        name: "min.compaction.lag.ms",
        kind: Kind::Long { min: 0 },
        default: "0",
        doc: "shortest time a record stays uncompacted",
    },
    Definition {
        name: "min.insync.replicas",
        kind: Kind::Int { min: 1 },
        default: "1",
        doc: "in-sync replicas an acks=all produce needs",
    },
    Definition {
        name: "preallocate",
        kind: Kind::Bool,
        default: "false",
        doc: "preallocate segment files (not used by Strata)",
    },
    Definition {
        name: "remote.storage.enable",
        kind: Kind::Bool,
        default: "true",
        doc: "offload sealed segments to object storage",
    },
    Definition {
        name: "retention.bytes",
        kind: Kind::Long { min: -1 },
        default: "-1",
        doc: "largest size of the log; -1 for no limit",
    },
    Definition {
        name: "retention.ms",
        kind: Kind::Long { min: -1 },
        default: "604800000",
        doc: "how long records are kept; -1 forever",
    },
    Definition {
        name: "segment.bytes",
        kind: Kind::Int { min: 14 },
        default: "1073741824",
        doc: "largest segment file",
    },
    Definition {
        name: "segment.index.bytes",
        kind: Kind::Int { min: 4 },
        default: "10485760",
        doc: "largest offset index file (not used by Strata)",
    },
    Definition {
        name: "segment.jitter.ms",
        kind: Kind::Long { min: 0 },
        default: "0",
        doc: "random jitter on segment.ms (not used by Strata)",
    },
    Definition {
        name: "segment.ms",
        kind: Kind::Long { min: 1 },
        default: "604800000",
        doc: "longest a segment stays active",
    },
    Definition {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        default: "false",
        doc: "allow out-of-sync replicas to become leader",
    },
];

fn definition(name: &str) -> Result<&'static Definition> {
    DEFINITIONS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| BrokerError::InvalidConfig(format!("unknown topic config name: {name}")))
}

/// The broker setting that supplies the default of a topic config, for error messages.
pub fn broker_setting_for(name: &str) -> &'static str {
    match name {
        "max.message.bytes" => "message-max-bytes",
        "segment.bytes" => "log-segment-bytes",
        "segment.ms" => "log-segment-ms",
        "retention.ms" => "log-retention-ms",
        "retention.bytes" => "log-retention-bytes",
        "flush.messages" => "log-flush-messages",
        "flush.ms" => "log-flush-ms",
        "compression.type" => "compression-type",
        "message.timestamp.type" => "log-message-timestamp-type",
        "min.insync.replicas" => "min-insync-replicas",
        "remote.storage.enable" => "remote-storage-enable",
        "local.retention.ms" => "local-retention-ms",
        "local.retention.bytes" => "local-retention-bytes",
        _ => "config",
    }
}

/// Checks that `value` is a legal value of the topic config `name`.
pub fn validate(name: &str, value: &str) -> Result<()> {
    let def = definition(name)?;
    let bad = |why: String| {
        Err(BrokerError::InvalidConfig(format!(
            "invalid value '{value}' for {name}: {why}"
        )))
    };
    match def.kind {
        Kind::Long { min } => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(format!("must be at least {min}")),
            Err(_) => bad("not a whole number".into()),
        },
        Kind::Int { min } => match value.trim().parse::<i32>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(format!("must be at least {min}")),
            Err(_) => bad("not a 32-bit whole number".into()),
        },
        Kind::Double { min, max } => match value.trim().parse::<f64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            Ok(_) => bad(format!("must be between {min} and {max}")),
            Err(_) => bad("not a number".into()),
        },
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => bad("must be true or false".into()),
        },
        Kind::Choice(options) => {
            if options.contains(&value.trim()) {
                Ok(())
            } else {
                bad(format!("must be one of {options:?}"))
            }
        }
        Kind::List(options) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.iter().all(|i| options.contains(i)) {
                Ok(())
            } else {
                bad(format!("items must be among {options:?}"))
            }
        }
    }
}

/// Whether a config is a list (for IncrementalAlterConfigs APPEND and SUBTRACT).
pub fn is_list(name: &str) -> Result<bool> {
    Ok(matches!(definition(name)?.kind, Kind::List(_)))
}

/// Where a described value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// Set on the broker at startup.
    Broker,
    /// Kafka's default.
    Default,
}

/// One described config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    /// The config name.
    pub name: &'static str,
    /// Its effective value.
    pub value: String,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// The value type.
    pub config_type: ConfigType,
    /// One line of documentation.
    pub doc: &'static str,
}

/// Broker-level defaults of topic configs, shared by all topics.
#[derive(Debug, Clone, Default)]
pub struct TopicDefaults {
    values: BTreeMap<&'static str, String>,
}

impl TopicDefaults {
    /// Defaults from the broker's settings (already validated).
    pub fn new(settings: &[(&'static str, String)]) -> Self {
        TopicDefaults {
            values: settings.iter().cloned().collect(),
        }
    }
}

/// The effective configuration of one topic: its overrides over the broker's defaults.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    overrides: BTreeMap<String, String>,
    defaults: Arc<TopicDefaults>,
}

impl TopicConfig {
    /// Validates `overrides` and builds the effective config.
    pub fn new(overrides: BTreeMap<String, String>, defaults: Arc<TopicDefaults>) -> Result<Self> {
        for (name, value) in &overrides {
            validate(name, value)?;
        }
        Ok(TopicConfig {
            overrides,
            defaults,
        })
    }

    /// The topic's overrides.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    fn lookup(&self, def: &'static Definition) -> (String, ConfigSource) {
        if let Some(v) = self.overrides.get(def.name) {
            (v.trim().to_string(), ConfigSource::Topic)
        } else if let Some(v) = self.defaults.values.get(def.name) {
            let source = if v == def.default {
                ConfigSource::Default
            } else {
                ConfigSource::Broker
            };
            (v.clone(), source)
        } else {
            (def.default.to_string(), ConfigSource::Default)
        }
    }

    /// The effective value of a known config.
    pub fn effective(&self, name: &str) -> Result<String> {
        Ok(self.lookup(definition(name)?).0)
    }

    fn value(&self, name: &str) -> String {
        definition(name)
            .map(|d| self.lookup(d).0)
            .unwrap_or_default()
    }

    fn number(&self, name: &str) -> i64 {
        // Values were validated on the way in, so parsing cannot fail; 0 is a safe fallback.
        self.value(name).parse().unwrap_or(0)
    }

    /// Every config with its effective value, in name order.
    pub fn describe(&self) -> Vec<ConfigEntry> {
        DEFINITIONS
            .iter()
            .map(|def| {
                let (value, source) = self.lookup(def);
                ConfigEntry {
                    name: def.name,
                    value,
                    source,
                    config_type: def.kind.config_type(),
                    doc: def.doc,
                }
            })
            .collect()
    }

    /// The settings of the partition logs.
    pub fn log_config(&self) -> LogConfig {
        let deletes = self
            .value("cleanup.policy")
            .split(',')
            .any(|p| p.trim() == "delete");
        LogConfig {
            segment_bytes: self.number("segment.bytes").max(14) as u64,
            segment_ms: self.number("segment.ms"),
            // Without "delete" in cleanup.policy nothing expires by time or size (Kafka's rule).
            retention_ms: if deletes {
                self.number("retention.ms")
            } else {
                -1
            },
            retention_bytes: if deletes {
                self.number("retention.bytes")
            } else {
                -1
            },
            index_interval_bytes: self.number("index.interval.bytes").max(0) as u64,
            flush_messages: self.number("flush.messages"),
            flush_ms: self.number("flush.ms"),
            max_message_bytes: self.number("max.message.bytes").max(0) as usize,
            remote_storage: self.remote_storage(),
            local_retention_ms: self.number("local.retention.ms"),
            local_retention_bytes: self.number("local.retention.bytes"),
        }
    }

    /// How the topic is compacted, or `None` when `cleanup.policy` does not include `compact`.
    pub fn compaction_config(&self) -> Option<strata_compaction::CompactionConfig> {
        let compacts = self
            .value("cleanup.policy")
            .split(',')
            .any(|p| p.trim() == "compact");
        compacts.then(|| strata_compaction::CompactionConfig {
            delete_retention_ms: self.number("delete.retention.ms"),
            min_cleanable_dirty_ratio: self
                .value("min.cleanable.dirty.ratio")
                .parse()
                .unwrap_or(0.5),
            min_compaction_lag_ms: self.number("min.compaction.lag.ms"),
            max_compaction_lag_ms: self.number("max.compaction.lag.ms"),
            segment_bytes: self.number("segment.bytes").max(14) as u64,
            index_interval_bytes: self.number("index.interval.bytes").max(0) as u64,
        })
    }

    /// The codec batches must be stored with, or `None` to keep the producer's.
    pub fn compression(&self) -> Option<kafka_protocol::records::Compression> {
        use kafka_protocol::records::Compression;
        match self.value("compression.type").as_str() {
            "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Whether the broker stamps record timestamps (`LogAppendTime`).
    pub fn log_append_time(&self) -> bool {
        self.value("message.timestamp.type") == "LogAppendTime"
    }

    /// `remote.storage.enable`.
    pub fn remote_storage(&self) -> bool {
        self.value("remote.storage.enable")
            .eq_ignore_ascii_case("true")
    }

    /// `min.insync.replicas`.
    pub fn min_insync_replicas(&self) -> i32 {
        self.number("min.insync.replicas") as i32
    }

    /// `unclean.leader.election.enable`.
    pub fn unclean_leader_election(&self) -> bool {
        self.value("unclean.leader.election.enable")
            .eq_ignore_ascii_case("true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Arc<TopicDefaults> {
        Arc::new(TopicDefaults::new(&[("retention.ms", "1000".into())]))
    }

    #[test]
    fn validation_follows_kafka_types_and_ranges() {
        let cases = [
            ("retention.ms", "-1", true),
            ("retention.ms", "-2", false),
            ("retention.ms", "abc", false),
            ("segment.bytes", "13", false),
            ("segment.bytes", "1048576", true),
            ("cleanup.policy", "compact,delete", true),
            ("cleanup.policy", "shred", false),
            ("compression.type", "zstd", true),
            ("compression.type", "brotli", false),
            ("min.cleanable.dirty.ratio", "0.7", true),
            ("min.cleanable.dirty.ratio", "1.5", false),
            ("message.timestamp.type", "LogAppendTime", true),
            ("preallocate", "yes", false),
            ("no.such.config", "1", false),
        ];
        for (name, value, ok) in cases {
            assert_eq!(validate(name, value).is_ok(), ok, "{name}={value}");
        }
    }

    #[test]
    fn overrides_win_over_broker_defaults_over_kafka_defaults() {
        let config = TopicConfig::new(
            [("segment.bytes".to_string(), "2048".to_string())].into(),
            defaults(),
        )
        .expect("valid");
        let log = config.log_config();
        assert_eq!(
            (log.segment_bytes, log.retention_ms, log.retention_bytes),
            (2048, 1000, -1)
        );
        let described = config.describe();
        let find = |n: &str| {
            described
                .iter()
                .find(|e| e.name == n)
                .cloned()
                .expect("described")
        };
        assert_eq!(find("segment.bytes").source, ConfigSource::Topic);
        assert_eq!(find("retention.ms").source, ConfigSource::Broker);
        assert_eq!(find("retention.bytes").source, ConfigSource::Default);
        assert!(
            TopicConfig::new([("retention.ms".into(), "x".into())].into(), defaults()).is_err()
        );
    }
}
