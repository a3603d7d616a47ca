"""Consumer groups with real clients: librdkafka members (in their own processes, so one can be
killed) share partitions without overlap, rebalance when members come and go, and resume from
committed offsets across a broker restart; kafka-python groups and auto.offset.reset; the admin
API and the lag metric."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

import helpers as h
from test_tiering import metrics, wait_until

HERE = Path(__file__).resolve().parent
PARTITIONS = 4
FAST_GROUPS = ["--group-initial-rebalance-delay-ms", "200"]


class Member:
    """A group member process running group_member.py."""

    def __init__(self, broker, topic: str, group: str, workdir: Path, name: str, assignor: str = "range",
                 instance: str | None = None):
        self.out = workdir / f"{name}.txt"
        self.out.touch()
        args = [sys.executable, str(HERE / "group_member.py"), broker.bootstrap, topic, group, str(self.out),
                assignor] + ([instance] if instance else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def assignment(self) -> list[int] | None:
        assigns = [ln for ln in self.lines() if ln.startswith("assign")]
        if not assigns:
            return None
        parts = assigns[-1].split(" ", 1)
        return [int(p) for p in parts[1].split(",")] if len(parts) > 1 and parts[1] else []

    def consumed(self) -> set[tuple[int, int]]:
        out = set()
        for ln in self.lines():
            if ln.startswith("msg "):
                _, p, o = ln.split()
                out.add((int(p), int(o)))
        return out

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


def split_evenly(members: list[Member]) -> bool:
    """Every member has an assignment, they do not overlap, and together they cover the topic."""
    assignments = [m.assignment() for m in members]
    if any(a is None or not a for a in assignments):
        return False
    flat = [p for a in assignments for p in a]
    return sorted(flat) == list(range(PARTITIONS))


def produce_numbered(bootstrap: str, topic: str, first: int, count: int) -> None:
    p = h.producer(bootstrap)
    d = h.produce_all(p, topic, ((f"k{i}".encode(), f"v{i}".encode()) for i in range(first, first + count)))
    assert not d.failed, d.failed[:3]


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    c = h.consumer(bootstrap)
    try:
        return {p: hw for p, (_, hw) in h.watermarks(c, topic, range(PARTITIONS)).items()}
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    c = h.consumer(bootstrap, **{"group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


@pytest.mark.timeout(240)
def test_members_share_rebalance_and_take_over_from_a_killed_member(broker_factory, topic_name, tmp_path):
    broker = broker_factory(extra_args=FAST_GROUPS)
    topic, group = topic_name(), f"g-{uuid.uuid4().hex[:8]}"
    h.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_numbered(broker.bootstrap, topic, 0, 2000)
    a = Member(broker, topic, group, tmp_path, "a")
    b = Member(broker, topic, group, tmp_path, "b")
    members = [a, b]
    try:
        wait_until(lambda: split_evenly([a, b]), 60, "two members to split 4 partitions")
        produce_numbered(broker.bootstrap, topic, 2000, 2000)

        c = Member(broker, topic, group, tmp_path, "c")
        members.append(c)
        wait_until(lambda: split_evenly([a, b, c]), 60, "a third member to get its share")
        produce_numbered(broker.bootstrap, topic, 4000, 2000)

        b.kill9()
        killed_at = time.monotonic()
        wait_until(lambda: split_evenly([a, c]), 60, "the killed member's partitions to move")
        # librdkafka members heartbeat every 500 ms: the move waits for the 6 s session timeout.
        assert time.monotonic() - killed_at >= 3, "partitions moved before the session timed out"
        produce_numbered(broker.bootstrap, topic, 6000, 2000)

        hw = high_watermarks(broker.bootstrap, topic)
        assert sum(hw.values()) == 8000
        everything = {(p, o) for p, end in hw.items() for o in range(end)}
        wait_until(lambda: everything <= (a.consumed() | b.consumed() | c.consumed()), 60,
                   "every message to be consumed")
        wait_until(lambda: committed(broker.bootstrap, group, topic) == hw, 30,
                   "the committed offsets to reach the end of every partition")

        # The admin API sees the group, its members and its offsets; the lag metric is zero.
        admin = h.admin_client(broker.bootstrap)
        listed = admin.list_consumer_groups().result(timeout=20)
        assert group in {g.group_id for g in listed.valid}
        described = admin.describe_consumer_groups([group])[group].result(timeout=20)
        assert len(described.members) == 2 and str(described.state).endswith("STABLE")
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=20)
        assert {tp.partition: tp.offset for tp in offsets.topic_partitions if tp.topic == topic} == hw
        wait_until(lambda: metrics(broker).get("strata_consumer_group_lag", -1) == 0, 10, "lag 0")
    finally:
        for m in members:
            m.stop()

    # With the members gone the group is empty and can be deleted, offsets and all.
    wait_until(lambda: str(admin.describe_consumer_groups([group])[group].result(timeout=20).state).endswith("EMPTY"),
               30, "the group to empty")
    admin.delete_consumer_groups([group])[group].result(timeout=20)
    assert committed(broker.bootstrap, group, topic) == {p: -1001 for p in range(PARTITIONS)}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("assignor", ["roundrobin", "cooperative-sticky"])
def test_librdkafka_assignors_split_the_partitions(broker_factory, topic_name, tmp_path, assignor):
    broker = broker_factory(extra_args=FAST_GROUPS)
    topic, group = topic_name(), f"g-{uuid.uuid4().hex[:8]}"
    h.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_numbered(broker.bootstrap, topic, 0, 400)
    members = [Member(broker, topic, group, tmp_path, f"m{i}", assignor) for i in range(2)]
    try:
        wait_until(lambda: split_evenly(members), 60, f"{assignor} to split the partitions")
        everything = {(p, o) for p, end in high_watermarks(broker.bootstrap, topic).items() for o in range(end)}
        wait_until(lambda: everything <= set().union(*(m.consumed() for m in members)), 60, "all messages")
    finally:
        for m in members:
            m.stop()


@pytest.mark.timeout(120)
def test_a_static_member_restarting_within_its_session_keeps_its_partitions(broker_factory, topic_name, tmp_path):
    broker = broker_factory(extra_args=FAST_GROUPS)
    topic, group = topic_name(), f"g-{uuid.uuid4().hex[:8]}"
    h.create_topic(broker.bootstrap, topic, PARTITIONS)
    a = Member(broker, topic, group, tmp_path, "a", instance="instance-a")
    b = Member(broker, topic, group, tmp_path, "b", instance="instance-b")
    members = [a, b]
    try:
        wait_until(lambda: split_evenly([a, b]), 60, "two static members to split the partitions")
        before = a.assignment()
        a_changes = len([ln for ln in a.lines() if ln.startswith("assign")])
        # b goes away (a static member sends no LeaveGroup) and comes back under a new member id.
        b.stop()
        b_again = Member(broker, topic, group, tmp_path, "b2", instance="instance-b")
        members.append(b_again)
        wait_until(lambda: b_again.assignment(), 30, "the static member to get its partitions back")
        assert sorted(b_again.assignment() + before) == list(range(PARTITIONS))
        time.sleep(2)
        assert a.assignment() == before
        assert len([ln for ln in a.lines() if ln.startswith("assign")]) == a_changes, \
            "the other member saw no rebalance"
    finally:
        for m in members:
            m.stop()


@pytest.mark.timeout(120)
def test_commits_survive_a_broker_restart(broker_factory, topic_name):
    broker = broker_factory(extra_args=FAST_GROUPS)
    topic, group = topic_name(), f"g-{uuid.uuid4().hex[:8]}"
    h.create_topic(broker.bootstrap, topic, 1)
    produce_numbered(broker.bootstrap, topic, 0, 100)
    c = h.consumer(broker.bootstrap, **{"group.id": group, "session.timeout.ms": 6000})
    c.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < 60 and time.monotonic() < deadline:
        for m in c.consume(num_messages=60 - len(seen), timeout=0.5):
            if not m.error():
                seen.append(m.offset())
    assert seen == list(range(60))
    c.commit(offsets=[TopicPartition(topic, 0, 60)], asynchronous=False)
    c.close()

    broker.restart()
    assert committed(broker.bootstrap, group, topic)[0] == 60
    c = h.consumer(broker.bootstrap, **{"group.id": group, "session.timeout.ms": 6000})
    c.subscribe([topic])
    rest = []
    deadline = time.monotonic() + 60
    while len(rest) < 40 and time.monotonic() < deadline:
        for m in c.consume(num_messages=100, timeout=0.5):
            if not m.error():
                rest.append(m.offset())
    c.close()
    assert rest == list(range(60, 100)), "resumed from the committed offset, nothing skipped or repeated"


@pytest.mark.timeout(120)
def test_kafka_python_groups_and_auto_offset_reset(broker_factory, topic_name):
    from kafka import KafkaConsumer, TopicPartition as KTP
    from kafka.errors import NoOffsetForPartitionError

    broker = broker_factory(extra_args=FAST_GROUPS)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 2)
    produce_numbered(broker.bootstrap, topic, 0, 50)

    def group_consumer(group: str, reset: str, **conf) -> KafkaConsumer:
        return KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset=reset,
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
                             request_timeout_ms=30000, **conf)

    def poll_until(c: KafkaConsumer, count: int) -> list:
        got = []
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                got.extend(records)
        return got

    # earliest: a new group reads everything, then commits; a second consumer resumes after it.
    g1 = f"kp-{uuid.uuid4().hex[:8]}"
    c = group_consumer(g1, "earliest")
    got = poll_until(c, 50)
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(50))
    c.commit()
    c.close()
    produce_numbered(broker.bootstrap, topic, 50, 10)
    c = group_consumer(g1, "earliest")
    got = poll_until(c, 10)
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(50, 60))
    c.close()

    # latest: a new group sees only what is produced after it joined.
    c = group_consumer(f"kp-{uuid.uuid4().hex[:8]}", "latest")
    wait_until(lambda: c.poll(timeout_ms=200) == {} and len(c.assignment()) == 2, 30, "the latest consumer's assignment")
    for tp in c.assignment():
        c.position(tp)
    produce_numbered(broker.bootstrap, topic, 60, 5)
    got = poll_until(c, 5)
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(60, 65))
    c.close()

    # none: no committed offset is an error, not a silent reset.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=f"kp-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="none", enable_auto_commit=False, request_timeout_ms=30000)
    c.assign([KTP(topic, 0)])
    with pytest.raises(NoOffsetForPartitionError):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            c.poll(timeout_ms=500)
    c.close()
