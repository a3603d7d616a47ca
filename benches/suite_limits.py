"""This machine's limits, measured by `benches/suite.py` in the same run as the suite.

- disk: sequential write and read bandwidth of the directory's disk with `dd` and O_DIRECT (the
  stable figure: it bypasses the page cache), plus a buffered write ended by `fdatasync`;
- loopback: TCP bandwidth over 127.0.0.1 between two processes (a receiver child process and a
  sender in this one), 4 MiB `sendall`s into 4 MiB `recv_into`s on one connection;
- S3: the S3 server's raw PUT and GET throughput for whole objects via boto3.

Every figure is in MB/s (10^6 bytes a second), as `strata-load` reports.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

MIB = 1 << 20

_DD = re.compile(r"^(\d+) bytes .* copied, ([0-9.]+) s", re.M)


def _dd(args: list[str]) -> dict:
    """Runs dd; returns bytes, seconds and MB/s parsed from its last line."""
    out = subprocess.run(["dd", *args], capture_output=True, text=True, check=True).stderr
    m = _DD.search(out)
    if not m:
        raise RuntimeError(f"cannot parse dd's output: {out!r}")
    size, seconds = int(m.group(1)), float(m.group(2))
    return {"bytes": size, "seconds": seconds, "mb_per_s": round(size / seconds / 1e6, 1),
            "dd": out.strip().splitlines()[-1]}


def disk(directory: Path, mib: int, runs: int = 2) -> dict:
    """Sequential bandwidth of `directory`'s disk: O_DIRECT write (of zeros) and read (best of
    `runs`) of a `mib` MiB file in 1 MiB blocks, a buffered read of it once evicted from the page
    cache (what a reader going through the page cache gets from the disk, kernel read-ahead
    included), a buffered write ended by fdatasync, and, as a
    cross-check (a virtual disk may treat zeros specially), an O_DIRECT write of random bytes
    copied from a file in /dev/shm."""
    path = directory / "dd-probe"
    shm = Path("/dev/shm") / f"strata-suite-random-{time.time_ns()}"
    writes, reads = [], []
    try:
        for _ in range(runs):
            writes.append(_dd(["if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "oflag=direct"]))
            reads.append(_dd([f"if={path}", "of=/dev/null", "bs=1M", "iflag=direct"]))
        _evict(path)
        buffered_read = _dd([f"if={path}", "of=/dev/null", "bs=1M"])
        path.unlink()
        buffered = _dd(["if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"])
        path.unlink()
        random_write = None
        if Path("/dev/shm").is_dir():
            with open("/dev/urandom", "rb") as src, open(shm, "wb") as dst:
                for _ in range(mib):
                    dst.write(src.read(MIB))
            random_write = _dd([f"if={shm}", f"of={path}", "bs=1M", "oflag=direct"])
    finally:
        path.unlink(missing_ok=True)
        shm.unlink(missing_ok=True)
    best = lambda xs: max(xs, key=lambda r: r["mb_per_s"])  # noqa: E731
    return {
        "file_mib": mib,
        "write_direct_mb_s": best(writes)["mb_per_s"],
        "read_direct_mb_s": best(reads)["mb_per_s"],
        "write_buffered_fdatasync_mb_s": buffered["mb_per_s"],
        "read_buffered_evicted_mb_s": buffered_read["mb_per_s"],
        "write_direct_random_mb_s": random_write["mb_per_s"] if random_write else None,
        "write_direct_runs_mb_s": [r["mb_per_s"] for r in writes],
        "read_direct_runs_mb_s": [r["mb_per_s"] for r in reads],
        "dd_lines": {"write_direct": best(writes)["dd"], "read_direct": best(reads)["dd"],
                     "write_buffered_fdatasync": buffered["dd"], "read_buffered_evicted": buffered_read["dd"]},
    }


def _evict(path: Path) -> None:
    """Writes `path` back and drops it from the page cache (no privileges needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


_RECEIVER = r"""
import socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
buf = bytearray(4 << 20); view = memoryview(buf)
total, first = 0, None
while True:
    n = conn.recv_into(view)
    if not n:
        break
    if first is None:
        first = time.perf_counter()
    total += n
end = time.perf_counter()
print(total, end - first, flush=True)
"""


def loopback(seconds: float, runs: int = 3) -> dict:
    """TCP bandwidth over 127.0.0.1 between two processes, one connection (best of `runs`)."""
    rates = []
    for _ in range(runs):
        rx = subprocess.Popen([sys.executable, "-c", _RECEIVER], stdout=subprocess.PIPE, text=True)
        try:
            port = int(rx.stdout.readline())
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            block = memoryview(b"\xa5" * (4 << 20))
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                s.sendall(block)
            s.close()
            total, elapsed = rx.stdout.readline().split()
            rates.append(int(total) / float(elapsed) / 1e6)
        finally:
            rx.wait(30)
    return {"mb_per_s": round(max(rates), 1), "runs_mb_s": [round(r, 1) for r in rates],
            "method": "two Python processes, one TCP connection over 127.0.0.1, 4 MiB sendall/recv_into, "
                      f"{seconds:g} s a run, best of {runs}"}


def s3(client, bucket: str, object_mib: int, runs: int = 3) -> dict:
    """The S3 server's raw PUT and GET throughput for whole `object_mib` MiB objects (boto3,
    one request at a time; best of `runs`)."""
    body = bytes(range(256)) * (object_mib * MIB // 256)
    puts, gets = [], []
    for i in range(runs):
        key = f"suite-probe-{i}"
        start = time.perf_counter()
        client.put_object(Bucket=bucket, Key=key, Body=body)
        puts.append(len(body) / (time.perf_counter() - start) / 1e6)
        start = time.perf_counter()
        got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        gets.append(len(got) / (time.perf_counter() - start) / 1e6)
        assert len(got) == len(body)
    for i in range(runs):
        client.delete_object(Bucket=bucket, Key=f"suite-probe-{i}")
    return {"object_mib": object_mib, "put_mb_s": round(max(puts), 1), "get_mb_s": round(max(gets), 1),
            "put_runs_mb_s": [round(x, 1) for x in puts], "get_runs_mb_s": [round(x, 1) for x in gets],
            "get_median_mb_s": round(statistics.median(gets), 1)}
