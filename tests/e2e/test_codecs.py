"""Every compression codec round-trips through the broker byte for byte, with
per-partition order preserved, for confluent-kafka (librdkafka) and
kafka-python producers/consumers."""

from __future__ import annotations

import hashlib

import pytest
from confluent_kafka import Producer

import helpers as h
import kafka_wire as w

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 4


def payload(i: int, codec: str) -> bytes:
    # Distinct, partly compressible values of varying length (40..~170 bytes).
    digest = hashlib.sha256(f"{codec}/{i}".encode()).hexdigest()
    return f"value-{i:07d}-{codec}-".encode() + digest[: (i * 7) % 64].encode() + b"." * (i % 50)


def messages(n: int, codec: str):
    for i in range(n):
        yield f"k{i % 1000}".encode(), payload(i, codec)


def check_roundtrip(delivered, consumed, n: int) -> None:
    """delivered: [(seq, partition, offset, key, value)] in any order;
    consumed: {partition: [(offset, key, value)]} in consumption order."""
    assert len(delivered) == n
    by_part = h.group_by_partition(delivered)
    total = 0
    for p, rows in by_part.items():
        rows.sort(key=lambda r: r[0])  # production order
        # With idempotence + keyed messages, per-partition delivery offsets
        # follow production order and are strictly increasing.
        h.assert_offsets_strictly_increase([r[2] for r in rows], f"partition {p} delivery offsets")
        expected = [(r[2], r[3], r[4]) for r in rows]
        got = consumed.get(p, [])
        assert len(got) == len(expected), f"partition {p}: consumed {len(got)}, delivered {len(expected)}"
        for e, g in zip(expected, got):
            assert g == e, f"partition {p}: expected {e!r}, consumed {g!r}"
        total += len(got)
    assert total == n
    extra = set(consumed) - set(by_part)
    assert not any(consumed[p] for p in extra), f"messages in unexpected partitions {extra}"


def assert_stored_codec(broker, topic: str, codec: str, *, allow_uncompressed: bool = False) -> None:
    """The topic keeps the producer's codec (compression.type=producer): the
    stored batches come back compressed with it."""
    with w.Conn(broker.port) as conn:
        r = conn.call(w.FETCH, 4, w.fetch_v4_body(topic, 0, 0, max_wait_ms=0, min_bytes=1))
        [res] = w.parse_fetch_v4(r)
    headers = w.batch_headers(res.records)
    assert headers, "no complete batch in a raw fetch"
    hint = ""
    if codec == "lz4":
        # librdkafka's feature map enables lz4 only when the broker's
        # ApiVersions lists FindCoordinator (key 10); otherwise it silently
        # sends lz4-configured batches uncompressed.
        hint = " (librdkafka uses lz4 only if ApiVersions advertises FindCoordinator, key 10)"
    stored = {attrs & 0x07 for _off, attrs, _cnt in headers}
    want = w.CODEC_IDS[codec]
    if allow_uncompressed and want in stored:
        stored.discard(0)
        stored.add(want)
    assert stored == {want}, \
        f"stored batches (base offset, attributes, count): {headers[:5]}{hint}"


def test_librdkafka_has_all_codecs():
    # builtin.features is checked at construction: fails if a codec is missing.
    Producer({"builtin.features": "gzip,snappy,lz4,zstd"})


@pytest.mark.timeout(600)
@pytest.mark.parametrize("codec", CODECS)
def test_confluent_codec_roundtrip(broker, topic_name, codec):
    n = 100_000
    topic = topic_name(codec)
    h.create_topic(broker.bootstrap, topic, PARTITIONS)

    errors: list = []
    p = h.producer(broker.bootstrap, errors, **{
        "compression.type": codec,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 200_000,
    })
    d = h.produce_all(p, topic, messages(n, codec), timeout=300)
    assert not d.failed, f"{len(d.failed)} failed deliveries, first: {d.failed[:3]}"

    got = h.consume_partitions(broker.bootstrap, topic, range(PARTITIONS), timeout=300, expect_total=n)
    consumed = {part: [(m.offset, m.key, m.value) for m in msgs] for part, msgs in got.items()}
    check_roundtrip(d.ok, consumed, n)
    # Producing was idempotent: nothing duplicated beyond n records.
    assert sum(len(v) for v in consumed.values()) == n

    assert_stored_codec(broker, topic, codec)


def _kafka_python_codecs():
    from kafka import codec as kc
    have = {"none": True, "gzip": kc.has_gzip(), "snappy": kc.has_snappy(),
            "lz4": kc.has_lz4(), "zstd": kc.has_zstd()}
    return [pytest.param(c, marks=pytest.mark.skipif(not have[c], reason=f"kafka-python lacks {c}"))
            for c in CODECS]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("codec", _kafka_python_codecs())
def test_kafka_python_codec_roundtrip(broker, topic_name, codec):
    from kafka import KafkaProducer

    n = 20_000
    topic = topic_name(codec)
    h.create_topic(broker.bootstrap, topic, PARTITIONS)

    prod = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        compression_type=None if codec == "none" else codec,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=256 * 1024,
        request_timeout_ms=30000,
    )
    try:
        futures = [(i, prod.send(topic, key=k, value=v)) for i, (k, v) in enumerate(messages(n, codec))]
        prod.flush(timeout=300)
        delivered = []
        for i, f in futures:
            md = f.get(timeout=60)
            k, v = f"k{i % 1000}".encode(), payload(i, codec)
            delivered.append((i, md.partition, md.offset, k, v))
    finally:
        prod.close(timeout=30)

    got = h.kp_consume(broker.bootstrap, topic, range(PARTITIONS), timeout=300)
    consumed = {part: [(r.offset, r.key, r.value) for r in recs] for part, recs in got.items()}
    check_roundtrip(delivered, consumed, n)
    # kafka-python sends a batch uncompressed when compressing would not make it smaller.
    assert_stored_codec(broker, topic, codec, allow_uncompressed=True)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_cross_client_codec(broker, topic_name, codec):
    """librdkafka-compressed batches read by kafka-python, and the reverse."""
    from kafka import KafkaProducer

    n = 5000
    t1, t2 = topic_name("rdk"), topic_name("kp")
    h.create_topic(broker.bootstrap, t1, 2)
    h.create_topic(broker.bootstrap, t2, 2)

    d = h.produce_all(h.producer(broker.bootstrap, **{"compression.type": codec}), t1, messages(n, codec))
    assert not d.failed
    got = h.kp_consume(broker.bootstrap, t1, range(2))
    assert sorted((r.key, r.value) for recs in got.values() for r in recs) == sorted(messages(n, codec))

    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, acks="all", linger_ms=5)
    try:
        fs = [prod.send(t2, key=k, value=v) for k, v in messages(n, codec)]
        prod.flush(timeout=120)
        for f in fs:
            f.get(timeout=30)
    finally:
        prod.close(timeout=30)
    got2 = h.consume_partitions(broker.bootstrap, t2, range(2), expect_total=n)
    assert sorted((m.key, m.value) for recs in got2.values() for m in recs) == sorted(messages(n, codec))
