"""Malformed and hostile input over raw sockets. After each case the broker
process must still be alive and serve a normal client."""

from __future__ import annotations

import random
import socket
import struct

import pytest
from confluent_kafka import KafkaError

import helpers as h
import kafka_wire as w


@pytest.fixture
def healthy(broker):
    """check() -> asserts the broker is alive and a fresh client can
    produce + consume. Also checks a raw ApiVersions round trip."""
    def check():
        assert broker.alive(), f"broker died; exit codes {broker.exit_codes}"
        with w.Conn(broker.port) as conn:
            assert w.API_VERSIONS in w.api_versions(conn)
        h.roundtrip_ok(broker.bootstrap)
        assert broker.alive()
    return check


def closed_or_answered(conn: w.Conn, timeout: float = 10.0) -> str:
    """After a bad request the broker may answer (with an error) or close the
    connection; hanging on to it silently is tolerated only for `timeout`."""
    return "closed" if conn.wait_closed(timeout) else "open"


def test_garbage_bytes(broker, healthy):
    rng = random.Random(1234)
    payloads = [
        b"\x00\x00\x00\x10" + bytes([0xFF]) * 16,  # api key -1, version -1 ...
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # huge size as ASCII 'GET '
        bytes(rng.randrange(256) for _ in range(4096)),
        b"\x00\x00\x00\x00",  # zero-length frame
        b"\xff\xff\xff\xf0",  # negative size
        b"\x00\x00\x00\x03abc",  # shorter than a request header
    ]
    for data in payloads:
        with w.Conn(broker.port) as conn:
            conn.send(data)
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            assert conn.wait_closed(10), f"connection not closed after garbage {data[:16]!r}"
        assert broker.alive()
    healthy()


def test_huge_declared_size(broker, healthy):
    with w.Conn(broker.port) as conn:
        conn.send(struct.pack(">i", 0x7FFFFFFF) + b"\x00\x12\x00\x00\x00\x00\x00\x01")
        # The broker must refuse to buffer 2 GiB: it closes the connection
        # rather than waiting for (or allocating) the rest.
        assert conn.wait_closed(10), "connection with a 2 GiB frame not closed"
    with w.Conn(broker.port) as conn:
        conn.send(struct.pack(">i", 200 * 1024 * 1024))  # above socket.request.max.bytes (100 MiB)
        assert conn.wait_closed(10), "connection with a 200 MiB frame not closed"
    healthy()


def test_truncated_frame_then_close(broker, healthy):
    body = w.request_frame(w.API_VERSIONS, 0, 1, b"")
    for cut in (2, 4, 7, len(body) - 1):
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
        s.sendall(body[:cut])
        s.close()
    # A frame whose body ends mid-header (size says 6 bytes: api key + version + half a correlation id).
    with w.Conn(broker.port) as conn:
        conn.send(struct.pack(">i", 6) + b"\x00\x12\x00\x00\x00\x00")
        closed_or_answered(conn, 5)
    healthy()


def test_unknown_api_key(broker, healthy):
    with w.Conn(broker.port) as conn:
        conn.send(w.request_frame(999, 0, 42, b""))
        # Kafka closes the connection on an unknown api key; an error response
        # is acceptable too, as long as it carries our correlation id.
        try:
            frame = conn.recv_frame(10)
        except (w.ConnectionClosed, ConnectionResetError):
            frame = None
        except socket.timeout:
            pytest.fail("no response and no close for an unknown api key")
        if frame is not None:
            assert struct.unpack(">i", frame[:4])[0] == 42
    healthy()


def test_api_versions_unsupported_version(broker, healthy):
    with w.Conn(broker.port) as conn:
        body = w.compact_string("strata-e2e") + w.compact_string("0.0") + w.uvarint(0)
        conn.send(w.request_frame(w.API_VERSIONS, 99, 7, body, flexible_header=True))
        frame = conn.recv_frame(10)
        r = w.Reader(frame)
        assert r.int32() == 7, "correlation id"
        # v0 body: error_code, [api_key, min, max]
        error, apis = w.parse_api_versions_v0(r)
        assert error == w.UNSUPPORTED_VERSION
        assert w.API_VERSIONS in apis, f"ApiVersions (18) missing from {apis}"
        lo, hi = apis[w.API_VERSIONS]
        assert lo == 0 and 3 <= hi < 99
        # The connection stays usable: a proper ApiVersions v0 works on it.
        assert w.API_VERSIONS in w.api_versions(conn)
    healthy()


def test_api_versions_v0_lists_required_apis(broker):
    with w.Conn(broker.port) as conn:
        apis = w.api_versions(conn)
    # Produce, Fetch, ListOffsets, Metadata, ApiVersions, CreateTopics, DeleteTopics,
    # DeleteRecords, InitProducerId, DescribeConfigs, AlterConfigs, CreatePartitions,
    # IncrementalAlterConfigs, DescribeCluster.
    for key in (0, 1, 2, 3, 18, 19, 20, 21, 22, 32, 33, 37, 44, 60):
        assert key in apis, f"api key {key} not advertised: {sorted(apis)}"
    # The versions these tests encode by hand (kafka_wire.py).
    for key, version in {0: 3, 1: 4, 2: 1, 18: 0, 22: 0}.items():
        lo, hi = apis[key]
        assert lo <= version <= hi, f"api key {key}: {lo}..{hi} does not include v{version}"


def test_produce_with_huge_topic_array(broker, healthy):
    body = w.string(None) + w.int16(-1) + w.int32(5000) + w.int32(0x7FFFFFFF)
    with w.Conn(broker.port) as conn:
        conn.send(w.request_frame(w.PRODUCE, 3, 5, body))
        closed_or_answered(conn)
    # Same lie one level down: partitions array.
    body = (w.string(None) + w.int16(-1) + w.int32(5000) + w.int32(1) + w.string("t")
            + w.int32(0x7FFFFFFF) + w.int32(0))
    with w.Conn(broker.port) as conn:
        conn.send(w.request_frame(w.PRODUCE, 3, 6, body))
        closed_or_answered(conn)
    healthy()


@pytest.fixture
def raw_topic(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"max.message.bytes": "10000"})
    return topic


def test_raw_produce_good_batch(broker, raw_topic):
    """Sanity check of the hand-built request: a valid batch is accepted."""
    with w.Conn(broker.port) as conn:
        res = w.produce(conn, raw_topic, 0, w.record_batch([(b"k", b"v1"), (None, b"v2")]))
        assert (res.topic, res.partition, res.error, res.base_offset) == (raw_topic, 0, 0, 0)
    got = h.consume_partitions(broker.bootstrap, raw_topic, [0])
    assert [(m.key, m.value) for m in got[0]] == [(b"k", b"v1"), (None, b"v2")]


def test_produce_bad_crc(broker, raw_topic, healthy):
    with w.Conn(broker.port) as conn:
        res = w.produce(conn, raw_topic, 0, w.record_batch([(b"k", b"v")], corrupt_crc=True))
        assert res.error == w.CORRUPT_MESSAGE, res
        # Nothing was appended, and the same connection still works.
        assert w.list_offsets_v1(conn, raw_topic, 0, w.LATEST)[2] == 0
        ok = w.produce(conn, raw_topic, 0, w.record_batch([(b"k", b"v")]))
        assert (ok.error, ok.base_offset) == (0, 0)
    healthy()


def test_produce_lying_record_count(broker, raw_topic, healthy):
    with w.Conn(broker.port) as conn:
        batch = w.record_batch([(b"k", b"v")], claimed_record_count=0x7FFFFFFF)
        conn.send(w.request_frame(w.PRODUCE, 3, 9, w.produce_v3_body(raw_topic, 0, batch)))
        try:
            r = w.Reader(conn.recv_frame(10))
            assert r.int32() == 9
            [res] = w.parse_produce_v3(r)
            assert res.error in (w.CORRUPT_MESSAGE, w.INVALID_RECORD), res
        except (w.ConnectionClosed, ConnectionResetError):
            pass
        # Truncated batch: batchLength claims more than is there.
        batch = w.record_batch([(b"k", b"v" * 100)])
        cut = batch[:-40]
        conn2 = w.Conn(broker.port)
        try:
            conn2.send(w.request_frame(w.PRODUCE, 3, 10, w.produce_v3_body(raw_topic, 0, cut)))
            try:
                r = w.Reader(conn2.recv_frame(10))
                assert r.int32() == 10
                [res] = w.parse_produce_v3(r)
                assert res.error != 0, res
            except (w.ConnectionClosed, ConnectionResetError):
                pass
        finally:
            conn2.close()
    with w.Conn(broker.port) as conn:
        assert w.list_offsets_v1(conn, raw_topic, 0, w.LATEST)[2] == 0, "a malformed batch was appended"
    healthy()


def test_produce_too_large_raw(broker, raw_topic, healthy):
    with w.Conn(broker.port) as conn:
        res = w.produce(conn, raw_topic, 0, w.record_batch([(None, b"x" * 20000)]))
        assert res.error == w.MESSAGE_TOO_LARGE, res
        small = w.produce(conn, raw_topic, 0, w.record_batch([(None, b"x" * 1000)]))
        assert (small.error, small.base_offset) == (0, 0)
    healthy()


def test_produce_too_large_confluent(broker, topic_name, healthy):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"max.message.bytes": "2048"})
    p = h.producer(broker.bootstrap, **{"enable.idempotence": False, "compression.type": "none",
                                         "message.max.bytes": 1_000_000, "linger.ms": 0})
    big = random.Random(5).randbytes(20000)
    d = h.produce_all(p, topic, [(b"big", big)])
    assert not d.ok and len(d.failed) == 1
    assert d.failed[0][1].code() == KafkaError.MSG_SIZE_TOO_LARGE, d.failed[0][1]
    d = h.produce_all(p, topic, [(b"small", b"fits")])
    assert not d.failed and d.ok[0][2] == 0
    got = h.consume_partitions(broker.bootstrap, topic, [0])
    assert [m.value for m in got[0]] == [b"fits"]
    healthy()


def test_produce_to_unknown_topic_and_partition(broker, raw_topic, healthy):
    with w.Conn(broker.port) as conn:
        res = w.produce(conn, raw_topic, 5, w.record_batch([(None, b"x")]))
        assert res.error == 3, f"UNKNOWN_TOPIC_OR_PARTITION expected, got {res}"
        # Produce never auto-creates a topic.
        res = w.produce(conn, raw_topic + "-nope", 0, w.record_batch([(None, b"x")]))
        assert res.error == 3, f"UNKNOWN_TOPIC_OR_PARTITION expected, got {res}"
    with w.Conn(broker.port) as conn:
        # Null records: an error or a closed connection, never a crash.
        conn.send(w.request_frame(w.PRODUCE, 3, 11, w.produce_v3_body(raw_topic, 0, None)))
        closed_or_answered(conn, 5)
    healthy()


@pytest.mark.timeout(300)
def test_fuzzed_requests(broker, raw_topic, healthy):
    """Random byte flips and truncations of valid requests; bounded count."""
    rng = random.Random(20240611)
    templates = [
        w.request_frame(w.API_VERSIONS, 0, 1, b""),
        w.request_frame(w.PRODUCE, 3, 2, w.produce_v3_body(raw_topic, 0, w.record_batch([(b"k", b"v" * 20)] * 3))),
        w.request_frame(w.FETCH, 4, 3, w.fetch_v4_body(raw_topic, 0, 0, max_wait_ms=10, min_bytes=1)),
        w.request_frame(w.LIST_OFFSETS, 1, 4, w.int32(-1) + w.array([w.string(raw_topic) + w.array([w.int32(0) + w.int64(-1)])])),
    ]
    for i in range(150):
        frame = bytearray(rng.choice(templates))
        body = frame[4:]
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(body))
            body[pos] = rng.randrange(256)
        if rng.random() < 0.3:
            body = body[: rng.randrange(len(body))]
        data = struct.pack(">i", len(body)) + bytes(body)
        with w.Conn(broker.port, timeout=5) as conn:
            conn.send(data)
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.wait_closed(5)
        assert broker.alive(), f"broker died on fuzz case {i}: {data[:64].hex()}"
    healthy()
