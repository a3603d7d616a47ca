"""etcd restored from a backup while the brokers run: its revisions go back below the versions
the brokers have applied. The brokers notice that the store went back in time and take its
partition states again, so the cluster keeps working without restarting a broker; and the
remote manifest pointers, which went back too, are moved past the newer manifests their leaders
hold, so nothing offloaded since the backup is lost.

The backup is a copy of etcd's data directory taken while etcd was stopped, and it is restored
by copying it back. This is what an operator does with a file-level backup, and it needs no
etcdctl."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

import helpers as h
from conftest import free_port
from test_cluster import Cluster, create_replicated, create_tiered, latest_manifest, local_segment_bases
from test_tiering import wait_until


class PrivateEtcd:
    """A one-member etcd on loopback that a test may stop, back up and restore."""

    def __init__(self, workdir: Path):
        self.data = workdir / "etcd"
        self.log = workdir / "etcd.log"
        self.client, self.peer = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.client}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer}"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["etcd", "--name", "restore-test", "--data-dir", str(self.data),
                 "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"restore-test={peer}",
                 "--heartbeat-interval", "10", "--election-timeout", "100"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.client), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"etcd did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def back_up(self, to: Path) -> None:
        """Copies the data directory with etcd stopped, then starts etcd again."""
        self.stop()
        shutil.copytree(self.data, to)
        self.start()

    def restore(self, backup: Path) -> None:
        """Replaces the data directory with `backup` and starts etcd on it."""
        self.stop()
        shutil.rmtree(self.data)
        shutil.copytree(backup, self.data)
        self.start()


@pytest.fixture
def private_etcd(tmp_path):
    if not shutil.which("etcd"):
        pytest.skip("etcd is missing (scripts/test.sh installs etcd-server)")
    etcd = PrivateEtcd(tmp_path)
    etcd.start()
    yield etcd
    etcd.stop()


def create_topics(c: Cluster, names: list[str]) -> None:
    admin = h.admin_client(c.bootstrap())
    new = [NewTopic(n, num_partitions=8, replication_factor=1) for n in names]
    for f in admin.create_topics(new).values():
        f.result(30)


@pytest.mark.timeout(300)
def test_brokers_take_the_states_of_an_etcd_restored_from_a_backup(
        broker_factory, private_etcd, tmp_path, topic_name):
    c = Cluster(broker_factory, private_etcd.endpoint, tmp_path)
    topic = topic_name()
    create_replicated(c, topic)
    private_etcd.back_up(tmp_path / "etcd-backup")
    c.wait_isr(topic, 3, timeout=90)

    # After the backup: many writes, then the partition's own state changes twice (a follower
    # leaves the ISR and comes back), so the brokers apply its state at a version far above
    # anything the restored store holds, or writes in its first moments back.
    create_topics(c, [topic_name("filler") for _ in range(6)])
    leader = c.leader(topic)
    follower = next(i for i in c.brokers if i != leader)
    c.brokers[follower].kill9()
    c.wait_isr(topic, 2)
    c.brokers[follower].start()
    c.wait_isr(topic, 3, timeout=90)

    private_etcd.restore(tmp_path / "etcd-backup")
    c.wait_isr(topic, 3, timeout=90)
    before = [(b"k", f"before {i}".encode()) for i in range(5)]
    assert not h.produce_all(h.producer(c.bootstrap()), topic, before, partition=0).failed

    # The leader's ISR change is now written below the version it applied before the restore:
    # it must still take it, or acks=all waits for the dead follower for ever.
    leader = c.leader(topic)
    gone = next(i for i in c.brokers if i != leader)
    c.brokers[gone].kill9()
    c.wait_isr(topic, 2)
    after = [(b"k", f"after {i}".encode()) for i in range(5)]
    p = h.producer(c.bootstrap(leader), **{"message.timeout.ms": 30000})
    delivered = h.produce_all(p, topic, after, partition=0, timeout=60)
    assert not delivered.failed, f"acks=all after the restore: {delivered.failed}"
    got = h.consume_partitions(c.bootstrap(leader), topic, [0])[0]
    assert [m.value for m in got] == [v for _, v in before + after]
    assert "etcd answered at a revision below one it answered before" in c.brokers[leader].log_text()


@pytest.mark.timeout(300)
def test_segments_offloaded_since_the_backup_stay_listed_after_a_restore(
        broker_factory, private_etcd, tmp_path, topic_name):
    c = Cluster(broker_factory, private_etcd.endpoint, tmp_path, extra=(
        "--tiering-interval-ms", "200", "--log-retention-check-interval-ms", "300",
        "--remote-sweep-interval-ms", "1000", "--remote-sweep-grace-ms", "1000"))
    topic = topic_name()
    topic_id = create_tiered(c, topic, {"min.insync.replicas": "2"})
    objects = tmp_path / "objects"
    values = [(f"{i:06d}-" + "x" * 500).encode() for i in range(2500)]
    small_batches = {"batch.size": 16384, "linger.ms": 0}

    def produce(first: int, end: int) -> None:
        p = h.producer(c.bootstrap(), **small_batches)
        assert not h.produce_all(p, topic, [(b"k", v) for v in values[first:end]], partition=0).failed

    def offloaded(past: int) -> bool:
        m = latest_manifest(objects, topic_id)
        return bool(m and m["segments"] and m["segments"][-1]["next_offset"] >= past)

    produce(0, 1000)
    wait_until(lambda: offloaded(800), 60, "the first offload")
    private_etcd.back_up(tmp_path / "etcd-backup")
    c.wait_isr(topic, 3, timeout=90)
    produce(1000, 2000)
    # Offloaded since the backup, and gone from every local disk: the bucket holds the only copy.
    wait_until(lambda: offloaded(1800) and all(
        local_segment_bases(b, topic_id)[0] >= 1200 for b in c.brokers.values()), 60,
        "offload and local retention after the backup")

    private_etcd.restore(tmp_path / "etcd-backup")
    c.wait_isr(topic, 3, timeout=90)
    produce(2000, 2500)
    wait_until(lambda: offloaded(2300), 60, "offload after the restore")
    time.sleep(3)  # sweeps of a 1 s grace pass meanwhile
    segments = latest_manifest(objects, topic_id)["segments"]
    for a, b in zip(segments, segments[1:]):
        assert b["base_offset"] <= a["next_offset"], f"a gap between {a} and {b}"
    for i in c.brokers:
        got = h.consume_partitions(c.bootstrap(i), topic, [0], timeout=120)[0]
        assert [m.value for m in got] == values, f"through broker {i}"
