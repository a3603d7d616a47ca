//! Telling when etcd went back in time. etcd's revision only grows over the life of its data,
//! and a linearizable request sent after an answer at revision R is answered at R or later. An
//! answer below the highest revision seen before its request was sent therefore means that etcd
//! now runs on an older copy of its data (restored from a backup or a snapshot) or on an empty
//! one. Its keys' versions then restart below versions the broker has already seen, and versions
//! remembered from before compare with nothing. Each such turn starts a new *history*: versions
//! compare only within one history, and anything read in a later history is newer.
//!
//! A restored etcd that has already written past every revision the broker saw before the
//! broker's first request to it goes unnoticed. Its answers then look like a continuation, and
//! only versions written in between can be mistaken for older ones.

use std::sync::{Mutex, PoisonError};

/// What was known when a request was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sent {
    revision: i64,
    history: u64,
}

/// The highest revision answered in the current history, and that history.
#[derive(Debug, Default)]
pub(super) struct HistoryTracker {
    seen: Mutex<Sent>,
}

impl HistoryTracker {
    /// To be taken just before a request is sent.
    pub(super) fn sent(&self) -> Sent {
        *self.lock()
    }

    /// Records the revision of an answer to a request sent at `sent`; returns whether that answer
    /// started a new history. An answer to a request sent before the current history began may
    /// come from either history, so it is not counted.
    pub(super) fn answered(&self, sent: Sent, revision: i64) -> bool {
        let mut seen = self.lock();
        if seen.history != sent.history {
            return false;
        }
        if revision < sent.revision {
            *seen = Sent {
                revision,
                history: seen.history + 1,
            };
            tracing::warn!(
                revision,
                seen = sent.revision,
                "etcd answered at a revision below one it answered before: it went back in time (restored from a backup or a snapshot, or wiped); partition states are taken again as read"
            );
            return true;
        }
        seen.revision = seen.revision.max(revision);
        false
    }

    /// The current history: 0 until etcd is first seen going back in time.
    pub(super) fn current(&self) -> u64 {
        self.lock().history
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sent> {
        // Every update leaves a valid value, so a holder's panic does not matter.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn growing_revisions_stay_in_one_history() {
        let tracker = HistoryTracker::default();
        for revision in [5, 5, 9, 12] {
            let sent = tracker.sent();
            assert!(!tracker.answered(sent, revision));
        }
        assert_eq!(tracker.current(), 0);
    }

    #[test]
    fn an_answer_below_what_was_seen_before_its_request_starts_a_new_history() {
        let tracker = HistoryTracker::default();
        let sent = tracker.sent();
        tracker.answered(sent, 100);
        let sent = tracker.sent();
        assert!(tracker.answered(sent, 40));
        assert_eq!(tracker.current(), 1);
        // The new history goes on from the lower revision.
        let sent = tracker.sent();
        assert!(!tracker.answered(sent, 41));
        assert_eq!(tracker.current(), 1);
    }

    #[test]
    fn concurrent_answers_out_of_order_are_not_a_new_history() {
        let tracker = HistoryTracker::default();
        let sent = tracker.sent();
        tracker.answered(sent, 10);
        let (first, second) = (tracker.sent(), tracker.sent());
        assert!(!tracker.answered(first, 20));
        // Sent before the answer at 20 arrived: answered earlier, processed later.
        assert!(!tracker.answered(second, 15));
        assert_eq!(tracker.current(), 0);
    }

    #[test]
    fn an_answer_to_a_request_sent_in_an_earlier_history_is_not_counted() {
        let tracker = HistoryTracker::default();
        let sent = tracker.sent();
        tracker.answered(sent, 100);
        let (old, turning) = (tracker.sent(), tracker.sent());
        assert!(tracker.answered(turning, 3));
        assert!(!tracker.answered(old, 1));
        assert!(!tracker.answered(old, 500));
        assert_eq!(tracker.current(), 1);
        let sent = tracker.sent();
        assert!(!tracker.answered(sent, 4));
    }

    proptest! {
        /// Sequential requests over several lives of the store, each life's revisions growing
        /// from below the last one's end: one new history per life, none in between.
        #[test]
        fn each_life_of_the_store_is_one_history(lives in prop::collection::vec((1i64..50, 1usize..20), 1..6)) {
            let tracker = HistoryTracker::default();
            let mut end = i64::MAX;
            for (life, (start, requests)) in lives.iter().enumerate() {
                let start = if life == 0 { *start } else { (*start).min(end - 1) };
                for step in 0..*requests {
                    let sent = tracker.sent();
                    let turned = tracker.answered(sent, start + step as i64);
                    prop_assert_eq!(turned, life > 0 && step == 0);
                }
                end = start + *requests as i64 - 1;
                prop_assert_eq!(tracker.current(), life as u64);
            }
        }
    }
}
