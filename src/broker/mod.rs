//! The broker's domain: topics and partitions, their lifecycle through the metadata store, and
//! producer ids. Protocol handlers call into this module; it never sees Kafka wire types.

mod compaction;
mod empty_start;
mod housekeeping;
pub mod identity;
mod partition;
mod reassign;
pub mod replica;
mod sync;
mod topic;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use strata_tiering::remote::RemotePartition;
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

pub use compaction::run_compaction;
pub use empty_start::started_empty;
pub use housekeeping::run_housekeeping;
pub use partition::{JoinTicket, Partition};
pub use reassign::Reassignment;
pub use sync::run_cluster_sync;
pub use topic::Topic;

use strata_tiering::remote::RemoteTier;
use strata_tiering::remote::cache::ChunkCache;
use strata_tiering::remote::limiter::RateLimiter;
use strata_tiering::remote::local_bucket::LocalBucket;
use strata_tiering::remote::metrics::TieringMetrics;
use strata_tiering::remote::reader::RemoteReader;
use strata_tiering::remote::store::{HookedStore, open_store};
use strata_tiering::remote::uploader::Uploader;

use crate::cluster::reassign::check_replicas;
use crate::cluster::view::ClusterView;
use crate::error::{BrokerError, Result};
use crate::group::{BrokerOffsetsLog, GroupCoordinator};
use crate::metadata::MetadataStore;
use crate::metadata::catalog::{Catalog, TopicRecord};
use crate::metadata::pointers::StorePointers;
use crate::replication::peers::Peers;
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
    /// Replication factor; `None` for `default.replication.factor`.
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
    store: Arc<dyn MetadataStore>,
    /// The cluster as last read; handlers answer Metadata from it.
    cluster: watch::Sender<Arc<ClusterView>>,
    /// One cluster sync at a time.
    sync: Mutex<()>,
    peers: Peers,
    compaction: compaction::Compaction,
    /// This process's [`BrokerRecord::incarnation`](crate::metadata::registration::BrokerRecord::incarnation).
    incarnation: u64,
}

/// How long topic creation waits for the controller to assign the new partitions.
const ASSIGNMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Broker {
    /// Opens the broker: reads the topics and partition states from the metadata store, opens
    /// (and if needed recovers) the partitions this broker holds a replica of, and removes logs
    /// of topics deleted while it was down. `incarnation` is the one the broker registered with;
    /// `cluster_id` the cluster its data directory belongs to ([`identity::establish`]), which the
    /// store must still hold.
    pub async fn open(
        settings: Settings,
        store: Arc<dyn MetadataStore>,
        incarnation: u64,
        cluster_id: String,
    ) -> Result<Arc<Broker>> {
        let catalog = Catalog::new(Arc::clone(&store));
        let defaults = Arc::new(TopicDefaults::new(&settings.topic_defaults));
        let metrics = TieringMetrics::default();
        let pointers = StorePointers::new(Arc::clone(&store));
        let tier = open_tier(&settings, &metrics, &pointers).await?;
        let groups = settings.groups;
        let compaction = compaction::Compaction::new(&settings.compaction);
        let broker = Arc::new(Broker {
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
            store,
            cluster: watch::channel(Arc::new(ClusterView::default())).0,
            sync: Mutex::new(()),
            peers: Peers::default(),
            compaction,
            incarnation,
        });
        let records = broker.catalog.topics().await?;
        identity::check(&broker.catalog, &broker.cluster_id).await?;
        broker.remove_orphan_logs(&records).await?;
        broker.sync_with_cluster().await?;
        // The first block of producer ids now, so idempotent producers can start while the
        // metadata store (etcd) is briefly unreachable.
        *broker.producer_ids.lock().await = broker.catalog.allocate_producer_ids().await?;
        Ok(broker)
    }

    /// Broker defaults of topic configs.
    pub fn topic_defaults(&self) -> Arc<TopicDefaults> {
        Arc::clone(&self.defaults)
    }

    /// The metadata store.
    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// The cluster as last read from the metadata store.
    pub fn cluster(&self) -> Arc<ClusterView> {
        Arc::clone(&self.cluster.borrow())
    }

    /// Connections to the other brokers' replication services.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Waits until the controller has assigned every partition of topic `id` below `count` and
    /// this broker's cluster sync has taken the topic and the partitions it holds up.
    async fn wait_for_assignment(&self, id: Uuid, count: i32) -> Result<()> {
        let mut view = self.cluster.subscribe();
        let assigned = |v: &ClusterView| (0..count).all(|i| v.partitions.contains_key(&(id, i)));
        let wait = view.wait_for(|v| assigned(v));
        match tokio::time::timeout(ASSIGNMENT_WAIT, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(BrokerError::ShuttingDown),
            Err(_) => Err(BrokerError::LeaderNotAvailable(format!(
                "topic {id}: the controller has not assigned its partitions yet"
            ))),
        }
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

    /// The incarnation this broker process registered with.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    fn logs_dir(&self) -> PathBuf {
        empty_start::logs_dir(&self.settings.data_dir)
    }

    fn partition_dir(&self, id: Uuid, index: i32) -> PathBuf {
        empty_start::partition_dir(&self.settings.data_dir, id, index)
    }

    async fn open_partition(
        &self,
        id: Uuid,
        index: i32,
        config: &TopicConfig,
    ) -> Result<Arc<Partition>> {
        let dir = self.partition_dir(id, index);
        let tier = Arc::clone(&self.tier);
        let partition = Partition::open(
            &dir,
            tier,
            (id, index),
            self.settings.broker_id,
            config.log_config(),
            now_ms(),
        )
        .await?;
        Ok(Arc::new(partition))
    }

    /// Stops serving a partition and closes its log; with `delete`, removes its files too.
    async fn close_partition(&self, partition: &Arc<Partition>, delete: bool) {
        partition
            .set_role(
                replica::Role::Offline,
                replica::RoleSource::Closing,
                now_ms(),
            )
            .await;
        let p = Arc::clone(partition);
        let closed = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Err(e) = p.log().close() {
                tracing::warn!(log = %p.log().dir().display(), error = %e, "could not close a log cleanly");
            }
            if delete {
                std::fs::remove_dir_all(p.log().dir())?;
            }
            Ok(())
        })
        .await;
        if !matches!(closed, Ok(Ok(()))) {
            tracing::warn!(
                partition = partition.index(),
                "could not remove a partition's files"
            );
        }
    }

    /// Forgets a topic deleted elsewhere: closes its partitions and removes its files.
    async fn remove_local_topic(&self, topic: &Topic) {
        self.topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(topic.name());
        for p in topic.partitions() {
            self.close_partition(&p, false).await;
        }
        let dir = self.logs_dir().join(topic.id().simple().to_string());
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        if let Ok(Err(e)) = removed
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(topic = %topic.name(), error = %e, "could not remove a deleted topic's files");
        }
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
        let live: Vec<i32> = self.cluster().brokers.keys().copied().collect();
        let (partitions, replication) = match &new.assignment {
            Some(assignment) => {
                if new.partitions.is_some() || new.replication_factor.is_some() {
                    return Err(BrokerError::InvalidRequest(
                        "give either a replica assignment or a partition count and replication factor".into(),
                    ));
                }
                let factor = assignment.first().map_or(0, Vec::len);
                for replicas in assignment {
                    if replicas.len() != factor {
                        return Err(BrokerError::InvalidReplicaAssignment(format!(
                            "replica assignment {replicas:?} must name as many brokers as the first partition's, {factor}"
                        )));
                    }
                    check_replicas(replicas, &live)
                        .map_err(|e| BrokerError::InvalidReplicaAssignment(e.to_string()))?;
                }
                (assignment.len() as i32, factor as i16)
            }
            None => (
                new.partitions.unwrap_or(self.settings.num_partitions),
                new.replication_factor
                    .filter(|r| *r != -1)
                    .unwrap_or(self.settings.default_replication_factor),
            ),
        };
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err(BrokerError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {MAX_PARTITIONS_PER_TOPIC}, not {partitions}"
            )));
        }
        let brokers = live.len().max(1);
        if replication < 1 || replication as usize > brokers {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {replication} is not between 1 and the {brokers} available broker(s)"
            )));
        }
        let config = TopicConfig::new(new.configs.clone(), Arc::clone(&self.defaults))?;
        Ok((partitions, replication, config))
    }

    /// Creates a topic: its record in the metadata store, then waits for the controller to
    /// assign its partitions (which this broker opens if it holds replicas).
    pub async fn create_topic(&self, new: NewTopic) -> Result<Arc<Topic>> {
        let _admin = self.admin.lock().await;
        let (partitions, replication_factor, config) = self.check_new_topic(&new)?;
        let record = TopicRecord {
            name: new.name.clone(),
            id: Uuid::new_v4(),
            partitions,
            configs: config.overrides().clone(),
            replication_factor,
            assignment: new.assignment.clone(),
        };
        self.catalog.create_topic(&record).await?;
        tracing::info!(topic = %new.name, partitions, replication_factor, "created topic");
        // The cluster sync takes the topic up (here as on every broker) once the controller
        // has assigned its partitions.
        self.wait_for_assignment(record.id, partitions).await?;
        self.topic(&new.name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(new.name.clone()))
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
            self.close_partition(&p, false).await;
        }
        for index in 0..topic.partition_count() {
            let deleted =
                match RemotePartition::open(Arc::clone(&self.tier), topic.id(), index).await {
                    Ok(remote) => remote.delete_all().await,
                    Err(e) => Err(e),
                };
            if let Err(e) = deleted {
                tracing::warn!(topic = %name, partition = index, error = %e, "could not delete the remote objects of a deleted topic");
            }
            if let Err(e) = self.pointers.delete(topic.id(), index).await {
                tracing::warn!(topic = %name, partition = index, error = %e, "could not delete a manifest pointer");
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
        topic.set_partition_count(count);
        tracing::info!(topic = %name, from = current, to = count, "added partitions");
        self.wait_for_assignment(topic.id(), count).await
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

    /// Compaction's rate limits and metrics.
    pub fn compaction(&self) -> &compaction::Compaction {
        &self.compaction
    }

    /// The remote tier every partition shares.
    pub fn remote_tier(&self) -> &Arc<RemoteTier> {
        &self.tier
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
        for p in self.topics().iter().flat_map(|t| t.partitions()) {
            p.set_role(
                replica::Role::Offline,
                replica::RoleSource::Closing,
                now_ms(),
            )
            .await;
        }
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
pub(crate) async fn open_tier(
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
            limiter: RateLimiter::paced(
                tiering.upload_rate_limit_bytes,
                tiering.upload_ingest_multiple,
            ),
            drop_read_pages: settings.drop_behind_bytes > 0,
            local_bucket: (settings.drop_behind_bytes > 0)
                .then(|| LocalBucket::for_url(&tiering.object_store))
                .flatten()
                .map(Arc::new),
            metrics: metrics.clone(),
        },
    }))
}

#[cfg(test)]
mod tests;
