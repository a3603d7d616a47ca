//! The join phase of a rebalance: JoinGroup (new, known and static members), the start of a
//! rebalance, its completion when every member rejoined or the deadline passed, and the choice of
//! the assignor and the leader.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Group, GroupState, JoinRequest, JoinResult, Member, Reply};
use crate::group::GroupError;

impl Group {
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

    pub(super) fn prepare_rebalance(&mut self, now_ms: i64) {
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
}
