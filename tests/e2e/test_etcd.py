"""Cluster metadata in a real etcd (`--etcd`, started by scripts/test.sh): topics and their configs
live in etcd, so a broker whose data directory is wiped finds them again; `--cluster-name`
keeps clusters sharing one etcd apart; an unreachable etcd stops startup with a clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from confluent_kafka.admin import ConfigResource

import helpers as h
from conftest import free_port


@pytest.fixture
def etcd() -> str:
    endpoint = os.environ.get("STRATA_TEST_ETCD_ENDPOINT")
    if not endpoint:
        assert not os.environ.get("CI"), "scripts/test.sh starts etcd for CI"
        pytest.skip("STRATA_TEST_ETCD_ENDPOINT is not set (run scripts/test.sh)")
    return endpoint


def etcd_args(endpoint: str, cluster: str, objects) -> list[str]:
    return ["--etcd", endpoint, "--cluster-name", cluster, "--object-store", f"file://{objects}"]


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = h.admin_client(bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return {k: v.value for k, v in admin.describe_configs([resource])[resource].result(timeout=20).items()}


@pytest.mark.timeout(120)
def test_topics_live_in_etcd_and_cluster_names_keep_clusters_apart(broker_factory, etcd, topic_name, tmp_path):
    cluster = f"e2e-{uuid.uuid4().hex[:8]}"
    objects = tmp_path / "objects"
    broker = broker_factory(extra_args=etcd_args(etcd, cluster, objects))
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 3, {"retention.ms": "123456789"})

    broker.stop()
    shutil.rmtree(broker.data_dir)
    broker.start()
    h.wait_for_topic(broker.bootstrap, topic, 3)
    assert topic_config(broker.bootstrap, topic)["retention.ms"] == "123456789"
    p = h.producer(broker.bootstrap)
    assert not h.produce_all(p, topic, [(b"k", b"after the wipe")], partition=1).failed
    assert [m.value for m in h.consume_partitions(broker.bootstrap, topic, [1])[1]] == [b"after the wipe"]

    other = broker_factory(extra_args=etcd_args(etcd, f"{cluster}-other", tmp_path / "objects-other"),
                           name="other")
    listed = h.admin_client(other.bootstrap).list_topics(timeout=20).topics
    assert topic not in listed, "another cluster name on the same etcd does not see the topic"


@pytest.mark.timeout(60)
def test_an_unreachable_etcd_stops_startup_with_a_message(strata_binary, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [str(strata_binary), "serve", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{free_port()}",
         "--metrics-listen", "127.0.0.1:0", "--etcd", dead],
        capture_output=True, text=True, timeout=45)
    assert proc.returncode != 0
    assert "etcd" in (proc.stderr + proc.stdout)


def etcd_get(endpoint: str, key: str) -> dict | None:
    """A key's JSON value, read through etcd's HTTP gateway."""
    import base64
    import json
    import urllib.request

    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/v3/kv/range", data=body), timeout=5) as r:
        kvs = json.load(r).get("kvs", [])
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


@pytest.mark.timeout(120)
def test_brokers_register_with_a_lease_and_one_id_is_taken_once(broker_factory, etcd, strata_binary, tmp_path):
    cluster = f"e2e-{uuid.uuid4().hex[:8]}"
    session = ["--broker-session-timeout-ms", "2000", "--broker-rack", "rack-a"]
    first = broker_factory(extra_args=etcd_args(etcd, cluster, tmp_path / "objects") + session)
    key = f"/strata/{cluster}/brokers/1"
    registered = etcd_get(etcd, key)
    assert {k: registered[k] for k in ("broker_id", "host", "port", "rack")} == {
        "broker_id": 1, "host": "127.0.0.1", "port": first.port, "rack": "rack-a"}
    assert registered["replication"].startswith("127.0.0.1:")

    # A second process with the same broker id is refused once the first one's session is over.
    second = subprocess.run(
        [str(strata_binary), "serve", "--data-dir", str(tmp_path / "second"), "--listen", f"127.0.0.1:{free_port()}",
         "--metrics-listen", "127.0.0.1:0", "--replication-listen", "127.0.0.1:0", "--broker-id", "1",
         *etcd_args(etcd, cluster, tmp_path / "objects"), *session],
        capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert "registered by a live broker" in second.stderr + second.stdout

    # A killed broker's registration outlives it by its session; a restart waits that out.
    first.kill9()
    assert etcd_get(etcd, key) is not None
    first.start()
    h.roundtrip_ok(first.bootstrap)
    # A clean stop leaves the cluster at once.
    first.stop()
    assert etcd_get(etcd, key) is None


@pytest.mark.timeout(120)
def test_an_etcd_outage_does_not_stop_the_broker_and_it_registers_again(broker_factory, etcd, topic_name, tmp_path):
    import signal
    import time

    from test_tiering import wait_until

    pid = int(os.environ.get("STRATA_TEST_ETCD_PID", "0"))
    if not pid:
        assert not os.environ.get("CI"), "scripts/test.sh exports the etcd pid"
        pytest.skip("STRATA_TEST_ETCD_PID is not set (run scripts/test.sh)")
    cluster = f"e2e-{uuid.uuid4().hex[:8]}"
    broker = broker_factory(extra_args=etcd_args(etcd, cluster, tmp_path / "objects")
                            + ["--broker-session-timeout-ms", "1000"])
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    p = h.producer(broker.bootstrap)
    os.kill(pid, signal.SIGSTOP)
    try:
        # etcd is frozen for longer than the lease: produce and consume go on meanwhile.
        stopped_at = time.monotonic()
        assert not h.produce_all(p, topic, ((b"k", f"v{i}".encode()) for i in range(100)), partition=0).failed
        got = h.consume_partitions(broker.bootstrap, topic, [0], timeout=30)[0]
        assert [m.value for m in got] == [f"v{i}".encode() for i in range(100)]
        time.sleep(max(0.0, 5 - (time.monotonic() - stopped_at)))
    finally:
        os.kill(pid, signal.SIGCONT)
    key = f"/strata/{cluster}/brokers/1"
    wait_until(lambda: etcd_get(etcd, key) is not None, 30, "the broker to be registered after the outage")
    assert broker.alive()
    h.roundtrip_ok(broker.bootstrap)
