"""The load tool (load/, strata-load) against the broker: what the benchmarks read from its summary."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import strata_bin

LOAD = strata_bin().parent / "strata-load"

pytestmark = pytest.mark.skipif(not LOAD.exists(), reason=f"{LOAD} not built (scripts/test.sh builds it)")


def load(broker, *args: str) -> dict:
    cmd = [str(LOAD), *args, "--bootstrap", broker.bootstrap, "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}\n{res.stderr[-4000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_each_producers_first_message_is_reported_apart_and_the_stream_is_all_there(broker, topic_name):
    topic = topic_name()
    produced = load(broker, "produce", "--topic", topic, "--partitions", "2", "--producers", "2",
                    "--messages", "3000", "--rate", "3000", "--message-bytes", "200", "--acks", "1")
    assert produced["errors"] == 0, produced
    # Each producer's first message goes alone, before its paced stream: its latency is the
    # client's start, kept out of the acknowledgement percentiles and the stream's rate.
    assert produced["produce_connect_ms"]["count"] == 2, produced
    assert produced["produce_ack_ms"]["count"] == 2998, produced
    assert produced["produced"]["messages"] == 2998, produced
    assert produced["produced"]["bytes"] == 2998 * 200, produced
    assert 0 < produced["produce_ack_ms"]["p50"] <= produced["produce_ack_ms"]["max"], produced

    consumed = load(broker, "consume", "--topic", topic, "--partitions", "2", "--from", "beginning",
                    "--messages", "3000")
    assert consumed["errors"] == 0, consumed
    assert consumed["consumed"]["messages"] == 3000, consumed
    assert consumed["consumed"]["bytes"] == 3000 * 200, consumed
