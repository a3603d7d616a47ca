//! One consumer group of the classic protocol, as a state machine free of I/O: members, the
//! generation, the rebalance (join phase, then sync phase) and session expiry. The coordinator
//! (`group/mod.rs`) holds each group behind a lock, persists what the machine asks it to, and
//! answers the requests; time comes in as `now` so everything here is tested with plain calls.
//!
//! States follow Kafka's classic group coordinator:
//! `Empty` → (a join) → `PreparingRebalance` → (every member rejoined, or the rebalance timeout)
//! → `CompletingRebalance` → (the leader's SyncGroup) → `Stable` → (a join, leave or expiry) →
//! `PreparingRebalance` ... and back to `Empty` when the last member goes.
//!
//! A member waiting for the join or sync phase to end holds a `oneshot` sender; completing the
//! phase answers every waiting member at once.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::GroupError;

/// The states of a classic group, named as Kafka's tools print them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may still be committed).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// The name Kafka uses in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Timeouts and limits that apply to every group (Kafka's `group.*` broker settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub max_size: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: usize::MAX,
        }
    }
}

/// What a JoinGroup asks for.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The member id, empty for a new member.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// The client's id and host, shown by DescribeGroups.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// `session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `max.poll.interval.ms` (the session timeout for JoinGroup v0).
    pub rebalance_timeout_ms: i32,
    /// "consumer" for Kafka consumers.
    pub protocol_type: String,
    /// The assignors the member supports, by preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Whether a new member must first get its id (JoinGroup v4+, non-static members).
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// `Err` for an error code; `MemberIdRequired` carries the id in `member_id`.
    pub error: Option<GroupError>,
    /// The new generation.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen assignor.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    /// An error answer for `member_id`.
    pub fn error(error: GroupError, member_id: &str) -> Self {
        JoinResult {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup: the member's assignment, or why there is none.
pub type SyncResult = Result<Bytes, GroupError>;

/// A JoinGroup or SyncGroup answered now, or once the phase completes.
#[derive(Debug)]
pub enum Reply<T> {
    /// Answered now.
    Now(T),
    /// Answered when the phase completes.
    Later(oneshot::Receiver<T>),
}

/// One member of a group.
#[derive(Debug)]
pub struct Member {
    /// The member id.
    pub id: String,
    /// `group.instance.id`, for static members.
    pub instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// `session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// The rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Supported assignors by preference, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment of the current generation.
    pub assignment: Bytes,
    last_heartbeat_ms: i64,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, other: &[(String, Bytes)]) -> bool {
        self.protocols == other
    }

    fn is_alive(&self, now_ms: i64) -> bool {
        self.awaiting_join.is_some()
            || self.awaiting_sync.is_some()
            || now_ms < self.last_heartbeat_ms + i64::from(self.session_timeout_ms)
    }
}

/// What a member was when a group was last persisted: enough to restore it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// The member id.
    pub id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// The rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// `session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// The metadata of the chosen protocol.
    pub subscription: Bytes,
    /// The assignment.
    pub assignment: Bytes,
}

/// A group's membership as persisted after each completed rebalance (and when it empties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    /// The protocol type ("consumer"), empty when never set.
    pub protocol_type: String,
    /// The generation.
    pub generation: i32,
    /// The chosen assignor.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When the group entered its state, ms since the epoch.
    pub state_timestamp_ms: i64,
    /// The members with their assignments.
    pub members: Vec<StoredMember>,
}

/// A classic consumer group.
#[derive(Debug)]
pub struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id of static members.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to rejoin by.
    pending: HashMap<String, i64>,
    /// When the join phase ends whether or not every member rejoined.
    join_deadline_ms: i64,
    /// The latest the join phase may be extended to by the initial rebalance delay.
    join_deadline_cap_ms: i64,
    state_timestamp_ms: i64,
    limits: GroupLimits,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, limits: GroupLimits, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            join_deadline_ms: 0,
            join_deadline_cap_ms: 0,
            state_timestamp_ms: now_ms,
            limits,
        }
    }

    /// A group restored from its persisted membership: `Stable` with its members (whose
    /// sessions start now), or `Empty`.
    pub fn restore(id: &str, stored: StoredGroup, limits: GroupLimits, now_ms: i64) -> Group {
        let mut group = Group::new(id, limits, stored.state_timestamp_ms);
        group.generation = stored.generation;
        group.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        if stored.members.is_empty() {
            return group;
        }
        group.protocol = stored.protocol.clone();
        group.leader = stored.leader;
        group.state = GroupState::Stable;
        let protocol = stored.protocol.unwrap_or_default();
        for m in stored.members {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.id.clone());
            }
            let member = Member {
                id: m.id.clone(),
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                last_heartbeat_ms: now_ms,
                awaiting_join: None,
                awaiting_sync: None,
            };
            group.members.insert(m.id, member);
        }
        group
    }

    /// The group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type, once a member joined.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The chosen assignor of the current generation.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The members, by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// When the group entered its current state, ms since the epoch.
    pub fn state_timestamp_ms(&self) -> i64 {
        self.state_timestamp_ms
    }

    /// Whether the group has no members and no rebalance under way.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// The membership to persist.
    pub fn stored(&self) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let mut member = self.members.remove(id)?;
        if let Some(instance) = &member.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(id)
        {
            self.static_members.remove(instance);
        }
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(GroupError::UnknownMemberId, id));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(Err(GroupError::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        Some(member)
    }

    /// Checks that `member_id` (and `instance_id`) is a current member of `generation`.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if let Some(instance) = instance_id
            && let Some(holder) = self.static_members.get(instance)
            && holder != member_id
        {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// Handles a SyncGroup. `Ok(true)` in the second value means the leader's assignment
    /// completed the rebalance: persist the group, then call [`Group::finish_sync`].
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> (Reply<SyncResult>, bool) {
        let now = |e| (Reply::Now(Err(e)), false);
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return now(e);
        }
        // A SyncGroup counts as a heartbeat.
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        let (protocol_type, protocol_name) = protocol;
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return now(GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty => now(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => now(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                let assignment = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                (Reply::Now(Ok(assignment)), false)
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let mut completed = false;
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    completed = true;
                }
                (Reply::Later(rx), completed)
            }
        }
    }

    /// Ends the sync phase after the leader's assignment was persisted (`Ok`) or could not be
    /// (`Err`: every waiting member gets the error and the assignment is dropped).
    pub fn finish_sync(&mut self, persisted: Result<(), GroupError>, now_ms: i64) {
        if self.state != GroupState::CompletingRebalance {
            return;
        }
        match persisted {
            Ok(()) => {
                self.set_state(GroupState::Stable, now_ms);
                for m in self.members.values_mut() {
                    if let Some(tx) = m.awaiting_sync.take() {
                        let _ = tx.send(Ok(m.assignment.clone()));
                    }
                }
            }
            Err(e) => {
                for m in self.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(tx) = m.awaiting_sync.take() {
                        let _ = tx.send(Err(e));
                    }
                }
            }
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id, generation)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles one member of a LeaveGroup; the group rebalances without it.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let id = match instance_id {
            Some(instance) => {
                let holder = self
                    .static_members
                    .get(instance)
                    .cloned()
                    .ok_or(GroupError::UnknownMemberId)?;
                if !member_id.is_empty() && holder != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
                holder
            }
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return Ok(());
        }
        self.remove_member(&id).ok_or(GroupError::UnknownMemberId)?;
        self.after_departure(now_ms);
        Ok(())
    }

    fn after_departure(&mut self, now_ms: i64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now_ms),
            GroupState::PreparingRebalance => {}
            GroupState::Empty => return,
        }
        self.try_complete_join(now_ms);
    }

    /// Checks an OffsetCommit's member and generation: a simple (standalone) commit with no
    /// member and generation -1 is allowed while the group has no members.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if generation < 0 && member_id.is_empty() && self.members.is_empty() {
            return Ok(());
        }
        self.check_member(member_id, instance_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Expires members whose session ran out, pending member ids never used, and ends a join
    /// phase whose deadline passed. Returns whether anything changed that is worth persisting
    /// (a new generation).
    pub fn tick(&mut self, now_ms: i64) -> bool {
        self.pending.retain(|_, deadline| *deadline > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.is_alive(now_ms))
            .map(|m| m.id.clone())
            .collect();
        let mut changed = false;
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "member's session expired; rebalancing");
                self.remove_member(id);
            }
            match self.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.prepare_rebalance(now_ms)
                }
                _ => {}
            }
        }
        if self.try_complete_join(now_ms) {
            changed = true;
        }
        changed
    }

    /// Answers every waiting member with `error` (the coordinator is shutting down).
    pub fn abort_waiting(&mut self, error: GroupError) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult::error(error, &m.id));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(Err(error));
            }
        }
    }
}

mod join;
#[cfg(test)]
mod tests;
