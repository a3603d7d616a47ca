//! Memory for the chunks a read-ahead stream assembles from a GET body.
//!
//! A cold replay fills the chunk cache with memory the broker has not touched before, and every
//! 4 KiB page of it costs a page fault on first touch: 1,024 per 4 MiB chunk, about a quarter of
//! the broker's CPU in profiles of a cold replay. A chunk of at least [`HUGE_PAGE_BYTES`]
//! therefore gets an anonymous mapping of its own that asks the kernel for transparent huge pages
//! (`MADV_HUGEPAGE`: honoured when THP is `always` or `madvise`, a no-op when it is `never`), so a
//! 4 MiB chunk faults twice. Measured with `benches/tiering_replay.py --mib 1536`
//! (BENCHMARKS.md): the broker's CPU per GiB of a cold replay fell from 1.00–1.26 to 0.64–1.05
//! core-seconds; the same mappings without the advice were worse than the heap, so the gain is
//! the huge pages. A replay that only fills an empty memory tier ran about 10% slower on the test
//! VM (not explained yet).
//!
//! Smaller chunks, and any chunk whose mapping fails, use the heap: a mapping per small chunk
//! would spend the process's limit on mappings (`vm.max_map_count`) for no gain.

use bytes::Bytes;
use memmap2::{Advice, MmapMut};

/// The size of a transparent huge page on x86-64 and most arm64 kernels; smaller chunks cannot
/// use one.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Where a chunk's bytes live while it is assembled.
#[derive(Debug)]
enum Memory {
    Mapped(MmapMut),
    Heap(Vec<u8>),
}

/// A chunk of a known length, filled piece by piece, then frozen into [`Bytes`] without a copy.
#[derive(Debug)]
pub struct ChunkBuffer {
    memory: Memory,
    len: usize,
    filled: usize,
}

impl ChunkBuffer {
    /// An empty chunk of `len` bytes.
    pub fn new(len: usize) -> Self {
        let memory = if len >= HUGE_PAGE_BYTES {
            match MmapMut::map_anon(len) {
                Ok(map) => {
                    if let Err(e) = map.advise(Advice::HugePage) {
                        tracing::debug!(error = %e, "the kernel refused huge pages for a chunk");
                    }
                    Memory::Mapped(map)
                }
                Err(e) => {
                    tracing::debug!(error = %e, len, "mapping a chunk failed; it goes on the heap");
                    Memory::Heap(Vec::with_capacity(len))
                }
            }
        } else {
            Memory::Heap(Vec::with_capacity(len))
        };
        ChunkBuffer {
            memory,
            len,
            filled: 0,
        }
    }

    /// Bytes filled so far.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Bytes still missing.
    pub fn missing(&self) -> usize {
        self.len - self.filled
    }

    /// Appends the start of `piece`, as much of it as the chunk is missing; returns how many
    /// bytes it took.
    pub fn fill(&mut self, piece: &[u8]) -> usize {
        let take = piece.len().min(self.missing());
        match &mut self.memory {
            Memory::Mapped(map) => {
                map[self.filled..self.filled + take].copy_from_slice(&piece[..take]);
            }
            Memory::Heap(vec) => vec.extend_from_slice(&piece[..take]),
        }
        self.filled += take;
        take
    }

    /// The chunk's bytes so far (all of them once [`ChunkBuffer::missing`] is zero).
    pub fn freeze(self) -> Bytes {
        match self.memory {
            Memory::Mapped(map) => Bytes::from_owner(map).slice(..self.filled),
            Memory::Heap(vec) => Bytes::from(vec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assemble(data: &[u8], cuts: &[usize]) -> Bytes {
        let mut buffer = ChunkBuffer::new(data.len());
        let mut at = 0;
        for &cut in cuts {
            let end = (at + cut).min(data.len());
            assert_eq!(buffer.fill(&data[at..end]), end - at);
            at = end;
        }
        assert_eq!(buffer.fill(&data[at..]), data.len() - at);
        assert_eq!(buffer.missing(), 0);
        buffer.freeze()
    }

    #[test]
    fn a_huge_page_sized_chunk_is_mapped_and_keeps_its_bytes() {
        let data: Vec<u8> = (0..HUGE_PAGE_BYTES * 2).map(|i| (i % 251) as u8).collect();
        let buffer = ChunkBuffer::new(data.len());
        assert!(matches!(buffer.memory, Memory::Mapped(_)));
        assert_eq!(assemble(&data, &[1, 4095, 70_000, HUGE_PAGE_BYTES]), data);
    }

    #[test]
    fn a_small_chunk_stays_on_the_heap() {
        assert!(matches!(ChunkBuffer::new(4096).memory, Memory::Heap(_)));
    }

    #[test]
    fn fill_takes_no_more_than_the_chunk_misses() {
        let mut buffer = ChunkBuffer::new(HUGE_PAGE_BYTES);
        let piece = vec![7u8; HUGE_PAGE_BYTES + 10];
        assert_eq!(buffer.fill(&piece), HUGE_PAGE_BYTES);
        assert_eq!(buffer.fill(&piece), 0);
        assert_eq!(buffer.freeze().len(), HUGE_PAGE_BYTES);
    }

    proptest! {
        #[test]
        fn any_cut_of_a_chunk_assembles_the_same_bytes(
            len in prop_oneof![1usize..10_000, HUGE_PAGE_BYTES..HUGE_PAGE_BYTES + 10_000],
            cuts in proptest::collection::vec(1usize..300_000, 0..20),
            seed in any::<u8>(),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            prop_assert_eq!(assemble(&data, &cuts), data);
        }
    }
}
