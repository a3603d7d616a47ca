//! Pacing of read-ahead streams. A read-ahead GETs the rest of a segment in one request (object
//! stores bill, and some serve, per request: a ranged GET can cost the server as much as the whole
//! object) but hands chunks to the cache only as far as its reader's window reaches, so a long
//! GET does not evict the chunks the reader is about to read. The rest of the body waits in the
//! connection (TCP flow control holds the sender).
//!
//! Per stream the pace is a chunk index below which chunks may be delivered. The reader moves it
//! forward after each read (its position plus its window) and whenever it needs a chunk the stream
//! has not delivered yet. Only the stream whose claimed chunks the reader's window or need falls
//! into moves: two readers of one segment pace their own streams. A reader that needs a chunk far
//! beyond the window (it jumped) stops the stream, and so does a reader that stops reading: a
//! stream held back longer than [`PAUSE_LIMIT`] ends its GET. A GET also ends after
//! [`STREAM_LIFETIME`], before object-store clients time the whole request out (`object_store`'s
//! default is 30 s, body included); the reader's next read-ahead starts another from there. Either
//! way the chunks a stream did not deliver are free to fetch again.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How long a stream waits for its reader to move before it ends its GET.
pub const PAUSE_LIMIT: Duration = Duration::from_secs(10);

/// How long one GET of a stream may last.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(20);

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

/// A running stream's pace and the chunks it claimed.
#[derive(Debug)]
struct Stream {
    chunks: Range<u64>,
    pace: Arc<watch::Sender<Pace>>,
}

/// The paces of every running read-ahead stream, by object key.
#[derive(Debug, Default)]
pub struct Paces {
    streams: Mutex<HashMap<String, Vec<Stream>>>,
}

/// A stream's side of its pace: it waits on this before delivering each chunk.
#[derive(Debug)]
pub struct PaceGate {
    key: String,
    sender: Arc<watch::Sender<Pace>>,
    receiver: watch::Receiver<Pace>,
    started: Instant,
}

impl Paces {
    /// Registers a stream of `chunks` of `key` allowed to deliver chunks below `allowed` for now,
    /// for a reader whose window is `reach` chunks.
    pub fn start(&self, key: &str, chunks: Range<u64>, allowed: u64, reach: u64) -> PaceGate {
        let (sender, receiver) = watch::channel(Pace {
            allowed,
            reach: reach.max(1),
            stopped: false,
        });
        let sender = Arc::new(sender);
        self.lock()
            .entry(key.to_string())
            .or_default()
            .push(Stream {
                chunks,
                pace: Arc::clone(&sender),
            });
        PaceGate {
            key: key.to_string(),
            sender,
            receiver,
            started: Instant::now(),
        }
    }

    /// Unregisters a stream once it has ended.
    pub fn finish(&self, gate: PaceGate) {
        let mut streams = self.lock();
        if let Some(list) = streams.get_mut(&gate.key) {
            list.retain(|s| !Arc::ptr_eq(&s.pace, &gate.sender));
            if list.is_empty() {
                streams.remove(&gate.key);
            }
        }
    }

    /// A reader's window now covers `window` of `key`: the streams of chunks in it may deliver
    /// up to its end.
    pub fn allow(&self, key: &str, window: Range<u64>) {
        let overlaps = |chunks: &Range<u64>| chunks.start < window.end && window.start < chunks.end;
        self.each(key, overlaps, |pace| {
            if window.end > pace.allowed {
                pace.allowed = window.end;
                true
            } else {
                false
            }
        });
    }

    /// A reader needs chunks `first..=last` of `key` now: the stream of chunk `first` delivers
    /// them at once, unless they lie beyond its reader's window (a jump), which ends the stream.
    pub fn need(&self, key: &str, first: u64, last: u64) {
        self.each(
            key,
            |chunks| chunks.contains(&first),
            |pace| {
                if first >= pace.allowed.saturating_add(pace.reach) {
                    pace.stopped = true;
                    true
                } else if last >= pace.allowed {
                    pace.allowed = last + 1;
                    true
                } else {
                    false
                }
            },
        );
    }

    fn each(
        &self,
        key: &str,
        concerned: impl Fn(&Range<u64>) -> bool,
        mut change: impl FnMut(&mut Pace) -> bool,
    ) {
        if let Some(list) = self.lock().get(key) {
            for stream in list.iter().filter(|s| concerned(&s.chunks)) {
                stream.pace.send_if_modified(&mut change);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Stream>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PaceGate {
    /// Waits until chunk `index` may be delivered: true then, false when the stream is to end
    /// (stopped, held back longer than [`PAUSE_LIMIT`], or older than [`STREAM_LIFETIME`]).
    pub async fn turn(&mut self, index: u64) -> bool {
        loop {
            if self.started.elapsed() >= STREAM_LIFETIME {
                return false;
            }
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
        let mut gate = paces.start("obj", 0..20, 4, 4);
        assert!(gate.turn(3).await, "inside the window");
        // Chunk 4 waits until the reader's window moves.
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.turn(4)).await;
        assert!(waiting.is_err(), "held back");
        paces.allow("obj", 2..6);
        assert!(gate.turn(5).await);
        // Moving back does nothing; a reader needing chunk 7 lets it through at once.
        paces.allow("obj", 0..2);
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
        let mut gate = paces.start("obj", 0..20, 1, 4);
        let started = tokio::time::Instant::now();
        assert!(!gate.turn(1).await);
        assert!(started.elapsed() >= PAUSE_LIMIT);
        paces.finish(gate);
        // However fast its reader, a GET ends after its lifetime.
        let mut gate = paces.start("obj", 0..1_000, 2, 4);
        let mut index = 0;
        while gate.turn(index).await {
            index += 1;
            paces.allow("obj", index..index + 2);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(started.elapsed() >= PAUSE_LIMIT + STREAM_LIFETIME);
        assert!(index >= 19, "delivered until then");
        paces.finish(gate);
    }

    #[tokio::test]
    async fn two_readers_of_one_object_pace_their_own_streams() {
        let paces = Paces::default();
        // Reader A streams chunks 40..60 from 40, reader B chunks 10..30 from 10.
        let mut a = paces.start("obj", 40..60, 44, 4);
        let mut b = paces.start("obj", 10..30, 14, 4);
        // A's window moving on does not let B's stream run ahead.
        paces.allow("obj", 44..52);
        assert!(a.turn(51).await);
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.turn(14)).await;
        assert!(waiting.is_err(), "B held back");
        // A needing a chunk of its own is no jump for B.
        paces.need("obj", 53, 53);
        assert!(a.turn(53).await);
        paces.allow("obj", 12..16);
        assert!(b.turn(15).await, "B moved by its own window");
    }
}
