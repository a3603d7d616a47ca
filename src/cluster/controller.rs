//! The controller: one broker at a time, elected by creating the `controller` key under its
//! lease (etcd) — whoever creates it leads until the key vanishes. The key's version is the
//! controller epoch, and every write the controller makes is an etcd transaction that also
//! compares it, so a deposed controller's writes fail. While it leads it re-reads topics, brokers
//! and partition states whenever a watch fires and writes what [`plan`](super::plan::plan)
//! decides: replicas for new partitions, new leaders for partitions whose leader died or
//! restarted, dead brokers out of ISRs, restarted ones (a new incarnation) too until caught up, reassignments completed, preferred leaders asked for through
//! `elections/` keys, the states of deleted topics removed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::assign::Candidate;
use super::plan::{Change, TopicSpec, plan};
use super::triggers::Triggers;
use super::view::{ControllerRecord, read_controller, read_partitions};
use crate::metadata::catalog::Catalog;
use crate::metadata::etcd::EtcdStore;
use crate::metadata::registration::live_brokers;
use crate::metadata::{Expect, MetadataError, MetadataStore, Write, keys};
use crate::topic_config::{TopicConfig, TopicDefaults};

/// How a broker holds keys that must disappear when it dies.
#[derive(Debug, Clone)]
pub enum Liveness {
    /// A single node on the embedded store: the broker is the whole cluster.
    Embedded,
    /// etcd: such keys are attached to the broker's current registration lease.
    Lease {
        /// The etcd store.
        store: Box<EtcdStore>,
        /// The current lease id (a new one after a lost lease is re-registered).
        lease: watch::Receiver<i64>,
    },
}

/// The longest the controller waits between two reconciliations when nothing fires.
const RESYNC: Duration = Duration::from_secs(30);

/// Campaigns for the controller role and leads while it holds it, until `cancel` fires.
pub async fn run_controller(
    store: Arc<dyn MetadataStore>,
    liveness: Liveness,
    me: i32,
    defaults: Arc<TopicDefaults>,
    cancel: CancellationToken,
) {
    let mut controller_key = Triggers::new(&*store, &[keys::CONTROLLER]);
    let mut retry = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        match campaign(&*store, &liveness, me).await {
            Ok(epoch) => {
                retry = Duration::from_millis(100);
                tracing::info!(broker = me, epoch, "became the controller");
                lead(&store, me, epoch, &defaults, &cancel).await;
                tracing::info!(broker = me, epoch, "no longer the controller");
                continue;
            }
            Err(MetadataError::Conflict { .. }) => {
                // Another broker leads: campaign again once its key changes (or vanishes).
                retry = Duration::from_millis(100);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = controller_key.changed(RESYNC) => {}
                }
            }
            Err(e) => {
                // etcd unreachable, or this broker's lease just expired and is being replaced:
                // nobody may hold the key, so try again after a backoff, not after a change.
                tracing::warn!(error = %e, "could not campaign for the controller role");
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(retry) => {}
        }
    }
}

/// Tries to become the controller; returns the controller epoch.
async fn campaign(
    store: &dyn MetadataStore,
    liveness: &Liveness,
    me: i32,
) -> Result<u64, MetadataError> {
    let value = serde_json::to_string(&ControllerRecord { broker_id: me })
        .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
    match liveness {
        Liveness::Embedded => store.put(keys::CONTROLLER, value, Expect::Any).await,
        Liveness::Lease { store, lease } => {
            let lease = *lease.borrow();
            store
                .put_with_lease(keys::CONTROLLER, value, Expect::Absent, lease)
                .await
        }
    }
}

/// Whether this broker still holds the controller key at `epoch`.
async fn still_controller(store: &dyn MetadataStore, me: i32, epoch: u64) -> bool {
    match read_controller(store).await {
        Ok(Some(c)) => c.broker_id == me && c.epoch == epoch,
        Ok(None) => false,
        // Unknown: keep leading; our writes are fenced anyway.
        Err(_) => true,
    }
}

async fn lead(
    store: &Arc<dyn MetadataStore>,
    me: i32,
    epoch: u64,
    defaults: &Arc<TopicDefaults>,
    cancel: &CancellationToken,
) {
    let mut triggers = Triggers::new(
        &**store,
        &[
            keys::TOPICS_PREFIX,
            keys::BROKERS_PREFIX,
            keys::PARTITIONS_PREFIX,
            keys::ELECTIONS_PREFIX,
            keys::CONTROLLER,
        ],
    );
    loop {
        if let Err(e) = reconcile(store, epoch, defaults).await {
            tracing::warn!(error = %e, "the controller could not apply the cluster's changes; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !still_controller(&**store, me, epoch).await {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = triggers.changed(RESYNC) => {}
        }
        if !still_controller(&**store, me, epoch).await {
            return;
        }
    }
}

/// Reads the cluster and writes the plan, each write fenced by the controller epoch. A write
/// that conflicts is skipped: the next round, triggered by that very change, plans again.
async fn reconcile(
    store: &Arc<dyn MetadataStore>,
    epoch: u64,
    defaults: &Arc<TopicDefaults>,
) -> Result<(), MetadataError> {
    let records = Catalog::new(Arc::clone(store))
        .topics()
        .await
        .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
    let topics: Vec<TopicSpec> = records
        .into_iter()
        .map(|r| {
            let unclean = TopicConfig::new(r.configs.clone(), Arc::clone(defaults))
                .map(|c| c.unclean_leader_election())
                .unwrap_or(false);
            TopicSpec {
                id: r.id,
                partitions: r.partitions,
                replication_factor: r.replication_factor,
                assignment: r.assignment,
                unclean_leader_election: unclean,
            }
        })
        .collect();
    let states = read_partitions(&**store).await?;
    let live: Vec<Candidate> = live_brokers(&**store)
        .await?
        .into_iter()
        .map(|b| Candidate {
            id: b.broker_id,
            rack: b.rack,
            incarnation: b.incarnation,
            started_empty: b.started_empty,
        })
        .collect();
    let requests = store.list(keys::ELECTIONS_PREFIX).await?;
    let preferred: BTreeSet<_> = requests
        .iter()
        .filter_map(|(key, _)| keys::parse_partition_key(keys::ELECTIONS_PREFIX, key))
        .collect();
    for change in plan(&topics, &states, &live, &preferred) {
        let (partition, expect, value) = match &change {
            Change::Create { partition, state } => (partition, Expect::Absent, Some(state)),
            Change::Update {
                partition,
                version,
                state,
            } => (partition, Expect::Version(*version), Some(state)),
            Change::Delete { partition, version } => (partition, Expect::Version(*version), None),
        };
        let key = keys::partition_state(partition.0, partition.1);
        let write = match value {
            Some(state) => Write::Put {
                key: key.clone(),
                value: state.encode(),
            },
            None => Write::Delete { key: key.clone() },
        };
        let conditions = [
            (keys::CONTROLLER.to_string(), Expect::Version(epoch)),
            (key.clone(), expect),
        ];
        match store.transact(&conditions, vec![write]).await {
            Ok(_) => tracing::info!(change = ?change, "controller wrote a partition state"),
            Err(MetadataError::Conflict { .. }) => {
                tracing::debug!(key, "partition state changed concurrently; planning again");
            }
            Err(e) => return Err(e),
        }
    }
    // Every request was planned for: granted, or not possible now (the asker has checked).
    for (key, v) in requests {
        store.delete(&key, Expect::Version(v.version)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::catalog::TopicRecord;
    use crate::metadata::embedded::EmbeddedStore;
    use crate::metadata::registration::{BrokerRecord, register_embedded};
    use crate::settings::Settings;

    #[tokio::test]
    async fn a_deposed_controller_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn MetadataStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("m.json")).expect("store"));
        let record = BrokerRecord {
            broker_id: 1,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            replication: String::new(),
            incarnation: 0,
            started_empty: false,
        };
        register_embedded(&*store, &record)
            .await
            .expect("registered");
        let settings = Settings::for_data_dir(dir.path());
        let defaults = Arc::new(TopicDefaults::new(&settings.topic_defaults));
        let deposed = campaign(&*store, &Liveness::Embedded, 1)
            .await
            .expect("elected");
        let current = campaign(&*store, &Liveness::Embedded, 1)
            .await
            .expect("elected again, with a new epoch");
        assert!(current > deposed);
        Catalog::new(Arc::clone(&store))
            .create_topic(&TopicRecord {
                name: "t".into(),
                id: uuid::Uuid::new_v4(),
                partitions: 2,
                configs: BTreeMap::new(),
                replication_factor: 1,
                assignment: None,
            })
            .await
            .expect("topic");
        reconcile(&store, deposed, &defaults)
            .await
            .expect("conflicts are skipped");
        assert!(
            read_partitions(&*store).await.expect("read").is_empty(),
            "the deposed controller's writes were refused"
        );
        reconcile(&store, current, &defaults)
            .await
            .expect("reconciled");
        assert_eq!(read_partitions(&*store).await.expect("read").len(), 2);
    }
}
