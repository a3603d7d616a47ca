"""kcat (librdkafka's CLI) against the broker: produce, consume, metadata."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import helpers as h

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (scripts/test.sh installs it)")


def kcat(broker, *args, stdin: bytes | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    cmd = ["kcat", "-b", broker.bootstrap, "-X", "socket.timeout.ms=20000", *args]
    res = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}\nstderr:\n{res.stderr.decode(errors='replace')[-4000:]}")
    return res


def kcat_consume_json(broker, topic: str, *extra) -> list[dict]:
    res = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J", *extra)
    return [json.loads(line) for line in res.stdout.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_produce_consume_keyed(broker, topic_name, codec):
    topic = topic_name(codec)
    h.create_topic(broker.bootstrap, topic, 1)
    lines = [f"key{i % 7}:value {i} with some text {'x' * (i % 13)}" for i in range(500)]
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K:", "-z", codec, "-X", "acks=all",
         stdin=("\n".join(lines) + "\n").encode())

    res = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k:%s\n")
    assert res.stdout.decode().splitlines() == lines

    msgs = kcat_consume_json(broker, topic)
    assert [m["offset"] for m in msgs] == list(range(len(lines)))
    assert all(m["partition"] == 0 for m in msgs)


def test_kcat_multi_partition_keyed(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 3)
    lines = [f"k{i % 10}:v{i}" for i in range(300)]
    kcat(broker, "-P", "-t", topic, "-K:", stdin=("\n".join(lines) + "\n").encode())
    msgs = kcat_consume_json(broker, topic)
    assert sorted(f"{m['key']}:{m['payload']}" for m in msgs) == sorted(lines)
    # The same key always lands in the same partition, in production order.
    part_of_key: dict[str, int] = {}
    for m in msgs:
        assert part_of_key.setdefault(m["key"], m["partition"]) == m["partition"]
    for p in range(3):
        vals = [int(m["payload"][1:]) for m in msgs if m["partition"] == p]
        assert vals == sorted(vals)


def test_kcat_metadata_lists_topic(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 3)
    md = json.loads(kcat(broker, "-L", "-J").stdout)
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, f"{topic} missing from kcat -L: {sorted(topics)}"
    assert sorted(p["partition"] for p in topics[topic]["partitions"]) == [0, 1, 2]
    broker_ids = {b["id"] for b in md["brokers"]}
    assert all(p["leader"] in broker_ids for p in topics[topic]["partitions"])
    assert any(b["name"] == broker.bootstrap for b in md["brokers"]), md["brokers"]

    # Plain-text listing for a single topic.
    text = kcat(broker, "-L", "-t", topic).stdout.decode()
    assert f'topic "{topic}" with 3 partitions' in text, text


def test_kcat_reads_confluent_produced(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 2)
    msgs = [(f"k{i}".encode(), f"payload-{i}".encode()) for i in range(2000)]
    d = h.produce_all(h.producer(broker.bootstrap, **{"compression.type": "lz4"}), topic, msgs)
    assert not d.failed
    got = kcat_consume_json(broker, topic)
    assert len(got) == len(msgs)
    assert sorted((m["key"], m["payload"]) for m in got) == sorted((k.decode(), v.decode()) for k, v in msgs)
    where = {(r[3].decode(), r[4].decode()): (r[1], r[2]) for r in d.ok}
    for m in got:
        assert (m["partition"], m["offset"]) == where[(m["key"], m["payload"])]


def test_confluent_reads_kcat_produced(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    lines = [f"k{i}:v{i}" for i in range(1000)]
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K:", "-z", "zstd", stdin=("\n".join(lines) + "\n").encode())
    got = h.consume_partitions(broker.bootstrap, topic, [0], expect_total=len(lines))
    assert [f"{m.key.decode()}:{m.value.decode()}" for m in got[0]] == lines
