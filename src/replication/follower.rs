//! A follower's fetch loop for one partition: fetch from the leader at the local log end, append
//! what comes back unchanged, take the leader's high watermark and remote end. When the leader
//! answers with a diverging epoch, truncate to where the logs agree (KIP-101 / KIP-279) and
//! fetch again; when the follower is behind the leader's local log start, start over there
//! (older data is in the remote tier and is never copied between brokers). The loop ends when
//! the partition's role changes.

use std::sync::Arc;
use std::time::Duration;

use tonic::Request;

use super::proto::{FetchError, FetchRequest, FetchResponse};
use super::{FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS};
use crate::broker::replica::Role;
use crate::broker::{Broker, Partition, Topic, now_ms};

/// Starts following `partition` while its role stays what it is now.
pub fn spawn(broker: Arc<Broker>, topic: Arc<Topic>, partition: Arc<Partition>) {
    tokio::spawn(async move {
        let role = partition.role();
        let Role::Follower { leader, epoch } = role else {
            return;
        };
        tracing::info!(topic = %topic.name(), partition = partition.index(), leader, epoch, "following");
        follow(&broker, &partition, leader, epoch).await;
        tracing::debug!(topic = %topic.name(), partition = partition.index(), leader, epoch, "stopped following");
    });
}

async fn follow(broker: &Broker, partition: &Partition, leader: i32, epoch: i32) {
    let mine = Role::Follower { leader, epoch };
    let mut role = partition.watch_role();
    let mut backoff = Duration::from_millis(50);
    loop {
        if *role.borrow_and_update() != mine {
            return;
        }
        let result = tokio::select! {
            r = fetch_once(broker, partition, leader, epoch) => r,
            _ = role.changed() => continue,
        };
        match result {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(reason) => {
                tracing::debug!(
                    partition = partition.index(),
                    leader,
                    reason,
                    "replication fetch failed; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = role.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn fetch_once(
    broker: &Broker,
    partition: &Partition,
    leader: i32,
    epoch: i32,
) -> Result<(), String> {
    let address = broker
        .cluster()
        .brokers
        .get(&leader)
        .map(|b| b.replication.clone())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("leader {leader} is not registered"))?;
    let mut client = broker.peers().client(&address).map_err(|e| e.to_string())?;
    let fetch_offset = partition.log_end_offset();
    let mut request = Request::new(FetchRequest {
        replica_id: broker.settings().broker_id,
        topic_id: partition.topic_id().as_bytes().to_vec().into(),
        partition: partition.index(),
        leader_epoch: epoch,
        fetch_offset,
        last_fetched_epoch: partition.latest_epoch().unwrap_or(-1),
        max_bytes: FETCH_MAX_BYTES,
        max_wait_ms: FETCH_MAX_WAIT_MS,
        replica_incarnation: broker.incarnation(),
    });
    request.set_timeout(Duration::from_millis(FETCH_MAX_WAIT_MS as u64 + 5_000));
    let response = client
        .fetch(request)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    apply(partition, fetch_offset, response)
        .await
        .map_err(|e| e.to_string())
}

async fn apply(
    partition: &Partition,
    fetch_offset: i64,
    response: FetchResponse,
) -> Result<(), String> {
    match response.error() {
        FetchError::None => {}
        FetchError::OffsetOutOfRange if fetch_offset < response.local_log_start_offset => {
            tracing::info!(
                partition = partition.index(),
                from = fetch_offset,
                to = response.local_log_start_offset,
                "behind the leader's local log: starting over at its start"
            );
            return partition
                .reset_to(response.local_log_start_offset, now_ms())
                .await
                .map_err(|e| e.to_string());
        }
        FetchError::OffsetOutOfRange if fetch_offset > response.log_end_offset => {
            return partition
                .truncate_to(response.log_end_offset)
                .await
                .map_err(|e| e.to_string());
        }
        other => return Err(format!("the leader answered {}", other.as_str_name())),
    }
    if let Some(diverging) = response.diverging_epoch {
        // Where this log's history of that epoch ends, capped by the leader's.
        let own_end = partition
            .end_offset_for_epoch(diverging.epoch)
            .map_or(i64::MIN, |(_, end)| end);
        let target = diverging.end_offset.min(own_end).min(fetch_offset);
        tracing::info!(
            partition = partition.index(),
            epoch = diverging.epoch,
            leader_end = diverging.end_offset,
            to = target,
            "log diverged from the leader's: truncating"
        );
        return partition
            .truncate_to(target)
            .await
            .map_err(|e| e.to_string());
    }
    if !response.records.is_empty() {
        partition
            .append_replica(response.records, now_ms())
            .await
            .map_err(|e| e.to_string())?;
    }
    if response.remote_end_offset >= 0 {
        partition.set_remote_end_offset(response.remote_end_offset);
    }
    if response.local_log_start_offset > partition.log().log_start_offset() {
        partition
            .follow_log_start(response.local_log_start_offset, now_ms())
            .await
            .map_err(|e| e.to_string())?;
    }
    partition.set_follower_high_watermark(response.high_watermark);
    Ok(())
}
