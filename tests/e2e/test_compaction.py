"""Compaction and retention with real clients: a compacted topic keeps exactly the latest value
per key (and forgets deleted keys once delete.retention.ms passed) on local disk and in the
bucket, __consumer_offsets is compacted and still restores commits, a broker killed while
compacting loses and duplicates nothing, and retention by time and size removes objects from the
S3 server and moves the log start offset that ListOffsets reports."""

from __future__ import annotations

import random
import shutil
import time

import pytest
from confluent_kafka import TopicPartition

import helpers as h
from conftest import S3_ENV, s3_broker_args
from test_tiering import metrics, wait_until

KEYS = 2_000
UPDATES = 200_000
DELETED = range(0, 100)

FAST_CLEANER = ["--log-cleaner-backoff-ms", "300", "--log-retention-check-interval-ms", "300",
                "--tiering-interval-ms", "200"]
COMPACTED = {"cleanup.policy": "compact", "segment.bytes": str(256 * 1024), "segment.ms": "2000",
             "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "3000"}


def updates(total: int = UPDATES):
    """`total` updates over KEYS keys, tombstones for the DELETED keys, then a few last updates
    (so the newest record is not a tombstone). Returns (messages, expected {key: value})."""
    messages = [(f"key-{i % KEYS}".encode(), f"value-{i}".encode()) for i in range(total)]
    messages += [(f"key-{k}".encode(), None) for k in DELETED]
    messages += [(f"key-{k}".encode(), f"last-{k}".encode()) for k in range(500, 510)]
    latest: dict[bytes, bytes | None] = {}
    for key, value in messages:
        latest[key] = value
    return messages, {k: v for k, v in latest.items() if v is not None}


def produce(bootstrap: str, topic: str, messages) -> None:
    p = h.producer(bootstrap, **{"linger.ms": 20, "batch.size": 256 * 1024, "compression.type": "lz4"})
    d = h.produce_all(p, topic, messages, partition=0, timeout=300)
    assert not d.failed, d.failed[:3]


def read_from_start(bootstrap: str, topic: str) -> list:
    return h.consume_partitions(bootstrap, topic, [0], timeout=120)[0]


def compacted(bootstrap: str, topic: str, expected: dict) -> bool:
    """Whether consuming from offset 0 yields exactly one record per live key, with its latest
    value, in offset order."""
    got = read_from_start(bootstrap, topic)
    h.assert_offsets_strictly_increase([m.offset for m in got], topic)
    return len(got) == len(expected) and all(expected.get(m.key) == m.value for m in got)


def wait_compacted(bootstrap: str, topic: str, expected: dict, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        got = read_from_start(bootstrap, topic)
        h.assert_offsets_strictly_increase([m.offset for m in got], topic)
        # Whatever the state of compaction, a reader never sees a value that is not the key's
        # latest at some point: every key it sees maps to a value that was produced for it.
        assert all(m.key.startswith(b"key-") for m in got)
        if len(got) == len(expected) and all(expected.get(m.key) == m.value for m in got):
            return
        last = len(got)
        time.sleep(1)
    raise AssertionError(f"{topic} not compacted after {timeout}s: {last} records, want {len(expected)}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("tier", ["local", "remote"])
def test_a_compacted_topic_keeps_the_latest_value_per_key(broker_factory, s3_server, topic_name, tier):
    args, env, config = list(FAST_CLEANER), None, {**COMPACTED, "remote.storage.enable": "false"}
    if tier == "remote":
        bucket = s3_server.new_bucket()
        args = s3_broker_args(s3_server, bucket, *args, "--remote-sweep-interval-ms", "1000",
                              "--remote-sweep-grace-ms", "2000")
        env = S3_ENV
        # Local disk keeps nothing once offloaded: every sealed offset is read from the bucket.
        config.update({"remote.storage.enable": "true", "local.retention.bytes": "0"})
    broker = broker_factory(extra_args=args, env=env)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, config)
    messages, expected = updates()
    produce(broker.bootstrap, topic, messages)
    wait_compacted(broker.bootstrap, topic, expected)
    m = metrics(broker)
    assert m.get(f'strata_compaction_removed_records_total{{tier="{tier}"}}', 0) >= UPDATES - KEYS
    if tier == "remote":
        segments = [o for o in s3_server.list(bucket, "cluster-a/") if o["Key"].endswith(".seg")]
        wait_until(lambda: len([o for o in s3_server.list(bucket, "cluster-a/") if o["Key"].endswith(".seg")])
                   <= 4, 60, f"the sweep to delete replaced segments ({len(segments)} objects)")
        # The compacted log survives a restart from the bucket alone.
        broker.stop()
        shutil.rmtree(broker.data_dir / "logs")
        shutil.rmtree(broker.data_dir / "cache", ignore_errors=True)
        broker.start()
        assert compacted(broker.bootstrap, topic, expected)
    else:
        broker.restart()
        assert compacted(broker.bootstrap, topic, expected)


@pytest.mark.timeout(600)
def test_consumer_offsets_are_compacted_and_still_restore_commits(broker_factory, topic_name):
    broker = broker_factory(extra_args=[*FAST_CLEANER, "--offsets-topic-num-partitions", "1",
                                        "--offsets-topic-segment-bytes", str(64 * 1024)])
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    c = h.consumer(broker.bootstrap, **{"group.id": "compacted-group"})
    try:
        for i in range(1, 3_001):
            c.commit(offsets=[TopicPartition(topic, 0, i)], asynchronous=False)
    finally:
        c.close()
    wait_until(lambda: metrics(broker).get('strata_compaction_removed_records_total{tier="local"}', 0) >= 2_000,
               120, "__consumer_offsets to be compacted")
    broker.restart()
    c = h.consumer(broker.bootstrap, **{"group.id": "compacted-group"})
    try:
        committed = c.committed([TopicPartition(topic, 0)], timeout=30)
        assert committed[0].offset == 3_000
    finally:
        c.close()


@pytest.mark.timeout(900)
def test_a_broker_killed_while_compacting_loses_and_duplicates_nothing(broker_factory, s3_server, topic_name):
    bucket = s3_server.new_bucket()
    # A slow cleaner makes passes long, so the kills land inside them.
    slow = s3_broker_args(s3_server, bucket, *FAST_CLEANER, "--log-cleaner-io-max-bytes-per-second",
                          str(2 << 20), "--remote-sweep-interval-ms", "1000", "--remote-sweep-grace-ms", "2000")
    broker = broker_factory(extra_args=slow, env=S3_ENV)
    local, remote = topic_name("local"), topic_name("remote")
    h.create_topic(broker.bootstrap, local, 1, {**COMPACTED, "remote.storage.enable": "false"})
    h.create_topic(broker.bootstrap, remote, 1, {**COMPACTED, "remote.storage.enable": "true",
                                                "local.retention.bytes": "0"})
    messages, expected = updates(100_000)
    produce(broker.bootstrap, local, messages)
    produce(broker.bootstrap, remote, messages)
    rng = random.Random(7)
    for _ in range(4):
        time.sleep(rng.uniform(1.0, 4.0))
        broker.kill9()
        broker.start()
        for topic in (local, remote):
            got = read_from_start(broker.bootstrap, topic)
            h.assert_offsets_strictly_increase([m.offset for m in got], topic)
            # Nothing is lost: every live key is there with its latest value (older values and
            # tombstones may remain until compaction finishes, never a value newer than the last).
            last = {m.key: m.value for m in got}
            assert {k: last.get(k) for k in expected} == expected, f"{topic} lost data"
            assert not list((broker.data_dir / "logs").rglob("cleaning/swap.json")), "a swap was left unfinished"
    # The last restart without the limit: compaction finishes from wherever the kills left it.
    broker.stop()
    i = broker.extra_args.index("--log-cleaner-io-max-bytes-per-second")
    del broker.extra_args[i:i + 2]
    broker.start()
    for topic in (local, remote):
        wait_compacted(broker.bootstrap, topic, expected)


@pytest.mark.timeout(600)
def test_retention_and_delete_records_remove_objects_from_the_bucket(broker_factory, s3_server, topic_name):
    bucket = s3_server.new_bucket()
    broker = broker_factory(extra_args=s3_broker_args(s3_server, bucket, *FAST_CLEANER), env=S3_ENV)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"remote.storage.enable": "true", "segment.bytes": str(64 * 1024),
                                                "local.retention.bytes": "0"})
    value = bytes(1000)
    # Small batches, so 64 KiB segments roll often.
    p = h.producer(broker.bootstrap, **{"linger.ms": 5, "batch.size": 16 * 1024, "compression.type": "none"})
    d = h.produce_all(p, topic, ((f"k{i}".encode(), value) for i in range(2_000)), partition=0)
    assert not d.failed

    def segment_objects() -> list[dict]:
        return [o for o in s3_server.list(bucket, "cluster-a/") if o["Key"].endswith(".seg")]

    def low_watermark() -> int:
        c = h.consumer(broker.bootstrap)
        try:
            return h.watermarks(c, topic, [0])[0][0]
        finally:
            c.close()

    wait_until(lambda: len(segment_objects()) >= 25, 60, "segments to be offloaded")
    before = len(segment_objects())

    # DeleteRecords moves the start in both tiers and deletes the objects below it.
    a = h.admin_client(broker.bootstrap)
    tp = TopicPartition(topic, 0, 500)
    assert a.delete_records([tp], request_timeout=30)[tp].result(30).low_watermark == 500
    assert low_watermark() == 500
    wait_until(lambda: len(segment_objects()) < before, 30, "DeleteRecords to delete objects")
    assert read_from_start(broker.bootstrap, topic)[0].offset == 500

    # retention.bytes: the bucket keeps about that much.
    from confluent_kafka.admin import ConfigResource, ResourceType
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={
        "remote.storage.enable": "true", "segment.bytes": str(64 * 1024), "local.retention.bytes": "0",
        "retention.bytes": str(400 * 1024)})
    a.alter_configs([res])[res].result(30)
    wait_until(lambda: sum(o["Size"] for o in segment_objects()) <= 600 * 1024, 60,
               "size retention to delete objects from the bucket")
    low = low_watermark()
    assert low > 500
    got = read_from_start(broker.bootstrap, topic)
    assert got[0].offset == low and got[-1].offset == 1_999

    # retention.ms: every sealed segment has expired, in the bucket and locally; the log start
    # reaches the active segment (which, as in Kafka's tiered storage, is never deleted).
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={
        "remote.storage.enable": "true", "segment.bytes": str(64 * 1024), "local.retention.bytes": "0",
        "retention.ms": "1000"})
    a.alter_configs([res])[res].result(30)
    wait_until(lambda: not segment_objects(), 60, "time retention to empty the bucket of segments")
    active_base = max(int(f.stem) for f in (broker.data_dir / "logs").rglob("*.log"))
    assert active_base > low
    wait_until(lambda: low_watermark() == active_base, 30, "the log start to reach the active segment")
    assert read_from_start(broker.bootstrap, topic)[0].offset == active_base
    m = metrics(broker)
    assert m.get('strata_retention_overdue_ms', 0) == 0
