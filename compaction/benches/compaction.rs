//! Compaction throughput and peak memory on a log of many distinct keys.
//!
//! `cargo bench -p strata-compaction --bench compaction` writes a local log of
//! `STRATA_BENCH_KEYS` distinct keys (default 10 million), each updated
//! `STRATA_BENCH_ROUNDS` times (default 2; 46-byte values, lz4, 1,000 records a batch), then runs
//! compaction to completion in a child process with a key-map budget of
//! `STRATA_BENCH_BUDGET_BYTES` (default 128 MiB, the broker's default), so the child's peak
//! resident memory (`VmHWM`) is compaction's alone. The baseline, measured in the same run on the
//! same files, is a plain sequential read of the segment files. Prints one JSON line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata_compaction::{CompactionConfig, KeyMap, LocalBounds, Throttle, compact_local};
use strata_tiering::{AppendOptions, LogConfig, PartitionLog};

const RECORDS_PER_BATCH: usize = 1_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 128 << 20,
        remote_storage: false,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// A deterministic 46-byte value that compresses about as well as real payloads.
fn value(key: u64, round: u64) -> Bytes {
    let mut x = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round;
    let mut out = Vec::with_capacity(46);
    out.extend_from_slice(format!("r{round:02}-").as_bytes());
    while out.len() < 46 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(b'a' + (x % 16) as u8);
    }
    Bytes::from(out)
}

fn batch(keys: std::ops::Range<u64>, round: u64) -> Bytes {
    let records: Vec<Record> = keys
        .enumerate()
        .map(|(i, k)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1_000,
            key: Some(Bytes::from(format!("key-{k:012}"))),
            value: Some(value(k, round)),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::Lz4,
    };
    RecordBatchEncoder::encode(&mut out, records.iter(), &options).expect("encode");
    out.freeze()
}

fn write_log(dir: &Path, keys: u64, rounds: u64) -> u64 {
    let log = PartitionLog::open(dir, log_config(), 0).expect("open");
    let options = AppendOptions {
        now_ms: 1_000,
        leader_epoch: 0,
        log_append_time: false,
    };
    for round in 0..rounds {
        let mut k = 0;
        while k < keys {
            let end = (k + RECORDS_PER_BATCH as u64).min(keys);
            log.append(&batch(k..end, round), options).expect("append");
            k = end;
        }
    }
    let mut sealing = log_config();
    sealing.segment_ms = 0;
    log.set_config(sealing);
    log.roll_if_due(i64::MAX / 2).expect("roll");
    log.close().expect("close");
    log.size_bytes()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Sequential read of every segment file, in MB/s: what the disk (or page cache) gives.
fn baseline_read(dir: &Path) -> f64 {
    use std::io::Read;
    let start = Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for path in segment_files(dir) {
        let mut f = std::fs::File::open(path).expect("open");
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    total as f64 / 1e6 / start.elapsed().as_secs_f64()
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The child: compacts the log in `dir` to completion and prints its figures.
fn compact(dir: &Path, budget: usize) {
    let log = PartitionLog::open(dir, log_config(), 0).expect("open");
    let input = log.size_bytes();
    // A dirty ratio of 0: passes run until the whole log is clean.
    let config = CompactionConfig {
        segment_bytes: 128 << 20,
        min_cleanable_dirty_ratio: 0.0,
        ..CompactionConfig::default()
    };
    let bounds = LocalBounds {
        committed_end: i64::MAX,
        remote_cleaned_offset: None,
    };
    let throttle = Throttle::new(0);
    let start = Instant::now();
    let (mut passes, mut read, mut removed) = (0u64, 0u64, 0u64);
    while let Some(report) =
        compact_local(&log, &config, bounds, budget, &throttle, 2_000).expect("pass")
    {
        passes += 1;
        read += report.bytes_read;
        removed += report.records_removed;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"input_bytes\":{input},\"output_bytes\":{},\"passes\":{passes},\"bytes_read\":{read},\
         \"records_removed\":{removed},\"seconds\":{secs:.3},\"peak_rss_bytes\":{}}}",
        log.size_bytes(),
        peak_rss_bytes()
    );
}

fn main() {
    let budget = env("STRATA_BENCH_BUDGET_BYTES", 128 << 20) as usize;
    if let Ok(dir) = std::env::var("STRATA_BENCH_COMPACT_DIR") {
        compact(Path::new(&dir), budget);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let keys = env("STRATA_BENCH_KEYS", 10_000_000);
    let rounds = env("STRATA_BENCH_ROUNDS", 2);
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("log");
    eprintln!("writing {keys} keys x {rounds} rounds ...");
    let written = Instant::now();
    let input = write_log(&dir, keys, rounds);
    eprintln!(
        "wrote {:.0} MB in {:.1}s; measuring the read baseline ...",
        input as f64 / 1e6,
        written.elapsed().as_secs_f64()
    );
    let baseline = baseline_read(&dir);
    eprintln!("baseline {baseline:.0} MB/s; compacting in a child process ...");
    let output = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env("STRATA_BENCH_COMPACT_DIR", &dir)
        .output()
        .expect("child");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let child = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let field = |name: &str| -> f64 {
        child
            .split(&format!("\"{name}\":"))
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let throughput = field("input_bytes") / 1e6 / field("seconds");
    let map_bytes = KeyMap::capacity_for(budget) as f64 * keymap_bytes_per_key();
    println!(
        "{{\"keys\":{keys},\"rounds\":{rounds},\"budget_bytes\":{budget},\"baseline_read_mb_s\":{baseline:.1},\
         \"compaction_input_mb_s\":{throughput:.1},\"ratio_to_read\":{:.3},\"key_map_bytes_at_capacity\":{map_bytes:.0},\
         \"child\":{child}}}",
        throughput / baseline
    );
}

fn keymap_bytes_per_key() -> f64 {
    strata_compaction::keymap::BYTES_PER_BUCKET as f64 * 8.0 / 7.0
}
