//! The change signals behind [`MetadataStore::watch`](super::MetadataStore::watch): a counter in
//! a `tokio::sync::watch` channel, bumped on every change under a prefix. The value means nothing;
//! receivers re-read the prefix whenever it changes.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// Bumps the counter, waking every receiver.
pub(super) fn bump(sender: &watch::Sender<u64>) {
    sender.send_modify(|n| *n = n.wrapping_add(1));
}

/// The watches of an in-process store.
#[derive(Debug, Default)]
pub(super) struct Watchers(Mutex<Vec<(String, watch::Sender<u64>)>>);

impl Watchers {
    /// A new watch of every key under `prefix`, in place at once (so already marked changed).
    pub(super) fn add(&self, prefix: &str) -> watch::Receiver<u64> {
        let (sender, mut receiver) = watch::channel(0);
        receiver.mark_changed();
        self.lock().push((prefix.to_string(), sender));
        receiver
    }

    /// Wakes the watches of every prefix of the `changed` keys, and forgets the watches that no
    /// receiver holds any more.
    pub(super) fn notify(&self, changed: &[&str]) {
        self.lock().retain(|(prefix, sender)| {
            if changed.iter().any(|key| key.starts_with(prefix.as_str())) {
                bump(sender);
            }
            !sender.is_closed()
        });
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(String, watch::Sender<u64>)>> {
        // The list stays consistent even if a holder panicked: every step leaves it valid.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The waits between attempts to re-establish a lost watch: 100 ms, doubling up to 5 s, each
/// drawn at random from the upper half of its step so that many brokers do not retry in step.
#[derive(Debug)]
pub(super) struct Backoff {
    step: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The wait before the next attempt.
    pub(super) fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(Self::MAX);
        step / 2 + step.mul_f64(unit_random() / 2.0)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { step: Self::FIRST }
    }
}

/// A random number in [0, 1), good enough for jitter: the standard library's randomly keyed
/// SipHash (the crate has no `rand` dependency).
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(()) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_seconds_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::default();
        for step_ms in [100, 200, 400, 800, 1600, 3200, 5000, 5000] {
            let wait = backoff.next_wait();
            let step = Duration::from_millis(step_ms);
            assert!(
                step / 2 <= wait && wait <= step,
                "{wait:?} outside {step:?}"
            );
        }
    }

    #[test]
    fn watchers_are_forgotten_once_their_receivers_are_dropped() {
        let watchers = Watchers::default();
        let mut kept = watchers.add("a/");
        kept.borrow_and_update();
        drop(watchers.add("b/"));
        watchers.notify(&["c"]);
        assert!(!kept.has_changed().expect("open"), "c is not under a/");
        assert_eq!(watchers.lock().len(), 1, "the dropped watch of b/ is gone");
        watchers.notify(&["a/x"]);
        assert!(kept.has_changed().expect("open"));
    }
}
