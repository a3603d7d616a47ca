"""Idempotent producers: everything delivered exactly once, no gaps; and the
broker's sequence-number checks, exercised directly with raw Produce v3."""

from __future__ import annotations

from collections import Counter

import pytest

import helpers as h
import kafka_wire as w


@pytest.mark.timeout(300)
def test_idempotent_producer_exactly_once(broker, topic_name):
    n = 50_000
    parts = 3
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, parts)
    errors: list = []
    p = h.producer(broker.bootstrap, errors, **{
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 2,
        "batch.num.messages": 500,  # many small batches -> many in flight
    })
    d = h.produce_all(p, topic, ((f"k{i % 97}".encode(), f"m{i}".encode()) for i in range(n)), timeout=240)
    assert not d.failed, d.failed[:5]
    assert not [e for e in errors if e.fatal()], errors

    got = h.consume_partitions(broker.bootstrap, topic, range(parts), timeout=240, expect_total=n)
    values = [m.value for msgs in got.values() for m in msgs]
    dupes = [v for v, c in Counter(values).items() if c > 1]
    assert not dupes, f"{len(dupes)} duplicated values, e.g. {dupes[:5]}"
    assert set(values) == {f"m{i}".encode() for i in range(n)}
    for part, msgs in got.items():
        # No gaps: offsets are exactly 0..count-1.
        assert [m.offset for m in msgs] == list(range(len(msgs))), f"gap in partition {part}"
        # Per-partition order is production order.
        seqs = [int(m.value[1:]) for m in msgs]
        assert seqs == sorted(seqs), f"partition {part} out of order"
    # Delivery reports agree with what is stored.
    stored = {(m.partition, m.offset): m.value for msgs in got.values() for m in msgs}
    for _seq, part, off, _k, v in d.ok:
        assert stored[(part, off)] == v


def test_kafka_python_idempotent_producer(broker, topic_name):
    from kafka import KafkaProducer

    n = 5000
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 2)
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all", linger_ms=2)
    try:
        fs = [prod.send(topic, key=f"k{i % 5}".encode(), value=f"m{i}".encode()) for i in range(n)]
        prod.flush(timeout=120)
        mds = [f.get(timeout=30) for f in fs]
    finally:
        prod.close(timeout=30)
    assert len({(m.partition, m.offset) for m in mds}) == n
    got = h.consume_partitions(broker.bootstrap, topic, range(2), expect_total=n)
    values = [m.value for msgs in got.values() for m in msgs]
    assert sorted(values) == sorted(f"m{i}".encode() for i in range(n))


@pytest.fixture
def raw_topic(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    return topic


def test_raw_sequence_dedup(broker, raw_topic):
    with w.Conn(broker.port) as conn:
        apis = w.api_versions(conn)
        assert w.INIT_PRODUCER_ID in apis, "InitProducerId not advertised"
        err, pid, epoch = w.init_producer_id_v0(conn)
        assert err == 0 and pid >= 0 and epoch >= 0, (err, pid, epoch)

        def send(seq, n=5, tag="a"):
            batch = w.record_batch([(None, f"{tag}{seq + i}".encode()) for i in range(n)],
                                   producer_id=pid, producer_epoch=epoch, base_sequence=seq)
            return w.produce(conn, raw_topic, 0, batch)

        r1 = send(0)
        assert (r1.error, r1.base_offset) == (0, 0)
        # Exact retry of the last batch: acknowledged again at the same offset, not re-appended.
        r2 = send(0)
        assert r2.error in (0, w.DUPLICATE_SEQUENCE_NUMBER), r2
        if r2.error == 0:
            assert r2.base_offset == 0, r2
        assert w.list_offsets_v1(conn, raw_topic, 0, w.LATEST)[2] == 5

        r3 = send(5)
        assert (r3.error, r3.base_offset) == (0, 5)
        # A gap in the sequence is refused and nothing is written.
        r4 = send(20)
        assert r4.error == w.OUT_OF_ORDER_SEQUENCE_NUMBER, r4
        assert w.list_offsets_v1(conn, raw_topic, 0, w.LATEST)[2] == 10
        # An older (already acknowledged) batch that is still cached is a duplicate.
        r5 = send(0)
        assert r5.error in (0, w.DUPLICATE_SEQUENCE_NUMBER), r5
        if r5.error == 0:
            assert r5.base_offset == 0
        r6 = send(10)
        assert (r6.error, r6.base_offset) == (0, 10)
        assert w.list_offsets_v1(conn, raw_topic, 0, w.LATEST)[2] == 15

        # A second producer id gets its own sequence space.
        err, pid2, epoch2 = w.init_producer_id_v0(conn)
        assert err == 0 and pid2 != pid
        batch = w.record_batch([(None, b"other")], producer_id=pid2, producer_epoch=epoch2, base_sequence=0)
        r7 = w.produce(conn, raw_topic, 0, batch)
        assert (r7.error, r7.base_offset) == (0, 15)

    got = h.consume_partitions(broker.bootstrap, raw_topic, [0])
    assert [m.value for m in got[0]] == [f"a{i}".encode() for i in range(15)] + [b"other"]
