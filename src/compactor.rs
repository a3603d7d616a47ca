//! `strata compactor`: compaction of the remote tier and the bucket sweep as a process of their
//! own, against a cluster's etcd and bucket (the brokers then run with `--remote-compaction
//! service` and compact only their local logs).
//!
//! # Splitting the work, and fencing
//! Any number of compactors may run. Each holds an etcd lease (`broker-session-timeout-ms`) and
//! walks the tiered partitions in its own random order; before working on one it creates
//! `compaction-claims/<topic id>/<partition>` under its lease, and skips the partition when the
//! key exists (another compactor has it). It deletes the key when done. So two live compactors
//! never work on one partition at once.
//!
//! A compactor that stalls past its lease (a long pause, a partition from etcd) loses its claims
//! with the lease; another may then claim the partition. The stale one is fenced: its manifest
//! swap is an etcd transaction that also requires the claim key at the version it created, which
//! no longer holds, so the swap fails and its uploads are left to the sweep.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use strata_compaction::{CompactionMetrics, RemoteLimits, Throttle, compact_remote, plan_remote};
use strata_tiering::remote::metrics::TieringMetrics;
use strata_tiering::remote::sweep::sweep_partition;
use strata_tiering::remote::{RemotePartition, RemoteTier, SwapGuard};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::StartupError;
use crate::broker::{now_ms, open_tier};
use crate::error::BrokerError;
use crate::metadata::catalog::{Catalog, TopicRecord};
use crate::metadata::etcd::EtcdStore;
use crate::metadata::pointers::StorePointers;
use crate::metadata::{Expect, MetadataError, MetadataStore, keys};
use crate::metrics_http;
use crate::settings::Settings;
use crate::topic_config::{TopicConfig, TopicDefaults};

/// The compactor's chunk cache: it never reads through it, so it is as small as it may be.
const CACHE_MEMORY_BYTES: usize = 4 << 20;

/// A compactor connected to etcd and the bucket; [`Compactor::run`] works until cancelled.
#[derive(Debug)]
pub struct Compactor {
    settings: Settings,
    id: String,
    etcd: EtcdStore,
    lease: Mutex<i64>,
    catalog: Catalog,
    defaults: Arc<TopicDefaults>,
    tier: Arc<RemoteTier>,
    limits: RemoteLimits,
    metrics: CompactionMetrics,
    tiering_metrics: TieringMetrics,
    partitions: Mutex<HashMap<(Uuid, i32), Arc<RemotePartition>>>,
    last_sweep: Mutex<HashMap<(Uuid, i32), Instant>>,
    metrics_listener: Mutex<Option<TcpListener>>,
}

impl Compactor {
    /// Connects to etcd (required) and the bucket, takes a lease and binds the metrics listener.
    pub async fn start(mut settings: Settings) -> Result<Arc<Compactor>, StartupError> {
        if settings.etcd.is_empty() {
            return Err(BrokerError::InvalidConfig(
                "the compactor works on a cluster: set --etcd".into(),
            )
            .into());
        }
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| StartupError::DataDir {
            path: settings.data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let etcd = EtcdStore::connect(&settings.etcd, &settings.cluster_name)
            .await
            .map_err(BrokerError::from)?;
        let lease = etcd
            .grant_lease(lease_seconds(&settings))
            .await
            .map_err(BrokerError::from)?;
        let store: Arc<dyn MetadataStore> = Arc::new(etcd.clone());
        settings.tiering.cache.memory_bytes = CACHE_MEMORY_BYTES;
        settings.tiering.cache.disk_bytes = 0;
        let tiering_metrics = TieringMetrics::default();
        let pointers = StorePointers::new(Arc::clone(&store));
        let tier = open_tier(&settings, &tiering_metrics, &pointers).await?;
        let metrics_listener =
            metrics_http::bind(settings.metrics_listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.metrics_listen,
                    source,
                })?;
        let compaction = &settings.compaction;
        Ok(Arc::new(Compactor {
            id: format!("compactor-{}", Uuid::new_v4().simple()),
            etcd,
            lease: Mutex::new(lease),
            catalog: Catalog::new(store),
            defaults: Arc::new(TopicDefaults::new(&settings.topic_defaults)),
            tier,
            limits: RemoteLimits {
                bytes: Arc::new(Throttle::new(compaction.io_bytes_per_second)),
                requests: Arc::new(Throttle::new(compaction.object_store_requests_per_second)),
            },
            metrics: CompactionMetrics::default(),
            tiering_metrics,
            partitions: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(HashMap::new()),
            metrics_listener: Mutex::new(Some(metrics_listener)),
            settings,
        }))
    }

    /// This compactor's name, the value of its claims.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        let listener = self
            .metrics_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match listener.as_ref() {
            Some(l) => l.local_addr(),
            None => Err(std::io::Error::other(
                "the metrics listener is already serving",
            )),
        }
    }

    fn lease(&self) -> i64 {
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Compacts and sweeps every `log-cleaner-backoff-ms` until `cancel` fires, keeping its lease
    /// alive meanwhile; then revokes the lease, releasing its claims.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let listener = self
            .metrics_listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let metrics = listener.map(|l| {
            let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
            self.metrics.register(&mut registry);
            self.tiering_metrics.register(&mut registry);
            tokio::spawn(metrics_http::serve(l, registry, cancel.child_token()))
        });
        let keeper = tokio::spawn(Arc::clone(&self).keep_lease(cancel.child_token()));
        let mut ticker =
            tokio::time::interval(Duration::from_millis(self.settings.compaction.backoff_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.pass() => {}
            }
        }
        self.limits.bytes.stop();
        if keeper.await.is_err() {
            tracing::error!("the lease keeper panicked");
        }
        if let Some(metrics) = metrics
            && metrics.await.is_err()
        {
            tracing::error!("the metrics endpoint panicked");
        }
        self.etcd.revoke_lease(self.lease()).await;
        tracing::info!(compactor = %self.id, "compactor stopped");
    }

    /// Refreshes the lease every third of its time to live; takes a new one when it expired
    /// (the claims under the old one are gone, and any swap made under them is fenced).
    async fn keep_lease(self: Arc<Self>, cancel: CancellationToken) {
        let ttl = lease_seconds(&self.settings);
        let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(100));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.etcd.refresh_lease(self.lease()).await {
                Ok(true) => {}
                Ok(false) => match self.etcd.grant_lease(ttl).await {
                    Ok(lease) => {
                        tracing::warn!(compactor = %self.id, "the etcd lease expired; took a new one");
                        *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = lease;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not take a new etcd lease"),
                },
                Err(e) => tracing::warn!(error = %e, "could not refresh the etcd lease"),
            }
        }
    }

    /// One round over every tiered partition of the cluster, in random order.
    async fn pass(&self) {
        let topics = match self.catalog.topics().await {
            Ok(topics) => topics,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the topics from etcd");
                return;
            }
        };
        let mut work: Vec<(Arc<TopicRecord>, i32)> = Vec::new();
        for record in topics.into_iter().map(Arc::new) {
            for partition in 0..record.partitions {
                work.push((Arc::clone(&record), partition));
            }
        }
        work.shuffle(&mut rand::rng());
        for (record, partition) in work {
            let config = match TopicConfig::new(record.configs.clone(), Arc::clone(&self.defaults))
            {
                Ok(config) if config.remote_storage() => config,
                _ => continue,
            };
            self.work_on(&record, partition, &config).await;
        }
    }

    /// Claims one partition, compacts and sweeps it as due, and releases it.
    async fn work_on(&self, record: &TopicRecord, partition: i32, config: &TopicConfig) {
        let label = format!("{}/{partition}", record.name);
        let slot = (record.id, partition);
        let sweep_due = self
            .last_sweep
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&slot)
            .is_none_or(|t| {
                t.elapsed() >= Duration::from_millis(self.settings.compaction.sweep_interval_ms)
            });
        let compaction = config.compaction_config();
        if compaction.is_none() && !sweep_due {
            return;
        }
        // Claims cost etcd writes: a partition is claimed only when there is work on it.
        let remote = match self.remote_partition(record.id, partition).await {
            Ok(remote) => remote,
            Err(e) => {
                tracing::warn!(partition = %label, error = %e, "could not read the partition's manifest");
                return;
            }
        };
        let manifest = remote.manifest().await;
        let compaction_due = compaction
            .as_ref()
            .is_some_and(|c| plan_remote(&manifest, c, now_ms()).is_some());
        if !compaction_due && !sweep_due {
            return;
        }
        let key = keys::compaction_claim(record.id, partition);
        let version = match self
            .etcd
            .put_with_lease(&key, self.id.clone(), Expect::Absent, self.lease())
            .await
        {
            Ok(version) => version,
            Err(MetadataError::Conflict { .. }) => return,
            Err(e) => {
                tracing::warn!(partition = %label, error = %e, "could not claim a partition");
                return;
            }
        };
        tracing::info!(partition = %label, compactor = %self.id, "claimed");
        let guard = SwapGuard { key, version };
        // Re-read under the claim: another compactor may have finished a pass meanwhile.
        match remote.refresh().await.map(|_| remote) {
            Ok(remote) => {
                if let Some(config) = compaction.filter(|_| compaction_due) {
                    let scratch = self
                        .settings
                        .data_dir
                        .join("compaction")
                        .join(format!("{}-{partition}", record.id.simple()));
                    let result = compact_remote(
                        &remote,
                        &config,
                        &scratch,
                        self.settings.compaction.dedupe_buffer_bytes,
                        &self.limits,
                        Some(&guard),
                        now_ms(),
                    )
                    .await;
                    match result {
                        Ok(Some(report)) => {
                            self.metrics.record_pass("remote", &report);
                            tracing::info!(partition = %label, cleaned_to = report.pass_end, records_removed = report.records_removed, segments_replaced = report.segments_replaced, "compacted");
                        }
                        Ok(None) => {}
                        Err(e) => {
                            self.metrics.record_failure("remote");
                            tracing::warn!(partition = %label, error = %e, "remote compaction failed; it will be tried again");
                        }
                    }
                }
                if sweep_due {
                    self.sweep(&remote, record.id, partition, &label).await;
                }
            }
            Err(e) => {
                tracing::warn!(partition = %label, error = %e, "could not read the partition's manifest")
            }
        }
        // Logged before the claim goes, so the logged spans of two compactors never overlap.
        tracing::info!(partition = %label, compactor = %self.id, "releasing");
        if let Err(e) = self
            .etcd
            .delete(&guard.key, Expect::Version(guard.version))
            .await
        {
            tracing::debug!(partition = %label, error = %e, "the claim was already gone");
        }
    }

    async fn sweep(&self, remote: &RemotePartition, topic_id: Uuid, partition: i32, label: &str) {
        let grace = Duration::from_millis(self.settings.compaction.sweep_grace_ms);
        let swept = sweep_partition(
            self.tier.store.as_ref(),
            remote.paths(),
            self.tier.pointers.as_ref(),
            topic_id,
            partition,
            grace,
            now_ms(),
        )
        .await;
        match swept {
            Ok(report) => {
                self.last_sweep
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((topic_id, partition), Instant::now());
                if report.deleted > 0 {
                    self.metrics.swept_objects.inc_by(report.deleted as u64);
                    tracing::info!(partition = %label, objects = report.deleted, "swept unreferenced objects");
                }
            }
            Err(e) => tracing::warn!(partition = %label, error = %e, "the sweep failed"),
        }
    }

    /// The partition's remote side, its manifest read again if it moved.
    async fn remote_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> strata_tiering::Result<Arc<RemotePartition>> {
        let known = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(topic_id, partition))
            .cloned();
        if let Some(remote) = known {
            remote.refresh().await?;
            return Ok(remote);
        }
        let remote =
            Arc::new(RemotePartition::open(Arc::clone(&self.tier), topic_id, partition).await?);
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((topic_id, partition), Arc::clone(&remote));
        Ok(remote)
    }
}

fn lease_seconds(settings: &Settings) -> i64 {
    i64::try_from((settings.broker_session_timeout_ms / 1000).max(1)).unwrap_or(i64::MAX)
}
