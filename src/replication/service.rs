//! The leader's side of replication: answers followers' fetches. A fetch first proves the
//! follower's log agrees with the leader's (its last epoch must end, on the leader, at or after
//! the fetch offset; otherwise the answer is the diverging epoch to truncate to), then records
//! the follower's progress (moving the high watermark, perhaps adding it to the ISR) and returns
//! batches from the fetch offset, waiting up to the fetch's max wait when there are none yet.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::isr::{IsrChange, change_isr, settle_after_failure};
use super::proto::replication_server::Replication;
use super::proto::{DivergingEpoch, FetchError, FetchRequest, FetchResponse};
use crate::broker::{Broker, Partition, now_ms};

/// The replication service of one broker.
#[derive(Debug, Clone)]
pub struct ReplicationService {
    broker: Arc<Broker>,
}

impl ReplicationService {
    /// The service for `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        ReplicationService { broker }
    }

    fn partition(&self, request: &FetchRequest) -> Option<Arc<Partition>> {
        let id = Uuid::from_slice(&request.topic_id).ok()?;
        self.broker.topic_by_id(id)?.partition(request.partition)
    }
}

fn error(code: FetchError) -> Response<FetchResponse> {
    Response::new(FetchResponse {
        error: code as i32,
        high_watermark: -1,
        local_log_start_offset: -1,
        remote_end_offset: -1,
        log_end_offset: -1,
        diverging_epoch: None,
        records: Bytes::new(),
    })
}

/// Where a follower that last fetched `last_epoch` and needs `fetch_offset` diverges from the
/// leader's log, if it does.
fn divergence(partition: &Partition, last_epoch: i32, fetch_offset: i64) -> Option<DivergingEpoch> {
    if last_epoch < 0 {
        return None;
    }
    match partition.end_offset_for_epoch(last_epoch) {
        Some((epoch, end)) if epoch == last_epoch && end >= fetch_offset => None,
        Some((epoch, end_offset)) => Some(DivergingEpoch { epoch, end_offset }),
        // The leader's history starts after that epoch: everything the follower has from the
        // leader's log start on is suspect.
        None => {
            let start = partition.log().log_start_offset();
            (fetch_offset > start).then_some(DivergingEpoch {
                epoch: -1,
                end_offset: start,
            })
        }
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let request = request.into_inner();
        let Some(partition) = self.partition(&request) else {
            return Ok(error(FetchError::NotLeader));
        };
        let Ok(epoch) = partition.leader_epoch() else {
            return Ok(error(FetchError::NotLeader));
        };
        if request.leader_epoch < epoch {
            return Ok(error(FetchError::FencedLeaderEpoch));
        }
        if request.leader_epoch > epoch {
            return Ok(error(FetchError::UnknownLeaderEpoch));
        }
        let local_start = partition.log().log_start_offset();
        let mut response = FetchResponse {
            error: FetchError::None as i32,
            high_watermark: partition.high_watermark(),
            local_log_start_offset: local_start,
            remote_end_offset: partition.remote_end_offset().await,
            log_end_offset: partition.log_end_offset(),
            diverging_epoch: None,
            records: Bytes::new(),
        };
        let fetch_offset = request.fetch_offset;
        if let Some(diverging) = divergence(&partition, request.last_fetched_epoch, fetch_offset) {
            response.diverging_epoch = Some(diverging);
            return Ok(Response::new(response));
        }
        if fetch_offset < local_start || fetch_offset > response.log_end_offset {
            response.error = FetchError::OffsetOutOfRange as i32;
            return Ok(Response::new(response));
        }
        let max_lag = self.broker.settings().replica_lag_time_max_ms as i64;
        if partition.lost_acknowledged(request.replica_id, fetch_offset) {
            tracing::warn!(
                partition = partition.index(),
                replica = request.replica_id,
                fetch_offset,
                high_watermark = partition.high_watermark(),
                "an in-sync follower fetches below the high watermark (it lost acknowledged data); removing it from the ISR"
            );
            let evict = IsrChange::Evict(request.replica_id);
            if let Err(e) = change_isr(&self.broker, &partition, epoch, evict).await {
                tracing::warn!(partition = partition.index(), replica = request.replica_id, error = %e, "could not remove a follower from the ISR");
            }
        }
        if let Some(ticket) =
            partition.follower_fetched(request.replica_id, fetch_offset, now_ms(), max_lag)
        {
            let (broker, p) = (Arc::clone(&self.broker), Arc::clone(&partition));
            let change = IsrChange::Add {
                replica: ticket.replica,
                incarnation: request.replica_incarnation,
            };
            tokio::spawn(async move {
                if let Err(e) = change_isr(&broker, &p, ticket.epoch, change).await {
                    tracing::warn!(partition = p.index(), replica = ticket.replica, error = %e, "could not add a follower to the ISR");
                    settle_after_failure(&broker, &p, ticket.epoch).await;
                }
                p.joined_or_not(ticket);
            });
        }
        if fetch_offset >= partition.log_end_offset() {
            let wait = Duration::from_millis(request.max_wait_ms.clamp(0, 10_000) as u64);
            let mut end = partition.watch_log_end();
            let mut role = partition.watch_role();
            let _ = tokio::time::timeout(wait, async {
                tokio::select! {
                    _ = end.wait_for(|e| *e > fetch_offset) => {}
                    _ = role.changed() => {}
                }
            })
            .await;
        }
        let max_bytes = usize::try_from(request.max_bytes.max(1)).unwrap_or(1 << 20);
        match partition.read_for_follower(fetch_offset, max_bytes).await {
            Ok(records) => response.records = records,
            Err(e) => {
                tracing::warn!(partition = partition.index(), error = %e, "a replication read failed");
                response.error = FetchError::Storage as i32;
            }
        }
        response.high_watermark = partition.high_watermark();
        response.log_end_offset = partition.log_end_offset();
        Ok(Response::new(response))
    }
}
