"""Long-poll fetches: a fetch parked at the log end is woken by an append
instead of sleeping out its max wait, and an idle one does wait."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import OFFSET_END, TopicPartition

import helpers as h
import kafka_wire as w


def test_parked_consumer_woken_by_append(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    p = h.producer(broker.bootstrap, **{"linger.ms": 0})
    h.produce_all(p, topic, [(None, b"warm-up")])  # producer connected and ready

    c = h.consumer(broker.bootstrap, **{"fetch.wait.max.ms": 5000, "fetch.min.bytes": 1})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        # Let the consumer resolve OFFSET_END and park its first fetch.
        assert c.consume(num_messages=1, timeout=1.5) == []
        latencies = []
        for i, idle in enumerate((0.3, 1.7, 3.1)):
            # Idle for different lengths, so the append lands at different
            # points of the broker's 5 s wait.
            assert c.consume(num_messages=1, timeout=idle) == []
            t0 = time.monotonic()
            p.produce(topic, value=f"msg-{i}".encode())
            p.poll(0)
            got = []
            while not got and time.monotonic() - t0 < 10:
                got = c.consume(num_messages=1, timeout=0.05)
            dt = time.monotonic() - t0
            assert got, f"message {i} not received within 10 s"
            assert got[0].error() is None, got[0].error()
            assert got[0].value() == f"msg-{i}".encode()
            latencies.append(dt)
        assert max(latencies) < 2.0, f"produce->consume latencies {latencies}: fetch not woken by the append"
        p.flush(10)
    finally:
        c.close()


@pytest.mark.parametrize("min_bytes", [1, 1_000_000], ids=["min1", "min1MB"])
def test_consumer_with_large_fetch_min_bytes_gets_message(broker, topic_name, min_bytes):
    """fetch.wait.max.ms bounds the wait even when fetch.min.bytes is never
    reached: the message arrives within the max wait (plus slack)."""
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    c = h.consumer(broker.bootstrap, **{"fetch.wait.max.ms": 1000, "fetch.min.bytes": min_bytes})
    p = h.producer(broker.bootstrap, **{"linger.ms": 0})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        assert c.consume(num_messages=1, timeout=1.5) == []
        t0 = time.monotonic()
        h.produce_all(p, topic, [(None, b"hello")])
        got = []
        while not got and time.monotonic() - t0 < 10:
            got = c.consume(num_messages=1, timeout=0.1)
        dt = time.monotonic() - t0
        assert got and got[0].value() == b"hello", "message not received"
        assert dt < 3.0, f"took {dt:.2f}s with fetch.wait.max.ms=1000"
    finally:
        c.close()


def _raw_fetch(port: int, topic: str, offset: int, max_wait_ms: int, min_bytes: int, out: dict) -> None:
    with w.Conn(port, timeout=30) as conn:
        t0 = time.monotonic()
        r = conn.call(w.FETCH, 4, w.fetch_v4_body(topic, 0, offset, max_wait_ms=max_wait_ms, min_bytes=min_bytes))
        out["elapsed"] = time.monotonic() - t0
        out["end"] = time.monotonic()
        [out["result"]] = w.parse_fetch_v4(r)


def test_raw_fetch_woken_by_append(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    p = h.producer(broker.bootstrap, **{"linger.ms": 0})
    h.produce_all(p, topic, [(None, b"first")])

    out: dict = {}
    t = threading.Thread(target=_raw_fetch, args=(broker.port, topic, 1, 5000, 1, out))
    t.start()
    time.sleep(0.5)
    t_produce = time.monotonic()
    h.produce_all(p, topic, [(None, b"second")])
    t.join(15)
    assert not t.is_alive(), "raw fetch did not return"
    res = out["result"]
    assert res.error == 0
    assert res.high_watermark == 2
    assert [r.value for r in w.decode_batches(res.records)] == [b"second"]
    assert out["end"] - t_produce < 2.0, f"fetch returned {out['end'] - t_produce:.2f}s after the append"
    assert out["elapsed"] < 4.0


def test_raw_idle_fetch_waits_max_wait(broker, topic_name):
    """Nothing to return: the broker holds the fetch for ~max_wait (long
    poll), rather than answering at once and making clients spin."""
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    out: dict = {}
    _raw_fetch(broker.port, topic, 0, 1000, 1, out)
    res = out["result"]
    assert res.error == 0 and res.records == b"" and res.high_watermark == 0
    assert 0.8 <= out["elapsed"] < 3.0, f"idle fetch with max_wait 1000 ms returned after {out['elapsed']:.2f}s"


def test_raw_fetch_min_bytes_honoured(broker, topic_name):
    """With min_bytes above what gets appended, the fetch waits for max_wait
    and then returns what there is (Kafka semantics)."""
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    p = h.producer(broker.bootstrap, **{"linger.ms": 0})
    out: dict = {}
    t = threading.Thread(target=_raw_fetch, args=(broker.port, topic, 0, 1500, 1_000_000, out))
    t.start()
    time.sleep(0.3)
    h.produce_all(p, topic, [(None, b"small")])
    t.join(15)
    assert not t.is_alive()
    assert [r.value for r in w.decode_batches(out["result"].records)] == [b"small"]
    assert 1.2 <= out["elapsed"] < 4.0, f"returned after {out['elapsed']:.2f}s; min_bytes not honoured"


def test_fetch_offset_out_of_range(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    h.produce_all(h.producer(broker.bootstrap), topic, [(None, b"x")] * 3)
    with w.Conn(broker.port) as conn:
        r = conn.call(w.FETCH, 4, w.fetch_v4_body(topic, 0, 10, max_wait_ms=100, min_bytes=1))
        [res] = w.parse_fetch_v4(r)
        assert res.error == 1, f"OFFSET_OUT_OF_RANGE expected, got {res.error}"
        r = conn.call(w.FETCH, 4, w.fetch_v4_body(topic, 0, 3, max_wait_ms=100, min_bytes=1))
        [res] = w.parse_fetch_v4(r)
        assert res.error == 0 and res.high_watermark == 3 and res.records == b""
        r = conn.call(w.FETCH, 4, w.fetch_v4_body(topic, 0, 1, max_wait_ms=100, min_bytes=1))
        [res] = w.parse_fetch_v4(r)
        assert [rec.offset for rec in w.decode_batches(res.records)][-2:] == [1, 2]
