"""The remote tier against a real S3-compatible server (moto) on loopback: sealed segments are
offloaded, local disk keeps only the local-retention window, consumers replay from offset 0
byte for byte, a broker with an empty log directory serves the history from the bucket, and an
object store that stops answering loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import urllib.request

import pytest

import helpers as h
from conftest import S3_ENV, s3_broker_args

MIB = 1 << 20
VALUE_BYTES = 16 * 1024


def value(i: int) -> bytes:
    """A deterministic, incompressible 16 KiB value for message i."""
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (VALUE_BYTES // len(seed) + 1))[:VALUE_BYTES - 8] + i.to_bytes(8, "big")


def metrics(broker) -> dict[str, float]:
    """Sums of every metric series by name, scraped from the broker's /metrics."""
    urls = re.findall(r"metrics on (http://\S+/metrics)", broker.log_text())
    assert urls, "the broker did not print its metrics address"
    text = urllib.request.urlopen(urls[-1], timeout=10).read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, number = line.rpartition(" ")
        name = name_labels.split("{")[0]
        sums[name] = sums.get(name, 0.0) + float(number)
        if "{" in name_labels:
            sums[name_labels] = float(number)
    return sums


def local_log_bytes(broker) -> int:
    return sum(f.stat().st_size for f in (broker.data_dir / "logs").rglob("*.log"))


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    p = h.producer(bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000, "compression.type": "none"})
    d = h.produce_all(p, topic, ((f"k{i}".encode(), value(i)) for i in range(first, first + count)),
                      partition=0, timeout=300)
    assert not d.failed, d.failed[:3]


def check_replay(bootstrap: str, topic: str, count: int) -> None:
    """Consume from offset 0 and compare every message with what was produced."""
    got = h.consume_partitions(bootstrap, topic, [0], timeout=300, expect_total=count,
                               **{"fetch.max.bytes": 16 * MIB, "max.partition.fetch.bytes": 4 * MIB})[0]
    assert len(got) == count
    for expected_offset, m in enumerate(got):
        assert m.offset == expected_offset
        i = int(m.key[1:])
        assert i == expected_offset and m.value == value(i), f"message at offset {m.offset} differs"


def remote_end(s3, bucket: str) -> int:
    """The end offset of the newest manifest in the bucket (0 when there is none)."""
    manifests = sorted(o["Key"] for o in s3.list(bucket, "cluster-a/") if o["Key"].endswith(".json"))
    if not manifests:
        return 0
    body = s3.client().get_object(Bucket=bucket, Key=manifests[-1])["Body"].read()
    segments = json.loads(body)["segments"]
    return segments[-1]["next_offset"] if segments else 0


def offloaded(broker) -> bool:
    m = metrics(broker)
    return m.get("strata_tiering_upload_lag_segments", 1) == 0 and m.get("strata_tiering_uploaded_segments_total", 0) > 0


@pytest.mark.timeout(900)
def test_offload_replay_and_an_empty_data_dir(broker_factory, s3_server, topic_name):
    megabytes = int(os.environ.get("STRATA_E2E_TIERING_MB", "200"))
    count = megabytes * MIB // VALUE_BYTES
    bucket = s3_server.new_bucket()
    args = s3_broker_args(s3_server, bucket, "--tiering-interval-ms", "200",
                          "--upload-part-bytes", str(5 * MIB), "--log-retention-check-interval-ms", "500")
    broker = broker_factory(extra_args=args, env=S3_ENV)
    topic = topic_name()
    segment = 8 * MIB
    window = 16 * MIB
    # segment.ms rolls the idle tail too, so the whole history reaches the bucket.
    h.create_topic(broker.bootstrap, topic, 1, {"segment.bytes": str(segment), "local.retention.bytes": str(window),
                                                "segment.ms": "3000"})
    produce(broker.bootstrap, topic, 0, count)

    # Offloaded: everything is in the bucket, and local disk holds only the local-retention window.
    wait_until(lambda: remote_end(s3_server, bucket) == count and offloaded(broker)
               and local_log_bytes(broker) <= window + segment, 300,
               "every segment to be offloaded and local retention to trim the local log")
    objects = s3_server.list(bucket, "cluster-a/")
    segments = [o for o in objects if o["Key"].endswith(".seg")]
    manifests = [o for o in objects if o["Key"].endswith(".json")]
    produced = count * (VALUE_BYTES + 30)
    assert sum(o["Size"] for o in segments) >= produced - window - 2 * segment
    assert len(segments) >= megabytes // 8 - 3 and manifests
    assert any(o["Size"] > 5 * MIB for o in segments), "segments above the part size went up as multipart"
    m = metrics(broker)
    assert m['strata_object_store_requests_total{operation="PUT"}'] > 0
    assert m.get('strata_object_store_requests_total{operation="LIST"}', 0) == 0, "no LIST on the write path"

    check_replay(broker.bootstrap, topic, count)
    m = metrics(broker)
    assert m["strata_tiering_remote_fetch_bytes_total"] > 0
    assert m.get('strata_object_store_requests_total{operation="LIST"}', 0) == 0, "no LIST on the read path"

    # A broker whose log directory is gone (same bucket, same metadata) serves the full history
    # from the bucket without downloading it first, and new records continue the offsets.
    broker.stop()
    shutil.rmtree(broker.data_dir / "logs")
    shutil.rmtree(broker.data_dir / "cache", ignore_errors=True)
    broker.start()
    assert local_log_bytes(broker) == 0
    check_replay(broker.bootstrap, topic, count)
    produce(broker.bootstrap, topic, count, 10)
    check_replay(broker.bootstrap, topic, count + 10)


@pytest.mark.timeout(600)
def test_a_silent_object_store_loses_nothing_and_tiering_catches_up(broker_factory, s3_server, topic_name):
    bucket = s3_server.new_bucket()
    args = s3_broker_args(s3_server, bucket, "--tiering-interval-ms", "200", "--log-retention-check-interval-ms", "500")
    broker = broker_factory(extra_args=args, env=S3_ENV)
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"segment.bytes": str(MIB), "local.retention.bytes": "0"})
    produce(broker.bootstrap, topic, 0, 200)
    wait_until(lambda: offloaded(broker), 120, "the first segments to be offloaded")

    s3_server.pause()
    try:
        produce(broker.bootstrap, topic, 200, 600)  # produce goes on while the store is silent
        wait_until(lambda: metrics(broker).get("strata_tiering_upload_lag_segments", 0) >= 3, 60,
                   "the upload lag to show")
        before = local_log_bytes(broker)
        assert before >= 3 * MIB, "segments that are not offloaded stay on local disk"
        # What an operator watches while the disk fills: the lag, the free space and a log line.
        assert metrics(broker)["strata_data_dir_available_bytes"] > 0
        # A silent store fails an upload only once the client's timeouts (30 s) run out.
        wait_until(lambda: "offload failed; local segments are kept" in broker.log_text(), 120,
                   "a log line saying tiering is behind")
    finally:
        s3_server.resume()

    wait_until(lambda: offloaded(broker) and local_log_bytes(broker) <= 2 * MIB, 300,
               "tiering to catch up once the store answers again")
    check_replay(broker.bootstrap, topic, 800)
