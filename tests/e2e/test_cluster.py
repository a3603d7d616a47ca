"""Three brokers on one real etcd (started by scripts/test.sh), replicating with RF=3: leader
failover after kill -9 and SIGSTOP loses no acknowledged message, min.insync.replicas refuses
acks=all writes when too few replicas are left, the cluster recovers from an etcd outage by
itself, a killed controller is replaced, and a consumer group survives the death of its
coordinator."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import NewTopic

import helpers as h
from test_etcd import etcd, etcd_args  # noqa: F401  (etcd is a fixture)
from test_tiering import wait_until

SESSION_MS = "2000"


class Cluster:
    """Brokers 1, 2 and 3 of one cluster name, sharing an object store directory."""

    def __init__(self, factory, endpoint: str, tmp_path, extra=()):
        self.name = f"e2e-{uuid.uuid4().hex[:8]}"
        self.brokers = {}
        for i in (1, 2, 3):
            args = etcd_args(endpoint, self.name, tmp_path / "objects") + [
                "--broker-id", str(i), "--broker-session-timeout-ms", SESSION_MS,
                "--replica-lag-time-max-ms", "4000", "--default-replication-factor", "3", *extra]
            self.brokers[i] = factory(extra_args=args, name=f"b{i}")

    def bootstrap(self, only: int | None = None) -> str:
        if only is not None:
            return self.brokers[only].bootstrap
        return ",".join(b.bootstrap for b in self.brokers.values() if b.alive())

    def partition(self, topic: str, index: int = 0):
        """(leader, replicas, isr) of one partition, as the live brokers report it."""
        md = h.admin_client(self.bootstrap()).list_topics(topic, timeout=10)
        p = md.topics[topic].partitions[index]
        return p.leader, sorted(p.replicas), sorted(p.isrs)

    def controller(self, via: int) -> int:
        return h.admin_client(self.bootstrap(via)).list_topics(timeout=10).controller_id

    def wait_isr(self, topic: str, size: int, timeout: float = 60) -> None:
        wait_until(lambda: self._isr_size(topic) == size, timeout, f"{topic} to have {size} in-sync replicas")

    def _isr_size(self, topic: str) -> int:
        try:
            leader, _, isr = self.partition(topic)
            return len(isr) if leader >= 0 else -1
        except Exception:  # a broker just died: ask again
            return -1

    def leader(self, topic: str, timeout: float = 30) -> int:
        found = []

        def has_live_leader():
            try:
                leader, _, _ = self.partition(topic)
            except Exception:
                return False
            if leader in self.brokers and self.brokers[leader].alive():
                found.append(leader)
                return True
            return False

        wait_until(has_live_leader, timeout, f"{topic} to have a live leader")
        return found[-1]


@pytest.fixture
def cluster(broker_factory, etcd, tmp_path) -> Cluster:  # noqa: F811
    return Cluster(broker_factory, etcd, tmp_path)


def create_replicated(c: Cluster, topic: str, config: dict | None = None) -> None:
    admin = h.admin_client(c.bootstrap())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                  config=config or {"min.insync.replicas": "2"})])[topic].result(30)
    c.wait_isr(topic, 3)


class NumberedProducer(threading.Thread):
    """Writes 0, 1, 2, ... with acks=all, idempotence off and one request in flight, recording the
    offset of every acknowledged number."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.producer = h.producer(bootstrap, **{
            "enable.idempotence": False, "acks": "all", "max.in.flight.requests.per.connection": 1,
            "retries": 1_000_000, "retry.backoff.ms": 100, "linger.ms": 2,
            "message.timeout.ms": 120_000, "topic.metadata.refresh.interval.ms": 1000})
        self.topic = topic
        self.stop_flag = threading.Event()
        self.acked: dict[int, int] = {}
        self.failed: list = []
        self.sent = 0

    def _report(self, n: int):
        def cb(err, msg):
            if err is None:
                self.acked[n] = msg.offset()
            else:
                self.failed.append((n, err))
        return cb

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                self.producer.produce(self.topic, value=str(self.sent).encode(), partition=0,
                                      on_delivery=self._report(self.sent))
                self.sent += 1
            except BufferError:
                pass
            self.producer.poll(0.002)
        self.producer.flush(120)

    def finish(self) -> None:
        self.stop_flag.set()
        self.join(150)
        assert not self.is_alive(), "the producer did not flush in time"


def start_numbered_stream(c: Cluster, topic: str) -> NumberedProducer:
    """A replicated topic (RF=3, min.insync.replicas=2) with a numbered stream running into it."""
    create_replicated(c, topic)
    producer = NumberedProducer(c.bootstrap(), topic)
    producer.start()
    time.sleep(2)
    return producer


def assert_acknowledged_present(c: Cluster, topic: str, acked: dict[int, int]) -> None:
    """Every acknowledged number is at its acknowledged offset, in order, read through every
    broker."""
    assert len(acked) > 50, f"only {len(acked)} messages were acknowledged"
    by_offset = sorted((offset, n) for n, offset in acked.items())
    assert [n for _, n in by_offset] == sorted(acked), "acknowledged numbers are in offset order"
    views = []
    for i in c.brokers:
        got = h.consume_partitions(c.bootstrap(i), topic, [0], timeout=120)[0]
        log = {m.offset: int(m.value) for m in got}
        missing = [(n, off) for n, off in acked.items() if log.get(off) != n]
        assert not missing, f"via broker {i}: {len(missing)} acknowledged messages missing, e.g. {missing[:5]}"
        views.append([(m.offset, m.value) for m in got])
    assert views[0] == views[1] == views[2], "consumers through every broker agree"


@pytest.mark.timeout(300)
def test_kill9_of_leaders_loses_no_acknowledged_message(cluster, topic_name):
    topic = topic_name()
    producer = start_numbered_stream(cluster, topic)
    first = cluster.leader(topic)
    cluster.brokers[first].kill9()
    time.sleep(4)
    cluster.brokers[first].start()
    cluster.wait_isr(topic, 3)
    time.sleep(1)
    second = cluster.leader(topic)
    cluster.brokers[second].kill9()
    time.sleep(4)
    producer.finish()
    cluster.brokers[second].start()
    cluster.wait_isr(topic, 3)
    assert_acknowledged_present(cluster, topic, producer.acked)


@pytest.mark.timeout(300)
def test_a_paused_leader_is_replaced_and_loses_nothing(cluster, topic_name):
    topic = topic_name()
    producer = start_numbered_stream(cluster, topic)
    paused = cluster.brokers[cluster.leader(topic)]
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: cluster.partition(topic)[0] not in (-1, int(paused.name[1:])), 30,
                   "another broker to lead while the leader is paused")
        time.sleep(2)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    cluster.wait_isr(topic, 3)
    time.sleep(1)
    producer.finish()
    assert_acknowledged_present(cluster, topic, producer.acked)


@pytest.mark.timeout(240)
def test_one_broker_left_refuses_acks_all_but_serves_reads(cluster, topic_name):
    from kafka import KafkaProducer
    from kafka.errors import NotEnoughReplicasError

    topic = topic_name()
    create_replicated(cluster, topic)
    written = h.produce_all(h.producer(cluster.bootstrap()), topic,
                            [(b"k", f"v{i}".encode()) for i in range(20)], partition=0)
    assert not written.failed
    survivor = cluster.leader(topic)
    for i, b in cluster.brokers.items():
        if i != survivor:
            b.stop()
    cluster.wait_isr(topic, 1)
    p = KafkaProducer(bootstrap_servers=cluster.bootstrap(survivor), acks="all", retries=0,
                      request_timeout_ms=10_000)
    with pytest.raises(NotEnoughReplicasError):
        p.send(topic, value=b"refused", partition=0).get(timeout=30)
    p.close()
    one = h.producer(cluster.bootstrap(survivor), acks="1", **{"enable.idempotence": False})
    assert not h.produce_all(one, topic, [(b"k", b"acks=1 still works")], partition=0).failed
    got = h.consume_partitions(cluster.bootstrap(survivor), topic, [0])[0]
    assert [m.value for m in got] == [f"v{i}".encode() for i in range(20)] + [b"acks=1 still works"]


@pytest.mark.timeout(240)
def test_the_cluster_recovers_from_an_etcd_outage_by_itself(cluster, topic_name):
    pid = int(os.environ.get("STRATA_TEST_ETCD_PID", "0"))
    if not pid:
        assert not os.environ.get("CI"), "scripts/test.sh exports the etcd pid"
        pytest.skip("STRATA_TEST_ETCD_PID is not set (run scripts/test.sh)")
    topic = topic_name()
    create_replicated(cluster, topic)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(20)
    finally:
        os.kill(pid, signal.SIGCONT)
    # Leases ran out during the outage: brokers register again, a controller is elected again.
    cluster.wait_isr(topic, 3, timeout=90)
    p = h.producer(cluster.bootstrap())
    assert not h.produce_all(p, topic, [(b"k", f"after {i}".encode()) for i in range(10)], partition=0).failed
    for i in cluster.brokers:
        got = h.consume_partitions(cluster.bootstrap(i), topic, [0])[0]
        assert [m.value for m in got][-10:] == [f"after {i}".encode() for i in range(10)]
    assert all(b.alive() for b in cluster.brokers.values())


@pytest.mark.timeout(240)
def test_a_killed_controller_is_replaced(cluster, topic_name):
    first = cluster.controller(1)
    assert first in cluster.brokers
    cluster.brokers[first].kill9()
    survivors = [i for i in cluster.brokers if i != first]
    wait_until(lambda: cluster.controller(survivors[0]) in survivors, 30, "a new controller")
    assert cluster.controller(survivors[1]) == cluster.controller(survivors[0])
    topic = topic_name()
    admin = h.admin_client(cluster.bootstrap())
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=2)])[topic].result(30)
    h.wait_for_topic(cluster.bootstrap(), topic, 2)
    assert not h.produce_all(h.producer(cluster.bootstrap()), topic,
                             [(b"k", b"after the controller died")], partition=1).failed
    got = h.consume_partitions(cluster.bootstrap(), topic, [1])[1]
    assert [m.value for m in got] == [b"after the controller died"]


@pytest.mark.timeout(300)
def test_a_group_survives_the_death_of_its_coordinator(cluster, topic_name):
    topic = topic_name()
    create_replicated(cluster, topic, {"min.insync.replicas": "1"})
    assert not h.produce_all(h.producer(cluster.bootstrap()), topic,
                             [(b"k", f"m{i}".encode()) for i in range(100)], partition=0).failed
    group = f"g-{uuid.uuid4().hex[:6]}"

    def consume(n: int) -> list[bytes]:
        c = h.consumer(cluster.bootstrap(), **{"group.id": group, "session.timeout.ms": 6000})
        c.subscribe([topic])
        got: list[bytes] = []
        last = None
        deadline = time.monotonic() + 90
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=n - len(got), timeout=0.5):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        raise AssertionError(m.error())
                    continue
                got.append(m.value())
                last = m
        assert last is not None, "nothing consumed"
        c.commit(message=last, asynchronous=False)
        c.close()
        return got

    assert consume(40) == [f"m{i}".encode() for i in range(40)]
    admin = h.admin_client(cluster.bootstrap())  # kept alive until the future is done
    described = admin.describe_consumer_groups([group])[group].result(30)
    coordinator = described.coordinator.id
    cluster.brokers[coordinator].kill9()
    rest = consume(60)
    assert rest == [f"m{i}".encode() for i in range(40, 100)], "resumed at the commit made before the kill"
