#!/usr/bin/env python3
"""Replay-from-the-bucket benchmark (issue: tiered storage).

In one run, against a moto S3 server on loopback and the real `strata` binary:
  1. the S3 server's raw GET throughput for an object the size of a segment: whole (curl), and
     as sequential ranged GETs of the cache's chunk size (moto's ranged GET costs time in
     proportion to the whole object, so this is far below the whole-object rate),
  2. produce --mib MiB to a tiered topic and wait until every segment is in the bucket,
  3. cold replay: a broker with an empty log directory and an empty cache consumes from offset 0,
  4. warm replay: the same consumption again, served from the chunk cache (then once more with a
     confluent-kafka consumer in Python that checks the last value: what a Python client sees),
  5. local replay: the same data in a topic without remote storage, evicted from the page cache
     first (local disk), and again from the page cache (the most this machine's broker and client
     move with no object store at all: a ceiling for any replay here),
and object-store requests per GiB written and read, and the CPU each process spent per GiB in the
raw GET, the cold replay and the page-cache replay (`cpu_core_s_per_gib`: S3 server, broker,
client; from /proc and the children's rusage), with what that CPU allows on this machine's cores
(`cpu_bound_cold_mib_s`). Replays use strata-load (librdkafka), so they
measure the broker rather than a Python client. Figures are ratios against the baselines of the
same run (the machine is shared and noisy). Needs release builds of both binaries.

    cargo build --release && cargo build --release -p strata-load
    ~/.cache/strata-test-venv/bin/python benches/tiering_replay.py [--mib 512] [--segment-mib 256]
        [--chunk-mib 4] [--read-ahead 4] [--cache-memory-mib 512] [--binary PATH] [--load PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import urllib3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers as h  # noqa: E402
from suite import TARGET_DIR, Load, drop_from_page_cache, new_log_dir  # noqa: E402
from conftest import S3_ENV, Broker, S3Server, s3_broker_args  # noqa: E402
from test_tiering import VALUE_BYTES, metrics, remote_end, value  # noqa: E402

MIB = 1 << 20


def process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of a running process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this script's finished children (curl, strata-load)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds spent by the S3 server, the broker (if running) and the clients between
    `start` and `per_gib`."""

    def __init__(self, server_pid: int, broker_pid: int | None = None):
        self.pids = {"s3_server": server_pid, "broker": broker_pid}
        self.before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: process_cpu_s(pid) for name, pid in self.pids.items() if pid}
        now["client"] = children_cpu_s()
        return now

    def start(self) -> "CpuMeter":
        self.before = self._now()
        return self

    def per_gib(self, gib: float) -> dict[str, float]:
        return {name: round((v - self.before[name]) / gib, 2) for name, v in self._now().items()}


def produce(bootstrap: str, topic: str, count: int) -> None:
    p = h.producer(bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000, "compression.type": "none"})
    d = h.produce_all(p, topic, ((f"k{i}".encode(), value(i)) for i in range(count)), partition=0, timeout=600)
    assert not d.failed


def replay(load: Load, bootstrap: str, topic: str, count: int) -> float:
    """Consumes every message from offset 0 with strata-load; returns MiB/s of messages."""
    consumed = load("consume", bootstrap, topic, "--from", "beginning", "--messages", str(count))["consumed"]
    assert consumed["messages"] >= count, consumed
    return consumed["bytes"] / MIB / consumed["seconds"]


def replay_python(bootstrap: str, topic: str, count: int) -> float:
    """Consumes every message from offset 0 with confluent-kafka, checking the last value;
    returns MiB/s of values."""
    start = time.monotonic()
    got = h.consume_partitions(bootstrap, topic, [0], timeout=600, expect_total=count,
                               **{"fetch.max.bytes": 64 * MIB, "max.partition.fetch.bytes": 16 * MIB,
                                  "queued.max.messages.kbytes": 262144})[0]
    elapsed = time.monotonic() - start
    assert len(got) == count and got[-1].value == value(count - 1)
    return count * VALUE_BYTES / MIB / elapsed


def raw_get(s3: S3Server, bucket: str, object_mib: int, chunk_mib: int) -> tuple[float, float, dict]:
    """The S3 server's own GET rate, in MiB/s, for an object the size of a segment: whole (curl),
    and as sequential ranged GETs of the cache's chunk size on one keep-alive connection, the
    access pattern of a cold replay; and the CPU per GiB of the whole-object GETs."""
    key = "raw-get-probe"
    size = object_mib * MIB
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"\x5a" * size)
    url = s3.client().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)
    whole = []
    cpu = CpuMeter(s3.proc.pid).start()
    for _ in range(3):
        out = subprocess.run(["curl", "-sf", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", url],
                             capture_output=True, text=True, check=True)
        speed, got = out.stdout.split()
        assert int(got) == size, f"raw GET read {got} bytes"
        whole.append(float(speed) / MIB)
    whole_cpu = cpu.per_gib(3 * size / (1 << 30))
    http = urllib3.PoolManager(maxsize=1)
    chunk = chunk_mib * MIB
    start = time.monotonic()
    for offset in range(0, size, chunk):
        r = http.request("GET", url, headers={"Range": f"bytes={offset}-{offset + chunk - 1}"})
        assert r.status == 206 and len(r.data) == min(chunk, size - offset), r.status
    ranged = size / MIB / (time.monotonic() - start)
    s3.client().delete_object(Bucket=bucket, Key=key)
    return max(whole), ranged, whole_cpu


def requests(m: dict, operation: str) -> float:
    return m.get(f'strata_object_store_requests_total{{operation="{operation}"}}', 0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512, help="data produced and replayed")
    parser.add_argument("--segment-mib", type=int, default=256, help="segment.bytes of the topics")
    parser.add_argument("--chunk-mib", type=int, default=4, help="the broker's --cache-chunk-bytes")
    parser.add_argument("--read-ahead", type=int, default=4, help="the broker's --remote-read-ahead-chunks")
    parser.add_argument("--cache-memory-mib", type=int, default=512, help="the broker's --cache-memory-bytes")
    parser.add_argument("--binary", default=str(TARGET_DIR / "release" / "strata"))
    parser.add_argument("--load", default=str(TARGET_DIR / "release" / "strata-load"))
    args = parser.parse_args()
    count = args.mib * MIB // VALUE_BYTES
    work = Path(tempfile.mkdtemp(prefix="strata-bench-"))
    load = Load(Path(args.load), work)
    s3 = S3Server(work)
    broker = None
    try:
        bucket = s3.new_bucket()
        raw, raw_ranged, raw_cpu = raw_get(s3, bucket, args.segment_mib, args.chunk_mib)
        gib = args.mib / 1024
        flags = s3_broker_args(s3, bucket, "--tiering-interval-ms", "200",
                               "--cache-chunk-bytes", str(args.chunk_mib * MIB),
                               "--remote-read-ahead-chunks", str(args.read_ahead),
                               "--cache-memory-bytes", str(args.cache_memory_mib * MIB), "--cache-disk-bytes", str(1024 * MIB))
        broker = Broker(Path(args.binary), work / "broker", extra_args=flags, env=S3_ENV).start()
        tiered, local = "tiered", "local"
        h.create_topic(broker.bootstrap, tiered, 1, {"segment.bytes": str(args.segment_mib * MIB), "segment.ms": "2000",
                                                     "local.retention.bytes": "0"})
        logs = broker.data_dir / "logs"
        before_local = {d.name for d in logs.iterdir()}
        h.create_topic(broker.bootstrap, local, 1, {"segment.bytes": str(args.segment_mib * MIB), "remote.storage.enable": "false"})
        local_dir = new_log_dir(logs, before_local)
        produce(broker.bootstrap, tiered, count)
        produce(broker.bootstrap, local, count)
        deadline = time.monotonic() + 600
        while remote_end(s3, bucket) < count:
            assert time.monotonic() < deadline, "offload did not finish"
            time.sleep(0.5)
        written = metrics(broker)
        drop_from_page_cache(local_dir)
        local_rate = replay(load, broker.bootstrap, local, count)
        cpu = CpuMeter(s3.proc.pid, broker.pid).start()
        page_cache_rate = replay(load, broker.bootstrap, local, count)
        page_cache_cpu = cpu.per_gib(gib)

        broker.stop()
        shutil.rmtree(broker.data_dir / "cache", ignore_errors=True)
        # Wipe the tiered topic's local copy: its id is the one in the bucket's keys.
        tiered_id = next(o["Key"].split("/")[3] for o in s3.list(bucket, "cluster-a/") if o["Key"].endswith(".json"))
        shutil.rmtree(broker.data_dir / "logs" / tiered_id)
        broker.start()
        before = metrics(broker)
        cpu = CpuMeter(s3.proc.pid, broker.pid).start()
        cold = replay(load, broker.bootstrap, tiered, count)
        cold_cpu = cpu.per_gib(gib)
        after_cold = metrics(broker)
        warm = replay(load, broker.bootstrap, tiered, count)
        after_warm = metrics(broker)
        warm_python = replay_python(broker.bootstrap, tiered, count)
        cold_core_s = sum(cold_cpu.values())
        result = {
            "mib": args.mib,
            "segment_mib": args.segment_mib,
            "chunk_mib": args.chunk_mib,
            "read_ahead_chunks": args.read_ahead,
            "cache_memory_mib": args.cache_memory_mib,
            "raw_get_mib_s": round(raw, 1),
            "raw_ranged_get_mib_s": round(raw_ranged, 1),
            "local_replay_mib_s": round(local_rate, 1),
            "local_page_cache_replay_mib_s": round(page_cache_rate, 1),
            "cold_replay_mib_s": round(cold, 1),
            "warm_replay_mib_s": round(warm, 1),
            "warm_replay_python_mib_s": round(warm_python, 1),
            "cold_vs_raw_get": round(cold / raw, 2),
            "cold_vs_raw_ranged_get": round(cold / raw_ranged, 2),
            "cold_vs_page_cache_replay": round(cold / page_cache_rate, 2),
            "page_cache_replay_vs_raw_get": round(page_cache_rate / raw, 2),
            "warm_vs_local": round(warm / local_rate, 2),
            "put_class_requests_per_gib_written": round(requests(written, "PUT") / gib, 1),
            "get_requests_per_gib_read_cold": round((requests(after_cold, "GET") - requests(before, "GET")) / gib, 1),
            "get_requests_per_gib_read_warm": round((requests(after_warm, "GET") - requests(after_cold, "GET")) / gib, 1),
            "list_requests": requests(after_cold, "LIST") + requests(written, "LIST"),
            "cpu_core_s_per_gib": {"raw_get": raw_cpu, "cold_replay": cold_cpu,
                                   "page_cache_replay": page_cache_cpu},
            # What the cold replay's CPU per GiB allows if every core did nothing else.
            "cpu_bound_cold_mib_s": round(os.cpu_count() * 1024 / cold_core_s, 1) if cold_core_s else None,
        }
        print(json.dumps(result, indent=2))
    finally:
        if broker:
            broker.close()
        s3.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
