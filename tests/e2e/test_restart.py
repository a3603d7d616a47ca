"""Graceful restart (SIGTERM): data, offsets, topics, partition counts and
config overrides all survive; producing continues at the next offset."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import ConfigResource, NewPartitions, ResourceType

import helpers as h

T = 30


def configs_of(bootstrap: str, topic: str) -> dict[str, str]:
    a = h.admin_client(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return {k: e.value for k, e in a.describe_configs([res], request_timeout=T)[res].result(T).items()}


@pytest.mark.timeout(300)
def test_restart_preserves_data_and_offsets(broker, topic_name):
    topic = topic_name()
    parts = 3
    h.create_topic(broker.bootstrap, topic, parts, {"retention.ms": "86400000", "max.message.bytes": "500000"})
    msgs = [(f"k{i % 13}".encode(), f"before-{i}".encode()) for i in range(5000)]
    d = h.produce_all(h.producer(broker.bootstrap, **{"compression.type": "zstd"}), topic, msgs)
    assert not d.failed
    before = h.consume_partitions(broker.bootstrap, topic, range(parts), expect_total=len(msgs))

    code = broker.stop()
    assert code == 0, f"SIGTERM shutdown exited {code}"
    broker.start()

    after = h.consume_partitions(broker.bootstrap, topic, range(parts), expect_total=len(msgs))
    as_tuples = lambda got: {p: [(m.offset, m.key, m.value, m.timestamp) for m in v] for p, v in got.items()}  # noqa: E731
    assert as_tuples(after) == as_tuples(before)

    # New produce continues at each partition's next offset.
    highs = {p: len(v) for p, v in before.items()}
    p = h.producer(broker.bootstrap)
    for part in range(parts):
        d = h.produce_all(p, topic, [(None, f"after-{part}".encode())], partition=part)
        assert d.ok[0][2] == highs[part], f"partition {part}: new offset {d.ok[0][2]}, want {highs[part]}"

    # Several restarts in a row, with writes in between.
    for round_ in range(2):
        broker.restart()
        d = h.produce_all(h.producer(broker.bootstrap), topic, [(None, f"round-{round_}".encode())], partition=0)
        assert d.ok[0][2] == highs[0] + 1 + round_
    final = h.consume_partitions(broker.bootstrap, topic, [0])
    assert [m.offset for m in final[0]] == list(range(highs[0] + 3))
    assert [m.value for m in final[0][-3:]] == [b"after-0", b"round-0", b"round-1"]


def test_restart_preserves_topics_and_configs(broker, topic_name):
    a = h.admin_client(broker.bootstrap)
    keep, grow, gone = topic_name("keep"), topic_name("grow"), topic_name("gone")
    h.create_topic(broker.bootstrap, keep, 2, {"retention.ms": "123456789", "cleanup.policy": "compact"})
    h.create_topic(broker.bootstrap, grow, 1)
    h.create_topic(broker.bootstrap, gone, 1)
    a.create_partitions([NewPartitions(grow, 4)], operation_timeout=T)[grow].result(T)
    res = ConfigResource(ResourceType.TOPIC, grow, set_config={"segment.bytes": "1048576"})
    a.alter_configs([res], request_timeout=T)[res].result(T)
    a.delete_topics([gone], operation_timeout=T)[gone].result(T)
    h.wait_topic_absent(a, gone)

    assert broker.stop() == 0
    broker.start()

    a = h.admin_client(broker.bootstrap)
    h.wait_for_topic(broker.bootstrap, keep, 2, admin=a)
    h.wait_for_topic(broker.bootstrap, grow, 4, admin=a)
    assert h.topic_metadata(a, gone) is None, "deleted topic came back after restart"
    c = configs_of(broker.bootstrap, keep)
    assert c["retention.ms"] == "123456789"
    assert c["cleanup.policy"] == "compact"
    assert configs_of(broker.bootstrap, grow)["segment.bytes"] == "1048576"


def test_restart_empty_and_after_kill(broker, topic_name):
    """Restarting with nothing written, and an unclean restart of an idle broker."""
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    broker.restart()
    h.wait_for_topic(broker.bootstrap, topic, 1)
    d = h.produce_all(h.producer(broker.bootstrap), topic, [(None, b"x")] * 10)
    assert [r[2] for r in d.ok] == list(range(10))
    broker.restart(graceful=False)
    got = h.consume_partitions(broker.bootstrap, topic, [0])
    assert [m.offset for m in got[0]] == list(range(10))
