"""kafkajs (Node) admin + idempotent producer, checked by reading back with
confluent-kafka. Skipped if node or the npm packages are missing
(scripts/test.sh installs them)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import helpers as h

JS_DIR = Path(__file__).parent / "js"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node not installed"),
    pytest.mark.skipif(not (JS_DIR / "node_modules" / "kafkajs").is_dir(),
                       reason="kafkajs not installed: run `npm ci` in tests/e2e/js (scripts/test.sh does)"),
]


def test_kafkajs_smoke(broker, topic_name):
    topic = topic_name()
    n = 1000
    res = subprocess.run(["node", "smoke.js", broker.bootstrap, topic, str(n)], cwd=JS_DIR,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert res.returncode == 0, f"node smoke.js failed ({res.returncode}):\n{res.stderr.decode(errors='replace')[-4000:]}"
    out = json.loads(res.stdout.decode().strip().splitlines()[-1])

    assert out["created"] is True
    assert out["listed"] is True
    assert sorted(p["id"] for p in out["partitions"]) == [0, 1, 2]
    assert all(a["errorCode"] == 0 for a in out["acks"]), out["acks"][:5]
    assert ["retention.ms", "86400000"] in out["retentionMs"]
    assert [(b["host"], b["port"]) for b in out["cluster"]["brokers"]] == [("127.0.0.1", broker.port)]
    per_part = {p: len(range(p, n, 3)) for p in range(3)}
    assert {int(o["partition"]): int(o["high"]) for o in out["offsets"]} == per_part
    assert {int(o["partition"]): int(o["low"]) for o in out["offsets"]} == {0: 0, 1: 0, 2: 0}

    got = h.consume_partitions(broker.bootstrap, topic, range(3), expect_total=n)
    for p in range(3):
        want = [(f"k{i}".encode(), f"kafkajs-{i}".encode()) for i in range(p, n, 3)]
        assert [(m.key, m.value) for m in got[p]] == want
        assert [m.offset for m in got[p]] == list(range(len(want)))
