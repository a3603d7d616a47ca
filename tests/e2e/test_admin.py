"""Admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
AlterConfigs, IncrementalAlterConfigs, DeleteRecords, DescribeCluster -- via
confluent-kafka's AdminClient and kafka-python's KafkaAdminClient."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, ResourceType)

import helpers as h

T = 30  # seconds for any single admin future

DEFAULT_RETENTION_MS = "604800000"
DEFAULT_SOURCES = {ConfigSource.DEFAULT_CONFIG.value, ConfigSource.STATIC_BROKER_CONFIG.value,
                   ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value}


def source_of(entry: ConfigEntry) -> int:
    s = entry.source
    return getattr(s, "value", s)


def kafka_error(excinfo) -> KafkaError:
    err = excinfo.value.args[0]
    assert isinstance(err, KafkaError), excinfo.value
    return err


def describe_topic(admin, topic: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=T)[res].result(T)


def test_create_describe_delete(broker, topic_name):
    a = h.admin_client(broker.bootstrap)
    topic = topic_name()
    fs = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                   config={"retention.ms": "3600000", "cleanup.policy": "compact"})],
                         operation_timeout=T)
    assert fs[topic].result(T) is None
    h.wait_for_topic(broker.bootstrap, topic, 3, admin=a)

    md = h.topic_metadata(a, topic)
    assert sorted(md.partitions) == [0, 1, 2]
    assert all(p.leader == 1 for p in md.partitions.values()), "broker id defaults to 1"

    configs = describe_topic(a, topic)
    assert configs["retention.ms"].value == "3600000"
    assert source_of(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["segment.bytes"].is_default or source_of(configs["segment.bytes"]) in DEFAULT_SOURCES

    # Duplicate create.
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], operation_timeout=T)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(T)
    assert kafka_error(ei).code() == KafkaError.TOPIC_ALREADY_EXISTS

    # Delete: it disappears from metadata, and describing it fails.
    assert a.delete_topics([topic], operation_timeout=T)[topic].result(T) is None
    h.wait_topic_absent(a, topic)
    with pytest.raises(KafkaException) as ei:
        describe_topic(a, topic)
    assert kafka_error(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # Deleting again: unknown topic.
    with pytest.raises(KafkaException) as ei:
        a.delete_topics([topic], operation_timeout=T)[topic].result(T)
    assert kafka_error(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # The name can be reused, starting from offset 0 again.
    h.create_topic(broker.bootstrap, topic, 1)
    c = h.consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=T) == (0, 0)
    finally:
        c.close()


def test_describe_defaults(broker, topic_name):
    a = h.admin_client(broker.bootstrap)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1)
    configs = describe_topic(a, topic)
    expected_defaults = {
        "retention.ms": DEFAULT_RETENTION_MS,
        "cleanup.policy": "delete",
        "max.message.bytes": "1048588",
        "message.timestamp.type": "CreateTime",
        "retention.bytes": "-1",
        "segment.bytes": "1073741824",
        "compression.type": "producer",
    }
    for name, value in expected_defaults.items():
        assert name in configs, f"{name} missing from DescribeConfigs: {sorted(configs)}"
        e = configs[name]
        assert e.value == value, f"{name}={e.value!r}, want default {value!r}"
        assert e.is_default or source_of(e) in DEFAULT_SOURCES, f"{name}: source {e.source}"
        assert source_of(e) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_create_partitions(broker, topic_name):
    a = h.admin_client(broker.bootstrap)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 2)
    p = h.producer(broker.bootstrap)
    d = h.produce_all(p, topic, [(b"a", b"1")], partition=1)
    assert not d.failed

    assert a.create_partitions([NewPartitions(topic, 5)], operation_timeout=T)[topic].result(T) is None
    h.wait_for_topic(broker.bootstrap, topic, 5, admin=a)

    # New partitions are usable; old data untouched.
    d = h.produce_all(h.producer(broker.bootstrap), topic, [(b"b", b"2")], partition=4)
    assert not d.failed and d.ok[0][2] == 0
    got = h.consume_partitions(broker.bootstrap, topic, range(5))
    assert [m.value for m in got[1]] == [b"1"] and [m.value for m in got[4]] == [b"2"]

    # Shrinking (or keeping) the count is refused.
    with pytest.raises(KafkaException) as ei:
        a.create_partitions([NewPartitions(topic, 3)], operation_timeout=T)[topic].result(T)
    assert kafka_error(ei).code() == KafkaError.INVALID_PARTITIONS
    missing = topic_name("missing")
    with pytest.raises(KafkaException) as ei:
        a.create_partitions([NewPartitions(missing, 3)], operation_timeout=T)[missing].result(T)
    assert kafka_error(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_incremental_alter_configs(broker, topic_name):
    a = h.admin_client(broker.bootstrap)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"cleanup.policy": "compact", "max.message.bytes": "200000"})

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    assert a.incremental_alter_configs([res], request_timeout=T)[res].result(T) is None
    c = describe_topic(a, topic)
    assert c["retention.ms"].value == "7200000"
    assert source_of(c["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert c["cleanup.policy"].value == "delete"
    assert source_of(c["cleanup.policy"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert c["max.message.bytes"].value == "200000", "untouched override must stay"

    # DELETE of the remaining override restores the default.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([res], request_timeout=T)[res].result(T)
    c = describe_topic(a, topic)
    assert c["retention.ms"].value == DEFAULT_RETENTION_MS

    # APPEND to a list config.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
    a.incremental_alter_configs([res], request_timeout=T)[res].result(T)
    c = describe_topic(a, topic)
    # Kafka appends to the current value, which here is the default "delete".
    assert sorted(c["cleanup.policy"].value.split(",")) == ["compact", "delete"], \
        f"APPEND to the default 'delete' gave {c['cleanup.policy'].value!r}"

    # validate_only changes nothing.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "1234", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res], request_timeout=T, validate_only=True)[res].result(T)
    assert describe_topic(a, topic)["retention.ms"].value == DEFAULT_RETENTION_MS


def test_legacy_alter_configs_replaces_all_overrides(broker, topic_name):
    a = h.admin_client(broker.bootstrap)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"max.message.bytes": "200000"})
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "1000000"})
    assert a.alter_configs([res], request_timeout=T)[res].result(T) is None
    c = describe_topic(a, topic)
    assert c["retention.ms"].value == "1000000"
    assert source_of(c["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Non-incremental AlterConfigs sets the whole override set: others revert.
    assert c["max.message.bytes"].value == "1048588"


@pytest.mark.parametrize("config", [
    {"retention.ms": "abc"},
    {"cleanup.policy": "shred"},
    {"segment.bytes": "1"},  # below the minimum
    {"no.such.config": "1"},
])
def test_invalid_config_rejected(broker, topic_name, config):
    a = h.admin_client(broker.bootstrap)
    topic = topic_name()
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)],
                         operation_timeout=T)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(T)
    assert kafka_error(ei).code() == KafkaError.INVALID_CONFIG, kafka_error(ei)
    assert h.topic_metadata(a, topic) is None, "a rejected topic must not be created"

    h.create_topic(broker.bootstrap, topic, 1)
    name, value = next(iter(config.items()))
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as ei:
        a.incremental_alter_configs([res], request_timeout=T)[res].result(T)
    assert kafka_error(ei).code() == KafkaError.INVALID_CONFIG, kafka_error(ei)
    res = ConfigResource(ResourceType.TOPIC, topic, set_config=config)
    with pytest.raises(KafkaException) as ei:
        a.alter_configs([res], request_timeout=T)[res].result(T)
    assert kafka_error(ei).code() == KafkaError.INVALID_CONFIG, kafka_error(ei)
    assert describe_topic(a, topic)["retention.ms"].value == DEFAULT_RETENTION_MS


def test_invalid_create_topic_requests(broker, topic_name):
    a = h.admin_client(broker.bootstrap)
    bad_name = "bad/name:" + topic_name()
    fs = a.create_topics([NewTopic(bad_name, num_partitions=1, replication_factor=1)], operation_timeout=T)
    with pytest.raises(KafkaException) as ei:
        fs[bad_name].result(T)
    assert kafka_error(ei).code() == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)

    topic = topic_name()
    fs = a.create_topics([NewTopic(topic, num_partitions=0, replication_factor=1)], operation_timeout=T)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(T)
    assert kafka_error(ei).code() == KafkaError.INVALID_PARTITIONS

    # validate_only creates nothing.
    fs = a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)], operation_timeout=T,
                         validate_only=True)
    assert fs[topic].result(T) is None
    assert h.topic_metadata(a, topic) is None


def test_delete_records(broker, topic_name):
    a = h.admin_client(broker.bootstrap)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 2)
    p = h.producer(broker.bootstrap)
    h.produce_all(p, topic, [(None, f"v{i}".encode()) for i in range(100)], partition=0)
    h.produce_all(p, topic, [(None, f"w{i}".encode()) for i in range(10)], partition=1)

    tp = TopicPartition(topic, 0, 40)
    result = a.delete_records([tp], request_timeout=T)[tp].result(T)
    assert result.low_watermark == 40

    c = h.consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=T) == (40, 100)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=T) == (0, 10)
    finally:
        c.close()
    got = h.consume_partitions(broker.bootstrap, topic, [0])
    assert [m.offset for m in got[0]] == list(range(40, 100))
    assert got[0][0].value == b"v40"

    # -1 means "up to the high watermark".
    tp = TopicPartition(topic, 1, -1)
    assert a.delete_records([tp], request_timeout=T)[tp].result(T).low_watermark == 10
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    tp = TopicPartition(topic, 0, 1000)
    with pytest.raises(KafkaException) as ei:
        a.delete_records([tp], request_timeout=T)[tp].result(T)
    assert kafka_error(ei).code() == KafkaError.OFFSET_OUT_OF_RANGE

    # Producing continues at the old high watermark.
    d = h.produce_all(p, topic, [(None, b"after")], partition=0)
    assert d.ok[0][2] == 100


def test_describe_cluster(broker):
    a = h.admin_client(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=T).result(T)
    assert len(desc.nodes) == 1
    node = desc.nodes[0]
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    assert node.id == 1
    assert desc.controller is not None and desc.controller.id == node.id
    assert desc.cluster_id

    md = a.list_topics(timeout=T)
    assert md.cluster_id == desc.cluster_id
    assert md.controller_id == 1
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {1: ("127.0.0.1", broker.port)}


# ---------------------------------------------------------------- kafka-python
def test_kafka_python_admin(broker, topic_name):
    from kafka.admin import ConfigResource as KConfigResource, KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        topic = topic_name()
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1,
                                     "configs": {"retention.ms": "3600000"}}})
        h.wait_for_topic(broker.bootstrap, topic, 2)
        assert topic in admin.list_topics()

        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})

        desc = admin.describe_configs([KConfigResource("TOPIC", topic)], config_filter="all")
        configs = desc["topic"][topic]
        assert configs["retention.ms"]["value"] == "3600000"
        assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert configs["cleanup.policy"]["value"] == "delete"

        modified = admin.describe_configs([KConfigResource("TOPIC", topic)])  # default filter: modified only
        assert set(modified["topic"][topic]) == {"retention.ms"}

        # Incremental (the client's default when the broker supports it) ...
        res = admin.alter_configs([KConfigResource("TOPIC", topic, configs={"retention.ms": "5000000"})])
        assert res == {"topic": {topic: "OK"}}
        # ... and the legacy AlterConfigs.
        res = admin.alter_configs([KConfigResource("TOPIC", topic, configs={"segment.bytes": "10485760"})],
                                  incremental=False)
        assert res == {"topic": {topic: "OK"}}
        configs = admin.describe_configs([KConfigResource("TOPIC", topic)])["topic"][topic]
        # The client re-sends the other overrides for the legacy call, so both stay.
        assert configs["retention.ms"]["value"] == "5000000"
        assert configs["segment.bytes"]["value"] == "10485760"

        admin.delete_topics([topic])
        a = h.admin_client(broker.bootstrap)
        h.wait_topic_absent(a, topic)
        assert topic not in admin.list_topics()
    finally:
        admin.close()
