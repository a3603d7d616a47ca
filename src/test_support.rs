//! Helpers shared by unit tests: a broker in a temporary directory and record batches built with
//! the `kafka-protocol` codec, as a producer would send them.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use tokio_util::sync::CancellationToken;

use crate::app::spawn_cluster_tasks;
use crate::broker::replica::{Role, RoleSource};
use crate::broker::{Broker, NewTopic, Partition, identity, now_ms};
use crate::cluster::controller::Liveness;
use crate::metadata::MetadataStore;
use crate::metadata::catalog::Catalog;
use crate::metadata::embedded::EmbeddedStore;
use crate::metadata::keys;
use crate::metadata::registration::{BrokerRecord, register_embedded};
use crate::settings::Settings;

/// Opens a single-node broker with default settings whose data lives in `dir`, with its
/// controller and cluster sync running (until the test's runtime ends).
pub(crate) async fn open_broker(dir: &Path) -> Arc<Broker> {
    let settings = Settings::for_data_dir(dir);
    let store = EmbeddedStore::open(&dir.join("metadata.json")).expect("store");
    let record = BrokerRecord {
        broker_id: settings.broker_id,
        host: settings.advertised_host.clone(),
        port: settings.advertised_port,
        rack: None,
        replication: String::new(),
        incarnation: 0,
        started_empty: false,
    };
    register_embedded(&store, &record).await.expect("register");
    let store: Arc<dyn MetadataStore> = Arc::new(store);
    let cluster_id = identity::establish(&Catalog::new(Arc::clone(&store)), dir)
        .await
        .expect("cluster");
    let broker = Broker::open(settings, store, 0, cluster_id)
        .await
        .expect("broker");
    spawn_cluster_tasks(&broker, Liveness::Embedded, &CancellationToken::new());
    broker
}

/// Non-idempotent records with keys `k0, k1, ...`, the given values, and timestamps starting at
/// `first_timestamp` and growing by `step`.
pub(crate) fn records(values: &[&str], first_timestamp: i64, step: i64) -> Vec<Record> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Non-idempotent batches carry base sequence -1; the codec numbers records from it.
            sequence: i as i32 - 1,
            timestamp: first_timestamp + i as i64 * step,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect()
}

/// Encodes `records` as one batch with `compression`.
pub(crate) fn encode(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.freeze()
}

/// One uncompressed batch holding `values`, all stamped `timestamp`.
pub(crate) fn batch(values: &[&str], timestamp: i64) -> Bytes {
    encode(&records(values, timestamp, 0), Compression::None)
}

/// Creates topic `name` with `count` partitions and puts a second replica (broker 2) that has
/// fetched nothing into each one's ISR: acks=all produces wait until
/// [`Partition::follower_fetched`] reports it caught up.
pub(crate) async fn partitions_awaiting_a_follower(
    broker: &Broker,
    name: &str,
    count: i32,
) -> Vec<Arc<Partition>> {
    let new = NewTopic {
        name: name.into(),
        partitions: Some(count),
        ..NewTopic::default()
    };
    let topic = broker.create_topic(new).await.expect("create the topic");
    let mut partitions = Vec::new();
    for index in 0..count {
        let partition = topic.partition(index).expect("partition");
        let Role::Leader { epoch, .. } = partition.role() else {
            panic!("a single broker leads its partitions");
        };
        let isr = vec![broker.settings().broker_id, 2];
        let role = Role::Leader { epoch, isr };
        let history = broker.store().history();
        let version = stored_version(broker, &partition).await;
        let source = RoleSource::State {
            history,
            version,
            epoch,
        };
        partition.set_role(role, source, now_ms()).await;
        partitions.push(partition);
    }
    partitions
}

/// The version of `partition`'s state in `broker`'s metadata store.
pub(crate) async fn stored_version(broker: &Broker, partition: &Partition) -> u64 {
    let key = keys::partition_state(partition.topic_id(), partition.index());
    let stored = broker.store().get(&key).await.expect("read the state");
    stored.expect("a stored partition state").version
}

/// The only partition of a new topic `name`, led by `broker` (a single node).
pub(crate) async fn one_partition(broker: &Broker, name: &str) -> Arc<Partition> {
    let topic = broker
        .create_topic(NewTopic {
            name: name.into(),
            partitions: Some(1),
            ..NewTopic::default()
        })
        .await
        .expect("create");
    topic.partition(0).expect("partition")
}
