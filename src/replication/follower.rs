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
        // Where this log's history of that epoch ends, capped by the leader's. Epoch -1: the
        // leader's history starts after this log's last epoch, and everything from the leader's
        // log start on is suspect, not what lies below it.
        let own_end = if diverging.epoch < 0 {
            i64::MAX
        } else {
            partition
                .end_offset_for_epoch(diverging.epoch)
                .map_or(i64::MIN, |(_, end)| end)
        };
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::replication::proto::DivergingEpoch;
    use crate::test_support::{batch, one_partition, open_broker};

    fn diverging(epoch: i32, end_offset: i64) -> FetchResponse {
        FetchResponse {
            error: FetchError::None as i32,
            high_watermark: 0,
            local_log_start_offset: 0,
            remote_end_offset: -1,
            log_end_offset: end_offset,
            diverging_epoch: Some(DivergingEpoch { epoch, end_offset }),
            records: Bytes::new(),
        }
    }

    /// Epoch -1: the leader's history starts after this log's last epoch. What this log holds
    /// below the leader's log start stays; only what follows it is cut.
    #[tokio::test]
    async fn a_leader_without_the_followers_epochs_cuts_it_back_to_the_leaders_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open_broker(dir.path()).await;
        let p = one_partition(&broker, "diverged").await;
        for _ in 0..5 {
            let options = strata_tiering::AppendOptions {
                now_ms: now_ms(),
                leader_epoch: 0,
                log_append_time: false,
            };
            p.append(batch(&["a", "b"], 1_000), options)
                .await
                .expect("append");
        }
        assert_eq!(p.log_end_offset(), 10);
        apply(&p, 10, diverging(-1, 4)).await.expect("apply");
        assert_eq!(p.log_end_offset(), 4);
        apply(&p, 4, diverging(0, 2)).await.expect("apply");
        assert_eq!(
            p.log_end_offset(),
            2,
            "a known epoch: its end, capped by the leader's"
        );
    }
}
