#!/usr/bin/env python3
"""Where a produce tail comes from: a timeline of slow produce requests (issue: clusters).

Runs `strata-load produce` at a fixed rate against three brokers on a private etcd (or one
broker with `--replicas 1`) and samples, every quarter second, what else happens on the machine:
each broker's produce requests in that interval by duration (from its
`strata_request_duration_seconds` histogram: all / over 12.8 ms / over 51.2 ms), segment files
per broker (a roll), objects in the `file://` bucket (an upload: the staged object appears when
it starts, the manifest when it ends), and the kernel's dirty and writeback memory. With
`--write-gib N`, a `nice -n 19 dd` writes N GiB to a new file in the middle of the run: the
same burst of new page-cache pages an upload to a `file://` bucket makes, without the broker.
Prints one line per sample, then the load tool's acknowledgement percentiles.

    ~/.cache/strata-test-venv/bin/python benches/produce_timeline.py [--rate 60000]
        [--seconds 30] [--replicas 3] [--topic-config remote.storage.enable=false]
        [--broker-arg=--upload-rate-limit-bytes=80000000] [--write-gib 1 --write-at 20]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import replication_latency as bench  # noqa: E402
from conftest import Broker  # noqa: E402
from suite import TARGET_DIR  # noqa: E402

PRODUCE_BUCKET = re.compile(
    r'strata_request_duration_seconds_bucket\{le="([^"]+)",api="Produce"\} (\d+)')


def produce_buckets(broker: Broker) -> dict[str, int]:
    """Cumulative produce request counts by histogram bound, from the broker's /metrics."""
    url = re.findall(r"metrics on (http://\S+/metrics)", broker.log_text())[-1]
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {m.group(1): int(m.group(2)) for m in PRODUCE_BUCKET.finditer(text)}


def meminfo_mib(*names: str) -> list[int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0]) // 1024
    return [values[n] for n in names]


def slow_counts(before: dict[str, int], after: dict[str, int]) -> str:
    """'all/over 12.8 ms/over 51.2 ms' produce requests between two scrapes; '-' if none led."""
    if not after:
        return "-"
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    over = [total - (after.get(le, 0) - before.get(le, 0)) for le in ("0.0128", "0.0512")]
    return f"{total}/{over[0]}/{over[1]}"


def write_burst(path: Path, gib: float, delay: float) -> None:
    time.sleep(delay)
    subprocess.run(["nice", "-n", "19", "dd", "if=/dev/zero", f"of={path}", "bs=8M",
                    f"count={int(gib * 128)}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"# dd wrote {gib} GiB", flush=True)
    path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=60_000, help="messages (1 KiB) per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--replicas", type=int, default=3, choices=(1, 3))
    parser.add_argument("--topic-config", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--broker-arg", action="append", default=[], metavar="ARG")
    parser.add_argument("--write-gib", type=float, default=0, help="GiB dd writes mid-run")
    parser.add_argument("--write-at", type=float, default=20, help="seconds into the load")
    parser.add_argument("--binary", default=str(TARGET_DIR / "release" / "strata"))
    parser.add_argument("--load", default=str(TARGET_DIR / "release" / "strata-load"))
    args = parser.parse_args()
    bench.TOPIC_CONFIG.update(kv.split("=", 1) for kv in args.topic_config)
    work = Path(tempfile.mkdtemp(prefix="strata-timeline-"))
    etcd, endpoint = bench.start_etcd(work) if args.replicas > 1 else (None, "")
    brokers: list[Broker] = []
    try:
        for i in range(1, args.replicas + 1):
            extra = ["--object-store", f"file://{work / 'objects'}", *args.broker_arg]
            if etcd:
                extra = ["--etcd", endpoint, "--cluster-name", "timeline", "--broker-id", str(i),
                         *extra]
            brokers.append(Broker(Path(args.binary), work / f"b{i}", name=f"b{i}",
                                  extra_args=extra).start())
        bootstrap = ",".join(b.bootstrap for b in brokers)
        bench.create(bootstrap, "timeline", args.replicas)
        acks = "all" if args.replicas > 1 else "1"
        load = subprocess.Popen(
            [args.load, "produce", "--bootstrap", bootstrap, "--topic", "timeline", "--acks", acks,
             "--message-bytes", "1024", "--duration-s", str(args.seconds), "--rate",
             str(args.rate), "--producer-config", "linger.ms=1", "--producer-config",
             "enable.idempotence=false", "--no-progress"], stdout=subprocess.PIPE, text=True)
        if args.write_gib:
            threading.Thread(target=write_burst, daemon=True,
                             args=(work / "burst", args.write_gib, args.write_at)).start()
        print("# seconds dirty_mib writeback_mib segments_per_broker bucket_objects "
              "produce_requests(all/>12.8ms/>51.2ms per broker)")
        before = [produce_buckets(b) for b in brokers]
        start = time.monotonic()
        while load.poll() is None:
            time.sleep(0.25)
            after = [produce_buckets(b) for b in brokers]
            dirty, writeback = meminfo_mib("Dirty", "Writeback")
            segments = [len(list(b.data_dir.rglob("*.log"))) for b in brokers]
            bucket = work / "objects"
            objects = sum(1 for p in bucket.rglob("*") if p.is_file()) if bucket.exists() else 0
            slow = [slow_counts(b, a) for b, a in zip(before, after)]
            before = after
            print(f"{time.monotonic() - start:6.2f} {dirty:5d} {writeback:4d} {segments} "
                  f"{objects:3d} {' '.join(slow)}", flush=True)
        summary = json.loads(load.stdout.read().strip().splitlines()[-1])
        print(json.dumps({"produce_ack_ms": summary["produce_ack_ms"]}))
    finally:
        bench.stop_cluster(brokers, etcd)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
