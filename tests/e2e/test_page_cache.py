"""Drop-behind: a partition's data more than `--log-drop-behind-bytes` behind its end is written
back and dropped from the page cache, the newest bytes stay cached for readers at the tail, and
everything still reads back from disk. Page-cache residency is read with util-linux's
`fincore`."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import helpers as h

MIB = 1 << 20
WRITTEN = 48 * MIB
KEEP = 8 * MIB


def cached_bytes(path: Path) -> int:
    """How many bytes of `path` are in the page cache."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def segment_files(broker) -> list[Path]:
    topics = [d for d in (broker.data_dir / "logs").iterdir() if d.is_dir()]
    assert len(topics) == 1, topics
    return sorted((topics[0] / "0").glob("*.log"))


@pytest.mark.parametrize("keep, segment_bytes", [(KEEP, 1 << 30), (KEEP, 12 * MIB), (0, 1 << 30)],
                         ids=["one-segment", "segments-rolled", "off"])
def test_data_behind_the_tail_leaves_the_page_cache_and_still_reads_back(
        broker_factory, topic_name, keep, segment_bytes):
    broker = broker_factory(extra_args=["--log-drop-behind-bytes", str(keep)])
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1,
                   {"segment.bytes": str(segment_bytes), "remote.storage.enable": "false"})
    values = [os.urandom(16 * 1024) for _ in range(WRITTEN // (16 * 1024))]
    p = h.producer(broker.bootstrap, **{"compression.type": "none"})
    h.produce_all(p, topic, ((None, v) for v in values), partition=0)
    segments = segment_files(broker)
    assert sum(f.stat().st_size for f in segments) >= WRITTEN
    assert len(segments) >= (WRITTEN // segment_bytes) + 1

    def cached() -> int:
        return sum(cached_bytes(f) for f in segment_files(broker))

    # Drop-behind runs every 250 ms and advises each range twice; give it a few passes. The
    # kept bytes are the newest, across segments (whole MiB of the segments they start in).
    deadline = time.monotonic() + 10
    now = cached()
    while keep and now > keep + 2 * MIB and time.monotonic() < deadline:
        time.sleep(0.25)
        now = cached()
    if keep:
        assert now <= keep + 2 * MIB, f"{now} bytes still cached, {keep} kept"
        # The tail readers need is still there, and it is the newest data.
        assert now >= keep // 2, f"only {now} bytes cached, {keep} kept"
        assert cached_bytes(segments[-1]) >= min(segments[-1].stat().st_size, keep) // 2
    else:
        # This VM's kernel reclaims cold pages proactively (DAMON), so not all of it stays.
        time.sleep(1.5)
        assert cached() >= WRITTEN // 2, "with drop-behind off the kernel keeps it"

    got = h.consume_partitions(broker.bootstrap, topic, [0], expect_total=len(values))[0]
    assert [m.value for m in got] == values


@pytest.mark.parametrize("keep, segment_bytes, part_bytes", [
    (KEEP, 12 * MIB, 5 * MIB), (KEEP, 4 * MIB, 32 * MIB), (0, 12 * MIB, 5 * MIB)],
    ids=["multipart", "single-put", "off"])
def test_uploads_leave_neither_segments_nor_objects_in_the_page_cache(
        broker_factory, topic_name, keep, segment_bytes, part_bytes):
    broker = broker_factory(extra_args=["--log-drop-behind-bytes", str(keep),
                                        "--upload-part-bytes", str(part_bytes),
                                        "--tiering-interval-ms", "200"])
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1, {"segment.bytes": str(segment_bytes)})
    values = [os.urandom(16 * 1024) for _ in range(WRITTEN // (16 * 1024))]
    p = h.producer(broker.bootstrap, **{"compression.type": "none"})
    h.produce_all(p, topic, ((None, v) for v in values), partition=0)
    bucket = broker.data_dir / "objects"

    def uploaded() -> list[Path]:
        files = [f for f in bucket.rglob("*") if f.is_file()]
        if any("#" in f.name for f in files):
            return []  # an upload is still being staged
        return [f for f in files if f.suffix == ".seg"]

    def all_uploaded() -> list[Path]:
        sealed = len(segment_files(broker)) - 1
        objects = uploaded()
        return objects if sealed >= 3 and len(objects) >= sealed else []

    # Every sealed segment is uploaded (none is being read or staged any more).
    deadline = time.monotonic() + 30
    while not all_uploaded() and time.monotonic() < deadline:
        time.sleep(0.2)
    objects = all_uploaded()
    size = sum(f.stat().st_size for f in objects)
    assert size >= 36 * MIB, f"uploaded {size} bytes"
    time.sleep(0.6)  # two drop-behind passes after the last upload
    cached = sum(cached_bytes(f) for f in objects)
    local = sum(cached_bytes(f) for f in segment_files(broker))
    if keep:
        assert cached <= MIB, f"{cached} of {size} uploaded bytes still cached"
        # The uploads read the sealed segments back; what they read leaves the cache again.
        assert local <= keep + 2 * MIB, f"{local} bytes of local segments cached, {keep} kept"
    else:
        assert cached >= size // 2, f"only {cached} of {size} uploaded bytes cached"

    got = h.consume_partitions(broker.bootstrap, topic, [0], expect_total=len(values))[0]
    assert [m.value for m in got] == values
