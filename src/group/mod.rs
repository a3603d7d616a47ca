//! The group coordinator: consumer groups of the classic protocol and their committed offsets.
//!
//! Every group lives in one partition of the internal topic `__consumer_offsets` (chosen by the
//! hash of the group id, as Kafka does) and its coordinator is the leader of that partition; on a
//! single node that is always this broker. Offset commits and each completed rebalance are
//! appended there, in Kafka's record format (`records.rs`), before they are acknowledged; on
//! startup the coordinator replays the topic to rebuild every group and its offsets, so commits
//! survive restarts.
//!
//! `state.rs` is the state machine of one group (pure, tested with plain calls); this module
//! holds the groups, does the I/O through [`OffsetsLog`] and runs the timers (session expiry, the
//! end of a join phase) from [`GroupCoordinator::tick`].

pub mod error;
mod log;
pub mod records;
pub mod state;
mod timers;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Mutex;

pub use error::GroupError;
pub use log::BrokerOffsetsLog;
use records::{CommittedOffset, RecordKey};
use state::{Group, GroupLimits, GroupState, JoinRequest, JoinResult, Reply, SyncResult};
pub use timers::{GroupMetrics, run_group_timers};

/// The internal topic of committed offsets and group membership.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// An empty group with no offsets is forgotten only after this long, so a standalone commit
/// that just created it is not raced.
const EMPTY_GROUP_GRACE_MS: i64 = 60_000;

/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// The key/value records of `__consumer_offsets`; a `None` value is a tombstone.
pub type KeyValue = (Bytes, Option<Bytes>);

/// Where the coordinator keeps its records: the partitions of `__consumer_offsets`. The broker
/// implements it over its own topic; unit tests use memory.
#[async_trait]
pub trait OffsetsLog: Send + Sync {
    /// Creates the topic if it does not exist; returns its partition count.
    async fn ensure(&self) -> Result<i32, GroupError>;
    /// The partition count, if the topic exists.
    fn partitions(&self) -> Option<i32>;
    /// Appends records to `partition`; returns once they are in the log.
    async fn append(&self, partition: i32, records: Vec<KeyValue>) -> Result<(), GroupError>;
    /// Every record of `partition`, oldest first.
    async fn read_all(&self, partition: i32) -> Result<Vec<KeyValue>, GroupError>;
    /// The high watermark of a topic partition, for lag; `None` if it does not exist.
    fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64>;
    /// Whether this broker leads `partition`, i.e. coordinates the groups that hash to it.
    fn leads(&self, partition: i32) -> bool;
}

/// NOT_COORDINATOR unless this broker leads the group's offsets partition (once the topic
/// exists), so a client with a stale coordinator looks it up again.
fn check_coordinator(log: &dyn OffsetsLog, group_id: &str) -> Result<(), GroupError> {
    match log.partitions() {
        Some(n) if !log.leads(partition_for(group_id, n)) => Err(GroupError::NotCoordinator),
        _ => Ok(()),
    }
}

/// The partition of `__consumer_offsets` that holds `group`: Java's `String.hashCode`, made
/// non-negative as Kafka's `Utils.abs` does, modulo the partition count.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// The outcome of a per-partition group operation (commit, offset delete) for `topic`/`partition`:
/// the error it met, if any.
pub fn partition_error(
    results: &[(String, i32, Option<GroupError>)],
    topic: &str,
    partition: i32,
) -> Option<GroupError> {
    results
        .iter()
        .find(|(t, p, _)| t == topic && *p == partition)
        .and_then(|(_, _, e)| *e)
}

/// A group and its committed offsets, behind one lock.
#[derive(Debug)]
pub struct GroupEntry {
    /// The membership state machine.
    pub group: Group,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

/// One partition's offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The committed offset and its metadata.
    pub value: CommittedOffset,
}

/// Who commits: the member, its generation and `group.instance.id`.
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    /// The member id (empty for a standalone consumer).
    pub member_id: &'a str,
    /// The generation (-1 for a standalone consumer).
    pub generation: i32,
    /// `group.instance.id`.
    pub instance_id: Option<&'a str>,
}

/// A group as ListGroups and DescribeGroups show it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// The group id.
    pub id: String,
    /// Its state name.
    pub state: &'static str,
    /// Its protocol type.
    pub protocol_type: String,
    /// Its assignor.
    pub protocol: String,
    /// (member id, instance id, client id, host, metadata, assignment) of each member.
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// The coordinator of every group this broker serves.
#[derive(Debug)]
pub struct GroupCoordinator {
    limits: GroupLimits,
    groups: SyncMutex<HashMap<String, Arc<Mutex<GroupEntry>>>>,
    /// Set at shutdown: no request waits for a rebalance any more.
    closed: AtomicBool,
    metrics: GroupMetrics,
}

fn now_ms() -> i64 {
    crate::broker::now_ms()
}

impl GroupCoordinator {
    /// A coordinator with no groups yet.
    pub fn new(limits: GroupLimits) -> Self {
        GroupCoordinator {
            limits,
            groups: SyncMutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            metrics: GroupMetrics::default(),
        }
    }

    /// The consumer-lag gauges.
    pub fn metrics(&self) -> &GroupMetrics {
        &self.metrics
    }

    fn check_open(&self) -> Result<(), GroupError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        Ok(())
    }

    fn lookup(&self, id: &str) -> Option<Arc<Mutex<GroupEntry>>> {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn get_or_create(&self, id: &str) -> Arc<Mutex<GroupEntry>> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(groups.entry(id.to_string()).or_insert_with(|| {
            Arc::new(Mutex::new(GroupEntry {
                group: Group::new(id, self.limits, now_ms()),
                offsets: BTreeMap::new(),
            }))
        }))
    }

    fn all(&self) -> Vec<Arc<Mutex<GroupEntry>>> {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Rebuilds the groups of one `__consumer_offsets` partition and their offsets, when this
    /// broker becomes its leader (the groups' coordinator). Returns how many groups it holds.
    pub async fn load_partition(
        &self,
        log: &dyn OffsetsLog,
        partition: i32,
    ) -> Result<usize, GroupError> {
        let mut offsets: HashMap<String, BTreeMap<(String, i32), CommittedOffset>> = HashMap::new();
        let mut stored: HashMap<String, Option<state::StoredGroup>> = HashMap::new();
        for (key, value) in log.read_all(partition).await? {
            let key = match records::decode_key(key) {
                Ok(Some(key)) => key,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(partition, error = %e, "skipping a record of __consumer_offsets");
                    continue;
                }
            };
            let group = key.group().to_string();
            match (key, value) {
                (
                    RecordKey::Offset {
                        topic, partition, ..
                    },
                    Some(v),
                ) => match records::decode_offset(v) {
                    Ok(o) => {
                        offsets
                            .entry(group)
                            .or_default()
                            .insert((topic, partition), o);
                    }
                    Err(e) => tracing::warn!(group, error = %e, "skipping an offset record"),
                },
                (
                    RecordKey::Offset {
                        topic, partition, ..
                    },
                    None,
                ) => {
                    offsets
                        .entry(group)
                        .or_default()
                        .remove(&(topic, partition));
                }
                (RecordKey::Group { .. }, Some(v)) => match records::decode_group(v) {
                    Ok(g) => {
                        stored.insert(group, Some(g));
                    }
                    Err(e) => tracing::warn!(group, error = %e, "skipping a group record"),
                },
                (RecordKey::Group { .. }, None) => {
                    stored.insert(group, None);
                }
            }
        }
        let now = now_ms();
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let ids: Vec<String> = offsets.keys().chain(stored.keys()).cloned().collect();
        let mut loaded = 0;
        for id in ids {
            if groups.contains_key(&id) {
                continue;
            }
            let group_offsets = offsets.remove(&id).unwrap_or_default();
            let group = match stored.remove(&id).flatten() {
                Some(s) => Group::restore(&id, s, self.limits, now),
                None if group_offsets.is_empty() => continue,
                None => Group::new(&id, self.limits, now),
            };
            loaded += 1;
            groups.insert(
                id,
                Arc::new(Mutex::new(GroupEntry {
                    group,
                    offsets: group_offsets,
                })),
            );
        }
        if loaded > 0 {
            tracing::info!(partition, groups = loaded, "loaded consumer groups");
        }
        Ok(loaded)
    }

    /// Forgets the groups of an offsets partition this broker no longer leads.
    pub fn unload_partition(&self, partition: i32, partitions: i32) {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| partition_for(id, partitions) != partition);
    }

    /// Creates `__consumer_offsets` if needed (FindCoordinator does this, as in Kafka).
    pub async fn prepare(&self, log: &dyn OffsetsLog) -> Result<(), GroupError> {
        log.ensure().await.map(|_| ())
    }

    async fn persist_group(log: &dyn OffsetsLog, group: &Group) -> Result<(), GroupError> {
        let partitions = log.ensure().await?;
        let key = records::encode_key(&RecordKey::Group {
            group: group.id().to_string(),
        });
        let value = records::encode_group(&group.stored());
        log.append(
            partition_for(group.id(), partitions),
            vec![(key, Some(value))],
        )
        .await
    }

    /// JoinGroup: answered when the join phase ends (or at once for errors and retries).
    pub async fn join(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        request: JoinRequest,
    ) -> JoinResult {
        if group_id.is_empty() {
            return JoinResult::error(GroupError::InvalidGroupId, &request.member_id);
        }
        if let Err(e) = self.check_open() {
            return JoinResult::error(e, &request.member_id);
        }
        if let Err(e) = log.ensure().await {
            return JoinResult::error(e, &request.member_id);
        }
        if let Err(e) = check_coordinator(log, group_id) {
            return JoinResult::error(e, &request.member_id);
        }
        let member = request.member_id.clone();
        let entry = self.get_or_create(group_id);
        let reply = {
            let mut e = entry.lock().await;
            let generation = e.group.generation();
            let reply = e.group.join(request, now_ms());
            Self::persist_if_emptied(log, &e.group, generation).await;
            reply
        };
        match reply {
            Reply::Now(r) => r,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| {
                JoinResult::error(GroupError::CoordinatorNotAvailable, &member)
            }),
        }
    }

    /// A join phase that ended with no members starts an empty generation: persist it, so a
    /// restart does not bring back members that left.
    async fn persist_if_emptied(log: &dyn OffsetsLog, group: &Group, generation_before: i32) {
        if group.generation() != generation_before
            && group.state() == GroupState::Empty
            && let Err(e) = Self::persist_group(log, group).await
        {
            tracing::warn!(group = group.id(), error = %e, "could not persist an emptied group");
        }
    }

    /// SyncGroup: the leader's assignment is persisted before anyone receives theirs.
    pub async fn sync(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        member: Committer<'_>,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        self.check_open()?;
        check_coordinator(log, group_id)?;
        let entry = self.lookup(group_id).ok_or(GroupError::UnknownMemberId)?;
        let reply = {
            let mut e = entry.lock().await;
            let (reply, completed) = e.group.sync(
                member.member_id,
                member.instance_id,
                member.generation,
                protocol,
                assignments,
                now_ms(),
            );
            if completed {
                let persisted = Self::persist_group(log, &e.group).await;
                if let Err(err) = &persisted {
                    tracing::warn!(group = group_id, error = %err, "could not persist a group's assignment");
                }
                e.group.finish_sync(
                    persisted.map_err(|_| GroupError::CoordinatorNotAvailable),
                    now_ms(),
                );
            }
            reply
        };
        match reply {
            Reply::Now(r) => r,
            Reply::Later(rx) => rx.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable)),
        }
    }

    /// Heartbeat.
    pub async fn heartbeat(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        member: Committer<'_>,
    ) -> Result<(), GroupError> {
        check_coordinator(log, group_id)?;
        let entry = self.lookup(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut e = entry.lock().await;
        e.group.heartbeat(
            member.member_id,
            member.instance_id,
            member.generation,
            now_ms(),
        )
    }

    /// LeaveGroup: one result per leaving member.
    pub async fn leave(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        check_coordinator(log, group_id)?;
        let entry = self.lookup(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut e = entry.lock().await;
        let generation = e.group.generation();
        let results = members
            .iter()
            .map(|(id, instance)| e.group.leave(id, instance.as_deref(), now_ms()))
            .collect();
        Self::persist_if_emptied(log, &e.group, generation).await;
        Ok(results)
    }

    /// OffsetCommit: checks the member, then appends the offsets and records them. Per
    /// partition errors come back alongside the offsets that were refused.
    pub async fn commit(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        committer: Committer<'_>,
        offsets: Vec<OffsetToCommit>,
    ) -> Result<Vec<(String, i32, Option<GroupError>)>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let partitions = log.ensure().await?;
        check_coordinator(log, group_id)?;
        let entry = if committer.generation < 0 {
            self.get_or_create(group_id)
        } else {
            self.lookup(group_id).ok_or(GroupError::UnknownMemberId)?
        };
        let mut e = entry.lock().await;
        e.group.check_commit(
            committer.member_id,
            committer.instance_id,
            committer.generation,
        )?;
        let mut results = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        let mut records = Vec::new();
        for o in offsets {
            let error = if o.value.metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Some(GroupError::OffsetMetadataTooLarge)
            } else if log.high_watermark(&o.topic, o.partition).is_none() {
                Some(GroupError::UnknownTopicOrPartition)
            } else {
                None
            };
            if error.is_none() {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                };
                records.push((
                    records::encode_key(&key),
                    Some(records::encode_offset(&o.value)),
                ));
                accepted.push(o.clone());
            }
            results.push((o.topic, o.partition, error));
        }
        if !records.is_empty() {
            log.append(partition_for(group_id, partitions), records)
                .await?;
        }
        for o in accepted {
            e.offsets.insert((o.topic, o.partition), o.value);
        }
        Ok(results)
    }

    /// OffsetFetch: the committed offsets of `partitions` (`None`: every committed partition).
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<((String, i32), Option<CommittedOffset>)> {
        let Some(entry) = self.lookup(group_id) else {
            return partitions
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p, None))
                .collect();
        };
        let e = entry.lock().await;
        match partitions {
            Some(wanted) => wanted
                .into_iter()
                .map(|p| {
                    let committed = e.offsets.get(&p).cloned();
                    (p, committed)
                })
                .collect(),
            None => e
                .offsets
                .iter()
                .map(|(p, o)| (p.clone(), Some(o.clone())))
                .collect(),
        }
    }

    /// Every group, summarised.
    pub async fn list(&self) -> Vec<GroupSummary> {
        let mut out = Vec::new();
        for entry in self.all() {
            out.push(summarise(&entry.lock().await.group));
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// One group, summarised; `None` if it does not exist.
    pub async fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let entry = self.lookup(group_id)?;
        let e = entry.lock().await;
        Some(summarise(&e.group))
    }

    /// DeleteGroups for one group: only an empty group is deleted, with tombstones for its
    /// membership and every committed offset.
    pub async fn delete(&self, log: &dyn OffsetsLog, group_id: &str) -> Result<(), GroupError> {
        let entry = self.lookup(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let e = entry.lock().await;
        if !e.group.is_empty() {
            return Err(GroupError::NonEmptyGroup);
        }
        let partitions = log.ensure().await?;
        let mut tombstones = vec![(
            records::encode_key(&RecordKey::Group {
                group: group_id.to_string(),
            }),
            None,
        )];
        for (topic, partition) in e.offsets.keys() {
            let key = RecordKey::Offset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            tombstones.push((records::encode_key(&key), None));
        }
        log.append(partition_for(group_id, partitions), tombstones)
            .await?;
        drop(e);
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(group_id);
        Ok(())
    }

    /// OffsetDelete: removes committed offsets of topics the group's members do not consume.
    /// `subscribed(topic)` tells whether an active member subscribes to a topic.
    pub async fn delete_offsets(
        &self,
        log: &dyn OffsetsLog,
        group_id: &str,
        partitions: Vec<(String, i32)>,
        subscribed: impl Fn(&Group, &str) -> bool,
    ) -> Result<Vec<(String, i32, Option<GroupError>)>, GroupError> {
        let entry = self.lookup(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let mut e = entry.lock().await;
        let partitions_count = log.ensure().await?;
        let mut results = Vec::new();
        let mut tombstones = Vec::new();
        let mut removed = Vec::new();
        for (topic, partition) in partitions {
            if !e.group.is_empty() && subscribed(&e.group, &topic) {
                results.push((topic, partition, Some(GroupError::GroupSubscribedToTopic)));
                continue;
            }
            if e.offsets.contains_key(&(topic.clone(), partition)) {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition,
                };
                tombstones.push((records::encode_key(&key), None));
                removed.push((topic.clone(), partition));
            }
            results.push((topic, partition, None));
        }
        if !tombstones.is_empty() {
            log.append(partition_for(group_id, partitions_count), tombstones)
                .await?;
        }
        for p in removed {
            e.offsets.remove(&p);
        }
        Ok(results)
    }

    /// Runs the timers of every group: expired sessions, join phases past their deadline.
    pub async fn tick(&self, log: &dyn OffsetsLog) {
        let now = now_ms();
        for entry in self.all() {
            let mut e = entry.lock().await;
            let generation = e.group.generation();
            e.group.tick(now);
            Self::persist_if_emptied(log, &e.group, generation).await;
        }
    }

    /// Expires committed offsets (Kafka's `offsets.retention.minutes`): all of a consumer group's
    /// once it has been empty for `retention_ms`; a standalone consumer's one by one, by commit
    /// time. Writes their tombstones, and forgets groups left with neither members nor offsets.
    pub async fn expire_offsets(&self, log: &dyn OffsetsLog, now: i64, retention_ms: i64) {
        let entries: Vec<(String, Arc<Mutex<GroupEntry>>)> = self
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, e)| (id.clone(), Arc::clone(e)))
            .collect();
        for (id, entry) in entries {
            let mut e = entry.lock().await;
            if !e.group.is_empty() {
                continue;
            }
            let idle_since = e.group.state_timestamp_ms();
            let expired: Vec<(String, i32)> = if e.group.protocol_type().is_some() {
                if now - idle_since >= retention_ms {
                    e.offsets.keys().cloned().collect()
                } else {
                    Vec::new()
                }
            } else {
                e.offsets
                    .iter()
                    .filter(|(_, o)| now - o.commit_timestamp_ms >= retention_ms)
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            let dead = expired.len() == e.offsets.len() && now - idle_since >= EMPTY_GROUP_GRACE_MS;
            if expired.is_empty() && !dead {
                continue;
            }
            let mut tombstones: Vec<KeyValue> = expired
                .iter()
                .map(|(topic, partition)| {
                    let key = RecordKey::Offset {
                        group: id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    (records::encode_key(&key), None)
                })
                .collect();
            if dead {
                let key = RecordKey::Group { group: id.clone() };
                tombstones.push((records::encode_key(&key), None));
            }
            let appended = match log.ensure().await {
                Ok(partitions) => log.append(partition_for(&id, partitions), tombstones).await,
                Err(err) => Err(err),
            };
            if let Err(err) = appended {
                tracing::warn!(group = %id, error = %err, "could not expire offsets; will retry");
                continue;
            }
            for k in &expired {
                e.offsets.remove(k);
            }
            tracing::info!(group = %id, offsets = expired.len(), forgotten = dead, "expired committed offsets");
            if dead {
                drop(e);
                self.groups
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            }
        }
    }

    /// Lag of every committed offset: (group, topic, partition, high watermark - committed).
    pub async fn lag(&self, log: &dyn OffsetsLog) -> Vec<(String, String, i32, i64)> {
        let mut out = Vec::new();
        for entry in self.all() {
            let e = entry.lock().await;
            for ((topic, partition), o) in &e.offsets {
                if let Some(hw) = log.high_watermark(topic, *partition) {
                    out.push((
                        e.group.id().to_string(),
                        topic.clone(),
                        *partition,
                        (hw - o.offset).max(0),
                    ));
                }
            }
        }
        out
    }

    /// Answers every waiting JoinGroup and SyncGroup (the broker is shutting down).
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        for entry in self.all() {
            entry
                .lock()
                .await
                .group
                .abort_waiting(GroupError::CoordinatorNotAvailable);
        }
    }
}

fn summarise(group: &Group) -> GroupSummary {
    let protocol = group.protocol().unwrap_or_default().to_string();
    GroupSummary {
        id: group.id().to_string(),
        state: group.state().name(),
        protocol_type: group.protocol_type().unwrap_or_default().to_string(),
        members: group
            .members()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    m.metadata(&protocol),
                    m.assignment.clone(),
                )
            })
            .collect(),
        protocol,
    }
}

#[cfg(test)]
mod tests;
