"""Three brokers on one real etcd (started by scripts/test.sh), replicating with RF=3: leader
failover after kill -9 and SIGSTOP loses no acknowledged message, a follower back with an empty
disk is never elected over one that stayed up (nor, after a whole-cluster restart, over one that
kept its log), min.insync.replicas refuses
acks=all writes when too few replicas are left, the cluster recovers from an etcd outage by
itself, a killed controller is replaced, a consumer group survives the death of its
coordinator, and replicas move (AlterPartitionReassignments) and leadership returns to the
preferred replica (ElectLeaders) on request."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import NewTopic

import helpers as h
from test_etcd import etcd, etcd_args  # noqa: F401  (etcd is a fixture)
from test_tiering import metrics, wait_until

SESSION_MS = "2000"


class Cluster:
    """Brokers 1, 2 and 3 of one cluster name, sharing an object store directory."""

    def __init__(self, factory, endpoint: str, tmp_path, extra=(), session_ms: str = SESSION_MS):
        self.name = f"e2e-{uuid.uuid4().hex[:8]}"
        self.brokers = {}
        for i in (1, 2, 3):
            args = etcd_args(endpoint, self.name, tmp_path / "objects") + [
                "--broker-id", str(i), "--broker-session-timeout-ms", session_ms,
                "--replica-lag-time-max-ms", "4000", "--default-replication-factor", "3", *extra]
            self.brokers[i] = factory(extra_args=args, name=f"b{i}")

    def bootstrap(self, only: int | None = None) -> str:
        if only is not None:
            return self.brokers[only].bootstrap
        return ",".join(b.bootstrap for b in self.brokers.values() if b.alive())

    def partition(self, topic: str, index: int = 0, via: int | None = None):
        """(leader, replicas, isr) of one partition, as the live brokers (or broker `via`) report it."""
        md = h.admin_client(self.bootstrap(via)).list_topics(topic, timeout=10)
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
def test_a_follower_back_empty_is_never_elected_over_one_that_stayed_up(
        broker_factory, etcd, tmp_path, topic_name):  # noqa: F811
    """The window an earlier run lost acknowledged data in: a follower comes back with an empty
    disk while still in the ISR (nobody took it out: the controller did not see it go), and the
    leader dies before the follower's first fetch could tell the leader. The controller must
    elect the replica that stayed up, not the emptied one, though it comes first in replica order."""
    import shutil
    from test_etcd import etcd_get

    # Sessions long enough for the paused controller to keep its key while the follower restarts
    # (a lease is refreshed every third of it).
    session_s = 15
    c = Cluster(broker_factory, etcd, tmp_path, session_ms=str(session_s * 1000))
    controller = etcd_get(etcd, f"/strata/{c.name}/controller")["broker_id"]
    leader, emptied = [i for i in c.brokers if i != controller]
    topic = topic_name()
    admin = h.admin_client(c.bootstrap())
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[leader, emptied, controller]],
                                  config={"min.insync.replicas": "2"})])[topic].result(30)
    c.wait_isr(topic, 3)
    assert c.leader(topic) == leader
    # The follower leaves the ISR and rejoins it, so the incarnation the ISR records for it is the
    # one its own fetches carried, not the controller's at the topic's creation.
    c.brokers[emptied].stop()
    c.brokers[emptied].start()
    c.wait_isr(topic, 3)
    written = [(b"k", f"{i}".encode()) for i in range(200)]
    assert not h.produce_all(h.producer(c.bootstrap(leader), acks="all", **{"enable.idempotence": False}),
                             topic, written, partition=0).failed

    paused = c.brokers[controller]
    os.kill(paused.pid, signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        c.brokers[leader].kill9()
        c.brokers[emptied].stop()
        shutil.rmtree(c.brokers[emptied].data_dir)
        c.brokers[emptied].start()
        assert etcd_get(etcd, f"/strata/{c.name}/brokers/{emptied}") is not None
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    pause = time.monotonic() - paused_at
    assert pause < session_s / 2, f"the controller was paused {pause:.1f} s: it may have lost its lease"
    # Once the killed leader's session runs out, the controller elects.
    new_leader = c.leader(topic, timeout=60)
    assert new_leader == controller, "the replica that stayed up leads"
    got = h.consume_partitions(c.bootstrap(new_leader), topic, [0], timeout=60)[0]
    assert [m.value for m in got] == [v for _, v in written]
    wait_until(lambda: c.partition(topic, via=new_leader)[2] == sorted([controller, emptied]), 60,
               "the emptied follower to catch up and rejoin the ISR")
    got = h.consume_partitions(c.bootstrap(emptied), topic, [0], timeout=60)[0]
    assert [m.value for m in got] == [v for _, v in written]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("lost", ["data-dir", "one-partition"])
def test_a_whole_cluster_restart_elects_a_replica_back_with_its_log_over_an_emptied_one(
        broker_factory, etcd, tmp_path, topic_name, lost):  # noqa: F811
    """Every broker is killed at once, so nobody takes anyone out of the ISR, and the first
    replica comes back without the partition's log (its whole data directory wiped, or only that
    partition's directory lost while another topic's stays), and restarts once more before the
    others are back (by then it has created the partition's directory, empty). All members
    restarted: the controller waits for every one of them, then must elect one that kept its
    log, not the first in replica order (whose empty log the others would truncate to)."""
    import shutil

    from test_etcd import etcd_get

    c = Cluster(broker_factory, etcd, tmp_path)
    emptied, kept, other = 1, 2, 3
    topic = topic_name()
    admin = h.admin_client(c.bootstrap())
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[emptied, kept, other]],
                                  config={"min.insync.replicas": "2"})])[topic].result(30)
    c.wait_isr(topic, 3)
    assert c.leader(topic) == emptied
    logs = c.brokers[emptied].data_dir / "logs"
    [topic_dir] = list(logs.iterdir())
    if lost == "one-partition":
        untouched = topic_name()
        admin.create_topics([NewTopic(untouched, num_partitions=1, replica_assignment=[[emptied, kept, other]])])[
            untouched].result(30)
        # Every broker has opened both partitions: a partition created but never opened is not
        # a log lost (and counts as started empty, to be safe).
        wait_until(lambda: all(len(list((b.data_dir / "logs").glob("*/0"))) == 2 for b in c.brokers.values()),
                   30, "every broker to open both partitions")
    written = [(b"k", f"{i}".encode()) for i in range(200)]
    assert not h.produce_all(h.producer(c.bootstrap(), acks="all", **{"enable.idempotence": False}),
                             topic, written, partition=0).failed
    for b in c.brokers.values():
        b.kill9()
    # A whole-cluster restart: no registration outlives the processes, or the controller of the
    # first broker back sees a killed one as up and fails over to it as it would for a live one.
    wait_until(lambda: all(etcd_get(etcd, f"/strata/{c.name}/brokers/{i}") is None for i in c.brokers), 30,
               "every broker's registration to expire")
    if lost == "data-dir":
        shutil.rmtree(c.brokers[emptied].data_dir)
    else:
        shutil.rmtree(topic_dir / "0")
        assert any(p.is_dir() for p in logs.glob("*/*")), "another partition's log stays"
    c.brokers[emptied].start()
    wait_until(lambda: (topic_dir / "0").is_dir(), 30, "the emptied broker to open its partition")
    c.brokers[emptied].kill9()
    for i in (emptied, kept, other):
        c.brokers[i].start()
    new_leader = c.leader(topic, timeout=60)
    assert new_leader == kept, "the first replica that came back with its log leads"
    wait_until(lambda: c.partition(topic, via=kept)[2] == [1, 2, 3], 60,
               "the restarted replicas to catch up and rejoin the ISR")
    for via in (kept, emptied):
        got = h.consume_partitions(c.bootstrap(via), topic, [0], timeout=60)[0]
        assert [m.value for m in got] == [v for _, v in written], f"broker {via}"


@pytest.mark.timeout(240)
def test_a_batch_larger_than_a_replication_fetch_is_replicated(cluster, topic_name):
    """A topic may take batches far larger than a replication fetch (`max.message.bytes`): the
    leader returns such a batch whole, and the follower must take the response, or it never
    catches up and acks=all can never be answered."""
    topic = topic_name()
    create_replicated(cluster, topic, {"min.insync.replicas": "3", "max.message.bytes": str(16 << 20)})
    big = os.urandom(6 << 20)
    p = h.producer(cluster.bootstrap(), acks="all", **{
        "enable.idempotence": False, "message.max.bytes": 20 << 20, "compression.type": "none",
        "message.timeout.ms": 30000})
    assert not h.produce_all(p, topic, [(b"k", big), (b"k", b"small")], partition=0).failed
    for via in cluster.brokers:
        got = h.consume_partitions(cluster.bootstrap(via), topic, [0], timeout=60,
                                   **{"fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 32 << 20,
                                      "receive.message.max.bytes": 80 << 20})[0]
        assert [m.value for m in got] == [big, b"small"], f"broker {via}"


@pytest.mark.timeout(240)
def test_a_lagging_follower_leaves_the_isr_by_time_and_comes_back(broker_factory, etcd, tmp_path, topic_name):  # noqa: F811
    # Sessions outlive the pause: only the leader's lag check (replica.lag.time.max.ms = 4 s) can
    # drop the paused follower, not the controller.
    c = Cluster(broker_factory, etcd, tmp_path, session_ms="60000")
    topic = topic_name()
    create_replicated(c, topic)
    leader = c.leader(topic)
    follower = next(i for i in c.brokers if i != leader)
    paused = c.brokers[follower]
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: follower not in c.partition(topic, via=leader)[2], 30,
                   "the paused follower to leave the ISR")
        assert len(c.partition(topic, via=leader)[2]) == 2
        p = h.producer(c.bootstrap(leader), **{"enable.idempotence": False})
        assert not h.produce_all(p, topic, [(b"k", b"while a follower is paused")], partition=0).failed
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    wait_until(lambda: len(c.partition(topic, via=leader)[2]) == 3, 60, "the follower to rejoin the ISR")
    got = h.consume_partitions(c.bootstrap(follower), topic, [0])[0]
    assert [m.value for m in got] == [b"while a follower is paused"]


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
def test_a_killed_controller_is_replaced(cluster, etcd, topic_name):  # noqa: F811
    from test_etcd import etcd_get

    key = f"/strata/{cluster.name}/controller"
    first = etcd_get(etcd, key)["broker_id"]
    assert cluster.controller(1) == first
    cluster.brokers[first].kill9()
    survivors = [i for i in cluster.brokers if i != first]

    def elected():
        record = etcd_get(etcd, key)
        return record is not None and record["broker_id"] in survivors
    wait_until(elected, 30, "a new controller in etcd")
    new = etcd_get(etcd, key)["broker_id"]
    wait_until(lambda: all(cluster.controller(i) == new for i in survivors), 30,
               "every broker to name the new controller")
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


@pytest.mark.timeout(240)
def test_reassignment_moves_replicas_and_preferred_election_moves_leadership(cluster, topic_name, tmp_path):
    from kafka import KafkaAdminClient, TopicPartition

    topic = topic_name()
    admin = h.admin_client(cluster.bootstrap())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1, replica_assignment=[[1, 2]])])[topic].result(30)
    wait_until(lambda: cluster.partition(topic) == (1, [1, 2], [1, 2]), 30, "replicas on 1 and 2")
    values = [f"m{i}".encode() for i in range(200)]
    assert not h.produce_all(h.producer(cluster.bootstrap()), topic, [(b"k", v) for v in values],
                             partition=0).failed

    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    try:
        kp.alter_partition_reassignments({TopicPartition(topic, 0): [3, 2]})
        wait_until(lambda: cluster.partition(topic) == (3, [2, 3], [2, 3]), 60,
                   "the move to 3 and 2 to complete, 3 (the new preferred replica) leading")
        assert not kp.list_partition_reassignments(), "nothing is being moved any more"
        moved_away = cluster.brokers[1].data_dir / "logs" / topic_id_hex(admin, topic) / "0"
        wait_until(lambda: not moved_away.exists(), 30, "broker 1 to drop its copy")
        got = h.consume_partitions(cluster.bootstrap(3), topic, [0])[0]
        assert [m.value for m in got] == values

        # Leadership leaves the preferred replica when it dies and comes back only on request.
        other = topic_name()
        admin.create_topics([NewTopic(other, num_partitions=1, replication_factor=-1, replica_assignment=[[1, 2, 3]])])[other].result(30)
        cluster.wait_isr(other, 3)
        assert cluster.partition(other)[0] == 1
        cluster.brokers[1].kill9()
        wait_until(lambda: cluster.partition(other)[0] in (2, 3), 30, "a new leader")
        cluster.brokers[1].start()
        cluster.wait_isr(other, 3)
        interim = cluster.partition(other)[0]
        assert interim != 1, "no automatic move back"
        # Only the leader, the one broker that uploads, reports the partition's upload lag.
        lag = f'strata_tiering_upload_lag_bytes{{partition="{topic_id_hex(admin, other)}/0"}}'
        wait_until(lambda: lag in metrics(cluster.brokers[interim]), 30, "the interim leader's upload lag")
        kp.elect_leaders(0, {other: [0]})
        wait_until(lambda: cluster.partition(other)[0] == 1, 30, "the preferred replica to lead again")
        wait_until(lambda: lag not in metrics(cluster.brokers[interim]) and lag in metrics(cluster.brokers[1]),
                   30, "the upload lag to move with the leadership")
    finally:
        kp.close()


def topic_id_hex(admin, topic: str) -> str:
    """A topic's id as the broker names its directories (32 hex digits)."""
    from confluent_kafka import TopicCollection

    uuid_ = admin.describe_topics(TopicCollection([topic]))[topic].result(30).topic_id
    mask = (1 << 64) - 1
    return f"{uuid_.get_most_significant_bits() & mask:016x}{uuid_.get_least_significant_bits() & mask:016x}"


def latest_manifest(objects, topic_id: str) -> dict | None:
    import json

    found = sorted(objects.glob(f"**/{topic_id}/0/manifests/*.json"))
    return json.loads(found[-1].read_text()) if found else None


def local_segment_bases(broker, topic_id: str) -> list[int]:
    return sorted(int(p.stem) for p in (broker.data_dir / "logs" / topic_id / "0").glob("*.log"))


def create_tiered(c: Cluster, topic: str, config: dict[str, str]) -> str:
    """A tiered topic of one partition and RF=3 with 64 KiB segments kept only in the bucket once
    offloaded (and `config`), in sync everywhere; returns its id as directories name it."""
    admin = h.admin_client(c.bootstrap())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3, config={
        "segment.bytes": str(64 * 1024), "local.retention.bytes": "0", **config})])[topic].result(30)
    c.wait_isr(topic, 3)
    return topic_id_hex(admin, topic)


@pytest.mark.timeout(300)
def test_tiering_in_a_cluster_followers_start_at_the_leaders_local_start(
        broker_factory, etcd, tmp_path, topic_name):  # noqa: F811
    import shutil

    c = Cluster(broker_factory, etcd, tmp_path, extra=("--tiering-interval-ms", "200",
                                                       "--log-retention-check-interval-ms", "300"))
    topic = topic_name()
    topic_id = create_tiered(c, topic, {"remote.storage.enable": "true"})
    values = [(f"{i:06d}-" + "x" * 500).encode() for i in range(3000)]
    small_batches = {"batch.size": 16384, "linger.ms": 0}
    assert not h.produce_all(h.producer(c.bootstrap(), **small_batches), topic, [(b"k", v) for v in values],
                             partition=0).failed

    def offloaded_and_trimmed():
        m = latest_manifest(tmp_path / "objects", topic_id)
        if not m or m["segments"][-1]["next_offset"] < 2000:
            return False
        # Every replica, followers included, keeps only what the manifest does not list.
        return all(local_segment_bases(b, topic_id)[0] >= 1000 for b in c.brokers.values())
    wait_until(offloaded_and_trimmed, 60, "offload and local retention on leader and followers")

    leader = c.leader(topic)
    follower = next(i for i in c.brokers if i != leader)
    c.brokers[follower].stop()
    shutil.rmtree(c.brokers[follower].data_dir)
    c.brokers[follower].start()
    # Back empty, it must stay out of the ISR until it has the acknowledged tail again, or the
    # election below may pick it and lose that tail. The controller takes a departed broker out;
    # when the follower was the controller itself and came back at once, nobody did, and a run
    # lost 24 acknowledged messages so. Now its first fetch below the high watermark also takes
    # it out (the leader's "lost acknowledged data").
    def safe_to_elect() -> bool:
        log = c.brokers[leader].log_text()
        if "lost acknowledged data" in log:
            return True  # taken out of the ISR at its first fetch
        for before, after in re.findall(r"ISR changed .*from=\[([^\]]*)\] to=\[([^\]]*)\]", log):
            if str(follower) not in before.split(", ") and str(follower) in after.split(", "):
                return True  # the controller took it out first; it came back caught up
        bases = local_segment_bases(c.brokers[follower], topic_id)
        return bool(bases) and bases[0] >= len(values)
    wait_until(safe_to_elect, 30, "the emptied follower to be out of the ISR until caught up")
    c.wait_isr(topic, 3)
    bases = local_segment_bases(c.brokers[follower], topic_id)
    assert bases and bases[0] > 0, "history already in the bucket was not copied between brokers"

    # The old leader goes; the new one continues uploading from the manifest.
    c.brokers[c.leader(topic)].kill9()
    more = [(f"{i:06d}-" + "y" * 500).encode() for i in range(3000, 4500)]
    assert not h.produce_all(h.producer(c.bootstrap(), **small_batches), topic, [(b"k", v) for v in more],
                             partition=0).failed
    wait_until(lambda: latest_manifest(tmp_path / "objects", topic_id)["segments"][-1]["next_offset"] >= 4000,
               60, "the new leader to offload")
    segments = latest_manifest(tmp_path / "objects", topic_id)["segments"]
    for a, b in zip(segments, segments[1:]):
        assert b["base_offset"] == a["next_offset"], f"no gap or overlap between {a} and {b}"
    got = h.consume_partitions(c.bootstrap(), topic, [0], timeout=120)[0]
    assert [m.value for m in got] == values + more
