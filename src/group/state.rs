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

    /// Handles a JoinGroup.
    pub fn join(&mut self, request: JoinRequest, now_ms: i64) -> Reply<JoinResult> {
        let reject = |e| Reply::Now(JoinResult::error(e, &request.member_id));
        let limits = self.limits;
        if !(limits.min_session_timeout_ms..=limits.max_session_timeout_ms)
            .contains(&request.session_timeout_ms)
        {
            return reject(GroupError::InvalidSessionTimeout);
        }
        if !self.supports(&request.protocol_type, &request.protocols) {
            return reject(GroupError::InconsistentGroupProtocol);
        }
        if request.member_id.is_empty() {
            return self.join_unknown(request, now_ms);
        }
        let id = request.member_id.clone();
        if self.pending.remove(&id).is_some() {
            return self.add_member_and_rebalance(id, request, now_ms);
        }
        let Some(member) = self.members.get(&id) else {
            return reject(GroupError::UnknownMemberId);
        };
        if let Some(instance) = &request.instance_id
            && self.static_members.get(instance) != Some(&id)
        {
            return reject(GroupError::FencedInstanceId);
        }
        let unchanged = member.same_protocols(&request.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&id, request, now_ms);
                self.await_join(&id, now_ms)
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged
                    && (self.state == GroupState::CompletingRebalance
                        || self.leader.as_deref() != Some(&id)) =>
            {
                // A retried join of the current generation: the same answer again, no rebalance.
                Reply::Now(self.join_result(&id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&id, request, now_ms);
                self.prepare_rebalance(now_ms);
                self.await_join(&id, now_ms)
            }
            // An empty group has no members to match.
            GroupState::Empty => reject(GroupError::UnknownMemberId),
        }
    }

    fn join_unknown(&mut self, request: JoinRequest, now_ms: i64) -> Reply<JoinResult> {
        if self.members.len() + self.pending.len() >= self.limits.max_size {
            return Reply::Now(JoinResult::error(GroupError::GroupMaxSizeReached, ""));
        }
        let new_id = self.new_member_id(&request);
        if let Some(instance) = request.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(old_id, new_id, request, now_ms);
            }
            self.static_members.insert(instance, new_id.clone());
            return self.add_member_and_rebalance(new_id, request, now_ms);
        }
        if request.require_known_member_id {
            let deadline = now_ms + i64::from(request.session_timeout_ms);
            self.pending.insert(new_id.clone(), deadline);
            return Reply::Now(JoinResult::error(GroupError::MemberIdRequired, &new_id));
        }
        self.add_member_and_rebalance(new_id, request, now_ms)
    }

    /// A static member came back under a new member id: the old id is fenced and the member keeps
    /// its assignment; a stable group with unchanged protocols does not rebalance.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        let Some(mut member) = self.members.remove(&old_id) else {
            self.static_members
                .remove(request.instance_id.as_deref().unwrap_or_default());
            return self.add_member_and_rebalance(new_id, request, now_ms);
        };
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(GroupError::FencedInstanceId, &old_id));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(Err(GroupError::FencedInstanceId));
        }
        let unchanged = member.same_protocols(&request.protocols);
        member.id = new_id.clone();
        if let Some(instance) = &request.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(&old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        match self.state {
            GroupState::Stable if unchanged => {
                self.update_member(&new_id, request, now_ms);
                let mut result = self.join_result(&new_id);
                // The leader is told who leads but not the members: it must not reassign.
                result.members.clear();
                Reply::Now(result)
            }
            GroupState::PreparingRebalance => {
                self.update_member(&new_id, request, now_ms);
                self.await_join(&new_id, now_ms)
            }
            _ => {
                self.update_member(&new_id, request, now_ms);
                self.prepare_rebalance(now_ms);
                self.await_join(&new_id, now_ms)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        let member = Member {
            id: id.clone(),
            instance_id: request.instance_id.clone(),
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            awaiting_join: None,
            awaiting_sync: None,
        };
        self.members.insert(id.clone(), member);
        self.update_member(&id, request, now_ms);
        match self.state {
            GroupState::PreparingRebalance => {
                // During the initial delay each new member gives others another delay to arrive
                // (up to the rebalance timeout).
                if self.join_deadline_cap_ms > 0 {
                    self.join_deadline_ms = self
                        .join_deadline_cap_ms
                        .min(self.join_deadline_ms.max(now_ms + self.initial_delay()));
                }
            }
            _ => self.prepare_rebalance(now_ms),
        }
        self.await_join(&id, now_ms)
    }

    fn initial_delay(&self) -> i64 {
        i64::from(self.limits.initial_rebalance_delay_ms)
    }

    fn update_member(&mut self, id: &str, request: JoinRequest, now_ms: i64) {
        if let Some(m) = self.members.get_mut(id) {
            m.client_id = request.client_id;
            m.client_host = request.client_host;
            m.session_timeout_ms = request.session_timeout_ms;
            m.rebalance_timeout_ms = request.rebalance_timeout_ms;
            m.protocols = request.protocols;
            m.last_heartbeat_ms = now_ms;
        }
    }

    fn await_join(&mut self, id: &str, now_ms: i64) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id)
            && let Some(old) = m.awaiting_join.replace(tx)
        {
            // A second join from the same member supersedes the first.
            let _ = old.send(JoinResult::error(GroupError::UnknownMemberId, id));
        }
        self.try_complete_join(now_ms);
        Reply::Later(rx)
    }

    fn new_member_id(&self, request: &JoinRequest) -> String {
        let prefix = request
            .instance_id
            .as_deref()
            .unwrap_or(if request.client_id.is_empty() {
                "member"
            } else {
                &request.client_id
            });
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    /// Whether a member with these protocols may join: same protocol type, and at least one
    /// assignor every member supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    fn prepare_rebalance(&mut self, now_ms: i64) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        if self.state == GroupState::Empty {
            // The first rebalance of an empty group waits a little for more members.
            self.join_deadline_ms = now_ms + self.initial_delay().min(timeout);
            self.join_deadline_cap_ms = now_ms + timeout;
        } else {
            self.join_deadline_ms = now_ms + timeout;
            self.join_deadline_cap_ms = 0;
        }
        self.set_state(GroupState::PreparingRebalance, now_ms);
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// Ends the join phase if every member has rejoined (and any initial delay has passed), or
    /// its deadline has. Returns whether a new generation began (its membership is then to be
    /// persisted if the group emptied).
    pub fn try_complete_join(&mut self, now_ms: i64) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some());
        let delaying = self.join_deadline_cap_ms > 0 && now_ms < self.join_deadline_ms;
        let ready = all_joined && !delaying;
        if !ready && now_ms < self.join_deadline_ms {
            return false;
        }
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            return true;
        }
        self.protocol = self.choose_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat_ms = now_ms;
                m.assignment = Bytes::new();
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(result);
                }
            }
        }
        true
    }

    /// The assignor most members prefer among those every member supports.
    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(o, _)| o == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n))
                && let Some(v) = votes.iter_mut().find(|(_, c)| *c == name)
            {
                v.0 += 1;
            }
        }
        // Most votes wins; ties go to the first member's preference.
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes
            .into_iter()
            .find(|(n, _)| *n == best)
            .map(|(_, c)| c.clone())
    }

    fn join_result(&self, id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(id);
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
        }
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
    ) -> (Reply<SyncResult>, bool) {
        let now = |e| (Reply::Now(Err(e)), false);
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return now(e);
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

#[cfg(test)]
mod tests;
