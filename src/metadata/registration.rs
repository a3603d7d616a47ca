//! Broker registration in etcd: `brokers/<id>` holds the broker's advertised listener and rack,
//! attached to a lease the broker keeps alive while it runs. A dead broker's key disappears when
//! its lease expires (`--broker-session-timeout-ms`); a clean shutdown revokes the lease at once.
//!
//! The record carries the broker's listeners, rack and incarnation: a number drawn at each
//! process start, with which the controller tells a restarted broker (whose log may have lost
//! what it acknowledged) from one that stayed up, even when it never saw the broker go; and
//! whether the broker started with no logs on disk at all.
//!
//! If etcd is unreachable for longer than the lease, the key expires; the broker keeps serving
//! and registers again once etcd answers (unless another broker took its id meanwhile, which is
//! logged and retried).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::etcd::EtcdStore;
use super::{Expect, MetadataError, MetadataStore, keys};

/// What a broker publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    /// The broker id.
    pub broker_id: i32,
    /// The advertised host.
    pub host: String,
    /// The advertised port.
    pub port: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
    /// Where the broker serves replication (gRPC), `host:port`.
    #[serde(default)]
    pub replication: String,
    /// Drawn afresh each time the broker process starts and kept while it runs (a lost lease
    /// registers again with the same one), so the controller tells a restarted broker, which
    /// may have lost acknowledged data, from one that stayed up. 0 on the embedded store: one
    /// node has nobody to be told apart from.
    #[serde(default)]
    pub incarnation: u64,
    /// The broker came back without its logs: its data directory held no partition log when it
    /// started (a new or wiped disk), or did at an earlier start and the broker has not been in
    /// sync for all its partitions since (`broker/empty_start.rs`). After a whole-cluster restart
    /// the controller elects, among in-sync replicas that all restarted, one that came back with
    /// its logs before one that came back empty.
    #[serde(default)]
    pub started_empty: bool,
}

/// A new incarnation: random, never 0.
pub fn new_incarnation() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0.max(1)
}

/// Why a broker may not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// A live broker already has this id.
    #[error("broker id {0} is registered by a live broker in this cluster")]
    IdInUse(i32),
    /// etcd failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// A registered broker: its lease, to keep alive and revoke.
#[derive(Debug)]
pub struct Registration {
    store: EtcdStore,
    record: BrokerRecord,
    ttl_seconds: i64,
    lease: watch::Sender<i64>,
}

fn encode(record: &BrokerRecord) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// Registers the only broker of a single-node cluster on the embedded store: its record, with
/// the records of any other broker id (a previous `--broker-id`) removed.
pub async fn register_embedded(
    store: &dyn MetadataStore,
    record: &BrokerRecord,
) -> Result<(), MetadataError> {
    for other in live_brokers(store).await? {
        if other.broker_id != record.broker_id {
            store
                .delete(&keys::broker(other.broker_id), Expect::Any)
                .await?;
        }
    }
    store
        .put(&keys::broker(record.broker_id), encode(record), Expect::Any)
        .await?;
    Ok(())
}

/// Every live broker of the cluster.
pub async fn live_brokers(store: &dyn MetadataStore) -> Result<Vec<BrokerRecord>, MetadataError> {
    store
        .list(keys::BROKERS_PREFIX)
        .await?
        .into_iter()
        .map(|(key, v)| {
            serde_json::from_str(&v.value).map_err(|e| MetadataError::Corrupt {
                key,
                reason: e.to_string(),
            })
        })
        .collect()
}

impl Registration {
    /// Registers `record` under a lease of `session_timeout` (whole seconds, at least one). A
    /// broker that was killed leaves its registration behind until its lease expires, so a
    /// conflict is retried for one session timeout (plus a second) before it is final.
    pub async fn register(
        store: EtcdStore,
        record: BrokerRecord,
        session_timeout: Duration,
    ) -> Result<Registration, RegistrationError> {
        let deadline = tokio::time::Instant::now() + session_timeout + Duration::from_secs(1);
        loop {
            match Self::try_register(store.clone(), record.clone(), session_timeout).await {
                Err(e @ RegistrationError::IdInUse(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::info!(error = %e, "waiting for a stale registration to expire");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_register(
        store: EtcdStore,
        record: BrokerRecord,
        session_timeout: Duration,
    ) -> Result<Registration, RegistrationError> {
        let ttl_seconds = i64::try_from(session_timeout.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = store.grant_lease(ttl_seconds).await?;
        let key = keys::broker(record.broker_id);
        if let Err(e) = store
            .put_with_lease(&key, encode(&record), Expect::Absent, lease)
            .await
        {
            store.revoke_lease(lease).await;
            return Err(match e {
                MetadataError::Conflict { .. } => RegistrationError::IdInUse(record.broker_id),
                other => other.into(),
            });
        }
        Ok(Registration {
            store,
            record,
            ttl_seconds,
            lease: watch::channel(lease).0,
        })
    }

    /// The current lease, which changes when a lost lease is replaced.
    pub fn lease(&self) -> watch::Receiver<i64> {
        self.lease.subscribe()
    }

    /// The etcd store the broker is registered in.
    pub fn store(&self) -> &EtcdStore {
        &self.store
    }

    /// Keeps the lease alive until `cancel` fires, registering again after a lost lease; then
    /// revokes the lease so the broker leaves the cluster at once.
    pub async fn run(mut self, cancel: CancellationToken) {
        let interval = Duration::from_millis((self.ttl_seconds as u64 * 1000 / 3).max(100));
        let mut retry = Duration::from_millis(200);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
            let lease = *self.lease.borrow();
            match self.store.refresh_lease(lease).await {
                Ok(true) => {
                    retry = Duration::from_millis(200);
                    continue;
                }
                Ok(false) => {
                    tracing::warn!(
                        broker = self.record.broker_id,
                        "the broker's etcd lease expired; registering again"
                    );
                }
                Err(e) => {
                    tracing::warn!(broker = self.record.broker_id, error = %e, "could not refresh the broker's etcd lease; still serving");
                    continue;
                }
            }
            while !cancel.is_cancelled() {
                match self.reregister().await {
                    Ok(()) => {
                        tracing::info!(broker = self.record.broker_id, "registered in etcd again");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(broker = self.record.broker_id, error = %e, "registering in etcd failed; retrying");
                        tokio::select! {
                            () = cancel.cancelled() => {}
                            () = tokio::time::sleep(retry) => {}
                        }
                        retry = (retry * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        let lease = *self.lease.borrow();
        self.store.revoke_lease(lease).await;
    }

    async fn reregister(&mut self) -> Result<(), RegistrationError> {
        let lease = self.store.grant_lease(self.ttl_seconds).await?;
        let key = keys::broker(self.record.broker_id);
        match self
            .store
            .put_with_lease(&key, encode(&self.record), Expect::Absent, lease)
            .await
        {
            Ok(_) => {
                self.lease.send_replace(lease);
                Ok(())
            }
            Err(e) => {
                self.store.revoke_lease(lease).await;
                Err(match e {
                    MetadataError::Conflict { .. } => {
                        RegistrationError::IdInUse(self.record.broker_id)
                    }
                    other => other.into(),
                })
            }
        }
    }
}
