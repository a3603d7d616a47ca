"""ListOffsets: by timestamp, earliest and latest, through confluent-kafka,
kafka-python and raw ListOffsets v1."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

import helpers as h
import kafka_wire as w

N = 50
STEP_MS = 1000


@pytest.fixture
def timed_topic(broker, topic_name):
    """A 2-partition topic; partition 0 holds N messages with timestamps
    t0, t0+1000, ...; partition 1 holds N/2 messages at t0+500+2000*i.
    Produced in several batches (linger 0, one flush per few messages) so the
    broker has to look inside batches and across them."""
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 2)
    t0 = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000  # an hour ago, whole second
    p = h.producer(broker.bootstrap, **{"linger.ms": 0})
    for start in range(0, N, 7):
        h.produce_all(p, topic, [(f"k{i}".encode(), f"v{i}".encode(), t0 + i * STEP_MS)
                                 for i in range(start, min(N, start + 7))], partition=0)
    h.produce_all(p, topic, [(b"p1", f"w{i}".encode(), t0 + 500 + 2 * STEP_MS * i) for i in range(N // 2)],
                  partition=1)
    return topic, t0


def test_consumed_timestamps_are_create_time(broker, timed_topic):
    topic, t0 = timed_topic
    got = h.consume_partitions(broker.bootstrap, topic, [0, 1])
    assert [m.timestamp for m in got[0]] == [t0 + i * STEP_MS for i in range(N)]
    assert [m.timestamp for m in got[1]] == [t0 + 500 + 2 * STEP_MS * i for i in range(N // 2)]


def test_confluent_offsets_for_times(broker, timed_topic):
    topic, t0 = timed_topic
    c = h.consumer(broker.bootstrap)
    try:
        cases = [
            (0, t0 - 10_000, 0),  # before everything -> first offset
            (0, t0, 0),  # exact match
            (0, t0 + 1, 1),  # just after -> next
            (0, t0 + 10 * STEP_MS, 10),
            (0, t0 + 10 * STEP_MS - 500, 10),
            (0, t0 + 21 * STEP_MS, 21),  # inside a later batch
            (0, t0 + (N - 1) * STEP_MS, N - 1),  # last message
            (0, t0 + N * STEP_MS, -1),  # after the last message -> -1 (end)
            (1, t0, 0),
            (1, t0 + 500 + 2 * STEP_MS * 3, 3),
            (1, t0 + 501 + 2 * STEP_MS * 3, 4),
            (1, t0 + 10 * N * STEP_MS, -1),
        ]
        # One partition per request: ListOffsets must not repeat a partition.
        for p, ts, want in cases:
            [r] = c.offsets_for_times([TopicPartition(topic, p, ts)], timeout=20)
            assert r.error is None, r
            assert r.offset == want, f"partition {p} ts {ts - t0:+} -> {r.offset}, want {want}"

        # Both partitions in one request.
        both = c.offsets_for_times([TopicPartition(topic, 0, t0 + 4 * STEP_MS),
                                    TopicPartition(topic, 1, t0 + 4 * STEP_MS)], timeout=20)
        assert sorted((r.partition, r.offset) for r in both) == [(0, 4), (1, 2)]

        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=20) == (0, N)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=20) == (0, N // 2)
    finally:
        c.close()


def test_confluent_admin_list_offsets(broker, timed_topic):
    topic, t0 = timed_topic
    a = h.admin_client(broker.bootstrap)
    specs = {
        TopicPartition(topic, 0): OffsetSpec.earliest(),
        TopicPartition(topic, 1): OffsetSpec.latest(),
    }
    res = {tp.partition: f.result(20) for tp, f in a.list_offsets(specs, request_timeout=20).items()}
    assert res[0].offset == 0
    assert res[1].offset == N // 2
    [f] = a.list_offsets({TopicPartition(topic, 0): OffsetSpec.for_timestamp(t0 + 5 * STEP_MS + 1)},
                         request_timeout=20).values()
    r = f.result(20)
    assert r.offset == 6
    assert r.timestamp == t0 + 6 * STEP_MS


def test_kafka_python_offsets(broker, timed_topic):
    from kafka import KafkaConsumer, TopicPartition as KTP

    topic, t0 = timed_topic
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp0, tp1 = KTP(topic, 0), KTP(topic, 1)
        assert c.beginning_offsets([tp0, tp1], timeout_ms=20000) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1], timeout_ms=20000) == {tp0: N, tp1: N // 2}
        res = c.offsets_for_times({tp0: t0 + 10 * STEP_MS - 1, tp1: t0 + 500}, timeout_ms=20000)
        assert res[tp0].offset == 10 and res[tp0].timestamp == t0 + 10 * STEP_MS
        assert res[tp1].offset == 0 and res[tp1].timestamp == t0 + 500
        res = c.offsets_for_times({tp0: t0 + N * STEP_MS}, timeout_ms=20000)
        assert res[tp0] is None  # nothing at or after that time
    finally:
        c.close()


def test_raw_list_offsets_v1(broker, timed_topic):
    topic, t0 = timed_topic
    with w.Conn(broker.port) as conn:
        assert w.list_offsets_v1(conn, topic, 0, w.EARLIEST)[::2] == (0, 0)
        assert w.list_offsets_v1(conn, topic, 0, w.LATEST)[::2] == (0, N)
        err, ts, off = w.list_offsets_v1(conn, topic, 0, t0 + 3 * STEP_MS - 1)
        assert (err, ts, off) == (0, t0 + 3 * STEP_MS, 3)
        err, ts, off = w.list_offsets_v1(conn, topic, 0, t0 + 10 * N * STEP_MS)
        assert err == 0 and off == -1
        err, _ts, _off = w.list_offsets_v1(conn, topic, 7, w.LATEST)
        assert err == 3, "partition 7 does not exist: UNKNOWN_TOPIC_OR_PARTITION"


def test_offsets_after_more_appends(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    c = h.consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=20) == (0, 0)
        p = h.producer(broker.bootstrap)
        for round_ in range(1, 4):
            h.produce_all(p, topic, [(None, b"x" * 10)] * 100)
            assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=20) == (0, 100 * round_)
    finally:
        c.close()
