//! Pacing of read-ahead streams. A read-ahead GETs the rest of a segment in one request (object
//! stores bill, and some serve, per request: a ranged GET can cost the server as much as the whole
//! object) but hands chunks to the cache only as far as its reader's window reaches, so a long
//! GET does not evict the chunks the reader is about to read. The rest of the body waits in the
//! connection (TCP flow control holds the sender).
//!
//! Per stream the pace is a chunk index below which chunks may be delivered. The reader moves it
//! forward after each read (its position plus its window) and whenever it needs a chunk the stream
//! has not delivered yet. A reader that needs a chunk far beyond the window (it jumped) stops the
//! stream, and so does a reader that stops reading: a stream held back longer than
//! [`PAUSE_LIMIT`] ends its GET. Either way the chunks it did not deliver are free to fetch again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// How long a stream waits for its reader to move before it ends its GET.
pub const PAUSE_LIMIT: Duration = Duration::from_secs(10);

/// Where a stream may deliver up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pace {
    /// Chunks below this index may be delivered.
    allowed: u64,
    /// The reader's window in chunks: a need beyond `allowed + reach` is a jump.
    reach: u64,
    /// The stream is to end.
    stopped: bool,
}

type PaceSender = Arc<watch::Sender<Pace>>;

/// The paces of every running read-ahead stream, by object key.
#[derive(Debug, Default)]
pub struct Paces {
    streams: Mutex<HashMap<String, Vec<PaceSender>>>,
}

/// A stream's side of its pace: it waits on this before delivering each chunk.
#[derive(Debug)]
pub struct PaceGate {
    key: String,
    sender: PaceSender,
    receiver: watch::Receiver<Pace>,
}

impl Paces {
    /// Registers a stream of `key` allowed to deliver chunks below `allowed` for now, for a reader
    /// whose window is `reach` chunks.
    pub fn start(&self, key: &str, allowed: u64, reach: u64) -> PaceGate {
        let (sender, receiver) = watch::channel(Pace {
            allowed,
            reach: reach.max(1),
            stopped: false,
        });
        let sender = Arc::new(sender);
        self.lock()
            .entry(key.to_string())
            .or_default()
            .push(Arc::clone(&sender));
        PaceGate {
            key: key.to_string(),
            sender,
            receiver,
        }
    }

    /// Unregisters a stream once it has ended.
    pub fn finish(&self, gate: PaceGate) {
        let mut streams = self.lock();
        if let Some(list) = streams.get_mut(&gate.key) {
            list.retain(|s| !Arc::ptr_eq(s, &gate.sender));
            if list.is_empty() {
                streams.remove(&gate.key);
            }
        }
    }

    /// The reader's window now reaches chunk `upto` (exclusive) of `key`.
    pub fn allow(&self, key: &str, upto: u64) {
        self.each(key, |pace| {
            if upto > pace.allowed {
                pace.allowed = upto;
                true
            } else {
                false
            }
        });
    }

    /// A reader needs chunks `first..=last` of `key` now: a stream delivers them at once, unless
    /// they lie beyond its reader's window (a jump), which ends the stream.
    pub fn need(&self, key: &str, first: u64, last: u64) {
        self.each(key, |pace| {
            if first >= pace.allowed.saturating_add(pace.reach) {
                pace.stopped = true;
                true
            } else if last >= pace.allowed {
                pace.allowed = last + 1;
                true
            } else {
                false
            }
        });
    }

    fn each(&self, key: &str, mut change: impl FnMut(&mut Pace) -> bool) {
        if let Some(list) = self.lock().get(key) {
            for sender in list {
                sender.send_if_modified(&mut change);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<PaceSender>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PaceGate {
    /// Waits until chunk `index` may be delivered: true then, false when the stream is to end
    /// (stopped, or held back longer than [`PAUSE_LIMIT`]).
    pub async fn turn(&mut self, index: u64) -> bool {
        loop {
            {
                let pace = self.receiver.borrow_and_update();
                if pace.stopped {
                    return false;
                }
                if index < pace.allowed {
                    return true;
                }
            }
            match tokio::time::timeout(PAUSE_LIMIT, self.receiver.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_waits_for_its_reader_and_stops_on_a_jump() {
        let paces = Paces::default();
        let mut gate = paces.start("obj", 4, 4);
        assert!(gate.turn(3).await, "inside the window");
        // Chunk 4 waits until the reader's window moves.
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.turn(4)).await;
        assert!(waiting.is_err(), "held back");
        paces.allow("obj", 6);
        assert!(gate.turn(5).await);
        // Moving back does nothing; a reader needing chunk 7 lets it through at once.
        paces.allow("obj", 2);
        paces.need("obj", 7, 7);
        assert!(gate.turn(7).await);
        // Other objects' paces are their own.
        paces.need("other", 100, 100);
        assert!(gate.turn(7).await);
        // A need beyond the window (allowed 8 + reach 4) is a jump: the stream ends.
        paces.need("obj", 12, 12);
        assert!(!gate.turn(8).await);
        paces.finish(gate);
        assert!(paces.lock().is_empty(), "finished streams are forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_whose_reader_stops_ends_after_the_pause_limit() {
        let paces = Paces::default();
        let mut gate = paces.start("obj", 1, 4);
        let started = tokio::time::Instant::now();
        assert!(!gate.turn(1).await);
        assert!(started.elapsed() >= PAUSE_LIMIT);
        // Two streams of one object move together; finishing one keeps the other.
        let mut second = paces.start("obj", 0, 4);
        paces.allow("obj", 3);
        assert!(second.turn(2).await);
        paces.finish(gate);
        paces.allow("obj", 5);
        assert!(second.turn(4).await);
    }
}
