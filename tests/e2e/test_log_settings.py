"""The local log acts on topic configs (segment rolling, retention by size and
time, compression.type, message.timestamp.type) and the broker's own settings
come from flags, STRATA_* variables and a TOML file, with bad ones refused at
startup by name."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, TopicPartition

import helpers as h
import kafka_wire as w


def partition_dir(broker, partition: int = 0) -> Path:
    """The log directory of the only topic's partition (logs/<topic id>/<partition>)."""
    topics = [d for d in (broker.data_dir / "logs").iterdir() if d.is_dir()]
    assert len(topics) == 1, topics
    return topics[0] / str(partition)


def segment_files(broker) -> list[Path]:
    return sorted(partition_dir(broker).glob("*.log"))


def low_watermark(bootstrap: str, topic: str) -> tuple[int, int]:
    c = h.consumer(bootstrap)
    try:
        return h.watermarks(c, topic, [0])[0]
    finally:
        c.close()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def produce_values(bootstrap: str, topic: str, n: int, size: int, timestamp: int | None = None) -> None:
    # One message per request so every batch is small and segments roll often.
    p = h.producer(bootstrap, **{"linger.ms": 0, "batch.num.messages": 1})
    d = h.produce_all(p, topic, ((None, f"{i:06d}".encode() + b"x" * size, timestamp) for i in range(n)), partition=0)
    assert not d.failed, d.failed[:3]


def test_segments_roll_and_retention_bytes_deletes_old_ones(broker_factory, topic_name):
    broker = broker_factory(extra_args=["--log-retention-check-interval-ms", "200"])
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"segment.bytes": "2048", "retention.bytes": "8192"})
    produce_values(broker.bootstrap, topic, 200, 100)
    # What is left is at most retention.bytes plus the active segment.
    files = wait_until(lambda: (lambda fs: fs if sum(f.stat().st_size for f in fs) <= 8192 + 2048 else None)(
        segment_files(broker)), 20, "retention.bytes to delete old segments")
    low, high = low_watermark(broker.bootstrap, topic)
    assert high == 200 and low > 0
    assert int(files[0].stem) == low, "the log start offset is the first remaining segment's base"
    got = h.consume_partitions(broker.bootstrap, topic, [0])[0]
    assert [m.offset for m in got] == list(range(low, 200))
    assert got[0].value.startswith(f"{low:06d}".encode())


def test_retention_ms_deletes_segments_by_record_time(broker_factory, topic_name):
    broker = broker_factory(extra_args=["--log-retention-check-interval-ms", "200"])
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"segment.bytes": "2048", "retention.ms": "60000"})
    hour_ago = int(time.time() * 1000) - 3_600_000
    produce_values(broker.bootstrap, topic, 100, 100, timestamp=hour_ago)
    produce_values(broker.bootstrap, topic, 5, 100)  # fresh records keep the newest segments
    low, high = wait_until(lambda: (lambda wm: wm if wm[0] > 0 else None)(low_watermark(broker.bootstrap, topic)),
                           20, "time retention to move the log start offset")
    assert high == 105 and 0 < low <= 100
    # Admin-visible too: ListOffsets(earliest) reports the new start.
    with w.Conn(broker.port) as conn:
        assert w.list_offsets_v1(conn, topic, 0, w.EARLIEST)[2] == low


def test_compression_type_recompresses_to_the_topic_codec(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"compression.type": "zstd"})
    values = [(f"k{i}".encode(), f"value {i} ".encode() * 20) for i in range(500)]
    d = h.produce_all(h.producer(broker.bootstrap, **{"compression.type": "none"}), topic, values, partition=0)
    assert not d.failed
    with w.Conn(broker.port) as conn:
        [res] = w.parse_fetch_v4(conn.call(w.FETCH, 4, w.fetch_v4_body(topic, 0, 0, max_wait_ms=0, min_bytes=1)))
    codecs = {attrs & 0x07 for _o, attrs, _c in w.batch_headers(res.records)}
    assert codecs == {w.CODEC_IDS["zstd"]}
    got = h.consume_partitions(broker.bootstrap, topic, [0])[0]
    assert [(m.key, m.value) for m in got] == values


def test_log_append_time_stamps_records_with_the_broker_clock(broker, topic_name):
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    d = h.produce_all(h.producer(broker.bootstrap), topic, [(b"k", b"v", 1_000)], partition=0)
    assert not d.failed
    c = h.consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        msg = wait_until(lambda: next(iter(c.consume(1, 1.0)), None), 20, "the message")
    finally:
        c.close()
    kind, ts = msg.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= int(time.time() * 1000) + 1000


def test_settings_from_file_env_and_flags(broker_factory, tmp_path, topic_name):
    config = tmp_path / "strata.toml"
    config.write_text('num-partitions = 3\nauto-create-topics = true\n')
    broker = broker_factory(extra_args=["--config", str(config)], env={"STRATA_BROKER_ID": "7"})
    topic = topic_name()
    # Auto-creation through a metadata request uses the file's num-partitions.
    h.produce_all(h.producer(broker.bootstrap), topic, [(b"k", b"v")])
    md = h.admin_client(broker.bootstrap).list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 3
    assert list(md.brokers) == [7], "STRATA_BROKER_ID set the broker id"

    flagged = broker_factory(extra_args=["--config", str(config), "--num-partitions", "2"], name="flagged")
    other = topic_name("flag")
    h.produce_all(h.producer(flagged.bootstrap), other, [(b"k", b"v")])
    md = h.admin_client(flagged.bootstrap).list_topics(other, timeout=10)
    assert len(md.topics[other].partitions) == 2, "a flag wins over the file"


@pytest.mark.parametrize("args, env, key", [
    (["--num-partitions", "0"], {}, "num-partitions"),
    (["--log-retention-ms", "-7"], {}, "log-retention-ms"),
    (["--compression-type", "brotli"], {}, "compression-type"),
    ([], {"STRATA_BROKER_ID": "seven"}, "broker-id"),
    ("config:no-such-setting = 1", {}, "no-such-setting"),
    ("config:num-partitions = \"three\"", {}, "num-partitions"),
])
def test_invalid_settings_are_refused_by_name(strata_binary, tmp_path, args, env, key):
    if isinstance(args, str):
        path = tmp_path / "bad.toml"
        path.write_text(args.removeprefix("config:") + "\n")
        args = ["--config", str(path)]
    cmd = [str(strata_binary), "serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", *args]
    import os
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, proc.stdout
    assert key in proc.stderr, proc.stderr


def test_a_data_dir_is_used_by_one_broker_at_a_time(broker_factory, strata_binary):
    broker = broker_factory()
    cmd = [str(strata_binary), "serve", "--data-dir", str(broker.data_dir), "--listen", "127.0.0.1:0",
           "--metrics-listen", "127.0.0.1:0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "another broker is using it" in proc.stderr
    assert broker.alive()
