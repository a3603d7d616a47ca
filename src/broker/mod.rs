//! The broker's domain: topics and partitions, their lifecycle through the metadata store, and
//! producer ids. Protocol handlers call into this module; it never sees Kafka wire types.

mod housekeeping;
mod partition;
mod topic;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use uuid::Uuid;

pub use housekeeping::run_housekeeping;
pub use partition::Partition;
pub use topic::Topic;

use strata_tiering::remote::RemoteTier;
use strata_tiering::remote::cache::ChunkCache;
use strata_tiering::remote::metrics::TieringMetrics;
use strata_tiering::remote::reader::RemoteReader;
use strata_tiering::remote::store::{HookedStore, open_store};
use strata_tiering::remote::uploader::{RateLimiter, Uploader};

use crate::error::{BrokerError, Result};
use crate::group::{BrokerOffsetsLog, GroupCoordinator};
use crate::metadata::MetadataStore;
use crate::metadata::catalog::{Catalog, TopicRecord};
use crate::metadata::pointers::StorePointers;
use crate::settings::Settings;
use crate::topic_config::{TopicConfig, TopicDefaults};

/// Longest legal topic name, as in Kafka.
const MAX_TOPIC_NAME: usize = 249;
/// Most partitions one topic may have: each is a directory, open files and a remote manifest, and
/// a request for millions would otherwise exhaust the disk before it failed.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(BrokerError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME {
        return invalid("the name is longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// What a topic creation asks for.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// Partitions; `None` for the broker default.
    pub partitions: Option<i32>,
    /// Replication factor; `None` for the default (1 on a single node).
    pub replication_factor: Option<i16>,
    /// Explicit replica assignment by partition, if given.
    pub assignment: Option<Vec<Vec<i32>>>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

/// The broker: its settings, metadata and the topics it serves.
#[derive(Debug)]
pub struct Broker {
    settings: Settings,
    cluster_id: String,
    catalog: Catalog,
    defaults: Arc<TopicDefaults>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises topic creation, deletion and config changes.
    admin: Mutex<()>,
    producer_ids: Mutex<Range<i64>>,
    tier: Arc<RemoteTier>,
    pointers: StorePointers,
    metrics: TieringMetrics,
    groups: GroupCoordinator,
}

impl Broker {
    /// Opens the broker: reads the topics from the metadata store, opens (and if needed recovers)
    /// every partition log, and removes logs of topics deleted while it was down.
    pub async fn open(settings: Settings, store: Arc<dyn MetadataStore>) -> Result<Arc<Broker>> {
        let catalog = Catalog::new(Arc::clone(&store));
        let cluster_id = catalog.cluster_id().await?;
        let defaults = Arc::new(TopicDefaults::new(&settings.topic_defaults));
        let metrics = TieringMetrics::default();
        let pointers = StorePointers::new(store);
        let tier = open_tier(&settings, &metrics, &pointers).await?;
        let groups = settings.groups;
        let broker = Broker {
            settings,
            cluster_id,
            catalog,
            defaults,
            topics: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
            producer_ids: Mutex::new(0..0),
            tier,
            pointers,
            metrics,
            groups: GroupCoordinator::new(groups),
        };
        let records = broker.catalog.topics().await?;
        for record in &records {
            let topic = broker.open_topic(record).await?;
            broker.insert_topic(topic);
        }
        broker.remove_orphan_logs(&records).await?;
        // The first block of producer ids now, so idempotent producers can start while the
        // metadata store (etcd) is briefly unreachable.
        *broker.producer_ids.lock().await = broker.catalog.allocate_producer_ids().await?;
        let loaded = broker
            .groups
            .load(&BrokerOffsetsLog(&broker))
            .await
            .map_err(|e| BrokerError::GroupsUnavailable(e.to_string()))?;
        if loaded > 0 {
            tracing::info!(
                groups = loaded,
                "loaded consumer groups from __consumer_offsets"
            );
        }
        Ok(Arc::new(broker))
    }

    /// The group coordinator.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// `__consumer_offsets`, where the group coordinator keeps its records.
    pub fn offsets_log(&self) -> BrokerOffsetsLog<'_> {
        BrokerOffsetsLog(self)
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Number of brokers whose replicas are in sync for every partition: one, on a single node.
    pub fn in_sync_replicas(&self) -> usize {
        1
    }

    fn logs_dir(&self) -> PathBuf {
        self.settings.data_dir.join("logs")
    }

    fn partition_dir(&self, id: Uuid, index: i32) -> PathBuf {
        self.logs_dir()
            .join(id.simple().to_string())
            .join(index.to_string())
    }

    async fn open_partitions(
        &self,
        id: Uuid,
        range: Range<i32>,
        config: &TopicConfig,
    ) -> Result<Vec<Arc<Partition>>> {
        let log_config = config.log_config();
        let mut opened = Vec::with_capacity(range.len());
        for index in range {
            let dir = self.partition_dir(id, index);
            let tier = Arc::clone(&self.tier);
            let partition =
                Partition::open(&dir, tier, id, index, log_config.clone(), now_ms()).await?;
            opened.push(Arc::new(partition));
        }
        Ok(opened)
    }

    async fn open_topic(&self, record: &TopicRecord) -> Result<Arc<Topic>> {
        let config = TopicConfig::new(record.configs.clone(), Arc::clone(&self.defaults))?;
        let partitions = self
            .open_partitions(record.id, 0..record.partitions, &config)
            .await?;
        Ok(Arc::new(Topic::new(
            record.name.clone(),
            record.id,
            config,
            partitions,
        )))
    }

    fn insert_topic(&self, topic: Arc<Topic>) {
        self.topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.name().to_string(), topic);
    }

    async fn remove_orphan_logs(&self, records: &[TopicRecord]) -> Result<()> {
        let known: Vec<String> = records.iter().map(|r| r.id.simple().to_string()).collect();
        let dir = self.logs_dir();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().to_string();
                if !known.contains(&name) {
                    tracing::info!(dir = %entry.path().display(), "removing the logs of a deleted topic");
                    std::fs::remove_dir_all(entry.path())?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| BrokerError::ShuttingDown)?
        .map_err(|e| BrokerError::Log(strata_tiering::LogError::io(self.logs_dir(), e)))
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .find(|t| t.id() == id)
            .cloned()
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Checks a creation request without creating anything, returning the resolved partition
    /// count, replication factor and config.
    pub fn check_new_topic(&self, new: &NewTopic) -> Result<(i32, i16, TopicConfig)> {
        validate_topic_name(&new.name)?;
        if self.topic(&new.name).is_some() {
            return Err(BrokerError::TopicAlreadyExists(new.name.clone()));
        }
        let (partitions, replication) = match &new.assignment {
            Some(assignment) => {
                if new.partitions.is_some() || new.replication_factor.is_some() {
                    return Err(BrokerError::InvalidRequest(
                        "give either a replica assignment or a partition count and replication factor".into(),
                    ));
                }
                for replicas in assignment {
                    if replicas.is_empty() || replicas.iter().any(|b| *b != self.settings.broker_id)
                    {
                        return Err(BrokerError::InvalidReplicaAssignment(format!(
                            "replica assignment {replicas:?} names brokers other than the only broker, {}",
                            self.settings.broker_id
                        )));
                    }
                }
                (assignment.len() as i32, 1)
            }
            None => (
                new.partitions.unwrap_or(self.settings.num_partitions),
                new.replication_factor.unwrap_or(1),
            ),
        };
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err(BrokerError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, not {partitions}"
            )));
        }
        let brokers = 1;
        if replication < 1 || replication > brokers {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {replication} is not between 1 and the {brokers} available broker(s)"
            )));
        }
        let config = TopicConfig::new(new.configs.clone(), Arc::clone(&self.defaults))?;
        Ok((partitions, replication, config))
    }

    /// Creates a topic: its record in the metadata store first, then its partition logs.
    pub async fn create_topic(&self, new: NewTopic) -> Result<Arc<Topic>> {
        let _admin = self.admin.lock().await;
        let (partitions, _, config) = self.check_new_topic(&new)?;
        let record = TopicRecord {
            name: new.name.clone(),
            id: Uuid::new_v4(),
            partitions,
            configs: config.overrides().clone(),
        };
        self.catalog.create_topic(&record).await?;
        let opened = match self
            .open_partitions(record.id, 0..partitions, &config)
            .await
        {
            Ok(opened) => opened,
            Err(e) => {
                // Leave no half-created topic behind: without its record a retry starts afresh.
                if let Err(undo) = self.catalog.delete_topic(&record.name).await {
                    tracing::error!(topic = %record.name, error = %undo, "could not undo a failed topic creation");
                }
                return Err(e);
            }
        };
        let topic = Arc::new(Topic::new(record.name, record.id, config, opened));
        self.insert_topic(Arc::clone(&topic));
        tracing::info!(topic = %new.name, partitions, "created topic");
        Ok(topic)
    }

    /// Returns the topic, creating it with default settings if it does not exist (auto-creation).
    pub async fn get_or_create_topic(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        match self
            .create_topic(NewTopic {
                name: name.to_string(),
                ..NewTopic::default()
            })
            .await
        {
            Ok(topic) => Ok(topic),
            Err(BrokerError::TopicAlreadyExists(_)) => self
                .topic(name)
                .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string())),
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic: its metadata record first (so a crash never resurrects it), then its logs.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(BrokerError::UnknownTopicOrPartition(name.to_string()));
        };
        self.catalog.delete_topic(name).await?;
        self.topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        let dir = self.logs_dir().join(topic.id().simple().to_string());
        for p in topic.partitions() {
            if let Err(e) = p.remote().delete_all().await {
                tracing::warn!(topic = %name, partition = p.index(), error = %e, "could not delete the remote objects of a deleted topic");
            }
            if let Err(e) = self.pointers.delete(topic.id(), p.index()).await {
                tracing::warn!(topic = %name, partition = p.index(), error = %e, "could not delete a manifest pointer");
            }
        }
        drop(topic);
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir).map_err(|e| (dir, e)))
            .await
            .map_err(|_| BrokerError::ShuttingDown)?
            .map_err(|(dir, e)| BrokerError::Log(strata_tiering::LogError::io(dir, e)))?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<()> {
        let _admin = self.admin.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        let current = topic.partition_count();
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err(BrokerError::InvalidPartitions(format!(
                "a topic may have at most {MAX_PARTITIONS_PER_TOPIC} partitions, not {count}"
            )));
        }
        if count <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the new count {count} must be larger"
            )));
        }
        if validate_only {
            return Ok(());
        }
        self.catalog
            .update_topic(name, |r| {
                r.partitions = count;
                Ok(())
            })
            .await?;
        let added = self
            .open_partitions(topic.id(), current..count, &topic.config())
            .await?;
        topic.add_partitions(added);
        tracing::info!(topic = %name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides with `change(current config)`.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        change: impl Fn(&TopicConfig) -> Result<BTreeMap<String, String>>,
        validate_only: bool,
    ) -> Result<()> {
        let _admin = self.admin.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        let overrides = change(&topic.config())?;
        let config = TopicConfig::new(overrides.clone(), Arc::clone(&self.defaults))?;
        if validate_only {
            return Ok(());
        }
        self.catalog
            .update_topic(name, |r| {
                r.configs = overrides.clone();
                Ok(())
            })
            .await?;
        topic.set_config(config);
        tracing::info!(topic = %name, "altered topic config");
        Ok(())
    }

    /// Counters of the remote tier.
    pub fn tiering_metrics(&self) -> &TieringMetrics {
        &self.metrics
    }

    /// Hands out a new producer id,taking a new block from the metadata store when needed.
    pub async fn next_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        if ids.is_empty() {
            *ids = self.catalog.allocate_producer_ids().await?;
        }
        let id = ids.start;
        ids.start += 1;
        Ok(id)
    }

    /// Closes every partition log cleanly (flush, indexes, producer snapshots) and the chunk cache.
    pub async fn close(&self) {
        self.groups.shutdown().await;
        self.tier.reader.close().await;
        let partitions: Vec<_> = self.topics().iter().flat_map(|t| t.partitions()).collect();
        let closed = tokio::task::spawn_blocking(move || {
            for p in partitions {
                if let Err(e) = p.log().close() {
                    tracing::error!(log = %p.log().dir().display(), error = %e, "failed to close a log cleanly");
                }
            }
        })
        .await;
        if closed.is_err() {
            tracing::error!("closing the logs was interrupted");
        }
    }
}

/// Opens the object store and builds the remote tier every partition shares.
async fn open_tier(
    settings: &Settings,
    metrics: &TieringMetrics,
    pointers: &StorePointers,
) -> Result<Arc<RemoteTier>> {
    let tiering = &settings.tiering;
    let (raw, prefix) = open_store(&tiering.object_store, &tiering.s3)?;
    let store: Arc<dyn object_store::ObjectStore> =
        Arc::new(HookedStore::new(raw, Arc::new(metrics.clone())));
    let cache = ChunkCache::open(&tiering.cache, Arc::clone(&store), metrics.clone()).await?;
    Ok(Arc::new(RemoteTier {
        store: Arc::clone(&store),
        prefix,
        pointers: Arc::new(pointers.clone()),
        reader: Arc::new(RemoteReader::new(
            Arc::new(cache),
            tiering.read_ahead_chunks,
            metrics.clone(),
        )),
        uploader: Uploader {
            store,
            part_bytes: tiering.upload_part_bytes,
            limiter: RateLimiter::new(tiering.upload_rate_limit_bytes),
            metrics: metrics.clone(),
        },
    }))
}

#[cfg(test)]
mod tests;
