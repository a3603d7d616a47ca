//! One partition as the broker serves it: its local log, its remote side, this broker's role
//! (leader, follower) and the high watermark, whose changes wake waiting fetches and `acks=all`
//! produces. Offsets below the local log start are read from the remote tier; the partition's log
//! start is the remote start once anything was offloaded.
//!
//! On the leader the high watermark is the smallest log end offset in the ISR (followers report
//! theirs with every replication fetch), counting a follower whose addition to the ISR is being
//! written from the moment the leader decides to add it (Kafka's maximal ISR): once the store
//! says it is in sync it may be elected, so nothing it lacks may be acknowledged before that. On
//! a follower it is what the leader last said, capped by the follower's own log end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use strata_tiering::remote::{RemotePartition, RemoteTier};
use strata_tiering::{AppendOptions, AppendOutcome, LogConfig, LogError, PartitionLog};
use tokio::sync::watch;
use uuid::Uuid;

use super::replica::{self, Progress, Role, RoleSource};
use crate::error::{BrokerError, Result};

/// An ISR addition the leader started: its end is reported with
/// [`Partition::joined_or_not`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinTicket {
    /// The follower being added.
    pub replica: i32,
    /// The leader epoch the addition was decided under.
    pub epoch: i32,
    generation: u64,
}

/// A partition this broker holds a replica of.
#[derive(Debug)]
pub struct Partition {
    topic_id: Uuid,
    index: i32,
    me: i32,
    log: Arc<PartitionLog>,
    remote: Arc<RemotePartition>,
    high_watermark: watch::Sender<i64>,
    log_end: watch::Sender<i64>,
    role: watch::Sender<Role>,
    /// Where the role was taken from (the partition state's version, or the close); held while
    /// a role changes.
    role_version: Mutex<RoleSource>,
    followers: Mutex<BTreeMap<i32, Progress>>,
    /// On the leader: followers whose addition to the ISR is being written, with the
    /// generation of the attempt.
    joining: Mutex<BTreeMap<i32, u64>>,
    /// The generation the next ISR addition is started with.
    next_join: AtomicU64,
    /// On the leader: its log end when its term began. Everything below may have been
    /// acknowledged by the previous leader, though this one's high watermark may not know it yet.
    term_start: AtomicI64,
}

impl Partition {
    /// Opens the partition: its remote manifest first, then its local log in `dir`, which starts
    /// where the remote tier ends when the local copy is gone.
    pub async fn open(
        dir: &Path,
        tier: Arc<RemoteTier>,
        (topic_id, index): (Uuid, i32),
        me: i32,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self> {
        let remote = RemotePartition::open(tier, topic_id, index).await?;
        let manifest = remote.manifest().await;
        let start = manifest.end_offset().unwrap_or(0);
        let dir = dir.to_path_buf();
        let log =
            tokio::task::spawn_blocking(move || PartitionLog::open_at(&dir, config, start, now_ms))
                .await
                .map_err(|_| BrokerError::ShuttingDown)??;
        if let Some(end) = manifest.end_offset() {
            log.set_remote_end_offset(end);
        }
        // Until told otherwise, only what the remote tier holds is known to be committed.
        let committed = manifest.end_offset().unwrap_or(0).min(log.log_end_offset());
        Ok(Partition {
            topic_id,
            index,
            me,
            high_watermark: watch::channel(committed).0,
            log_end: watch::channel(log.log_end_offset()).0,
            log: Arc::new(log),
            remote: Arc::new(remote),
            role: watch::channel(Role::Offline).0,
            role_version: Mutex::new(RoleSource::State {
                history: 0,
                version: 0,
                epoch: i32::MIN,
            }),
            followers: Mutex::new(BTreeMap::new()),
            joining: Mutex::new(BTreeMap::new()),
            next_join: AtomicU64::new(0),
            term_start: AtomicI64::new(0),
        })
    }

    /// Runs `f` on the log on a blocking thread: an append writes to a file (and fsyncs under a
    /// flush policy), a read copies up to a fetch's size, and both may wait on the log's lock.
    async fn on_log<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PartitionLog) -> strata_tiering::Result<T> + Send + 'static,
    ) -> Result<T> {
        let log = Arc::clone(&self.log);
        Ok(tokio::task::spawn_blocking(move || f(&log))
            .await
            .map_err(|_| BrokerError::ShuttingDown)??)
    }

    /// The topic id.
    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    /// This broker's role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// A receiver notified whenever the role changes.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// The leader epoch, if this broker leads the partition.
    pub fn leader_epoch(&self) -> Result<i32> {
        match &*self.role.borrow() {
            Role::Leader { epoch, .. } => Ok(*epoch),
            _ => Err(self.not_leader()),
        }
    }

    /// The ISR, if this broker leads the partition.
    pub fn isr(&self) -> Option<Vec<i32>> {
        match &*self.role.borrow() {
            Role::Leader { isr, .. } => Some(isr.clone()),
            _ => None,
        }
    }

    fn not_leader(&self) -> BrokerError {
        BrokerError::NotLeader {
            topic_id: self.topic_id,
            partition: self.index,
        }
    }

    fn followers(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Progress>> {
        self.followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn joining(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, u64>> {
        self.joining.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn role_version(&self) -> std::sync::MutexGuard<'_, RoleSource> {
        self.role_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// On the leader: the write that adds a follower to the ISR, started with `ticket`, is over
    /// (done or failed); the role now says whether it is in sync. A ticket of an earlier term
    /// (or an earlier attempt) leaves a later joiner holding the high watermark.
    pub fn joined_or_not(&self, ticket: JoinTicket) {
        {
            let mut joining = self.joining();
            if joining.get(&ticket.replica) == Some(&ticket.generation) {
                joining.remove(&ticket.replica);
            }
        }
        self.advance_high_watermark();
    }

    /// Takes a new role, read from the partition state at a version (or a final one on
    /// closing). A role from an older version than the one applied is ignored unless its epoch
    /// is newer: the state moved on since (a newer term is news even at a lower version, which a
    /// metadata store restored from a snapshot writes). Versions compare only within one store
    /// history: a role read in an earlier history is ignored whatever its epoch, and one read in
    /// a later history is taken whatever its version. A new leader (or a new epoch) starts with
    /// fresh follower progress and re-reads the remote manifest the previous leader published;
    /// the same leader at the same epoch only takes the new ISR. A leader term whose epoch is
    /// below the latest epoch in the log (the partition state was lost or restored from an old
    /// copy) is not served: the partition goes offline, with an error in the log. Returns whether
    /// the role changed in kind or epoch.
    pub async fn set_role(&self, role: Role, source: RoleSource, now_ms: i64) -> bool {
        let role = self.fenced(role);
        let new_term = |previous: &Role| {
            previous.epoch() != role.epoch()
                || std::mem::discriminant(previous) != std::mem::discriminant(&role)
        };
        if matches!(role, Role::Leader { .. })
            && new_term(&self.role())
            && let Err(e) = self.remote.reload().await
        {
            tracing::warn!(partition = self.index, error = %e, "could not re-read the remote manifest on becoming leader");
        }
        let changed = {
            let mut applied = self.role_version();
            if *applied == RoleSource::Closing || source.is_older_than(&applied) {
                return false;
            }
            *applied = source;
            let changed = new_term(&self.role.borrow());
            if let Role::Leader { isr, .. } = &role {
                let mut followers = self.followers();
                if changed {
                    followers.clear();
                    self.joining().clear();
                    self.term_start
                        .store(self.log.log_end_offset(), Ordering::Relaxed);
                }
                for replica in isr.iter().filter(|r| **r != self.me) {
                    followers
                        .entry(*replica)
                        .or_insert_with(|| Progress::new(now_ms));
                }
            }
            // Watchers wake only for a different role: a follower's fetch or a leader's waiting
            // replication fetches end when the role they serve changes, not at every sync.
            self.role.send_if_modified(|current| {
                let differs = *current != role;
                if differs {
                    *current = role;
                }
                differs
            });
            changed
        };
        self.advance_high_watermark();
        changed
    }

    /// `role`, unless it leads at an epoch below the latest in the log: then offline.
    fn fenced(&self, role: Role) -> Role {
        let Role::Leader { epoch, .. } = role else {
            return role;
        };
        match self.log.latest_epoch() {
            Some(latest) if latest > epoch => {
                tracing::error!(
                    topic = %self.topic_id,
                    partition = self.index,
                    epoch,
                    log_epoch = latest,
                    "elected at a leader epoch below the latest in the log: the partition state was lost or restored from an older copy; not serving the partition until it is elected at a later epoch"
                );
                Role::Offline
            }
            _ => role,
        }
    }

    /// Recomputes the leader's high watermark and wakes whoever waits for it.
    fn advance_high_watermark(&self) {
        let hw = {
            let role = self.role.borrow();
            let Role::Leader { isr, .. } = &*role else {
                return;
            };
            let end = self.log.log_end_offset();
            let mut counted = isr.clone();
            counted.extend(self.joining().keys().filter(|r| !isr.contains(r)));
            replica::high_watermark(
                self.high_watermark(),
                end,
                self.me,
                &counted,
                &self.followers(),
            )
        };
        publish(&self.high_watermark, hw);
    }

    fn publish_log_end(&self) {
        publish(&self.log_end, self.log.log_end_offset());
    }

    /// The local log end offset.
    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// A receiver notified whenever the local log end moves.
    pub fn watch_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// Records a follower's replication fetch from `fetch_offset` on the leader and moves the
    /// high watermark. Returns a ticket when the follower, outside the ISR, has caught up enough
    /// to join it: it then counts for the high watermark at once, and the caller writes the
    /// change and reports with [`Partition::joined_or_not`]. None while such a write is under way.
    pub fn follower_fetched(
        &self,
        replica: i32,
        fetch_offset: i64,
        now_ms: i64,
        max_lag_ms: i64,
    ) -> Option<JoinTicket> {
        let Role::Leader { epoch, isr } = self.role() else {
            return None;
        };
        let end = self.log.log_end_offset();
        let ticket = {
            let mut followers = self.followers();
            let progress = followers
                .entry(replica)
                .or_insert_with(|| Progress::new(now_ms));
            progress.fetched(fetch_offset, end, now_ms);
            // Kafka's rule: a joiner also has everything the previous leader may have
            // acknowledged (this leader's log end when its term began).
            let term_start = self.term_start.load(Ordering::Relaxed);
            let committed = self.high_watermark().max(term_start);
            let mut joining = self.joining();
            (!isr.contains(&replica)
                && !joining.contains_key(&replica)
                && replica::may_join_isr(progress, committed, now_ms, max_lag_ms))
            .then(|| {
                let generation = self.next_join.fetch_add(1, Ordering::Relaxed);
                joining.insert(replica, generation);
                JoinTicket {
                    replica,
                    epoch,
                    generation,
                }
            })
        };
        self.advance_high_watermark();
        ticket
    }

    /// On the leader: whether `replica`, an ISR member, fetching from `fetch_offset`, has lost
    /// acknowledged data ([`replica::lost_acknowledged`]).
    pub fn lost_acknowledged(&self, replica: i32, fetch_offset: i64) -> bool {
        self.isr().is_some_and(|isr| {
            replica::lost_acknowledged(&isr, replica, fetch_offset, self.high_watermark())
        })
    }

    /// ISR members that have not caught up within `max_lag_ms`, on the leader.
    pub fn lagging_followers(&self, now_ms: i64, max_lag_ms: i64) -> Vec<i32> {
        let Some(isr) = self.isr() else {
            return Vec::new();
        };
        replica::lagging(self.me, &isr, &self.followers(), now_ms, max_lag_ms)
    }

    /// On a follower: takes the leader's high watermark, capped by the local log end.
    pub fn set_follower_high_watermark(&self, leader_hw: i64) {
        publish(
            &self.high_watermark,
            leader_hw.min(self.log.log_end_offset()),
        );
    }

    /// Waits until the high watermark reaches `offset` while this broker leads at `epoch` (the
    /// epoch the batches were appended under), this broker stops leading at that epoch, or
    /// `timeout` passes; returns the error to answer with in the last two cases. A high
    /// watermark reached under another role says nothing of the batches: a new leader's own
    /// batches may have replaced them at those offsets.
    pub async fn wait_for_high_watermark(
        &self,
        offset: i64,
        epoch: i32,
        timeout: Duration,
    ) -> Result<()> {
        let mut hw = self.watch_high_watermark();
        let mut role = self.watch_role();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let leading =
                matches!(&*role.borrow_and_update(), Role::Leader { epoch: e, .. } if *e == epoch);
            if !leading {
                return Err(self.not_leader());
            }
            if *hw.borrow_and_update() >= offset {
                return Ok(());
            }
            tokio::select! {
                changed = hw.changed() => changed.map_err(|_| BrokerError::ShuttingDown)?,
                changed = role.changed() => changed.map_err(|_| BrokerError::ShuttingDown)?,
                () = tokio::time::sleep_until(deadline) => return Err(BrokerError::ReplicationTimedOut),
            }
        }
    }

    /// Appends batches copied from the leader (offsets and epochs kept), on a follower.
    pub async fn append_replica(&self, records: Bytes, now_ms: i64) -> Result<()> {
        self.on_log(move |log| log.append_replica(&records, now_ms))
            .await?;
        self.publish_log_end();
        Ok(())
    }

    /// Cuts the local log at `offset` (a follower whose log diverged from the leader's).
    pub async fn truncate_to(&self, offset: i64) -> Result<()> {
        self.on_log(move |log| log.truncate_to(offset)).await?;
        self.publish_log_end();
        self.set_follower_high_watermark(self.high_watermark());
        Ok(())
    }

    /// Empties the local log and restarts it at `offset` (a follower behind the leader's local
    /// start: what lies before is in the remote tier).
    pub async fn reset_to(&self, offset: i64, now_ms: i64) -> Result<()> {
        self.on_log(move |log| log.reset_to(offset, now_ms)).await?;
        self.publish_log_end();
        self.set_follower_high_watermark(self.high_watermark());
        Ok(())
    }

    /// The leader epoch of the last batch in the local log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.log.latest_epoch()
    }

    /// Kafka's OffsetsForLeaderEpoch on the local log: the largest epoch at most `epoch` and
    /// where it ends.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.log.end_offset_for_epoch(epoch)
    }

    /// On a follower: moves the local log start up to the leader's (DeleteRecords, or local
    /// retention of segments already in the remote tier), never past the local log end.
    pub async fn follow_log_start(&self, leader_start: i64, now_ms: i64) -> Result<()> {
        let target = leader_start.min(self.log.log_end_offset());
        self.move_local_start(target, now_ms).await
    }

    /// Offsets below `offset` are in the remote tier (what the leader tells its followers).
    pub fn set_remote_end_offset(&self, offset: i64) {
        self.log.set_remote_end_offset(offset);
    }

    /// The end of the remote tier as the published manifest says, or -1.
    pub async fn remote_end_offset(&self) -> i64 {
        self.remote.manifest().await.end_offset().unwrap_or(-1)
    }

    /// Reads batches for a follower, up to the log end (not the high watermark).
    pub async fn read_for_follower(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let end = self.log.log_end_offset();
        self.on_log(move |log| log.read(offset, max_bytes, end, true))
            .await
    }

    /// The partition index.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The local log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// The remote side.
    pub fn remote(&self) -> &RemotePartition {
        &self.remote
    }

    /// Appends record batches as the leader, stamped with its epoch, on a blocking thread (file
    /// writes), then publishes the new log end and high watermark, waking
    /// fetches (and followers) that wait on this partition. The bytes count towards the produce
    /// rate uploads are paced to.
    pub async fn append(&self, records: Bytes, options: AppendOptions) -> Result<AppendOutcome> {
        let options = AppendOptions {
            leader_epoch: self.leader_epoch()?,
            ..options
        };
        let bytes = records.len() as u64;
        let outcome = self
            .on_log(move |log| log.append(&records, options))
            .await?;
        self.remote.record_ingest(bytes);
        self.publish_log_end();
        self.advance_high_watermark();
        Ok(outcome)
    }

    /// The high watermark: consumers see offsets below it.
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that is notified whenever the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// The first readable offset, across both tiers.
    pub async fn log_start_offset(&self) -> i64 {
        let local = self.log.log_start_offset();
        match self.remote.manifest().await.start_offset() {
            Some(remote) => remote.min(local),
            None => local,
        }
    }

    /// Whether reading `offset` goes to the remote tier.
    pub fn is_remote(&self, offset: i64) -> bool {
        offset < self.log.log_start_offset()
    }

    /// Reads committed batches from `offset`, at most `max_bytes` (see
    /// [`PartitionLog::read`]), from whichever tier holds it.
    pub async fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<Bytes> {
        if self.is_remote(offset) {
            let start = self.log_start_offset().await;
            if offset < start {
                return Err(out_of_range(offset, start, self.high_watermark()));
            }
            return Ok(self.remote.read(offset, max_bytes, min_one).await?);
        }
        // Positional reads of up to a fetch's size, and a lock an append may hold through its
        // writes: off the async workers.
        let hw = self.high_watermark();
        self.on_log(move |log| log.read(offset, max_bytes, hw, min_one))
            .await
    }

    /// The first batch whose records reach `timestamp`, from either tier.
    pub async fn batch_at_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>> {
        let start = self.log_start_offset().await;
        if start < self.log.log_start_offset()
            && let Some(batch) = self.remote.batch_at_timestamp(timestamp, start).await?
        {
            return Ok(Some(batch));
        }
        self.on_log(move |log| log.batch_at_timestamp(timestamp))
            .await
    }

    /// Moves the log start offset in both tiers (DeleteRecords); returns the new start.
    pub async fn delete_records_before(&self, offset: i64, now_ms: i64) -> Result<i64> {
        if offset > self.high_watermark() || offset < 0 {
            return Err(out_of_range(
                offset,
                self.log_start_offset().await,
                self.high_watermark(),
            ));
        }
        self.remote.move_start(offset).await?;
        self.move_local_start(offset, now_ms).await?;
        Ok(self.log_start_offset().await)
    }

    async fn move_local_start(&self, offset: i64, now_ms: i64) -> Result<()> {
        if offset <= self.log.log_start_offset() {
            return Ok(());
        }
        self.on_log(move |log| log.delete_records_before(offset, now_ms))
            .await?;
        Ok(())
    }

    /// Offloads sealed segments if the topic keeps a remote tier; only the leader uploads, and
    /// its uploads carry its epoch.
    pub async fn offload(&self, now_ms: i64) -> Result<usize> {
        let Ok(epoch) = self.leader_epoch() else {
            self.remote.report_as_non_leader(&self.log);
            return Ok(0);
        };
        let committed = self.high_watermark();
        match self
            .remote
            .offload(&self.log, epoch, committed, now_ms)
            .await
        {
            Ok(uploaded) => Ok(uploaded),
            Err(e @ LogError::Fenced { .. }) => {
                // Another leader published: read its manifest; if it is newer than this
                // broker's term, the next round is fenced again until the role changes.
                if let Err(reload) = self.remote.reload().await {
                    tracing::warn!(partition = self.index, error = %reload, "could not re-read the remote manifest");
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Retention in both tiers: local segments by the local limits (only once offloaded, with
    /// remote storage), remote segments by the totals, and the local start follows the remote one.
    pub async fn apply_retention(&self, config: &LogConfig, now_ms: i64) -> Result<()> {
        self.on_log(move |log| log.apply_retention(now_ms)).await?;
        // Remote objects are the leader's to delete; followers keep local retention only.
        if config.remote_storage && self.leader_epoch().is_ok() {
            let remote_end = self
                .remote
                .manifest()
                .await
                .end_offset()
                .unwrap_or(i64::MIN);
            let local_only = self.local_bytes_after(remote_end);
            if let Some(start) = self
                .remote
                .apply_retention(config, local_only, now_ms)
                .await?
            {
                self.move_local_start(start.min(self.log.log_end_offset()), now_ms)
                    .await?;
            }
        }
        Ok(())
    }

    fn local_bytes_after(&self, remote_end: i64) -> u64 {
        match self.log.sealed_segments() {
            Ok(sealed) => {
                let offloaded: u64 = sealed
                    .iter()
                    .filter(|s| s.next_offset <= remote_end)
                    .map(|s| s.size)
                    .sum();
                self.log.size_bytes().saturating_sub(offloaded)
            }
            Err(_) => self.log.size_bytes(),
        }
    }
}

/// Sets a watched offset, waking receivers only when it changed.
fn publish(sender: &watch::Sender<i64>, value: i64) {
    sender.send_if_modified(|current| {
        let moved = value != *current;
        *current = value;
        moved
    });
}

fn out_of_range(offset: i64, start: i64, end: i64) -> BrokerError {
    BrokerError::Log(LogError::OffsetOutOfRange { offset, start, end })
}
