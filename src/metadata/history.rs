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

/// A point in the store's life: the highest revision answered so far, in a history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Mark {
    revision: i64,
    history: u64,
}

/// Where the store's life has got to, as its answers tell.
#[derive(Debug, Default)]
pub(super) struct HistoryTracker {
    seen: Mutex<Mark>,
}

impl HistoryTracker {
    /// To be taken just before a request is sent.
    pub(super) fn mark(&self) -> Mark {
        *self.lock()
    }

    /// Records the revision of an answer to a request sent at `sent`. An answer to a request
    /// sent before the current history began may come from either history, so it is not
    /// counted.
    pub(super) fn answered(&self, sent: Mark, revision: i64) {
        let mut seen = self.lock();
        if seen.history != sent.history {
            return;
        }
        if revision < sent.revision {
            *seen = Mark {
                revision,
                history: seen.history + 1,
            };
            tracing::warn!(
                revision,
                seen = sent.revision,
                "etcd answered at a revision below one it answered before: it went back in time \
                 (restored from a backup or a snapshot, or wiped); partition states are taken \
                 again as read"
            );
        } else {
            seen.revision = seen.revision.max(revision);
        }
    }

    /// The current history: 0 until etcd is first seen going back in time.
    pub(super) fn current(&self) -> u64 {
        self.lock().history
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mark> {
        // Every update leaves a valid value, so a holder's panic does not matter.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sends a request now and records its answer at `revision`; returns the history after it.
    fn ask(tracker: &HistoryTracker, revision: i64) -> u64 {
        let sent = tracker.mark();
        tracker.answered(sent, revision);
        tracker.current()
    }

    #[test]
    fn growing_revisions_stay_in_one_history() {
        let tracker = HistoryTracker::default();
        for revision in [5, 5, 9, 12] {
            assert_eq!(ask(&tracker, revision), 0);
        }
    }

    #[test]
    fn an_answer_below_what_was_seen_before_its_request_starts_a_new_history() {
        let tracker = HistoryTracker::default();
        ask(&tracker, 100);
        assert_eq!(ask(&tracker, 40), 1);
        assert_eq!(
            ask(&tracker, 41),
            1,
            "the new history goes on from the lower revision"
        );
    }

    #[test]
    fn concurrent_answers_out_of_order_are_not_a_new_history() {
        let tracker = HistoryTracker::default();
        ask(&tracker, 10);
        let (first, second) = (tracker.mark(), tracker.mark());
        tracker.answered(first, 20);
        // Sent before the answer at 20 arrived: answered earlier, processed later.
        tracker.answered(second, 15);
        assert_eq!(tracker.current(), 0);
    }

    #[test]
    fn an_answer_to_a_request_sent_in_an_earlier_history_is_not_counted() {
        let tracker = HistoryTracker::default();
        ask(&tracker, 100);
        let (old, turning) = (tracker.mark(), tracker.mark());
        tracker.answered(turning, 3);
        tracker.answered(old, 1);
        tracker.answered(old, 500);
        assert_eq!(tracker.current(), 1);
        assert_eq!(ask(&tracker, 4), 1, "500 was not counted as seen");
    }

    proptest! {
        /// Sequential requests over several lives of the store, each life's revisions growing
        /// from below the last one's end: one new history per life, none in between.
        #[test]
        fn each_life_of_the_store_is_one_history(
            lives in prop::collection::vec((1i64..50, 1usize..20), 1..6),
        ) {
            let tracker = HistoryTracker::default();
            let mut end = i64::MAX;
            for (life, (start, requests)) in lives.iter().enumerate() {
                let start = if life == 0 { *start } else { (*start).min(end - 1) };
                for step in 0..*requests {
                    prop_assert_eq!(ask(&tracker, start + step as i64), life as u64);
                }
                end = start + *requests as i64 - 1;
            }
        }
    }
}
