"""A data directory belongs to one cluster (`<data-dir>/cluster.id`): a broker pointed at another
cluster's metadata, or at an etcd that was wiped, keeps its logs instead of deleting them as the
logs of deleted topics."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
import uuid

import pytest

import helpers as h
from conftest import free_port
from test_etcd import etcd, etcd_args  # noqa: F401  (the fixture)

MESSAGES = [(b"k%d" % i, b"acknowledged %d" % i) for i in range(50)]


def start_fails(broker, *extra: str) -> str:
    """Starts `broker`'s data directory with other arguments; the output of the refused start."""
    proc = subprocess.run(
        [str(broker.binary), "serve", "--data-dir", str(broker.data_dir), "--listen", f"127.0.0.1:{free_port()}",
         "--metrics-listen", "127.0.0.1:0", "--replication-listen", "127.0.0.1:0", *extra],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def topic_logs(broker) -> list[str]:
    return sorted(p.name for p in (broker.data_dir / "logs").iterdir())


def wipe_etcd_namespace(endpoint: str, cluster: str) -> int:
    """Deletes every key of `cluster`, as a wiped etcd would have none; how many there were."""
    prefix = f"/strata/{cluster}/".encode()
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    body = json.dumps({"key": base64.b64encode(prefix).decode(),
                       "range_end": base64.b64encode(end).decode()}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/v3/kv/deleterange", data=body),
                                timeout=5) as r:
        return int(json.load(r).get("deleted", 0))


def produce_and_check(broker, topic: str) -> None:
    h.create_topic(broker.bootstrap, topic, 1)
    assert not h.produce_all(h.producer(broker.bootstrap), topic, MESSAGES, partition=0).failed


def consumed(broker, topic: str) -> list[bytes]:
    return [m.value for m in h.consume_partitions(broker.bootstrap, topic, [0], expect_total=len(MESSAGES))[0]]


@pytest.mark.timeout(120)
def test_a_data_directory_does_not_start_against_another_cluster(broker_factory, etcd, topic_name, tmp_path):  # noqa: F811
    cluster = f"e2e-{uuid.uuid4().hex[:8]}"
    args = etcd_args(etcd, cluster, tmp_path / "objects")
    broker = broker_factory(extra_args=args)
    topic = topic_name()
    produce_and_check(broker, topic)
    broker.stop()
    logs = topic_logs(broker)

    # A typo in --cluster-name: a namespace of etcd with no cluster in it yet.
    out = start_fails(broker, *etcd_args(etcd, f"{cluster}-typo", tmp_path / "objects"))
    assert "belongs to cluster" in out and "holds no cluster" in out, out
    # Another cluster that exists.
    other = broker_factory(extra_args=etcd_args(etcd, f"{cluster}-other", tmp_path / "objects-other"),
                           name="other")
    out = start_fails(broker, *etcd_args(etcd, f"{cluster}-other", tmp_path / "objects"), "--broker-id", "2")
    assert "belongs to cluster" in out and "holds cluster" in out, out
    # A directory from before cluster ids were recorded: its logs name no topic of that cluster.
    recorded = (broker.data_dir / "cluster.id").read_text()
    (broker.data_dir / "cluster.id").unlink()
    out = start_fails(broker, *etcd_args(etcd, f"{cluster}-other", tmp_path / "objects"), "--broker-id", "2")
    assert "none of a topic of cluster" in out, out
    (broker.data_dir / "cluster.id").write_text(recorded)
    other.stop()
    # The embedded store of a new single node is a cluster of its own too.
    out = start_fails(broker)
    assert "belongs to cluster" in out, out

    assert topic_logs(broker) == logs, "the refused starts deleted no log"
    broker.start()
    assert consumed(broker, topic) == [v for _, v in MESSAGES]


@pytest.mark.timeout(120)
def test_an_etcd_wiped_under_a_running_broker_deletes_no_log(broker_factory, etcd, topic_name, tmp_path):  # noqa: F811
    cluster = f"e2e-{uuid.uuid4().hex[:8]}"
    broker = broker_factory(extra_args=etcd_args(etcd, cluster, tmp_path / "objects"))
    topic = topic_name()
    produce_and_check(broker, topic)
    logs = topic_logs(broker)

    assert wipe_etcd_namespace(etcd, cluster) > 0
    deadline = time.monotonic() + 30
    while "no longer holds cluster" not in broker.log_text():
        assert time.monotonic() < deadline, "the broker never noticed the wiped store"
        time.sleep(0.2)
    time.sleep(2)  # a sync or two more
    assert broker.alive()
    assert topic_logs(broker) == logs
    assert consumed(broker, topic) == [v for _, v in MESSAGES], "it keeps serving what it has"

    broker.stop()
    out = start_fails(broker, *etcd_args(etcd, cluster, tmp_path / "objects"))
    assert "holds no cluster" in out, out
    assert topic_logs(broker) == logs
