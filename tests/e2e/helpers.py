"""Client-side helpers shared by the e2e tests (confluent-kafka and kafka-python).

Consumers never use consumer groups (the broker has none yet): they assign()
explicit partitions at explicit offsets and never commit.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

DEFAULT_TIMEOUT = 30.0


# ---------------------------------------------------------------- confluent-kafka
def _errors_to(sink: list | None):
    def cb(err):
        if sink is not None:
            sink.append(err)
    return cb


def admin_client(bootstrap: str, **conf) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 20000, **conf})


def producer(bootstrap: str, errors: list | None = None, **conf) -> Producer:
    base = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "error_cb": _errors_to(errors),
    }
    base.update(conf)
    return Producer(base)


def consumer(bootstrap: str, errors: list | None = None, **conf) -> Consumer:
    base = {
        "bootstrap.servers": bootstrap,
        # Required by the client, but no group API is ever used: assign() only, no commits.
        "group.id": "strata-e2e-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "error_cb": _errors_to(errors),
    }
    base.update(conf)
    return Consumer(base)


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
    """CreateTopics and wait until metadata shows every partition with a leader."""
    a = admin_client(bootstrap)
    futures = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                        config=dict(config or {}))], operation_timeout=timeout)
    futures[name].result(timeout)
    wait_for_topic(bootstrap, name, partitions, timeout, admin=a)


def topic_metadata(admin: AdminClient, name: str, timeout: float = 10.0):
    # List all topics (never ask for one by name: a Metadata request naming a
    # topic may auto-create it).
    md = admin.list_topics(timeout=timeout)
    return md.topics.get(name)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = DEFAULT_TIMEOUT,
                   admin: AdminClient | None = None) -> None:
    a = admin or admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            t = topic_metadata(a, name)
            last = t
            if (t is not None and t.error is None and len(t.partitions) == partitions
                    and all(p.leader >= 0 and p.error is None for p in t.partitions.values())):
                return
        except KafkaException as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name} not ready with {partitions} partitions after {timeout}s: {last!r}")
        time.sleep(0.1)


def wait_topic_absent(admin: AdminClient, name: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while topic_metadata(admin, name) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name} still listed {timeout}s after deletion")
        time.sleep(0.1)


@dataclass
class Delivery:
    """Collects delivery reports from a confluent-kafka producer."""
    ok: list = field(default_factory=list)  # (seq, partition, offset, key, value)
    failed: list = field(default_factory=list)  # (seq, KafkaError)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def callback(self, seq):
        def cb(err, msg):
            with self.lock:
                if err is not None:
                    self.failed.append((seq, err))
                else:
                    self.ok.append((seq, msg.partition(), msg.offset(), msg.key(), msg.value()))
        return cb

    @property
    def done(self) -> int:
        with self.lock:
            return len(self.ok) + len(self.failed)


def produce_all(p: Producer, topic: str, messages, *, partition: int | None = None,
                timeout: float = 120.0, delivery: Delivery | None = None) -> Delivery:
    """Produce (key, value) or (key, value, timestamp_ms) tuples in order, flush,
    and return the delivery reports. Handles a full local queue."""
    d = delivery or Delivery()
    n = 0
    for n, m in enumerate(messages, 1):
        key, value = m[0], m[1]
        kwargs = {"key": key, "value": value, "on_delivery": d.callback(n - 1)}
        if len(m) > 2 and m[2] is not None:
            kwargs["timestamp"] = m[2]
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.05)
        if n % 1000 == 0:
            p.poll(0)
    remaining = p.flush(timeout)
    if remaining:
        raise AssertionError(f"{remaining} messages still undelivered after flush({timeout})")
    if d.done != n:
        p.poll(1)
    assert d.done == n, f"got {d.done} delivery reports for {n} messages"
    return d


def watermarks(c: Consumer, topic: str, partitions, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    out = {}
    for p in partitions:
        wm = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        if wm is None:
            raise AssertionError(f"get_watermark_offsets timed out for {topic}[{p}]")
        out[p] = wm
    return out


@dataclass
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def consume_partitions(bootstrap: str, topic: str, partitions, *, start: int = OFFSET_BEGINNING,
                       timeout: float = 120.0, expect_total: int | None = None,
                       **conf) -> dict[int, list[Consumed]]:
    """Read every listed partition from `start` up to the high watermark seen
    when the call began. Returns {partition: [Consumed...]} in offset order."""
    partitions = list(partitions)
    errs: list = []
    c = consumer(bootstrap, errs, **conf)
    try:
        high = {p: hw for p, (_lo, hw) in watermarks(c, topic, partitions).items()}
        if expect_total is not None:
            assert sum(high.values()) >= expect_total, f"high watermarks {high} < expected {expect_total}"
        out: dict[int, list[Consumed]] = {p: [] for p in partitions}
        pending = {p for p in partitions if high[p] > 0}
        next_off = {p: -1 for p in partitions}
        if not pending:
            return out
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                got = {p: len(v) for p, v in out.items()}
                raise AssertionError(f"consuming {topic} timed out after {timeout}s: high={high} "
                                     f"got={got} next={next_off} client errors={errs[-5:]}")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                p = m.partition()
                out[p].append(Consumed(p, m.offset(), m.key(), m.value(), m.timestamp()[1]))
                next_off[p] = m.offset() + 1
                if next_off[p] >= high[p]:
                    pending.discard(p)
        return out
    finally:
        c.close()


def assert_offsets_strictly_increase(items, what: str = "") -> None:
    prev = None
    for off in items:
        assert prev is None or off > prev, f"{what}: offset {off} after {prev}"
        prev = off


def roundtrip_ok(bootstrap: str, topic: str | None = None, timeout: float = 30.0) -> None:
    """A fresh confluent-kafka client can create a topic, produce and read back."""
    import uuid
    topic = topic or f"health-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, topic, 1)
    value = uuid.uuid4().bytes
    p = producer(bootstrap)
    d = produce_all(p, topic, [(b"health", value)], timeout=timeout)
    assert not d.failed, d.failed
    got = consume_partitions(bootstrap, topic, [0], timeout=timeout)
    assert [m.value for m in got[0]][-1] == value


# ---------------------------------------------------------------- kafka-python
def kp_consume(bootstrap: str, topic: str, partitions, *, timeout: float = 120.0,
               **conf) -> dict[int, list]:
    """kafka-python: assign + seek_to_beginning, read up to the end offsets."""
    from kafka import KafkaConsumer, TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", max_poll_records=5000,
                      request_timeout_ms=30000, **conf)
    try:
        tps = [KTP(topic, p) for p in partitions]
        c.assign(tps)
        end = c.end_offsets(tps, timeout_ms=20000)
        c.seek_to_beginning(*tps)
        out = {p: [] for p in partitions}
        pending = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"kafka-python consume of {topic} timed out: end={end} "
                                     f"got={ {p: len(v) for p, v in out.items()} }")
            batch = c.poll(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    out[tp.partition].append(r)
                    if r.offset + 1 >= end[tp]:
                        pending.discard(tp)
        return out
    finally:
        c.close()


def group_by_partition(rows):
    d = defaultdict(list)
    for r in rows:
        d[r[1]].append(r)
    return d
