#!/usr/bin/env python3
"""The standard benchmark suite (issue 7), with this machine's limits measured in the same run.

Limits (benches/suite_limits.py): sequential O_DIRECT disk write and read of the disk holding the
brokers' data directories (dd), loopback TCP bandwidth (two Python processes), and the S3
server's raw whole-object PUT and GET rates (moto_server on loopback, boto3, 64 MiB objects).

Scenarios, all driven by `strata-load` (librdkafka) against the release `strata` binary:
  1. produce, one broker, 1 KiB messages, lz4, acks=1: MB/s vs the disk write limit
     (or loopback if lower);
  2. produce, acks=all, RF=3 (min.insync.replicas=2) on three brokers on a private etcd: MB/s
     and ack latency;
  3. tail consume (the e2e workload: consumers at the log end while producers run): consumed MB/s
     vs loopback;
  4. catch-up consume from the log start: a local-only topic (local disk), then a tiered topic
     (local.retention.bytes=0) on the moto S3 server read cold (broker restarted with its chunk
     cache and the topic's local log wiped) and warm (read again): MB/s vs the S3 GET and disk
     read limits;
  5. latency at 5,000 messages/s, one broker, acks=1: produce-ack and end-to-end percentiles
     (target: p99 produce-ack under 5 ms);
and the broker's resident memory (VmRSS) idle after start and after each scenario (target: an
idle broker under 50 MiB plus its configured memory cache).

Prints a table (every figure next to its limit, as a ratio), writes suite.json and suite.png into
--out (default target/bench-suite). MB = 10^6 bytes, as strata-load reports. On the 2-core
machine of BENCHMARKS.md `--quick` takes ~1.5 minutes and the full run ~6.

    cargo build --release && cargo build --release -p strata-load
    ~/.cache/strata-test-venv/bin/python benches/suite.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import suite_limits  # noqa: E402
from replication_latency import start_etcd, stop_cluster  # noqa: E402
from conftest import S3_ENV, Broker, S3Server, free_port, s3_broker_args  # noqa: E402

MIB = 1 << 20
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", "/root/.cache/strata-target"))
CACHE_MEMORY = 64 * MIB
CACHE_DISK = 2048 * MIB
SEGMENT = 64 * MIB  # segment.bytes of the catch-up topics, and the size of the S3 probe objects
IDLE_BASE_MIB = 50

SIZES = {
    # name: (quick, full)
    "disk_probe_mib": (512, 2048),
    "loopback_seconds": (2.0, 3.0),
    "s3_probe_runs": (2, 3),
    "produce_messages": (1_000_000, 5_000_000),
    "cluster_messages": (400_000, 2_000_000),
    "tail_messages": (500_000, 3_000_000),
    "catchup_messages": (300_000, 1_000_000),
    "latency_seconds": (30, 180),
}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes and measurements
def rss_mib(pid: int) -> dict:
    """VmRSS and VmHWM of a process, MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def drop_from_page_cache(directory: Path) -> None:
    """Writes back and evicts `directory`'s files from the page cache (fsync, then
    POSIX_FADV_DONTNEED: needs no privileges), so the next read of them comes from the disk."""
    for dirpath, _dirs, files in os.walk(directory):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def new_log_dir(logs: Path, before: set[str]) -> Path:
    """The one directory under `logs` that is not in `before` (the topic created meanwhile)."""
    deadline = time.monotonic() + 10
    while True:
        new = {d.name for d in logs.iterdir()} - before if logs.exists() else set()
        if len(new) == 1:
            return logs / new.pop()
        if time.monotonic() > deadline:
            raise SystemExit(f"cannot tell the new topic's directory under {logs}: {new}")
        time.sleep(0.1)


def wait_for(path: Path, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    said = False
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not found at {path}")
        if not said:
            log(f"waiting for {what} at {path} (build it with `cargo build --release"
                f"{' -p strata-load' if 'load' in what else ''}`)")
            said = True
        time.sleep(10)


class Load:
    """Runs strata-load and returns its JSON summary (the last line of its stdout)."""

    def __init__(self, binary: Path, logdir: Path):
        self.binary = binary
        self.logdir = logdir
        self.runs = 0

    def __call__(self, mode: str, bootstrap: str, topic: str, *args: str, timeout: float = 1800) -> dict:
        self.runs += 1
        cmd = [str(self.binary), mode, "--bootstrap", bootstrap, "--topic", topic, "--no-progress", *args]
        log(" ".join(cmd[1:]))
        err = self.logdir / f"load-{self.runs:02d}-{mode}-{topic}.stderr"
        with open(err, "wb") as e:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=e, timeout=timeout, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"strata-load failed ({out.returncode}): {' '.join(cmd)}\n{err.read_text()[-4000:]}")
        summary = json.loads(lines[-1])
        summary["command"] = cmd[1:]
        if summary.get("errors"):
            log(f"  strata-load reported {summary['errors']} errors (see {err})")
        return summary


def create_topic(bootstrap: str, topic: str, replication: int, config: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, replication, config=config)])[topic].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        p = admin.list_topics(topic, timeout=10).topics[topic].partitions.get(0)
        if p is not None and p.leader >= 0 and len(p.isrs) == replication:
            return
        time.sleep(0.2)
    raise SystemExit(f"{topic} never got {replication} in-sync replicas")


def remote_manifests(s3: S3Server, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list(bucket, "cluster-a/") if o["Key"].endswith(".json"))


def remote_end(s3: S3Server, bucket: str) -> int:
    """End offset of the newest manifest in the bucket (keys sort by version)."""
    manifests = remote_manifests(s3, bucket)
    if not manifests:
        return 0
    newest = max(manifests, key=lambda k: k.rsplit("/", 1)[1])
    segments = json.loads(s3.client().get_object(Bucket=bucket, Key=newest)["Body"].read())["segments"]
    return segments[-1]["next_offset"] if segments else 0


# ------------------------------------------------------------------ the machine
def machine(data_dir: Path) -> dict:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    fs = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(data_dir)],
                        capture_output=True, text=True).stdout.split()
    rotational = None
    if fs:
        dev = Path(fs[0]).name
        rot = Path(f"/sys/block/{dev}/queue/rotational")
        if rot.exists():
            rotational = rot.read_text().strip() == "1"
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "mem_total_mib": int(meminfo["MemTotal"].split()[0]) // 1024,
            "data_dir": str(data_dir), "disk_device": fs[0] if fs else None,
            "filesystem": fs[1] if len(fs) > 1 else None, "disk_rotational_flag": rotational,
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3]}


# ------------------------------------------------------------------ the suite
def broker_flags(s3: S3Server, bucket: str) -> list[str]:
    """The single broker: remote tier on the moto server but off by default (only the catch-up
    topic enables it), small caches."""
    return s3_broker_args(s3, bucket, "--remote-storage-enable", "false",
                          "--tiering-interval-ms", "200",
                          "--cache-memory-bytes", str(CACHE_MEMORY), "--cache-disk-bytes", str(CACHE_DISK))


def run_suite(args, out: Path, work: Path) -> dict:
    q = 0 if args.quick else 1
    size = {k: v[q] for k, v in SIZES.items()}
    strata = Path(args.binary)
    wait_for(strata, "the strata binary", args.wait_for_binaries)
    wait_for(Path(args.load), "the strata-load binary", args.wait_for_binaries)
    load = Load(Path(args.load), work)
    result: dict = {"mode": "quick" if args.quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "sizes": size, "broker_flags": {"cache_memory_bytes": CACHE_MEMORY,
                                                    "cache_disk_bytes": CACHE_DISK}}
    result["machine"] = machine(work)
    s3 = S3Server(work)
    brokers: list[Broker] = []
    etcd = None
    try:
        # ---------------------------------------------------------------- limits
        log(f"limit: disk ({size['disk_probe_mib']} MiB, dd) in {work}")
        limits = {"disk": suite_limits.disk(work, size["disk_probe_mib"])}
        log("limit: loopback TCP")
        limits["loopback"] = suite_limits.loopback(size["loopback_seconds"])
        log("limit: S3 server PUT/GET of 64 MiB objects")
        bucket = s3.new_bucket()
        limits["s3"] = suite_limits.s3(s3.client(), bucket, SEGMENT // MIB, size["s3_probe_runs"])
        result["limits"] = limits
        log(f"limits: {json.dumps({k: {m: v for m, v in d.items() if m.endswith('_s')} for k, d in limits.items()})}")

        # ---------------------------------------------------------------- one broker
        broker = Broker(strata, work / "single", name="single", extra_args=broker_flags(s3, bucket), env=S3_ENV)
        brokers.append(broker)
        broker.start()
        time.sleep(2)
        memory = {"idle": rss_mib(broker.pid)}
        scenarios: dict = {}
        bs = broker.bootstrap

        # 5 first, on a quiet machine (no dirty pages from the other scenarios being written back).
        log("scenario 5: latency at 5,000 msgs/s, acks=1")
        scenarios["latency_5000"] = load(
            "e2e", bs, "latency", "--rate", "5000", "--duration-s", str(size["latency_seconds"]),
            "--acks", "1", "--compression", "lz4", "--producer-config", "linger.ms=0")
        memory["after_latency_5000"] = rss_mib(broker.pid)

        log("scenario 1: produce, 1 KiB, lz4, acks=1")
        logs_before = du(broker.data_dir / "logs")
        scenarios["produce"] = load("produce", bs, "produce", "--messages", str(size["produce_messages"]),
                                    "--acks", "1", "--compression", "lz4")
        scenarios["produce"]["disk_bytes_written"] = du(broker.data_dir / "logs") - logs_before
        memory["after_produce"] = rss_mib(broker.pid)

        log("scenario 3: tail consume (e2e), no compression")
        scenarios["tail"] = load("e2e", bs, "tail", "--messages", str(size["tail_messages"]),
                                 "--acks", "1", "--compression", "none")
        memory["after_tail"] = rss_mib(broker.pid)

        log("scenario 4: catch-up consume (local, bucket cold, bucket warm)")
        n = size["catchup_messages"]
        logs = broker.data_dir / "logs"
        before = {d.name for d in logs.iterdir()}
        create_topic(bs, "catchup-local", 1, {"remote.storage.enable": "false", "segment.bytes": str(SEGMENT)})
        local_dir = new_log_dir(logs, before)
        create_topic(bs, "catchup-tiered", 1, {"remote.storage.enable": "true", "local.retention.bytes": "0",
                                               "segment.bytes": str(SEGMENT), "segment.ms": "2000"})
        fill = {}
        for topic in ("catchup-local", "catchup-tiered"):
            fill[topic] = load("produce", bs, topic, "--messages", str(n), "--acks", "1", "--compression", "none")
        start = time.monotonic()
        while remote_end(s3, bucket) < n:
            if time.monotonic() - start > 900:
                raise SystemExit("the tiered topic was not offloaded within 15 minutes")
            time.sleep(0.5)
        offload_s = time.monotonic() - start
        log(f"  offloaded {n} messages ({offload_s:.1f} s after the produce ended)")
        memory["after_catchup_fill"] = rss_mib(broker.pid)
        catchup = {"fill": fill, "offload_wait_s": round(offload_s, 1)}
        drop_from_page_cache(local_dir)
        catchup["local"] = load("consume", bs, "catchup-local", "--from", "beginning", "--messages", str(n))
        memory["after_catchup_local"] = rss_mib(broker.pid)
        catchup["local_page_cache"] = load("consume", bs, "catchup-local", "--from", "beginning",
                                           "--messages", str(n))
        broker.stop()
        shutil.rmtree(broker.data_dir / "cache", ignore_errors=True)
        tiered_ids = {k.split("/")[3] for k in remote_manifests(s3, bucket)}
        for tid in tiered_ids:
            shutil.rmtree(broker.data_dir / "logs" / tid, ignore_errors=True)
        broker.start()
        time.sleep(2)
        memory["idle_after_restart"] = rss_mib(broker.pid)
        catchup["cold"] = load("consume", bs, "catchup-tiered", "--from", "beginning", "--messages", str(n))
        memory["after_catchup_cold"] = rss_mib(broker.pid)
        catchup["warm"] = load("consume", bs, "catchup-tiered", "--from", "beginning", "--messages", str(n))
        memory["after_catchup_warm"] = rss_mib(broker.pid)
        scenarios["catchup"] = catchup
        broker.close()

        # ---------------------------------------------------------------- three brokers
        log("scenario 2: produce acks=all, RF=3, three brokers on etcd")
        etcd, endpoint = start_etcd(work)
        cluster = []
        for i in (1, 2, 3):
            b = Broker(strata, work / f"b{i}", name=f"b{i}", extra_args=[
                "--etcd", endpoint, "--cluster-name", "suite", "--broker-id", str(i),
                "--object-store", f"file://{work / 'objects'}",
                "--cache-memory-bytes", str(CACHE_MEMORY), "--cache-disk-bytes", str(CACHE_DISK)])
            brokers.append(b)
            cluster.append(b.start())
        time.sleep(2)
        memory["cluster_idle"] = {b.name: rss_mib(b.pid) for b in cluster}
        cbs = ",".join(b.bootstrap for b in cluster)
        create_topic(cbs, "rf3", 3, {"min.insync.replicas": "2"})
        before = sum(du(b.data_dir / "logs") for b in cluster)
        scenarios["replicated"] = load("produce", cbs, "rf3", "--messages", str(size["cluster_messages"]),
                                       "--acks", "all", "--replication-factor", "3", "--compression", "lz4")
        scenarios["replicated"]["disk_bytes_written"] = sum(du(b.data_dir / "logs") for b in cluster) - before
        memory["cluster_after_produce"] = {b.name: rss_mib(b.pid) for b in cluster}
        for b in cluster:
            b.close()
        result["scenarios"] = scenarios
        result["memory_mib"] = memory
    finally:
        stop_cluster(brokers, etcd)
        s3.close()
    return result


# ------------------------------------------------------------------ figures, ratios, targets
def figures(r: dict) -> list[dict]:
    """Every reported figure with its limit and ratio (one row of the table each)."""
    lim, sc, mem = r["limits"], r["scenarios"], r["memory_mib"]
    disk_w, disk_r = lim["disk"]["write_direct_mb_s"], lim["disk"]["read_direct_mb_s"]
    loop, s3_get = lim["loopback"]["mb_per_s"], lim["s3"]["get_mb_s"]
    rows: list[dict] = []

    def row(scenario, figure, value, unit, limit_name=None, limit=None, target=None, met=None, note=""):
        ratio = round(value / limit, 3) if limit else None
        rows.append({"scenario": scenario, "figure": figure, "value": round(value, 2), "unit": unit,
                     "limit": limit_name, "limit_value": limit, "ratio": ratio, "target": target,
                     "met": met, "note": note})

    p = sc["produce"]["produced"]
    w_name, w_lim = ("disk write, O_DIRECT", disk_w) if disk_w <= loop else ("loopback TCP", loop)
    row("1 produce lz4 acks=1", "produce", p["mb_per_s"], "MB/s", w_name, w_lim)
    row("1 produce lz4 acks=1", "bytes to disk (lz4 batches)",
        sc["produce"]["disk_bytes_written"] / 1e6 / p["seconds"], "MB/s", "disk write, O_DIRECT", disk_w)
    a = sc["produce"]["produce_ack_ms"]
    row("1 produce lz4 acks=1", "ack p99 (at max rate)", a["p99"], "ms")

    rp = sc["replicated"]["produced"]
    row("2 produce RF=3 acks=all", "produce", rp["mb_per_s"], "MB/s", "disk write, O_DIRECT / 3 replicas",
        round(disk_w / 3, 1))
    row("2 produce RF=3 acks=all", "produce", rp["mb_per_s"], "MB/s", "scenario 1 (RF=1, same run)", p["mb_per_s"])
    row("2 produce RF=3 acks=all", "bytes to disk, 3 replicas (lz4 batches)",
        sc["replicated"]["disk_bytes_written"] / 1e6 / rp["seconds"], "MB/s", "disk write, O_DIRECT", disk_w)
    ra = sc["replicated"]["produce_ack_ms"]
    row("2 produce RF=3 acks=all", "ack p50 (at max rate)", ra["p50"], "ms")
    row("2 produce RF=3 acks=all", "ack p99 (at max rate)", ra["p99"], "ms", "scenario 1 ack p99", a["p99"])

    t = sc["tail"]
    row("3 tail consume (e2e)", "consumed", t["consumed"]["mb_per_s"], "MB/s", "loopback TCP", loop)
    row("3 tail consume (e2e)", "produced meanwhile", t["produced"]["mb_per_s"], "MB/s", "loopback TCP", loop)
    row("3 tail consume (e2e)", "end-to-end p99", t["end_to_end_ms"]["p99"], "ms")

    c = sc["catchup"]
    local = c["local"]["consumed"]["mb_per_s"]
    row("4 catch-up consume", "local disk", local, "MB/s", "disk read, O_DIRECT", disk_r,
        note="evicted from the page cache first")
    row("4 catch-up consume", "local disk", local, "MB/s", "disk read, buffered, evicted", lim["disk"]["read_buffered_evicted_mb_s"])
    hot = c["local_page_cache"]["consumed"]["mb_per_s"]
    row("4 catch-up consume", "local, page cache", hot, "MB/s", "loopback TCP", loop, note="second read")
    row("4 catch-up consume", "bucket, cold", c["cold"]["consumed"]["mb_per_s"], "MB/s", "S3 GET (64 MiB objects)", s3_get)
    row("4 catch-up consume", "bucket, warm", c["warm"]["consumed"]["mb_per_s"], "MB/s", "local catch-up (same run)", local)
    row("4 catch-up consume", "bucket, warm", c["warm"]["consumed"]["mb_per_s"], "MB/s", "local from page cache", hot)
    row("4 catch-up consume", "bucket, warm", c["warm"]["consumed"]["mb_per_s"], "MB/s", "disk read, O_DIRECT", disk_r)

    lat = sc["latency_5000"]
    row("5 latency @5000/s", "achieved rate", lat["produced"]["msgs_per_s"], "msgs/s", "requested rate", 5000)
    for key, label in (("produce_ack_ms", "produce-ack"), ("end_to_end_ms", "end-to-end")):
        for pct in ("p50", "p99", "p999", "max"):
            target = met = None
            if key == "produce_ack_ms" and pct == "p99":
                target, met = "< 5 ms", lat[key][pct] < 5
            row("5 latency @5000/s", f"{label} {pct}", lat[key][pct], "ms", target=target, met=met)

    budget = IDLE_BASE_MIB + CACHE_MEMORY / MIB
    idle = mem["idle"]["VmRSS"]
    row("memory", "idle RSS after start", idle, "MiB", f"{IDLE_BASE_MIB} MiB + memory cache", budget,
        target=f"< {budget:g} MiB", met=idle < budget)
    row("memory", "idle RSS after start, vs 50 MiB alone", idle, "MiB", "50 MiB", IDLE_BASE_MIB,
        target="< 50 MiB", met=idle < IDLE_BASE_MIB)
    for key, value in mem.items():
        if key == "idle":
            continue
        if isinstance(value, dict) and "VmRSS" in value:
            row("memory", f"RSS {key.replace('_', ' ')}", value["VmRSS"], "MiB", f"{IDLE_BASE_MIB} MiB + memory cache",
                budget, note=f"peak {value.get('VmHWM')} MiB")
        else:
            for name, v in value.items():
                row("memory", f"RSS {key.replace('_', ' ')} {name}", v["VmRSS"], "MiB",
                    f"{IDLE_BASE_MIB} MiB + memory cache", budget, note=f"peak {v.get('VmHWM')} MiB")
    return rows


def table(rows: list[dict], r: dict) -> str:
    lim = r["limits"]
    head = [
        f"Machine: {r['machine']['nproc']} cores ({r['machine']['cpu']}), {r['machine']['mem_total_mib']} MiB RAM, "
        f"data on {r['machine']['disk_device']} ({r['machine']['filesystem']}); run: {r['mode']}",
        f"Limits: disk write O_DIRECT {lim['disk']['write_direct_mb_s']} MB/s (random bytes "
        f"{lim['disk']['write_direct_random_mb_s']}, buffered+fdatasync {lim['disk']['write_buffered_fdatasync_mb_s']}), "
        f"disk read O_DIRECT {lim['disk']['read_direct_mb_s']} MB/s (buffered, page cache evicted "
        f"{lim['disk']['read_buffered_evicted_mb_s']}), loopback TCP {lim['loopback']['mb_per_s']} MB/s, "
        f"S3 PUT {lim['s3']['put_mb_s']} MB/s, S3 GET {lim['s3']['get_mb_s']} MB/s (MB = 10^6 bytes)",
        "",
    ]
    cols = ["scenario", "figure", "value", "limit", "ratio", "target"]
    body = []
    for x in rows:
        lv = f"{x['limit']} = {x['limit_value']:g}" if x["limit"] else ""
        tgt = f"{x['target']}: {'met' if x['met'] else 'MISSED'}" if x["target"] else ""
        note = f" ({x['note']})" if x["note"] else ""
        body.append([x["scenario"], x["figure"] + note, f"{x['value']:g} {x['unit']}", lv,
                     "" if x["ratio"] is None else f"{x['ratio']:.2f}", tgt])
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    fmt = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join(head + [fmt(cols), "-+-".join("-" * w for w in widths)] + [fmt(b) for b in body])


def plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim, sc = r["limits"], r["scenarios"]
    c = sc["catchup"]
    bars = [
        ("1 produce\nlz4 acks=1", sc["produce"]["produced"]["mb_per_s"], "disk write", lim["disk"]["write_direct_mb_s"]),
        ("2 produce RF=3\nacks=all", sc["replicated"]["produced"]["mb_per_s"], "disk write / 3",
         lim["disk"]["write_direct_mb_s"] / 3),
        ("3 tail\nconsume", sc["tail"]["consumed"]["mb_per_s"], "loopback", lim["loopback"]["mb_per_s"]),
        ("4 catch-up\nlocal disk", c["local"]["consumed"]["mb_per_s"], "disk read", lim["disk"]["read_direct_mb_s"]),
        ("4 catch-up local\npage cache", c["local_page_cache"]["consumed"]["mb_per_s"], "loopback",
         lim["loopback"]["mb_per_s"]),
        ("4 catch-up\nbucket cold", c["cold"]["consumed"]["mb_per_s"], "S3 GET", lim["s3"]["get_mb_s"]),
        ("4 catch-up\nbucket warm", c["warm"]["consumed"]["mb_per_s"], "disk read", lim["disk"]["read_direct_mb_s"]),
    ]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 10))
    xs = range(len(bars))
    ax1.bar([x - 0.2 for x in xs], [b[3] for b in bars], width=0.4, color="#cccccc", label="machine limit")
    ax1.bar([x + 0.2 for x in xs], [b[1] for b in bars], width=0.4, color="#1f77b4", label="measured")
    for x, b in zip(xs, bars):
        ax1.text(x - 0.2, b[3], b[2], ha="center", va="bottom", fontsize=8, color="#555555")
        ax1.text(x + 0.2, b[1], f"{b[1]:.0f}\n({b[1] / b[3]:.2f}×)", ha="center", va="bottom", fontsize=8)
    ax1.set_xticks(list(xs), [b[0] for b in bars], fontsize=9)
    ax1.set_ylabel("MB/s (10^6 bytes)")
    ax1.set_title(f"Throughput vs this machine's limits ({r['mode']} run, {r['started']})")
    ax1.legend(loc="upper right")

    groups = [
        ("1 produce ack\n(max rate)", sc["produce"]["produce_ack_ms"]),
        ("2 RF=3 ack\n(max rate)", sc["replicated"]["produce_ack_ms"]),
        ("3 tail e2e\n(max rate)", sc["tail"]["end_to_end_ms"]),
        ("5 produce ack\n@5000/s", sc["latency_5000"]["produce_ack_ms"]),
        ("5 end-to-end\n@5000/s", sc["latency_5000"]["end_to_end_ms"]),
    ]
    pcts = [("p50", "#9ecae1"), ("p99", "#4292c6"), ("p999", "#08519c"), ("max", "#08306b")]
    width = 0.2
    for i, (pct, color) in enumerate(pcts):
        vals = [max(g[1][pct], 0.001) if g[1] else 0 for g in groups]
        pos = [x + (i - 1.5) * width for x in range(len(groups))]
        ax2.bar(pos, vals, width=width, color=color, label=pct.replace("p999", "p99.9"))
        for px, v in zip(pos, vals):
            ax2.text(px, v, f"{v:.0f}" if v >= 100 else f"{v:.3g}", ha="center", va="bottom", fontsize=7)
    ax2.axhline(5, color="red", linestyle="--", linewidth=1, label="target p99 produce-ack @5000/s: 5 ms")
    ax2.set_yscale("log")
    ax2.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=9)
    ax2.set_ylabel("ms (log scale)")
    ax2.set_title("Latency percentiles")
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: the whole run in a minute or two")
    parser.add_argument("--out", default=str(ROOT / "target" / "bench-suite"),
                        help="where suite.json and suite.png go; the brokers' data lives under it meanwhile "
                             "(so the disk measured is the data's disk)")
    parser.add_argument("--binary", default=str(TARGET_DIR / "release" / "strata"))
    parser.add_argument("--load", default=str(TARGET_DIR / "release" / "strata-load"))
    parser.add_argument("--wait-for-binaries", type=float, default=1800,
                        help="seconds to wait for missing binaries (another build may be finishing them)")
    parser.add_argument("--keep", action="store_true", help="keep the brokers' data and logs")
    args = parser.parse_args()
    if not shutil.which("etcd"):
        raise SystemExit("etcd is missing: apt-get install etcd-server")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=out))
    began = time.monotonic()
    ok = False
    try:
        result = run_suite(args, out, work)
        result["elapsed_s"] = round(time.monotonic() - began, 1)
        result["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        rows = figures(result)
        result["figures"] = rows
        (out / "suite.json").write_text(json.dumps(result, indent=2) + "\n")
        plot(result, out / "suite.png")
        print(table(rows, result))
        print(f"\nsuite.json: {out / 'suite.json'}\nsuite.png:  {out / 'suite.png'}\n"
              f"elapsed: {result['elapsed_s']:.0f} s ({result['mode']} run)")
        ok = True
    finally:
        if args.keep or not ok:
            print(f"work directory (data, logs): {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
