"""kill -9 while a producer streams: every acknowledged message survives.

After an unclean kill the broker may or may not have kept the in-flight,
unacknowledged messages, so the check is acked ⊆ stored. With idempotence on,
nothing may be stored twice either.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import helpers as h


class StreamingProducer(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, idempotent: bool):
        super().__init__(daemon=True)
        self.topic = topic
        self.errors: list = []
        self.delivery = h.Delivery()
        self.stop_flag = threading.Event()
        self.sent = 0
        self.exc: BaseException | None = None
        self.p = h.producer(bootstrap, self.errors, **{
            "enable.idempotence": idempotent,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": 90000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "queue.buffering.max.messages": 20000,
        })

    def acked(self) -> int:
        with self.delivery.lock:
            return len(self.delivery.ok)

    def run(self) -> None:
        try:
            i = 0
            while not self.stop_flag.is_set():
                try:
                    self.p.produce(self.topic, key=f"k{i % 31}".encode(), value=f"m{i}".encode(),
                                   on_delivery=self.delivery.callback(i))
                    i += 1
                    self.sent = i
                except BufferError:
                    self.p.poll(0.05)
                    continue
                if i % 200 == 0:
                    self.p.poll(0)
                    time.sleep(0.002)  # a steady stream, not a single burst
            self.p.flush(120)
        except BaseException as e:  # surfaced by the test
            self.exc = e


def wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "plain"])
def test_kill9_mid_stream_keeps_acked_messages(broker, topic_name, idempotent):
    topic = topic_name()
    parts = 3
    h.create_topic(broker.bootstrap, topic, parts)
    prod = StreamingProducer(broker.bootstrap, topic, idempotent)
    prod.start()
    try:
        wait_until(lambda: prod.acked() >= 5000 or prod.exc, 120, "5000 acks before the kill")
        broker.kill9()
        acked_at_kill = prod.acked()
        time.sleep(1.0)  # the producer keeps queueing and retrying meanwhile
        broker.start()
        wait_until(lambda: prod.acked() >= acked_at_kill + 5000 or prod.exc, 180,
                   "5000 more acks after the restart")
    finally:
        prod.stop_flag.set()
        prod.join(180)
    assert not prod.is_alive(), "producer thread did not finish"
    assert prod.exc is None, repr(prod.exc)
    fatal = [e for e in prod.errors if e.fatal()]
    assert not fatal, f"producer hit fatal errors: {fatal}"

    acked = {v for _s, _p, _o, _k, v in prod.delivery.ok}
    got = h.consume_partitions(broker.bootstrap, topic, range(parts), timeout=180)
    stored = [m.value for msgs in got.values() for m in msgs]
    stored_set = set(stored)
    missing = acked - stored_set
    assert not missing, (f"{len(missing)} of {len(acked)} acknowledged messages lost after kill -9, "
                         f"e.g. {sorted(missing)[:10]}")
    # Acknowledged offsets point at the acknowledged messages.
    where = {(m.partition, m.offset): m.value for msgs in got.values() for m in msgs}
    wrong = [(p, o, v) for _s, p, o, _k, v in prod.delivery.ok if where.get((p, o)) != v]
    assert not wrong, f"{len(wrong)} acks name an offset holding something else, e.g. {wrong[:5]}"
    for part, msgs in got.items():
        offs = [m.offset for m in msgs]
        assert offs == sorted(set(offs)), f"partition {part}: offsets not strictly increasing"
    if idempotent:
        dupes = [v for v, c in Counter(stored).items() if c > 1]
        assert not dupes, f"idempotent producer: {len(dupes)} messages stored twice, e.g. {dupes[:5]}"
    # Every stored message was really sent.
    assert stored_set <= {f"m{i}".encode() for i in range(prod.sent)}
    assert len(prod.delivery.ok) + len(prod.delivery.failed) == prod.sent


@pytest.mark.timeout(200)
def test_repeated_kill9_restart_cycles(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    expected = []
    for cycle in range(4):
        msgs = [(None, f"c{cycle}-{i}".encode()) for i in range(500)]
        d = h.produce_all(h.producer(broker.bootstrap), topic, msgs)
        assert not d.failed
        expected += [v for _k, v in msgs]
        broker.kill9()
        broker.start()
    got = h.consume_partitions(broker.bootstrap, topic, [0])
    assert [m.value for m in got[0]] == expected
    assert [m.offset for m in got[0]] == list(range(len(expected)))
