//! What a broker is for one partition — leader, follower or neither — and, on the leader, how far
//! each follower has replicated. The high watermark and the ISR decisions are pure functions of
//! that progress, so they are tested without sockets.

use std::collections::BTreeMap;

/// This broker's part in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not serving the partition: no leader elected yet, or being closed.
    Offline,
    /// Leading: appends, serves consumers and followers.
    Leader {
        /// The leader epoch.
        epoch: i32,
        /// The in-sync replicas, this broker included.
        isr: Vec<i32>,
    },
    /// Following `leader`.
    Follower {
        /// The leader's broker id.
        leader: i32,
        /// The leader epoch.
        epoch: i32,
    },
}

/// Where a new role comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleSource {
    /// The partition state, read from the metadata store at `version` in its `history`, naming
    /// leader epoch `epoch`. Versions grow with every write, so a state older than the one
    /// applied is out of date, unless its epoch is newer. A state from a later history is newer
    /// whatever its version (the store went back in time, restored from a backup, and its
    /// versions restarted lower), and one from an earlier history older whatever its epoch.
    State {
        /// The store's history when the state was read
        /// ([`crate::metadata::MetadataStore::history`]).
        history: u64,
        /// The store version of the state.
        version: u64,
        /// Its leader epoch.
        epoch: i32,
    },
    /// This broker stops serving the partition: the role is final, later states are ignored.
    Closing,
}

impl RoleSource {
    /// Whether this is a partition state older than `applied` (see [`RoleSource::State`]).
    pub fn is_older_than(&self, applied: &RoleSource) -> bool {
        match (self, applied) {
            (
                RoleSource::State {
                    history,
                    version,
                    epoch,
                },
                RoleSource::State {
                    history: at_history,
                    version: at,
                    epoch: at_epoch,
                },
            ) => {
                history < at_history || (history == at_history && version < at && epoch <= at_epoch)
            }
            _ => false,
        }
    }
}

impl Role {
    /// The leader epoch, if the partition has a leader.
    pub fn epoch(&self) -> Option<i32> {
        match self {
            Role::Offline => None,
            Role::Leader { epoch, .. } | Role::Follower { epoch, .. } => Some(*epoch),
        }
    }
}

/// How far one follower has replicated, as its fetches tell the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The follower's log end offset (its last fetch offset), or -1 before its first fetch.
    pub log_end: i64,
    /// The last time the follower had everything the leader had (Kafka's `lastCaughtUpTimeMs`).
    pub last_caught_up_ms: i64,
    /// The leader's log end at the follower's previous fetch.
    leader_end_at_last_fetch: i64,
    /// When the previous fetch came.
    last_fetch_ms: i64,
}

impl Progress {
    /// A follower the leader has not heard from yet, counted as caught up `now_ms` so it gets a
    /// full lag period to fetch.
    pub fn new(now_ms: i64) -> Self {
        Progress {
            log_end: -1,
            last_caught_up_ms: now_ms,
            leader_end_at_last_fetch: i64::MAX,
            last_fetch_ms: now_ms,
        }
    }

    /// Records a fetch from `fetch_offset` when the leader's log ends at `leader_end`: a follower
    /// that asks for the leader's end is caught up now; one that asks for what was the end at its
    /// previous fetch was caught up then.
    pub fn fetched(&mut self, fetch_offset: i64, leader_end: i64, now_ms: i64) {
        if fetch_offset >= leader_end {
            self.last_caught_up_ms = now_ms;
        } else if fetch_offset >= self.leader_end_at_last_fetch {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end = fetch_offset;
        self.leader_end_at_last_fetch = leader_end;
        self.last_fetch_ms = now_ms;
    }
}

/// The leader's high watermark: the smallest log end among the ISR (the leader's own included),
/// never moving backwards from `current`. A follower not heard from yet holds it where it is.
pub fn high_watermark(
    current: i64,
    leader_end: i64,
    me: i32,
    isr: &[i32],
    followers: &BTreeMap<i32, Progress>,
) -> i64 {
    let mut hw = leader_end;
    for replica in isr.iter().filter(|r| **r != me) {
        let end = followers.get(replica).map_or(-1, |p| p.log_end);
        hw = hw.min(end);
    }
    hw.max(current)
}

/// ISR members (other than the leader) that have not caught up for longer than `max_lag_ms`.
pub fn lagging(
    me: i32,
    isr: &[i32],
    followers: &BTreeMap<i32, Progress>,
    now_ms: i64,
    max_lag_ms: i64,
) -> Vec<i32> {
    isr.iter()
        .copied()
        .filter(|r| *r != me)
        .filter(|r| {
            followers
                .get(r)
                .is_none_or(|p| now_ms - p.last_caught_up_ms > max_lag_ms)
        })
        .collect()
}

/// Whether an ISR member fetching from `fetch_offset` has lost data that was acknowledged: its log
/// ends below the high watermark, which committed data never falls below (a follower truncates
/// only uncommitted data). It restarted with an empty or damaged log and must leave the ISR at
/// once, or a leader election could pick it and lose what it no longer has.
pub fn lost_acknowledged(
    isr: &[i32],
    replica: i32,
    fetch_offset: i64,
    high_watermark: i64,
) -> bool {
    isr.contains(&replica) && fetch_offset < high_watermark
}

/// Whether a follower outside the ISR may join it: it has everything below the high watermark
/// and has been caught up within the lag limit.
pub fn may_join_isr(
    progress: &Progress,
    high_watermark: i64,
    now_ms: i64,
    max_lag_ms: i64,
) -> bool {
    progress.log_end >= high_watermark && now_ms - progress.last_caught_up_ms <= max_lag_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isr_member_fetching_below_the_high_watermark_has_lost_acknowledged_data() {
        assert!(lost_acknowledged(&[1, 2, 3], 2, 90, 100));
        assert!(!lost_acknowledged(&[1, 2, 3], 2, 100, 100));
        assert!(!lost_acknowledged(&[1, 2, 3], 2, 120, 100));
        // Outside the ISR, being behind is just catching up.
        assert!(!lost_acknowledged(&[1, 3], 2, 0, 100));
    }

    fn progress(log_end: i64, caught_up: i64) -> Progress {
        Progress {
            log_end,
            last_caught_up_ms: caught_up,
            leader_end_at_last_fetch: 0,
            last_fetch_ms: 0,
        }
    }

    #[test]
    fn high_watermark_is_the_isr_minimum_and_never_moves_back() {
        let followers = BTreeMap::from([(2, progress(50, 0)), (3, progress(80, 0))]);
        assert_eq!(high_watermark(0, 100, 1, &[1, 2, 3], &followers), 50);
        assert_eq!(high_watermark(0, 100, 1, &[1, 3], &followers), 80);
        assert_eq!(high_watermark(0, 100, 1, &[1], &followers), 100);
        assert_eq!(high_watermark(60, 100, 1, &[1, 2], &followers), 60);
        assert_eq!(
            high_watermark(7, 100, 1, &[1, 4], &followers),
            7,
            "unheard follower"
        );
    }

    #[test]
    fn caught_up_follows_kafka_rules() {
        let mut p = Progress::new(0);
        p.fetched(10, 20, 100);
        assert_eq!((p.log_end, p.last_caught_up_ms), (10, 0), "behind");
        p.fetched(20, 30, 200);
        assert_eq!(
            p.last_caught_up_ms, 100,
            "had the end of its previous fetch"
        );
        p.fetched(30, 30, 300);
        assert_eq!(p.last_caught_up_ms, 300, "at the end");
        p.fetched(31, 60, 400);
        assert_eq!(p.last_caught_up_ms, 300, "still behind");
    }

    #[test]
    fn lagging_and_rejoining() {
        let followers = BTreeMap::from([(2, progress(50, 1_000)), (3, progress(80, 25_000))]);
        assert_eq!(lagging(1, &[1, 2, 3], &followers, 32_000, 30_000), [2]);
        assert_eq!(lagging(1, &[1, 4], &followers, 32_000, 30_000), [4]);
        assert!(may_join_isr(&followers[&3], 80, 32_000, 30_000));
        assert!(!may_join_isr(&followers[&3], 81, 32_000, 30_000));
        assert!(!may_join_isr(&followers[&2], 40, 32_000, 30_000));
    }
}
