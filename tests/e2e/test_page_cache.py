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


def active_segment(broker) -> Path:
    topics = [d for d in (broker.data_dir / "logs").iterdir() if d.is_dir()]
    assert len(topics) == 1, topics
    return max((topics[0] / "0").glob("*.log"))


@pytest.mark.parametrize("keep", [KEEP, 0], ids=["drop-behind", "off"])
def test_data_behind_the_tail_leaves_the_page_cache_and_still_reads_back(
        broker_factory, topic_name, keep):
    broker = broker_factory(extra_args=["--log-drop-behind-bytes", str(keep)])
    topic = topic_name()
    h.create_topic(broker.bootstrap, topic, 1,
                   {"segment.bytes": str(1 << 30), "remote.storage.enable": "false"})
    values = [os.urandom(16 * 1024) for _ in range(WRITTEN // (16 * 1024))]
    p = h.producer(broker.bootstrap, **{"compression.type": "none"})
    h.produce_all(p, topic, ((None, v) for v in values), partition=0)
    segment = active_segment(broker)
    assert segment.stat().st_size >= WRITTEN

    # Drop-behind runs every 250 ms and advises each range twice; give it a few passes.
    deadline = time.monotonic() + 10
    cached = cached_bytes(segment)
    while keep and cached > keep + MIB and time.monotonic() < deadline:
        time.sleep(0.25)
        cached = cached_bytes(segment)
    if keep:
        assert cached <= keep + MIB, f"{cached} bytes still cached, {keep} kept"
        # The tail readers need is still there.
        assert cached >= keep // 2, f"only {cached} bytes cached, {keep} kept"
    else:
        time.sleep(1.5)
        assert cached_bytes(segment) >= WRITTEN - MIB, "with drop-behind off the kernel keeps it"

    got = h.consume_partitions(broker.bootstrap, topic, [0], expect_total=len(values))[0]
    assert [m.value for m in got] == values
