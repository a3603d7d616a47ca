//! Starting and stopping a broker process: lock the data directory, open the metadata store and
//! the logs, listen, run background work, and on shutdown drain connections and close the logs.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::{
    Broker, identity, run_cluster_sync, run_compaction, run_housekeeping, started_empty,
};
use crate::cluster::controller::{Liveness, run_controller};
use crate::cluster::view::read_partitions;
use crate::error::BrokerError;
use crate::group::run_group_timers;
use crate::metadata::MetadataStore;
use crate::metadata::catalog::Catalog;
use crate::metadata::embedded::EmbeddedStore;
use crate::metadata::etcd::EtcdStore;
use crate::metadata::registration::{
    BrokerRecord, Registration, RegistrationError, new_incarnation, register_embedded,
};
use crate::metrics_http;
use crate::protocol::metrics::RequestMetrics;
use crate::protocol::server;
use crate::replication::isr::run_isr_shrinker;
use crate::replication::proto::replication_server::ReplicationServer;
use crate::replication::service::ReplicationService;
use crate::settings::Settings;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data directory could not be created or locked.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The broker could not join its cluster in etcd.
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// Opening the metadata or the logs failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A broker that is open and listening; [`Running::run`] serves until cancelled.
#[derive(Debug)]
pub struct Running {
    registration: Option<Registration>,
    liveness: Liveness,
    broker: Arc<Broker>,
    listener: TcpListener,
    metrics_listener: TcpListener,
    replication_listener: TcpListener,
    _lock: File,
}

/// Opens everything and binds the listener, without serving yet.
pub async fn start(settings: Settings) -> Result<Running, StartupError> {
    let dir = settings.data_dir.clone();
    let data_dir_error = |reason: String| StartupError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(&dir).map_err(|e| data_dir_error(e.to_string()))?;
    let lock = File::create(dir.join(".lock")).map_err(|e| data_dir_error(e.to_string()))?;
    lock.try_lock()
        .map_err(|_| data_dir_error("another broker is using it".into()))?;
    let replication_listen = settings.replication_listen;
    let replication_listener = TcpListener::bind(replication_listen)
        .await
        .map_err(|source| StartupError::Bind {
            addr: replication_listen,
            source,
        })?;
    let replication_port = replication_listener
        .local_addr()
        .map_err(|source| StartupError::Bind {
            addr: replication_listen,
            source,
        })?
        .port();
    // One node has nobody to be told apart from: no incarnation on the embedded store.
    let incarnation = if settings.etcd.is_empty() {
        0
    } else {
        new_incarnation()
    };
    let record = |started_empty| BrokerRecord {
        broker_id: settings.broker_id,
        host: settings.advertised_host.clone(),
        port: settings.advertised_port,
        rack: settings.broker_rack.clone(),
        replication: format!("{}:{replication_port}", settings.advertised_host),
        incarnation,
        started_empty,
    };
    // Whether it came back without its logs is told from the partition states it was in sync
    // for, read before it registers.
    let started_empty = |partitions| {
        started_empty(&dir, settings.broker_id, partitions)
            .map_err(|e| data_dir_error(format!("cannot tell whether it holds logs: {e}")))
    };
    let (store, registration, liveness, cluster_id): (Arc<dyn MetadataStore>, _, _, _) = if settings
        .etcd
        .is_empty()
    {
        let embedded =
            Arc::new(EmbeddedStore::open(&dir.join("metadata.json")).map_err(BrokerError::from)?);
        let cluster_id = identity::establish(&Catalog::new(embedded.clone()), &dir).await?;
        let partitions = read_partitions(&*embedded)
            .await
            .map_err(BrokerError::from)?;
        register_embedded(&*embedded, &record(started_empty(&partitions)?))
            .await
            .map_err(BrokerError::from)?;
        (embedded, None, Liveness::Embedded, cluster_id)
    } else {
        let etcd = EtcdStore::connect(&settings.etcd, &settings.cluster_name)
            .await
            .map_err(BrokerError::from)?;
        // Before it registers: a broker of another cluster must not join this one.
        let cluster_id = identity::establish(&Catalog::new(Arc::new(etcd.clone())), &dir).await?;
        let partitions = read_partitions(&etcd).await.map_err(BrokerError::from)?;
        let record = record(started_empty(&partitions)?);
        let timeout = Duration::from_millis(settings.broker_session_timeout_ms);
        let registration = Registration::register(etcd.clone(), record, timeout).await?;
        let liveness = Liveness::Lease {
            store: Box::new(etcd.clone()),
            lease: registration.lease(),
        };
        (Arc::new(etcd), Some(registration), liveness, cluster_id)
    };
    let listen = settings.listen;
    let broker = Broker::open(settings, store, incarnation, cluster_id).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartupError::Bind {
            addr: listen,
            source,
        })?;
    let metrics_addr = broker.settings().metrics_listen;
    let metrics_listener =
        metrics_http::bind(metrics_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: metrics_addr,
                source,
            })?;
    Ok(Running {
        registration,
        liveness,
        broker,
        listener,
        metrics_listener,
        replication_listener,
        _lock: lock,
    })
}

impl Running {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// The broker being served.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves clients and runs background work until `cancel` fires, then shuts down cleanly.
    pub async fn run(self, cancel: CancellationToken) {
        let housekeeping = tokio::spawn(run_housekeeping(
            Arc::clone(&self.broker),
            cancel.child_token(),
        ));
        let compaction = tokio::spawn(run_compaction(
            Arc::clone(&self.broker),
            cancel.child_token(),
        ));
        let registration = self
            .registration
            .map(|r| tokio::spawn(r.run(cancel.child_token())));
        let cluster = spawn_cluster_tasks(&self.broker, self.liveness, &cancel);
        let replication = tokio::spawn(serve_replication(
            self.replication_listener,
            Arc::clone(&self.broker),
            cancel.child_token(),
        ));
        let group_timers = tokio::spawn(run_group_timers(
            Arc::clone(&self.broker),
            cancel.child_token(),
        ));
        let requests = RequestMetrics::default();
        let mut registry = metrics_http::registry(&self.broker);
        requests.register(&mut registry);
        let metrics = tokio::spawn(metrics_http::serve(
            self.metrics_listener,
            registry,
            cancel.child_token(),
        ));
        server::serve(
            self.listener,
            Arc::clone(&self.broker),
            requests,
            cancel.clone(),
        )
        .await;
        cancel.cancel();
        if housekeeping.await.is_err() {
            tracing::error!("the housekeeping task panicked");
        }
        if compaction.await.is_err() {
            tracing::error!("the compaction task panicked");
        }
        if group_timers.await.is_err() {
            tracing::error!("the group coordinator's timers panicked");
        }
        if metrics.await.is_err() {
            tracing::error!("the metrics endpoint panicked");
        }
        if replication.await.is_err() {
            tracing::error!("the replication service panicked");
        }
        for task in cluster {
            if task.await.is_err() {
                tracing::error!("a cluster task (controller, sync, ISR) panicked");
            }
        }
        self.broker.close().await;
        // The registration task revoked its lease when cancelled: the broker has left the cluster.
        if let Some(registration) = registration
            && registration.await.is_err()
        {
            tracing::error!("the etcd registration task panicked");
        }
        tracing::info!("broker stopped");
    }
}

/// Starts the controller campaign, the cluster sync and the ISR shrinker.
pub fn spawn_cluster_tasks(
    broker: &Arc<Broker>,
    liveness: Liveness,
    cancel: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(run_controller(
            Arc::clone(broker.store()),
            liveness,
            broker.settings().broker_id,
            broker.topic_defaults(),
            cancel.child_token(),
        )),
        tokio::spawn(run_cluster_sync(Arc::clone(broker), cancel.child_token())),
        tokio::spawn(run_isr_shrinker(Arc::clone(broker), cancel.child_token())),
    ]
}

/// Serves the replication gRPC service until `cancel` fires.
async fn serve_replication(listener: TcpListener, broker: Arc<Broker>, cancel: CancellationToken) {
    let service = ReplicationServer::new(ReplicationService::new(broker));
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the replication service stopped");
    }
}
