//! Criterion micro-benchmarks of the tiering crate's hot paths.
//!
//! `cargo bench -p strata-tiering --bench hot_paths` measures, each next to a baseline taken in
//! the same run so the ratio says more than the absolute figure on a shared machine:
//! - `crc`: `validate_batch` on 16 KiB and 1 MiB v2 batches, against raw `crc32c` over the same
//!   bytes (validation is a header parse plus that CRC);
//! - `append`: `PartitionLog::append` of a 16 KiB batch (validation, producer state, offset and
//!   index bookkeeping, the write; 64 MiB segments, so rolls and their fsync are amortised in),
//!   against a plain `write(2)` of the same bytes to an append-only file;
//! - `offset_index`: building an `OffsetIndex` of N entries and looking offsets up in it;
//! - `read`: the local fetch path, `PartitionLog::read` of 1 MiB from a 64 MiB log held in the
//!   page cache, at the head and at the tail of the log, against a memcpy and a `pread(2)` of
//!   1 MiB;
//! - `chunk_cache`: hits in the remote tier's `ChunkCache` (4 MiB chunks over an in-memory object
//!   store), whole chunks and 1 MiB ranges, against a memcpy of 1 MiB.
//!
//! Defaults are short (1 s warm-up, 3 s measurement); criterion's `--warm-up-time` and
//! `--measurement-time` override them.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_tiering::batch::{HEADER_SIZE, LOG_OVERHEAD, validate_batch};
use strata_tiering::index::OffsetIndex;
use strata_tiering::remote::cache::{CacheSettings, ChunkCache};
use strata_tiering::remote::metrics::TieringMetrics;
use strata_tiering::{AppendOptions, LogConfig, PartitionLog};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// Bytes of a batch covered by its CRC start here (attributes onwards).
const ATTRIBUTES_OFFSET: usize = 21;
const CRC_OFFSET: usize = 17;
/// Records per 16 KiB batch: 1 KiB records, as in the end-to-end benchmarks' messages.
const RECORDS_PER_16K: i32 = 16;
const NOW_MS: i64 = 1_000;
const OPTIONS: AppendOptions = AppendOptions {
    now_ms: NOW_MS,
    leader_epoch: 0,
    log_append_time: false,
};

/// A valid v2 batch of exactly `size` bytes holding `records` records of filler: the log never
/// decodes records. (A copy of the crate's test helper, which benches cannot reach.)
fn build_batch(records: i32, size: usize) -> Vec<u8> {
    let body: Vec<u8> = (0..size - HEADER_SIZE).map(|i| (i % 251) as u8).collect();
    let length = i32::try_from(size - LOG_OVERHEAD).expect("batch length fits an i32");
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&length.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(records - 1).to_be_bytes());
    b.extend_from_slice(&NOW_MS.to_be_bytes());
    b.extend_from_slice(&(NOW_MS + i64::from(records) - 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&records.to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn size_label(bytes: usize) -> String {
    if bytes >= MIB {
        format!("{}MiB", bytes / MIB)
    } else {
        format!("{}KiB", bytes / KIB)
    }
}

fn crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc");
    for (records, size) in [(RECORDS_PER_16K, 16 * KIB), (1_024, MIB)] {
        let batch = build_batch(records, size);
        validate_batch(&batch).expect("the built batch is valid");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("crc32c_raw", size_label(size)),
            &batch,
            |b, batch| b.iter(|| crc32c::crc32c(black_box(&batch[ATTRIBUTES_OFFSET..]))),
        );
        group.bench_with_input(
            BenchmarkId::new("validate_batch", size_label(size)),
            &batch,
            |b, batch| b.iter(|| validate_batch(black_box(batch)).expect("valid")),
        );
    }
    group.finish();
}

/// Appends in the benchmark stop growing the log past this: retention runs outside the timing.
const APPEND_LOG_CAP: u64 = 256 << 20;

fn append(c: &mut Criterion) {
    let batch = build_batch(RECORDS_PER_16K, 16 * KIB);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 64 << 20,
        retention_ms: -1,
        retention_bytes: 128 << 20,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(&dir.path().join("log"), config, 0).expect("open the log");
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("partition_log/16KiB", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                black_box(log.append(black_box(&batch), OPTIONS).expect("append"));
                spent += start.elapsed();
                if log.size_bytes() > APPEND_LOG_CAP {
                    log.apply_retention(NOW_MS).expect("retention");
                }
            }
            spent
        });
    });
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("plain.log"))
        .expect("open the plain file");
    let mut written = 0u64;
    group.bench_function("baseline_file_write/16KiB", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                file.write_all(black_box(&batch)).expect("write");
                spent += start.elapsed();
                written += batch.len() as u64;
                if written > APPEND_LOG_CAP {
                    file.set_len(0).expect("truncate");
                    written = 0;
                }
            }
            spent
        });
    });
    group.finish();
}

/// A cheap deterministic sequence of lookup keys (xorshift).
fn probes(count: usize, below: u32) -> Vec<u32> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            u32::try_from(x % u64::from(below)).expect("below a u32")
        })
        .collect()
}

fn offset_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("offset_index");
    // One entry per 4 KiB of log (`index.interval.bytes`): 4 MiB and 1 GiB segments.
    for entries in [1_024u32, 262_144] {
        let build = |n: u32| {
            let mut index = OffsetIndex::default();
            for i in 0..n {
                index.push(i * 4, i * 4_096);
            }
            index
        };
        group.throughput(Throughput::Elements(u64::from(entries)));
        group.bench_with_input(BenchmarkId::new("push", entries), &entries, |b, &n| {
            b.iter(|| build(black_box(n)));
        });
        let index = build(entries);
        let keys = probes(4_096, entries * 4);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("lookup", entries), &index, |b, index| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % keys.len();
                index.lookup(black_box(keys[i]))
            });
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let batch = build_batch(RECORDS_PER_16K, 16 * KIB);
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("log");
    let log = PartitionLog::open(&log_dir, LogConfig::default(), 0).expect("open the log");
    let batches = (64 * MIB) / batch.len();
    for _ in 0..batches {
        log.append(&batch, OPTIONS).expect("append");
    }
    let end = log.log_end_offset();
    let tail = end - i64::from(RECORDS_PER_16K) * (MIB / batch.len()) as i64;
    for from in [0, tail] {
        let bytes = log.read(from, MIB, end, true).expect("read");
        assert_eq!(bytes.len(), MIB, "a 1 MiB read returns 64 whole batches");
    }
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_function("partition_log/1MiB_at_head_of_64MiB", |b| {
        b.iter(|| log.read(black_box(0), MIB, end, true).expect("read"));
    });
    group.bench_function("partition_log/1MiB_at_tail_of_64MiB", |b| {
        b.iter(|| log.read(black_box(tail), MIB, end, true).expect("read"));
    });
    let segment = File::open(log_dir.join(format!("{:020}.log", 0))).expect("the segment file");
    group.bench_function("baseline_pread/1MiB", |b| {
        b.iter(|| {
            let mut buf = vec![0u8; MIB];
            segment
                .read_exact_at(&mut buf, black_box(0))
                .expect("pread");
            buf
        });
    });
    let source = vec![7u8; MIB];
    group.bench_function("baseline_memcpy/1MiB", |b| {
        b.iter(|| black_box(&source[..]).to_vec());
    });
    group.finish();
}

fn chunk_cache(c: &mut Criterion) {
    const CHUNK: u64 = 4 << 20;
    const OBJECT: u64 = 2 * CHUNK;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = runtime.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..OBJECT).map(|i| (i % 251) as u8).collect();
        store
            .put(&ObjectPath::from("segment"), PutPayload::from(data))
            .await
            .expect("put");
        let settings = CacheSettings {
            memory_bytes: 64 << 20,
            disk_bytes: 32 << 20,
            disk_dir: dir.path().join("cache"),
            chunk_bytes: CHUNK,
        };
        let cache = ChunkCache::open(&settings, store, TieringMetrics::default())
            .await
            .expect("open the cache");
        // Warm both chunks: everything below is a hit.
        cache
            .read("segment", OBJECT, 0..OBJECT, 1)
            .await
            .expect("warm");
        cache
    });
    let mut group = c.benchmark_group("chunk_cache");
    group.throughput(Throughput::Bytes(CHUNK));
    group.bench_function("chunk_hit/4MiB", |b| {
        b.to_async(&runtime)
            .iter(|| async { cache.chunk("segment", 0, OBJECT, 1).await.expect("chunk") });
    });
    group.throughput(Throughput::Bytes(MIB as u64));
    let within = MIB as u64..2 * MIB as u64;
    group.bench_function("read_hit/1MiB_within_a_chunk", |b| {
        b.to_async(&runtime).iter(|| async {
            cache
                .read("segment", OBJECT, within.clone(), 1)
                .await
                .expect("read")
        });
    });
    let across = CHUNK - MIB as u64 / 2..CHUNK + MIB as u64 / 2;
    group.bench_function("read_hit/1MiB_across_two_chunks", |b| {
        b.to_async(&runtime).iter(|| async {
            cache
                .read("segment", OBJECT, across.clone(), 1)
                .await
                .expect("read")
        });
    });
    let source = vec![7u8; MIB];
    group.bench_function("baseline_memcpy/1MiB", |b| {
        b.iter(|| black_box(&source[..]).to_vec());
    });
    group.finish();
    runtime.block_on(cache.close());
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = crc, append, offset_index, read, chunk_cache
}
criterion_main!(hot_paths);
