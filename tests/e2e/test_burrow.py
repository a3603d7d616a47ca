"""Burrow, the consumer-lag checker Debian packages, reads a group's lag from Strata: it lists
partitions and their end offsets (ListOffsets v0, through sarama) and consumes
`__consumer_offsets` in Kafka's record format. Burrow 1.2 insists on a ZooKeeper for its own
coordination, so the test starts one on loopback too."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

import helpers as h
from conftest import free_port, port_accepts
from test_tiering import wait_until

ZK_SERVER = Path("/usr/share/zookeeper/bin/zkServer.sh")


def start(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def zookeeper(tmp_path):
    assert ZK_SERVER.exists() and shutil.which("Burrow"), "scripts/test.sh installs zookeeper and burrow"
    port = free_port()
    workdir = tmp_path / "zookeeper"
    (workdir / "data").mkdir(parents=True)
    (workdir / "zoo.cfg").write_text(
        f"tickTime=500\ndataDir={workdir / 'data'}\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\nmaxClientCnxns=50\n")
    env = {"ZOO_LOG_DIR": str(workdir), "PATH": "/usr/bin:/bin"}
    proc = start([str(ZK_SERVER), "start-foreground", str(workdir / "zoo.cfg")], workdir / "zk.log", env)
    try:
        wait_until(lambda: port_accepts(port), 60, "ZooKeeper to listen")
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def burrow_lag(http: str, group: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{http}/v3/kafka/strata/consumer/{group}/lag", timeout=5) as r:
            return json.load(r).get("status")
    except OSError:
        return None


@pytest.mark.timeout(150)
def test_burrow_reads_a_groups_lag(broker, zookeeper, topic_name, tmp_path):
    topic, group = topic_name(), f"burrow-{uuid.uuid4().hex[:8]}"
    h.create_topic(broker.bootstrap, topic, 2)
    p = h.producer(broker.bootstrap)
    h.produce_all(p, topic, ((f"k{i}".encode(), b"v") for i in range(100)), partition=0)
    h.produce_all(p, topic, ((f"k{i}".encode(), b"v") for i in range(50)), partition=1)
    c = h.consumer(broker.bootstrap, **{"group.id": group})
    c.commit(offsets=[TopicPartition(topic, 0, 10), TopicPartition(topic, 1, 20)], asynchronous=False)
    c.close()

    http_port = free_port()
    workdir = tmp_path / "burrow"
    workdir.mkdir()
    (workdir / "burrow.toml").write_text(f"""
[general]
pidfile="{workdir}/burrow.pid"
[logging]
level="info"
[zookeeper]
servers=["{zookeeper}"]
timeout=6
root-path="/burrow"
[client-profile.strata]
client-id="burrow-e2e"
kafka-version="2.1.0"
[cluster.strata]
class-name="kafka"
servers=["{broker.bootstrap}"]
client-profile="strata"
topic-refresh=2
offset-refresh=2
[consumer.strata]
class-name="kafka"
cluster="strata"
servers=["{broker.bootstrap}"]
client-profile="strata"
start-latest=false
[httpserver.default]
address="127.0.0.1:{http_port}"
[storage.default]
class-name="inmemory"
workers=4
intervals=10
expire-group=604800
min-distance=1
""")
    burrow = start(["Burrow", "-config-dir", str(workdir)], workdir / "burrow.log")
    try:
        http = f"http://127.0.0.1:{http_port}"
        status = {}

        def lag_seen() -> bool:
            nonlocal status
            status = burrow_lag(http, group) or {}
            return status.get("totallag") == 120 and status.get("partition_count") == 2

        try:
            wait_until(lag_seen, 90, "Burrow to report the group's lag")
        except AssertionError:
            raise AssertionError(f"Burrow reported {status}; its log: {(workdir / 'burrow.log').read_text()[-3000:]}")
        lags = {p["partition"]: p["current_lag"] for p in status["partitions"]}
        assert lags == {0: 90, 1: 30}
        assert burrow.poll() is None, "Burrow kept running"
    finally:
        stop(burrow)
