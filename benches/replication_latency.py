#!/usr/bin/env python3
"""Produce latency with replication (issue: clusters).

In one run, on this machine's loopback, with the real `strata` binary:
  1. three brokers on a private etcd (Debian's etcd-server), a topic with RF=3 and
     min.insync.replicas=2, producers with acks=all;
  2. one broker on the embedded store, a topic with RF=1, producers with acks=1 (the baseline);
and for each: the maximum produce rate (1 KiB messages, as fast as the client goes), then
acknowledgement latency percentiles (p50/p99/p99.9/max) at half that rate and at a fixed
5,000 messages/s. Before each latency phase the benchmark waits until the brokers have uploaded
the sealed segments the previous phase left (`strata_tiering_upload_lag_bytes` at 0; the wait
is reported as `uploads_drained_s`): a phase measures the steady state at its rate, uploads of
its own data included, not the catch-up after the maximum phase. Figures are printed
next to each other, with the ratio RF=3/acks=all over RF=1/acks=1 (the machine is shared and
noisy: only same-run ratios mean anything). The target of the clusters issue: p99 under 10 ms at
half of the maximum throughput. Needs a release build (`cargo build --release`).

    ~/.cache/strata-test-venv/bin/python benches/replication_latency.py [--seconds 10] [--binary PATH]
        [--load PATH/TO/strata-load]

With `--load`, the load comes from `strata-load` (librdkafka in Rust, not CPU-bound itself)
instead of the Python client.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from conftest import Broker, free_port  # noqa: E402
from test_tiering import metrics  # noqa: E402

VALUE = b"v" * 1024


def start_etcd(workdir: Path) -> tuple[subprocess.Popen, str]:
    client, peer = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{client}"
    proc = subprocess.Popen(
        ["etcd", "--data-dir", str(workdir / "etcd"), "--listen-client-urls", endpoint,
         "--advertise-client-urls", endpoint, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--heartbeat-interval", "10", "--election-timeout", "100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", client), timeout=0.2).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("etcd did not start")


def stop_cluster(brokers: list[Broker], etcd: subprocess.Popen | None) -> None:
    """Closes every broker, then stops etcd (if one was started)."""
    for b in brokers:
        b.close()
    if etcd:
        etcd.kill()
        etcd.wait()


TOPIC_CONFIG: dict[str, str] = {}


def create(bootstrap: str, topic: str, replication: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"min.insync.replicas": str(min(2, replication)), **TOPIC_CONFIG}
    admin.create_topics([NewTopic(topic, 1, replication, config=config)])[topic].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        p = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
        if p.leader >= 0 and len(p.isrs) == replication:
            return
        time.sleep(0.2)
    raise SystemExit(f"{topic} never got {replication} in-sync replicas")


def producer(bootstrap: str, acks: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 1,
                     "enable.idempotence": False, "compression.type": "none"})


def max_rate(bootstrap: str, topic: str, acks: str, seconds: float) -> float:
    """Messages per second with an unbounded backlog."""
    p = producer(bootstrap, acks)
    done = [0]

    def cb(err, _msg):
        if err is None:
            done[0] += 1

    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            p.produce(topic, VALUE, partition=0, on_delivery=cb)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    p.flush(60)
    return done[0] / (time.monotonic() - start)


def latencies(bootstrap: str, topic: str, acks: str, rate: float, seconds: float) -> dict:
    """Acknowledgement latency percentiles (ms) at a fixed rate."""
    p = producer(bootstrap, acks)
    samples: list[float] = []
    failed = [0]

    def report(sent: float):
        def cb(err, _msg):
            if err is None:
                samples.append((time.perf_counter() - sent) * 1000)
            else:
                failed[0] += 1
        return cb

    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        due = start + n * interval
        if now < due:
            p.poll(min(due - now, 0.001))
            continue
        try:
            p.produce(topic, VALUE, partition=0, on_delivery=report(time.perf_counter()))
        except BufferError:
            # The client's queue is full: the broker is not keeping up with this rate.
            p.poll(0.001)
            continue
        n += 1
        p.poll(0)
    elapsed = time.perf_counter() - start
    p.flush(60)
    samples.sort()

    def pct(q: float) -> float:
        return round(samples[min(len(samples) - 1, int(q * len(samples)))], 3)

    return {"target_rate": round(rate), "achieved_rate": round(n / elapsed), "acked": len(samples), "failed": failed[0], "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": round(samples[-1], 3)}


LOAD: str | None = None


def load_run(bootstrap: str, topic: str, acks: str, seconds: float, rate: float) -> dict:
    """One `strata-load produce` run; its JSON summary."""
    run = subprocess.run(
        [LOAD, "produce", "--bootstrap", bootstrap, "--topic", topic, "--acks", acks,
         "--message-bytes", str(len(VALUE)), "--duration-s", str(seconds), "--rate", str(rate),
         "--producer-config", "linger.ms=1", "--producer-config", "enable.idempotence=false",
         "--no-progress"], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"strata-load failed ({run.returncode}): {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def load_latencies(bootstrap: str, topic: str, acks: str, rate: float, seconds: float) -> dict:
    s = load_run(bootstrap, topic, acks, seconds, rate)
    lat = s["produce_ack_ms"]
    # The producer's first message is sent alone, before the paced stream: its latency is the
    # client's start (connections and metadata), reported as connect_ms and not in the percentiles.
    return {"target_rate": round(rate), "achieved_rate": round(s["produced"]["msgs_per_s"]),
            "acked": s["produced"]["messages"], "failed": s["errors"], "p50_ms": lat["p50"],
            "p99_ms": lat["p99"], "p999_ms": lat["p999"], "max_ms": lat["max"],
            "connect_ms": (s.get("produce_connect_ms") or {}).get("max")}


def drain_uploads(brokers: list[Broker], timeout: float = 300) -> float:
    """Waits until no broker has sealed segments left to upload; the seconds it took. The lag is
    set at the start of each offload pass, so a segment sealed during a long pass shows only at
    the next one: it must read 0 for 2.5 s running (a pass starts every second by default)."""
    start = time.monotonic()
    zero_since = None
    while time.monotonic() - start < timeout:
        if all(metrics(b).get("strata_tiering_upload_lag_bytes", 0) == 0 for b in brokers):
            zero_since = zero_since or time.monotonic()
            if time.monotonic() - zero_since >= 2.5:
                return round(zero_since - start, 1)
        else:
            zero_since = None
        time.sleep(0.5)
    raise SystemExit(f"uploads still behind after {timeout} s")


def measure(brokers: list[Broker], topic: str, acks: str, seconds: float) -> dict:
    bootstrap = ",".join(b.bootstrap for b in brokers)

    def at(rate: float) -> dict:
        drained = drain_uploads(brokers)
        if LOAD:
            result = load_latencies(bootstrap, topic, acks, rate, seconds)
        else:
            result = latencies(bootstrap, topic, acks, rate, seconds)
        return {**result, "uploads_drained_s": drained}

    if LOAD:
        top = load_run(bootstrap, topic, acks, seconds, 0)["produced"]["msgs_per_s"]
        return {"client": "strata-load", "max_msgs_per_s": round(top),
                "max_mib_per_s": round(top * len(VALUE) / (1 << 20), 1),
                "at_half_max": at(top / 2), "at_5000_per_s": at(5000)}
    top = max_rate(bootstrap, topic, acks, seconds)
    return {"max_msgs_per_s": round(top), "max_mib_per_s": round(top * len(VALUE) / (1 << 20), 1),
            "at_half_max": at(top / 2), "at_5000_per_s": at(5000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "strata"))
    parser.add_argument("--load", help="strata-load binary: use it instead of the Python client")
    parser.add_argument("--topic-config", action="append", default=[], metavar="NAME=VALUE",
                        help="extra config of both topics, e.g. remote.storage.enable=false to "
                             "measure without offload")
    args = parser.parse_args()
    global LOAD
    LOAD = args.load
    TOPIC_CONFIG.update(kv.split("=", 1) for kv in args.topic_config)
    if not shutil.which("etcd"):
        raise SystemExit("etcd is missing: apt-get install etcd-server")
    work = Path(tempfile.mkdtemp(prefix="strata-repl-bench-"))
    etcd, endpoint = start_etcd(work)
    brokers: list[Broker] = []
    try:
        for i in (1, 2, 3):
            b = Broker(Path(args.binary), work / f"b{i}", name=f"b{i}", extra_args=[
                "--etcd", endpoint, "--cluster-name", "bench", "--broker-id", str(i),
                "--object-store", f"file://{work / 'objects'}"])
            brokers.append(b.start())
        create(",".join(b.bootstrap for b in brokers), "rf3", 3)
        replicated = measure(brokers, "rf3", "all", args.seconds)
        for b in brokers:
            b.stop()
        # The cluster's logs and bucket (~20 GB after its maximum phase) go before the single
        # broker writes as much again, so the run fits in ~20 GB of free disk, not ~40.
        for path in [work / f"b{i}" for i in (1, 2, 3)] + [work / "objects"]:
            shutil.rmtree(path, ignore_errors=True)
        single = Broker(Path(args.binary), work / "single", name="single").start()
        brokers.append(single)
        create(single.bootstrap, "rf1", 1)
        baseline = measure([single], "rf1", "1", args.seconds)
        summary = {
            "rf3_acks_all": replicated,
            "rf1_acks_1": baseline,
            "throughput_ratio": round(replicated["max_msgs_per_s"] / baseline["max_msgs_per_s"], 2),
            "p99_ratio_at_half_max": round(replicated["at_half_max"]["p99_ms"] / baseline["at_half_max"]["p99_ms"], 2),
            "p99_ratio_at_5000_per_s": round(
                replicated["at_5000_per_s"]["p99_ms"] / baseline["at_5000_per_s"]["p99_ms"], 2),
            "target_p99_under_10ms_met": replicated["at_half_max"]["p99_ms"] < 10,
        }
        print(json.dumps(summary, indent=2))
    finally:
        stop_cluster(brokers, etcd)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
