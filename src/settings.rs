//! Broker settings: from command-line flags, `STRATA_*` environment variables and an optional TOML
//! file (in that order of precedence), validated once at startup.
//!
//! Every setting has one name used three ways: `--log-retention-ms` on the command line,
//! `STRATA_LOG_RETENTION_MS` in the environment and `log-retention-ms` in the TOML file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

mod compaction;
pub use compaction::CompactionSettings;
use compaction::compaction_settings;

/// Why the settings were rejected; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings (unknown key, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A setting has a value outside its range.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// The setting's name.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// One layer of settings (flags + environment, or the file); every field optional.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SettingsLayer {
    /// Directory for partition logs and the embedded metadata store [default: ./data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds [default: 127.0.0.1:9092].
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<String>,
    /// host:port that clients are told to connect to [default: the listen address].
    #[arg(long, env = "STRATA_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// This broker's id [default: 1].
    #[arg(long, env = "STRATA_BROKER_ID", allow_negative_numbers = true)]
    pub broker_id: Option<i32>,
    /// Partitions of auto-created topics and of CreateTopics without a count [default: 1].
    #[arg(long, env = "STRATA_NUM_PARTITIONS", allow_negative_numbers = true)]
    pub num_partitions: Option<i32>,
    /// Create unknown topics when a client asks for their metadata [default: true].
    #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Largest request frame accepted, in bytes [default: 104857600].
    #[arg(
        long,
        env = "STRATA_SOCKET_REQUEST_MAX_BYTES",
        allow_negative_numbers = true
    )]
    pub socket_request_max_bytes: Option<i32>,
    /// Default `max.message.bytes` of topics [default: 1048588].
    #[arg(long, env = "STRATA_MESSAGE_MAX_BYTES", allow_negative_numbers = true)]
    pub message_max_bytes: Option<i32>,
    /// Default `segment.bytes` [default: 1073741824].
    #[arg(long, env = "STRATA_LOG_SEGMENT_BYTES", allow_negative_numbers = true)]
    pub log_segment_bytes: Option<i64>,
    /// Default `segment.ms` [default: 604800000].
    #[arg(long, env = "STRATA_LOG_SEGMENT_MS", allow_negative_numbers = true)]
    pub log_segment_ms: Option<i64>,
    /// Default `retention.ms`; -1 keeps data forever [default: 604800000].
    #[arg(long, env = "STRATA_LOG_RETENTION_MS", allow_negative_numbers = true)]
    pub log_retention_ms: Option<i64>,
    /// Default `retention.bytes`; -1 for no limit [default: -1].
    #[arg(
        long,
        env = "STRATA_LOG_RETENTION_BYTES",
        allow_negative_numbers = true
    )]
    pub log_retention_bytes: Option<i64>,
    /// How often retention runs, in ms [default: 300000].
    #[arg(
        long,
        env = "STRATA_LOG_RETENTION_CHECK_INTERVAL_MS",
        allow_negative_numbers = true
    )]
    pub log_retention_check_interval_ms: Option<i64>,
    /// Default `flush.messages` [default: 9223372036854775807, i.e. leave it to the page cache].
    #[arg(long, env = "STRATA_LOG_FLUSH_MESSAGES", allow_negative_numbers = true)]
    pub log_flush_messages: Option<i64>,
    /// Default `flush.ms` [default: 9223372036854775807].
    #[arg(long, env = "STRATA_LOG_FLUSH_MS", allow_negative_numbers = true)]
    pub log_flush_ms: Option<i64>,
    /// How often sealed segments are fsynced and `flush.ms` is checked, in ms [default: 1000].
    #[arg(
        long,
        env = "STRATA_LOG_FLUSH_SCHEDULER_INTERVAL_MS",
        allow_negative_numbers = true
    )]
    pub log_flush_scheduler_interval_ms: Option<i64>,
    /// Drop-behind: every 250 ms, each partition's data more than this many bytes behind its end
    /// is written back and dropped from the page cache, so the log's page cache stays bounded
    /// and its pages are reused; 0 leaves the page cache to the kernel [default: 33554432].
    #[arg(long, env = "STRATA_LOG_DROP_BEHIND_BYTES")]
    pub log_drop_behind_bytes: Option<u64>,
    /// Default `compression.type` [default: producer].
    #[arg(long, env = "STRATA_COMPRESSION_TYPE")]
    pub compression_type: Option<String>,
    /// Default `message.timestamp.type` [default: CreateTime].
    #[arg(long, env = "STRATA_LOG_MESSAGE_TIMESTAMP_TYPE")]
    pub log_message_timestamp_type: Option<String>,
    /// Default `min.insync.replicas` [default: 1].
    #[arg(
        long,
        env = "STRATA_MIN_INSYNC_REPLICAS",
        allow_negative_numbers = true
    )]
    pub min_insync_replicas: Option<i32>,
    /// Default `remote.storage.enable`: offload sealed segments to the object store [default: true].
    #[arg(long, env = "STRATA_REMOTE_STORAGE_ENABLE")]
    pub remote_storage_enable: Option<bool>,
    /// Default `local.retention.ms` (-2: same as retention.ms) [default: -2].
    #[arg(long, env = "STRATA_LOCAL_RETENTION_MS", allow_negative_numbers = true)]
    pub local_retention_ms: Option<i64>,
    /// Default `local.retention.bytes` (-2: same as retention.bytes) [default: -2].
    #[arg(
        long,
        env = "STRATA_LOCAL_RETENTION_BYTES",
        allow_negative_numbers = true
    )]
    pub local_retention_bytes: Option<i64>,
    /// Object store for the remote tier: s3://bucket/prefix, gs://…, az://…, file:///path
    /// [default: file://<data-dir>/objects].
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Endpoint of an S3-compatible service, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "STRATA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "STRATA_S3_REGION")]
    pub s3_region: Option<String>,
    /// Use path-style S3 requests (most S3-compatible servers want this) [default: false].
    #[arg(long, env = "STRATA_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// Multipart part size for segment uploads; smaller segments go in one PUT [default: 33554432].
    #[arg(long, env = "STRATA_UPLOAD_PART_BYTES")]
    pub upload_part_bytes: Option<u64>,
    /// Upload rate limit in bytes per second, 0 for none [default: 0].
    #[arg(long, env = "STRATA_UPLOAD_RATE_LIMIT_BYTES")]
    pub upload_rate_limit_bytes: Option<u64>,
    /// Pace segment uploads to at most this multiple of the broker's produce rate (never below
    /// 64 MiB/s), so an upload does not take the CPU from the produce path in one burst; 0 for
    /// no pacing [default: 1.25].
    #[arg(long, env = "STRATA_UPLOAD_INGEST_MULTIPLE")]
    pub upload_ingest_multiple: Option<f64>,
    /// How often sealed segments are looked for and offloaded, in ms [default: 1000].
    #[arg(long, env = "STRATA_TIERING_INTERVAL_MS")]
    pub tiering_interval_ms: Option<u64>,
    /// Memory for the remote chunk cache, in bytes [default: 268435456].
    #[arg(long, env = "STRATA_CACHE_MEMORY_BYTES")]
    pub cache_memory_bytes: Option<u64>,
    /// Local disk for the remote chunk cache, in bytes [default: 1073741824].
    #[arg(long, env = "STRATA_CACHE_DISK_BYTES")]
    pub cache_disk_bytes: Option<u64>,
    /// Size of a cached chunk, the unit of ranged GETs [default: 4194304].
    #[arg(long, env = "STRATA_CACHE_CHUNK_BYTES")]
    pub cache_chunk_bytes: Option<u64>,
    /// Chunks prefetched after each remote read [default: 4].
    #[arg(long, env = "STRATA_REMOTE_READ_AHEAD_CHUNKS")]
    pub remote_read_ahead_chunks: Option<u64>,
    /// Address of the HTTP endpoint serving Prometheus /metrics [default: 127.0.0.1:9644].
    #[arg(long, env = "STRATA_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// etcd endpoints holding the cluster metadata, comma-separated
    /// (`http://127.0.0.1:2379,...`); unset: the embedded single-node store in the data directory.
    #[arg(long, env = "STRATA_ETCD", value_delimiter = ',')]
    pub etcd: Option<Vec<String>>,
    /// The cluster's name: every etcd key lives under `/strata/<name>/`, so clusters can share
    /// one etcd [default: strata].
    #[arg(long, env = "STRATA_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// This broker's rack (`broker.rack`), published in its etcd registration.
    #[arg(long, env = "STRATA_BROKER_RACK")]
    pub broker_rack: Option<String>,
    /// How long a broker's etcd registration outlives its last keep-alive, in ms (whole seconds
    /// are used, at least one) [default: 10000].
    #[arg(long, env = "STRATA_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// Address of the inter-broker replication service (gRPC); other brokers reach it at the
    /// advertised host and this port [default: 127.0.0.1:9093].
    #[arg(long, env = "STRATA_REPLICATION_LISTEN")]
    pub replication_listen: Option<String>,
    /// `replica.lag.time.max.ms`: a follower that has not caught up with the leader for this long
    /// leaves the ISR [default: 30000].
    #[arg(long, env = "STRATA_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// `default.replication.factor` of auto-created topics and of creations that leave it
    /// unset [default: 1].
    #[arg(long, env = "STRATA_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
    /// Replication factor of `__consumer_offsets`, capped by the live brokers when it is
    /// created [default: 3].
    #[arg(long, env = "STRATA_OFFSETS_TOPIC_REPLICATION_FACTOR")]
    pub offsets_topic_replication_factor: Option<i16>,
    /// Partitions of `__consumer_offsets`, fixed once it exists [default: 50].
    #[arg(long, env = "STRATA_OFFSETS_TOPIC_NUM_PARTITIONS")]
    pub offsets_topic_num_partitions: Option<i32>,
    /// `segment.bytes` of `__consumer_offsets` when the broker creates it [default: 104857600].
    #[arg(long, env = "STRATA_OFFSETS_TOPIC_SEGMENT_BYTES")]
    pub offsets_topic_segment_bytes: Option<u64>,
    /// How long the first rebalance of an empty group waits for more members, in ms
    /// [default: 3000].
    #[arg(long, env = "STRATA_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<i32>,
    /// Smallest `session.timeout.ms` a group member may ask for [default: 6000].
    #[arg(long, env = "STRATA_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Largest `session.timeout.ms` a group member may ask for [default: 1800000].
    #[arg(long, env = "STRATA_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// How long committed offsets of an empty group (or a standalone consumer's offsets) are
    /// kept, in minutes [default: 10080].
    #[arg(long, env = "STRATA_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<i64>,
    /// How often expired offsets are looked for, in ms [default: 600000].
    #[arg(long, env = "STRATA_OFFSETS_RETENTION_CHECK_INTERVAL_MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// Whether this broker compacts `cleanup.policy=compact` topics [default: true].
    #[arg(long, env = "STRATA_LOG_CLEANER_ENABLE")]
    pub log_cleaner_enable: Option<bool>,
    /// How often compaction looks for work, in ms [default: 15000].
    #[arg(long, env = "STRATA_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Memory for the key map of one compaction pass, in bytes [default: 134217728].
    #[arg(long, env = "STRATA_LOG_CLEANER_DEDUPE_BUFFER_SIZE")]
    pub log_cleaner_dedupe_buffer_size: Option<u64>,
    /// Bytes per second compaction may read and write, 0 for no limit [default: 0].
    #[arg(long, env = "STRATA_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND")]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Object-store requests per second compaction may make, 0 for no limit [default: 0].
    #[arg(long, env = "STRATA_LOG_CLEANER_OBJECT_STORE_REQUESTS_PER_SECOND")]
    pub log_cleaner_object_store_requests_per_second: Option<u64>,
    /// Who compacts the remote tier and sweeps the bucket: `broker` (each partition's leader) or
    /// `service` (`strata compactor` processes) [default: broker].
    #[arg(long, env = "STRATA_REMOTE_COMPACTION")]
    pub remote_compaction: Option<String>,
    /// How often the bucket is swept for objects no manifest lists, in ms [default: 3600000].
    #[arg(long, env = "STRATA_REMOTE_SWEEP_INTERVAL_MS")]
    pub remote_sweep_interval_ms: Option<u64>,
    /// How old an unlisted object must be before the sweep deletes it, in ms; longer than any
    /// upload takes [default: 3600000].
    #[arg(long, env = "STRATA_REMOTE_SWEEP_GRACE_MS")]
    pub remote_sweep_grace_ms: Option<u64>,
}

impl SettingsLayer {
    /// Fills every unset field from `lower`.
    pub fn or(self, lower: SettingsLayer) -> SettingsLayer {
        SettingsLayer {
            data_dir: self.data_dir.or(lower.data_dir),
            listen: self.listen.or(lower.listen),
            advertised_listener: self.advertised_listener.or(lower.advertised_listener),
            broker_id: self.broker_id.or(lower.broker_id),
            num_partitions: self.num_partitions.or(lower.num_partitions),
            auto_create_topics: self.auto_create_topics.or(lower.auto_create_topics),
            socket_request_max_bytes: self
                .socket_request_max_bytes
                .or(lower.socket_request_max_bytes),
            message_max_bytes: self.message_max_bytes.or(lower.message_max_bytes),
            log_segment_bytes: self.log_segment_bytes.or(lower.log_segment_bytes),
            log_segment_ms: self.log_segment_ms.or(lower.log_segment_ms),
            log_retention_ms: self.log_retention_ms.or(lower.log_retention_ms),
            log_retention_bytes: self.log_retention_bytes.or(lower.log_retention_bytes),
            log_retention_check_interval_ms: self
                .log_retention_check_interval_ms
                .or(lower.log_retention_check_interval_ms),
            log_flush_messages: self.log_flush_messages.or(lower.log_flush_messages),
            log_flush_ms: self.log_flush_ms.or(lower.log_flush_ms),
            log_flush_scheduler_interval_ms: self
                .log_flush_scheduler_interval_ms
                .or(lower.log_flush_scheduler_interval_ms),
            log_drop_behind_bytes: self.log_drop_behind_bytes.or(lower.log_drop_behind_bytes),
            compression_type: self.compression_type.or(lower.compression_type),
            log_message_timestamp_type: self
                .log_message_timestamp_type
                .or(lower.log_message_timestamp_type),
            min_insync_replicas: self.min_insync_replicas.or(lower.min_insync_replicas),
            remote_storage_enable: self.remote_storage_enable.or(lower.remote_storage_enable),
            local_retention_ms: self.local_retention_ms.or(lower.local_retention_ms),
            local_retention_bytes: self.local_retention_bytes.or(lower.local_retention_bytes),
            object_store: self.object_store.or(lower.object_store),
            s3_endpoint: self.s3_endpoint.or(lower.s3_endpoint),
            s3_region: self.s3_region.or(lower.s3_region),
            s3_path_style: self.s3_path_style.or(lower.s3_path_style),
            upload_part_bytes: self.upload_part_bytes.or(lower.upload_part_bytes),
            upload_rate_limit_bytes: self
                .upload_rate_limit_bytes
                .or(lower.upload_rate_limit_bytes),
            upload_ingest_multiple: self.upload_ingest_multiple.or(lower.upload_ingest_multiple),
            tiering_interval_ms: self.tiering_interval_ms.or(lower.tiering_interval_ms),
            cache_memory_bytes: self.cache_memory_bytes.or(lower.cache_memory_bytes),
            cache_disk_bytes: self.cache_disk_bytes.or(lower.cache_disk_bytes),
            cache_chunk_bytes: self.cache_chunk_bytes.or(lower.cache_chunk_bytes),
            remote_read_ahead_chunks: self
                .remote_read_ahead_chunks
                .or(lower.remote_read_ahead_chunks),
            metrics_listen: self.metrics_listen.or(lower.metrics_listen),
            etcd: self.etcd.or(lower.etcd),
            cluster_name: self.cluster_name.or(lower.cluster_name),
            broker_rack: self.broker_rack.or(lower.broker_rack),
            replication_listen: self.replication_listen.or(lower.replication_listen),
            replica_lag_time_max_ms: self
                .replica_lag_time_max_ms
                .or(lower.replica_lag_time_max_ms),
            default_replication_factor: self
                .default_replication_factor
                .or(lower.default_replication_factor),
            offsets_topic_replication_factor: self
                .offsets_topic_replication_factor
                .or(lower.offsets_topic_replication_factor),
            broker_session_timeout_ms: self
                .broker_session_timeout_ms
                .or(lower.broker_session_timeout_ms),
            offsets_topic_num_partitions: self
                .offsets_topic_num_partitions
                .or(lower.offsets_topic_num_partitions),
            offsets_topic_segment_bytes: self
                .offsets_topic_segment_bytes
                .or(lower.offsets_topic_segment_bytes),
            group_initial_rebalance_delay_ms: self
                .group_initial_rebalance_delay_ms
                .or(lower.group_initial_rebalance_delay_ms),
            group_min_session_timeout_ms: self
                .group_min_session_timeout_ms
                .or(lower.group_min_session_timeout_ms),
            group_max_session_timeout_ms: self
                .group_max_session_timeout_ms
                .or(lower.group_max_session_timeout_ms),
            offsets_retention_minutes: self
                .offsets_retention_minutes
                .or(lower.offsets_retention_minutes),
            offsets_retention_check_interval_ms: self
                .offsets_retention_check_interval_ms
                .or(lower.offsets_retention_check_interval_ms),
            log_cleaner_enable: self.log_cleaner_enable.or(lower.log_cleaner_enable),
            log_cleaner_backoff_ms: self.log_cleaner_backoff_ms.or(lower.log_cleaner_backoff_ms),
            log_cleaner_dedupe_buffer_size: self
                .log_cleaner_dedupe_buffer_size
                .or(lower.log_cleaner_dedupe_buffer_size),
            log_cleaner_io_max_bytes_per_second: self
                .log_cleaner_io_max_bytes_per_second
                .or(lower.log_cleaner_io_max_bytes_per_second),
            log_cleaner_object_store_requests_per_second: self
                .log_cleaner_object_store_requests_per_second
                .or(lower.log_cleaner_object_store_requests_per_second),
            remote_compaction: self.remote_compaction.or(lower.remote_compaction),
            remote_sweep_interval_ms: self
                .remote_sweep_interval_ms
                .or(lower.remote_sweep_interval_ms),
            remote_sweep_grace_ms: self.remote_sweep_grace_ms.or(lower.remote_sweep_grace_ms),
        }
    }

    /// Reads a layer from a TOML file.
    pub fn from_file(path: &Path) -> Result<SettingsLayer, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// Default drop-behind distance: enough for followers and consumers at the tail to read from the
/// page cache.
const DROP_BEHIND_BYTES: u64 = 32 << 20;

/// Validated broker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Directory for partition logs and the embedded metadata store.
    pub data_dir: PathBuf,
    /// Address the Kafka listener binds.
    pub listen: SocketAddr,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// This broker's id.
    pub broker_id: i32,
    /// Default partition count.
    pub num_partitions: i32,
    /// Whether Metadata requests create unknown topics.
    pub auto_create_topics: bool,
    /// Largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,
    /// How often sealed segments are fsynced and `flush.ms` is checked.
    pub flush_scheduler_interval_ms: u64,
    /// Bytes of each partition's newest data left in the page cache by drop-behind; 0 = off.
    pub drop_behind_bytes: u64,
    /// Broker-level defaults of topic configs, by Kafka topic config name.
    pub topic_defaults: Vec<(&'static str, String)>,
    /// The remote tier.
    pub tiering: TieringSettings,
    /// Where Prometheus /metrics is served.
    pub metrics_listen: SocketAddr,
    /// etcd endpoints; empty for the embedded store.
    pub etcd: Vec<String>,
    /// The cluster's name (the etcd key namespace).
    pub cluster_name: String,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// The lease of the broker's etcd registration.
    pub broker_session_timeout_ms: u64,
    /// Where the replication service listens.
    pub replication_listen: SocketAddr,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// Replication factor of `__consumer_offsets`.
    pub offsets_topic_replication_factor: i16,
    /// Partitions of `__consumer_offsets`.
    pub offsets_topic_num_partitions: i32,
    /// `segment.bytes` of `__consumer_offsets`.
    pub offsets_topic_segment_bytes: u64,
    /// Timeouts and limits of consumer groups.
    pub groups: crate::group::state::GroupLimits,
    /// How long committed offsets of empty groups are kept.
    pub offsets_retention_ms: i64,
    /// How often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: u64,
    /// Compaction and the bucket sweep.
    pub compaction: CompactionSettings,
}

/// Settings of the remote tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TieringSettings {
    /// Object store URL.
    pub object_store: String,
    /// S3 endpoint, region and addressing.
    pub s3: strata_tiering::remote::store::S3Options,
    /// Multipart part size.
    pub upload_part_bytes: usize,
    /// Upload rate limit, bytes per second (0: none).
    pub upload_rate_limit_bytes: u64,
    /// Uploads are paced to this multiple of the produce rate (0: not paced).
    pub upload_ingest_multiple: f64,
    /// Offload scan interval.
    pub interval_ms: u64,
    /// Chunk cache sizes and location.
    pub cache: strata_tiering::remote::cache::CacheSettings,
    /// Chunks prefetched after each remote read.
    pub read_ahead_chunks: u64,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(
    key: &'static str,
    value: T,
) -> Result<T, SettingsError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value} is not positive")))
    }
}

fn split_host_port(key: &'static str, value: &str) -> Result<(String, i32), SettingsError> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, format!("'{value}' is not host:port")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, format!("'{port}' is not a port")))?;
    if host.is_empty() {
        return Err(invalid(key, "the host is empty"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

impl Settings {
    /// Validates a merged layer, applying defaults.
    pub fn resolve(layer: SettingsLayer) -> Result<Settings, SettingsError> {
        let data_dir = layer
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"));
        let tiering = tiering_settings(&layer, &data_dir)?;
        let compaction = compaction_settings(&layer)?;
        let metrics_text = layer
            .metrics_listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:9644".to_string());
        let metrics_listen: SocketAddr = metrics_text.parse().map_err(|_| {
            invalid(
                "metrics-listen",
                format!("'{metrics_text}' is not an IP address and port"),
            )
        })?;
        let listen_text = layer.listen.unwrap_or_else(|| "127.0.0.1:9092".to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("'{listen_text}' is not an IP address and port"),
            )
        })?;
        let advertised = layer
            .advertised_listener
            .unwrap_or_else(|| listen.to_string());
        let (advertised_host, advertised_port) =
            split_host_port("advertised-listener", &advertised)?;
        if listen.ip().is_unspecified() && advertised == listen.to_string() {
            return Err(invalid(
                "advertised-listener",
                "must be set when listening on a wildcard address",
            ));
        }
        let broker_id = layer.broker_id.unwrap_or(1);
        if broker_id < 0 {
            return Err(invalid("broker-id", "must not be negative"));
        }
        let mut defaults: Vec<(&'static str, String)> = Vec::new();
        let mut push = |name, value: String| defaults.push((name, value));
        push(
            "max.message.bytes",
            positive(
                "message-max-bytes",
                layer.message_max_bytes.unwrap_or(1_048_588),
            )?
            .to_string(),
        );
        push(
            "segment.bytes",
            layer.log_segment_bytes.unwrap_or(1 << 30).to_string(),
        );
        push(
            "segment.ms",
            layer.log_segment_ms.unwrap_or(604_800_000).to_string(),
        );
        push(
            "retention.ms",
            layer.log_retention_ms.unwrap_or(604_800_000).to_string(),
        );
        push(
            "retention.bytes",
            layer.log_retention_bytes.unwrap_or(-1).to_string(),
        );
        push(
            "flush.messages",
            layer.log_flush_messages.unwrap_or(i64::MAX).to_string(),
        );
        push(
            "flush.ms",
            layer.log_flush_ms.unwrap_or(i64::MAX).to_string(),
        );
        push(
            "compression.type",
            layer.compression_type.unwrap_or_else(|| "producer".into()),
        );
        push(
            "message.timestamp.type",
            layer
                .log_message_timestamp_type
                .unwrap_or_else(|| "CreateTime".into()),
        );
        push(
            "min.insync.replicas",
            layer.min_insync_replicas.unwrap_or(1).to_string(),
        );
        push(
            "remote.storage.enable",
            layer.remote_storage_enable.unwrap_or(true).to_string(),
        );
        push(
            "local.retention.ms",
            layer.local_retention_ms.unwrap_or(-2).to_string(),
        );
        push(
            "local.retention.bytes",
            layer.local_retention_bytes.unwrap_or(-2).to_string(),
        );
        // Each default must be a valid value of its topic config; the broker flag is named.
        for (name, value) in &defaults {
            crate::topic_config::validate(name, value).map_err(|e| {
                invalid(crate::topic_config::broker_setting_for(name), e.to_string())
            })?;
        }
        let groups = crate::group::state::GroupLimits {
            min_session_timeout_ms: positive(
                "group-min-session-timeout-ms",
                layer.group_min_session_timeout_ms.unwrap_or(6_000),
            )?,
            max_session_timeout_ms: positive(
                "group-max-session-timeout-ms",
                layer.group_max_session_timeout_ms.unwrap_or(1_800_000),
            )?,
            initial_rebalance_delay_ms: layer.group_initial_rebalance_delay_ms.unwrap_or(3_000),
            max_size: usize::MAX,
        };
        if groups.initial_rebalance_delay_ms < 0 {
            return Err(invalid(
                "group-initial-rebalance-delay-ms",
                "must not be negative",
            ));
        }
        if groups.min_session_timeout_ms > groups.max_session_timeout_ms {
            return Err(invalid(
                "group-min-session-timeout-ms",
                "is larger than group-max-session-timeout-ms",
            ));
        }
        let offsets_topic_num_partitions = positive(
            "offsets-topic-num-partitions",
            layer.offsets_topic_num_partitions.unwrap_or(50),
        )?;
        if offsets_topic_num_partitions > crate::broker::MAX_PARTITIONS_PER_TOPIC {
            return Err(invalid(
                "offsets-topic-num-partitions",
                "is larger than a topic may have",
            ));
        }
        let offsets_retention_ms = positive(
            "offsets-retention-minutes",
            layer.offsets_retention_minutes.unwrap_or(10_080),
        )?
        .saturating_mul(60_000);
        let offsets_retention_check_interval_ms = positive(
            "offsets-retention-check-interval-ms",
            layer.offsets_retention_check_interval_ms.unwrap_or(600_000),
        )?;
        let etcd: Vec<String> = layer
            .etcd
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if let Some(bad) = etcd
            .iter()
            .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(invalid(
                "etcd",
                format!("'{bad}' is not an http:// or https:// endpoint"),
            ));
        }
        let cluster_name = layer
            .cluster_name
            .clone()
            .unwrap_or_else(|| "strata".into());
        if cluster_name.is_empty()
            || !cluster_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "cluster-name",
                "use ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        let broker_session_timeout_ms = positive(
            "broker-session-timeout-ms",
            layer.broker_session_timeout_ms.unwrap_or(10_000),
        )?;
        let replication_text = layer
            .replication_listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:9093".to_string());
        let replication_listen: SocketAddr = replication_text.parse().map_err(|_| {
            invalid(
                "replication-listen",
                format!("'{replication_text}' is not an IP address and port"),
            )
        })?;
        Ok(Settings {
            compaction,
            replication_listen,
            replica_lag_time_max_ms: positive(
                "replica-lag-time-max-ms",
                layer.replica_lag_time_max_ms.unwrap_or(30_000),
            )?,
            default_replication_factor: positive(
                "default-replication-factor",
                layer.default_replication_factor.unwrap_or(1),
            )?,
            offsets_topic_replication_factor: positive(
                "offsets-topic-replication-factor",
                layer.offsets_topic_replication_factor.unwrap_or(3),
            )?,
            etcd,
            cluster_name,
            broker_rack: layer.broker_rack.clone().filter(|r| !r.is_empty()),
            broker_session_timeout_ms,
            offsets_retention_ms,
            offsets_retention_check_interval_ms,
            offsets_topic_num_partitions,
            offsets_topic_segment_bytes: positive(
                "offsets-topic-segment-bytes",
                layer.offsets_topic_segment_bytes.unwrap_or(100 << 20),
            )?,
            groups,
            tiering,
            metrics_listen,
            data_dir,
            listen,
            advertised_host,
            advertised_port,
            broker_id,
            num_partitions: positive("num-partitions", layer.num_partitions.unwrap_or(1))?,
            auto_create_topics: layer.auto_create_topics.unwrap_or(true),
            socket_request_max_bytes: positive(
                "socket-request-max-bytes",
                layer.socket_request_max_bytes.unwrap_or(104_857_600),
            )? as usize,
            retention_check_interval_ms: positive(
                "log-retention-check-interval-ms",
                layer.log_retention_check_interval_ms.unwrap_or(300_000),
            )? as u64,
            flush_scheduler_interval_ms: positive(
                "log-flush-scheduler-interval-ms",
                layer.log_flush_scheduler_interval_ms.unwrap_or(1_000),
            )? as u64,
            drop_behind_bytes: layer.log_drop_behind_bytes.unwrap_or(DROP_BEHIND_BYTES),
            topic_defaults: defaults,
        })
    }

    /// Settings for tests: everything default except the data directory and an ephemeral port.
    pub fn for_data_dir(data_dir: &Path) -> Settings {
        let layer = SettingsLayer {
            data_dir: Some(data_dir.to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            advertised_listener: Some("127.0.0.1:0".into()),
            metrics_listen: Some("127.0.0.1:0".into()),
            replication_listen: Some("127.0.0.1:0".into()),
            cache_memory_bytes: Some(1 << 20),
            cache_disk_bytes: Some(32 << 20),
            ..SettingsLayer::default()
        };
        Settings::resolve(layer).expect("default settings are valid")
    }
}

fn tiering_settings(
    layer: &SettingsLayer,
    data_dir: &Path,
) -> Result<TieringSettings, SettingsError> {
    let object_store = match &layer.object_store {
        Some(url) => url.clone(),
        None => {
            let absolute = std::path::absolute(data_dir.join("objects"))
                .map_err(|e| invalid("data-dir", format!("cannot resolve it: {e}")))?;
            format!("file://{}", absolute.display())
        }
    };
    let schemes = ["s3://", "s3a://", "gs://", "az://", "abfs://", "file://"];
    if !schemes.iter().any(|s| object_store.starts_with(s)) {
        return Err(invalid(
            "object-store",
            format!("'{object_store}' is not an s3://, gs://, az:// or file:// URL"),
        ));
    }
    let chunk_bytes = layer.cache_chunk_bytes.unwrap_or(4 << 20);
    if !(4096..=(64 << 20)).contains(&chunk_bytes) {
        return Err(invalid(
            "cache-chunk-bytes",
            format!("{chunk_bytes} is not between 4096 and 64 MiB"),
        ));
    }
    let part_bytes = layer.upload_part_bytes.unwrap_or(32 << 20);
    if part_bytes < (5 << 20) {
        return Err(invalid(
            "upload-part-bytes",
            "S3 multipart parts must be at least 5 MiB",
        ));
    }
    Ok(TieringSettings {
        object_store,
        s3: strata_tiering::remote::store::S3Options {
            endpoint: layer.s3_endpoint.clone(),
            region: layer.s3_region.clone(),
            path_style: layer.s3_path_style.unwrap_or(false),
        },
        upload_part_bytes: part_bytes as usize,
        upload_rate_limit_bytes: layer.upload_rate_limit_bytes.unwrap_or(0),
        upload_ingest_multiple: match layer.upload_ingest_multiple.unwrap_or(1.25) {
            m if m == 0.0 || (m.is_finite() && m >= 1.0) => m,
            m => {
                return Err(invalid(
                    "upload-ingest-multiple",
                    format!("{m} is neither 0 nor at least 1 (uploads would fall behind)"),
                ));
            }
        },
        interval_ms: positive(
            "tiering-interval-ms",
            layer.tiering_interval_ms.unwrap_or(1_000),
        )?,
        cache: strata_tiering::remote::cache::CacheSettings {
            memory_bytes: layer.cache_memory_bytes.unwrap_or(256 << 20) as usize,
            disk_bytes: layer.cache_disk_bytes.unwrap_or(1 << 30) as usize,
            disk_dir: data_dir.join("cache"),
            chunk_bytes,
        },
        read_ahead_chunks: layer.remote_read_ahead_chunks.unwrap_or(4),
    })
}

#[cfg(test)]
mod tests;
