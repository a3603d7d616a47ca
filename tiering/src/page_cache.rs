//! Drop-behind: keeping the page cache a written log holds bounded.
//!
//! The kernel keeps every byte a broker writes in the page cache until memory runs short, so a
//! log written at tens of MB/s grows the page cache by as much, and every new page is memory the
//! kernel takes from its free pool. Where that is costly — a VM whose free memory is handed back
//! to the hypervisor and faulted in again on first touch (our test VM: ~1.6 ms of CPU per MB, on
//! whichever thread writes), a container whose memory limit counts the page cache — the growth
//! stalls every thread. With drop-behind, data more than `keep` bytes behind a partition's end is
//! written back and dropped from the page cache, and the log's next writes reuse the pages just
//! freed (on the test VM a 2 GB write took 0.44 s of system time this way, 3.8–5.3 s without).
//!
//! `posix_fadvise(DONTNEED)` starts the writeback of the dirty pages in its range and drops the
//! clean ones; pages still dirty or under writeback stay. [`DropBehind`] therefore advises each
//! range twice, one pass apart: the first pass starts its writeback, the second drops it (a page
//! whose writeback takes longer than a pass stays cached until the kernel reclaims it). Readers
//! at the tail (followers, consumers keeping up) find the log's last `keep` bytes cached, across
//! segments (except what an upload of a just-sealed segment has read and dropped); readers
//! further behind read from disk, as they would from a log larger than memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::num::NonZeroU64;
use std::ops::Range;

/// The kept bytes' boundary is rounded down to a multiple of this, so a slow partition costs no
/// syscall a pass (a segment wholly behind it is advised to its exact end).
const STEP: u64 = 1 << 20;

/// The most bytes one syscall of background work (drop-behind, an upload's reads and writes)
/// covers. A kernel built without preemption (`PREEMPT_NONE`, common on servers and this test
/// VM) does not interrupt a syscall: a request handler woken meanwhile waits for it to return,
/// and on two cores an 8 MiB copy or a 30 MB `fadvise` held produce requests for milliseconds.
pub const SYSCALL_BYTES: u64 = 1 << 20;

/// Asks the kernel to write back and drop the cached pages of `range` of `file`, at most
/// [`SYSCALL_BYTES`] a call. Advice only: pages that are dirty stay cached (their writeback
/// starts), and nothing is read or written through the file.
pub fn drop_pages(file: &File, range: Range<u64>) -> std::io::Result<()> {
    let mut start = range.start;
    while start < range.end {
        // Pieces end on whole MiB, so no page straddles two calls (the kernel leaves a call's
        // partial pages at either end).
        let end = range.end.min((start / SYSCALL_BYTES + 1) * SYSCALL_BYTES);
        if let Some(len) = NonZeroU64::new(end - start) {
            rustix::fs::fadvise(file, start, Some(len), rustix::fs::Advice::DontNeed)?;
        }
        start = end;
    }
    Ok(())
}

/// How far drop-behind has got in one segment: the start of the range whose writeback the last
/// pass started, and its end.
#[derive(Debug, Default)]
struct Progress {
    dropped: u64,
    kicked: u64,
}

/// One partition's drop-behind: which segments it follows (from the oldest not yet advised to
/// its end twice, up to the active one) and how far it has got in each.
#[derive(Debug, Default)]
pub struct DropBehind {
    segments: BTreeMap<i64, Progress>,
}

impl DropBehind {
    /// The first segment the next pass needs, given the log's active segment: the oldest one
    /// still followed, or the active one (a log's older segments are not its own writes).
    pub fn first_base(&self, active_base: i64) -> i64 {
        match self.segments.keys().next() {
            Some(&first) if first <= active_base => first,
            _ => active_base,
        }
    }

    /// Plans one pass: `segments` are the log's `(base offset, size)` from
    /// [`DropBehind::first_base`] on, in order, the active one last. Returns the byte ranges to
    /// advise, by segment. Nothing within `keep` bytes of the log's end is ever included, counted
    /// across segments; every range is included on two passes, one pass apart; a segment is
    /// followed until its end has been. A segment gone from the log (retention, truncation) is
    /// forgotten; one shorter than what was advised is followed from its new end.
    pub fn plan(&mut self, segments: &[(i64, u64)], keep: u64) -> Vec<(i64, Range<u64>)> {
        self.segments
            .retain(|base, _| segments.iter().any(|(b, _)| b == base));
        let mut advice = Vec::new();
        let mut after = 0u64;
        for (i, &(base, size)) in segments.iter().enumerate().rev() {
            let sealed = i + 1 < segments.len();
            let target = if after >= keep {
                size
            } else {
                size.saturating_sub(keep - after) / STEP * STEP
            };
            after = after.saturating_add(size);
            let progress = self.segments.entry(base).or_default();
            if target < progress.kicked {
                progress.kicked = target;
                progress.dropped = progress.dropped.min(target);
            }
            if target > progress.kicked || progress.dropped < progress.kicked {
                advice.push((base, progress.dropped..target.max(progress.kicked)));
                progress.dropped = progress.kicked;
                progress.kicked = target.max(progress.kicked);
            } else if sealed && progress.dropped == size {
                self.segments.remove(&base);
            }
        }
        advice.reverse();
        advice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    const MIB: u64 = 1 << 20;

    /// One pass over a log of `(base, size)` segments, active last, as the log would call it.
    fn pass(d: &mut DropBehind, log: &[(i64, u64)], keep: u64) -> Vec<(i64, Range<u64>)> {
        let first = d.first_base(log.last().map_or(0, |s| s.0));
        let from: Vec<_> = log.iter().copied().filter(|s| s.0 >= first).collect();
        d.plan(&from, keep)
    }

    #[test]
    fn each_range_is_advised_on_two_passes_and_the_tail_never() {
        let mut d = DropBehind::default();
        // 10 MiB written, 4 MiB kept: the first 6 MiB get their writeback started.
        assert_eq!(pass(&mut d, &[(0, 10 * MIB)], 4 * MIB), [(0, 0..6 * MIB)]);
        // 3 MiB more: the first 6 MiB are dropped (written back since), the next 3 started.
        assert_eq!(pass(&mut d, &[(0, 13 * MIB)], 4 * MIB), [(0, 0..9 * MIB)]);
        // Nothing new: the last started range is advised once more, then nothing.
        assert_eq!(
            pass(&mut d, &[(0, 13 * MIB)], 4 * MIB),
            [(0, 6 * MIB..9 * MIB)]
        );
        assert_eq!(pass(&mut d, &[(0, 13 * MIB)], 4 * MIB), []);
    }

    #[test]
    fn after_a_roll_the_kept_bytes_are_the_newest_across_segments() {
        let mut d = DropBehind::default();
        pass(&mut d, &[(0, 40 * MIB)], 32 * MIB);
        // 10 MiB in the new segment: the sealed one keeps its last 22 MiB.
        let log = [(0, 40 * MIB), (500, 10 * MIB)];
        assert_eq!(pass(&mut d, &log, 32 * MIB), [(0, 0..18 * MIB)]);
        assert_eq!(pass(&mut d, &log, 32 * MIB), [(0, 8 * MIB..18 * MIB)]);
        assert_eq!(pass(&mut d, &log, 32 * MIB), []);
        // Once the new segment holds the kept bytes, the sealed one goes to its end, twice.
        let log = [(0, 40 * MIB + 123), (500, 33 * MIB)];
        assert_eq!(
            pass(&mut d, &log, 32 * MIB),
            [(0, 18 * MIB..40 * MIB + 123), (500, 0..MIB)]
        );
        assert_eq!(
            pass(&mut d, &log, 32 * MIB),
            [(0, 18 * MIB..40 * MIB + 123), (500, 0..MIB)]
        );
        // Then it is no longer followed.
        assert_eq!(pass(&mut d, &log, 32 * MIB), []);
        assert_eq!(d.first_base(500), 500);
    }

    #[test]
    fn segments_smaller_than_the_kept_bytes_stay_cached_together() {
        let mut d = DropBehind::default();
        pass(&mut d, &[(0, 16 * MIB)], 32 * MIB);
        let log = [
            (0, 16 * MIB),
            (100, 16 * MIB),
            (200, 16 * MIB),
            (300, 8 * MIB),
        ];
        // 56 MiB, 32 kept: the kept bytes are the last 8 + 16 + 8 of the three newest segments,
        // so the oldest segment and the first half of the next one go.
        assert_eq!(
            pass(&mut d, &log, 32 * MIB),
            [(0, 0..16 * MIB), (100, 0..8 * MIB)]
        );
    }

    #[test]
    fn truncation_forgets_segments_that_went_and_follows_a_shorter_one() {
        let mut d = DropBehind::default();
        pass(&mut d, &[(0, 20 * MIB)], 4 * MIB);
        pass(&mut d, &[(0, 20 * MIB), (500, 20 * MIB)], 4 * MIB);
        // A follower truncates back into the first segment.
        assert_eq!(d.first_base(0), 0);
        // What is left of it below the kept bytes was advised twice already.
        assert_eq!(pass(&mut d, &[(0, 6 * MIB)], 4 * MIB), []);
        assert_eq!(
            pass(&mut d, &[(0, 10 * MIB)], 4 * MIB),
            [(0, 2 * MIB..6 * MIB)]
        );
        // A log restarted empty at a later offset: the old segments are gone.
        assert_eq!(d.first_base(900), 0);
        assert_eq!(
            pass(&mut d, &[(900, 10 * MIB)], 4 * MIB),
            [(900, 0..6 * MIB)]
        );
        assert_eq!(d.first_base(900), 900);
    }

    proptest! {
        /// Whatever the appends and rolls, nothing within `keep` bytes of the log's end is
        /// advised, and once the log stops growing everything further back than that (and a
        /// step) is advised on at least two passes.
        #[test]
        fn never_the_tail_and_everything_behind_it_twice(
            steps in proptest::collection::vec((0u64..8 * MIB, proptest::bool::weighted(0.2)), 1..30),
            keep in 0u64..24 * MIB,
        ) {
            let mut d = DropBehind::default();
            let mut log: Vec<(i64, u64)> = vec![(0, 0)];
            let mut advised: Vec<(i64, Range<u64>)> = Vec::new();
            let check = |log: &[(i64, u64)], plan: &[(i64, Range<u64>)]| -> Result<(), TestCaseError> {
                let total: u64 = log.iter().map(|s| s.1).sum();
                for (base, range) in plan {
                    let before: u64 = log.iter().take_while(|s| s.0 < *base).map(|s| s.1).sum();
                    prop_assert!(before + range.end + keep <= total, "{:?} {:?} keep {}", log, plan, keep);
                }
                Ok(())
            };
            for (grow, roll) in steps {
                if roll {
                    let next = log.last().map_or(0, |s| s.0) + 1;
                    log.push((next, 0));
                }
                if let Some(active) = log.last_mut() {
                    active.1 += grow;
                }
                let plan = pass(&mut d, &log, keep);
                check(&log, &plan)?;
                advised.extend(plan);
            }
            for _ in 0..3 {
                let plan = pass(&mut d, &log, keep);
                check(&log, &plan)?;
                advised.extend(plan);
            }
            let total: u64 = log.iter().map(|s| s.1).sum();
            let mut before = 0;
            for &(base, size) in &log {
                for at in (0..size).step_by(STEP as usize / 4) {
                    if before + at + keep + STEP <= total {
                        let times = advised.iter().filter(|(b, r)| *b == base && r.contains(&at)).count();
                        prop_assert!(times >= 2, "segment {} byte {} advised {} times", base, at, times);
                    }
                }
                before += size;
            }
        }
    }

    #[test]
    fn dropping_dirty_pages_of_a_real_file_keeps_its_contents() -> std::io::Result<()> {
        use std::io::{Read, Seek};
        let mut file = tempfile::tempfile()?;
        let data: Vec<u8> = (0..3 * MIB).map(|i| (i % 251) as u8).collect();
        // Not synced: the advice finds dirty pages, which must be written back, not discarded.
        file.write_all(&data)?;
        drop_pages(&file, 0..2 * MIB)?;
        drop_pages(&file, 2 * MIB..3 * MIB)?;
        drop_pages(&file, MIB..MIB)?;
        let mut back = Vec::new();
        file.rewind()?;
        file.read_to_end(&mut back)?;
        assert_eq!(back, data);
        Ok(())
    }
}
