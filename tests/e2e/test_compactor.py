"""`strata compactor` processes next to a broker on the real etcd and the S3 server: two of them
split the partitions through etcd claims and never work on one partition at once; a compactor
frozen past its lease is fenced when it wakes; one killed in the middle of a pass leaves nothing
lost or duplicated, and the next pass completes the work."""

from __future__ import annotations

import re
import signal
import time
import uuid
from datetime import datetime

import pytest

import helpers as h
from conftest import S3_ENV, s3_broker_args
from test_compaction import FAST_CLEANER, COMPACTED, produce
from test_etcd import etcd  # noqa: F401  (a fixture)
from test_tiering import metrics, wait_until

PARTITIONS = 4
TIERED = {**COMPACTED, "remote.storage.enable": "true", "local.retention.bytes": "0"}


def updates(partition: int, total: int, keys: int = 500):
    """Updates of one partition, tombstones for its first 20 keys, then a last live update."""
    messages = [(f"p{partition}-key-{i % keys}".encode(), f"value-{i}".encode()) for i in range(total)]
    messages += [(f"p{partition}-key-{k}".encode(), None) for k in range(20)]
    messages.append((f"p{partition}-key-{keys - 1}".encode(), b"last"))
    latest: dict = {}
    for k, v in messages:
        latest[k] = v
    return messages, {k: v for k, v in latest.items() if v is not None}


def is_compacted(bootstrap: str, topic: str, partition: int, expected: dict) -> bool:
    got = h.consume_partitions(bootstrap, topic, [partition], timeout=120)[partition]
    h.assert_offsets_strictly_increase([m.offset for m in got], topic)
    return len(got) == len(expected) and all(expected.get(m.key) == m.value for m in got)


def holds_latest(bootstrap: str, topic: str, partition: int, expected: dict) -> None:
    """Nothing is lost whatever compaction's progress: each live key's last value is there."""
    got = h.consume_partitions(bootstrap, topic, [partition], timeout=120)[partition]
    h.assert_offsets_strictly_increase([m.offset for m in got], topic)
    last = {m.key: m.value for m in got}
    assert {k: last.get(k) for k in expected} == expected


class Cluster:
    def __init__(self, broker_factory, etcd, s3):
        self.factory = broker_factory
        self.s3 = s3
        self.bucket = s3.new_bucket()
        self.common = ["--etcd", etcd, "--cluster-name", f"e2e-{uuid.uuid4().hex[:8]}",
                       *s3_broker_args(s3, self.bucket)]
        self.broker = broker_factory(extra_args=[*self.common, *FAST_CLEANER, "--remote-compaction", "service"],
                                     env=S3_ENV)

    def compactor(self, name: str, *extra: str):
        c = self.factory(start=False, name=name, env=S3_ENV)
        c.command = lambda: [str(c.binary), "compactor", "--data-dir", str(c.data_dir),
                             "--metrics-listen", c.bootstrap, *self.common,
                             "--log-cleaner-backoff-ms", "300", "--broker-session-timeout-ms", "2000",
                             "--remote-sweep-interval-ms", "1000", "--remote-sweep-grace-ms", "3000", *extra]
        return c.start()


def claims(compactor) -> list[tuple[str, str, float]]:
    """(partition, claimed|releasing, time) from a compactor's log: "claimed" is logged once the
    claim is held, "releasing" before it is given up, so these spans lie inside the real ones."""
    out = []
    for line in compactor.log_text().splitlines():
        m = re.match(r"(\S+Z)\s+INFO .*: (claimed|releasing) partition=(\S+)", line)
        if m:
            t = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            out.append((m.group(3), m.group(2), t))
    return out


def intervals(compactor) -> dict[str, list[tuple[float, float]]]:
    spans: dict[str, list[tuple[float, float]]] = {}
    open_at: dict[str, float] = {}
    for partition, what, t in claims(compactor):
        if what == "claimed":
            open_at[partition] = t
        elif partition in open_at:
            spans.setdefault(partition, []).append((open_at.pop(partition), t))
    for partition, start in open_at.items():
        spans.setdefault(partition, []).append((start, float("inf")))
    return spans


@pytest.mark.timeout(600)
def test_two_compactors_split_the_partitions_and_never_share_one(broker_factory, etcd, s3_server,  # noqa: F811
                                                                 topic_name):
    cluster = Cluster(broker_factory, etcd, s3_server)
    topic = topic_name()
    h.create_topic(cluster.broker.bootstrap, topic, PARTITIONS, TIERED)
    expected = {}
    for p in range(PARTITIONS):
        messages, expected[p] = updates(p, 40_000)
        producer = h.producer(cluster.broker.bootstrap, **{"linger.ms": 20, "compression.type": "lz4"})
        d = h.produce_all(producer, topic, messages, partition=p, timeout=300)
        assert not d.failed
    a = cluster.compactor("compactor-a")
    b = cluster.compactor("compactor-b")
    for p in range(PARTITIONS):
        wait_until(lambda p=p: is_compacted(cluster.broker.bootstrap, topic, p, expected[p]), 180,
                   f"partition {p} to be compacted by the compactors")
    a_spans, b_spans = intervals(a), intervals(b)
    assert set(a_spans) | set(b_spans) >= {f"{topic}/{p}" for p in range(PARTITIONS)}
    for partition in set(a_spans) & set(b_spans):
        for s1, e1 in a_spans[partition]:
            for s2, e2 in b_spans[partition]:
                assert e1 <= s2 or e2 <= s1, f"{partition} held by both: {s1}-{e1} and {s2}-{e2}"
    removed = sum(metrics(c).get('strata_compaction_removed_records_total{tier="remote"}', 0) for c in (a, b))
    assert removed >= PARTITIONS * (40_000 - 500)
    assert metrics(cluster.broker).get('strata_compaction_passes_total{tier="remote"}', 0) == 0, \
        "brokers leave the bucket to the service"


@pytest.mark.timeout(600)
def test_a_frozen_compactor_is_fenced_and_a_killed_one_loses_nothing(broker_factory, etcd, s3_server,  # noqa: F811
                                                                     topic_name):
    cluster = Cluster(broker_factory, etcd, s3_server)
    topic = topic_name()
    h.create_topic(cluster.broker.bootstrap, topic, 1, TIERED)
    messages, expected = updates(0, 120_000, keys=1_000)
    produce(cluster.broker.bootstrap, topic, messages)
    wait_until(lambda: any(o["Key"].endswith(".seg") for o in s3_server.list(cluster.bucket, "cluster-a/")), 60,
               "segments in the bucket")
    time.sleep(3)  # everything sealed and offloaded (segment.ms is 2 s)

    # A slow compactor claims the partition and is frozen for longer than its 2 s lease.
    slow = cluster.compactor("compactor-slow", "--log-cleaner-io-max-bytes-per-second", str(256 * 1024))
    wait_until(lambda: any(w == "claimed" for _, w, _ in claims(slow)), 60, "the slow compactor to claim")
    time.sleep(0.5)
    slow.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(5)
        fast = cluster.compactor("compactor-fast")
        wait_until(lambda: is_compacted(cluster.broker.bootstrap, topic, 0, expected), 180,
                   "the second compactor to compact the partition")
    finally:
        woke_at = len(slow.log_text())
        slow.proc.send_signal(signal.SIGCONT)
    # Awake again, the slow one's pass fails: at its swap (the claim it held is gone, so the
    # transaction is refused), or before, reading a segment the other compactor replaced and swept.
    wait_until(lambda: "remote compaction failed" in slow.log_text()[woke_at:], 120,
               "the frozen compactor's pass to be refused")
    assert "the etcd lease expired; took a new one" in slow.log_text()
    assert is_compacted(cluster.broker.bootstrap, topic, 0, expected)
    slow.stop()
    fast.stop()

    # More updates, then a compactor killed in the middle of its pass.
    more, _ = updates(0, 60_000, keys=1_000)
    more = [(k, v + b"-2" if v else v) for k, v in more]
    produce(cluster.broker.bootstrap, topic, more)
    latest = dict(expected)
    for k, v in more:
        if v is None:
            latest.pop(k, None)
        else:
            latest[k] = v
    time.sleep(3)
    doomed = cluster.compactor("compactor-doomed", "--log-cleaner-io-max-bytes-per-second", str(256 * 1024))
    wait_until(lambda: any(w == "claimed" for _, w, _ in claims(doomed)), 60, "the doomed compactor to claim")
    time.sleep(1.5)
    doomed.kill9()
    holds_latest(cluster.broker.bootstrap, topic, 0, latest)
    after = cluster.compactor("compactor-after")
    wait_until(lambda: is_compacted(cluster.broker.bootstrap, topic, 0, latest), 180,
               "the next compactor to finish the work")
    # Replaced segments (and whatever the killed pass uploaded) are unreferenced; the sweep
    # removes them.
    wait_until(lambda: metrics(after).get("strata_remote_swept_objects_total", 0) > 0, 60,
               "the sweep to remove what the killed pass uploaded")
