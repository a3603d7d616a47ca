"""Fixtures for the Strata end-to-end tests.

Every test gets its own broker process (the `broker` fixture): a fresh data
directory under the test's tmp_path, a free loopback port, and a log file that
is attached to the report of any failing test.

The binary is taken from $STRATA_BIN, else
${CARGO_TARGET_DIR:-<repo>/target}/debug/strata. It is never built here.
"""

from __future__ import annotations

import atexit
import os
import random
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
LOG_TAIL_BYTES = 64 * 1024

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LIVE: set[subprocess.Popen] = set()


def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_leftovers)


def strata_bin() -> Path:
    env = os.environ.get("STRATA_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "strata"


_handed_out: set[int] = set()


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. A port the kernel hands out
    itself (bind to 0) can be taken by any outgoing connection while a killed broker is down,
    and its restart then fails with "address in use" (seen once in a full run)."""
    low, _ = _ephemeral_ports()
    first = 10000 if low > 11000 else 1024
    for _ in range(1000):
        port = random.randrange(first, low)
        if port in _handed_out:
            continue  # given to a process that may not have bound it yet
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {first}..{low}")


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class BrokerError(AssertionError):
    pass


class Broker:
    """One strata process on a loopback port with its own data directory.

    start() / stop() (SIGTERM, graceful) / kill9() / restart() keep the same
    data dir and port. All output goes to `log_path`.
    """

    def __init__(self, binary: Path, workdir: Path, *, port: int | None = None,
                 extra_args: tuple[str, ...] | list[str] = (), env: dict[str, str] | None = None,
                 name: str = "broker"):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / f"{name}.log"
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.exit_codes: list[int] = []
        self._expected_exit = True  # nothing running yet

    # ------------------------------------------------------------ properties
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        return [
            str(self.binary), "serve",
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--metrics-listen", "127.0.0.1:0",
            "--replication-listen", "127.0.0.1:0",
            *self.extra_args,
        ]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        text = self.log_text()
        if len(text) > limit:
            text = "[... earlier output cut ...]\n" + text[-limit:]
        return text

    def _note(self, line: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(f"=== e2e harness {time.strftime('%H:%M:%S')}: {line} ===\n")

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = READY_TIMEOUT) -> "Broker":
        if self.alive():
            raise BrokerError(f"{self.name} already running (pid {self.pid})")
        if not self.binary.exists():
            raise BrokerError(f"strata binary not found at {self.binary}: build it with `cargo build` "
                              "or point STRATA_BIN at it")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._note(f"start #{self.starts}: {' '.join(self.command())}")
        offset = self.log_path.stat().st_size
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"
        env.update(self.extra_env)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, env=env,
            )
        finally:
            log.close()
        _LIVE.add(self.proc)
        self._expected_exit = False
        self._wait_ready(offset, timeout)
        return self

    def _wait_ready(self, log_offset: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = f"listening on {self.bootstrap}"
        while True:
            code = self.proc.poll()
            if code is not None:
                self._expected_exit = True
                self.exit_codes.append(code)
                raise BrokerError(f"{self.name} exited with code {code} before it was ready; log:\n"
                                  f"{self.log_tail()}")
            with open(self.log_path, "rb") as f:
                f.seek(log_offset)
                new = _ANSI.sub("", f.read().decode(errors="replace"))
            said_ready = want in new or "listening on" in new
            if said_ready and port_accepts(self.port):
                return
            if not said_ready and port_accepts(self.port, timeout=0.2):
                # Accepting connections is what matters; the log line may be
                # formatted differently. Give the line a moment, then go on.
                time.sleep(0.2)
                return
            if time.monotonic() > deadline:
                self.kill9()
                raise BrokerError(f"{self.name} not ready on {self.bootstrap} within {timeout:.0f}s "
                                  f"(no '{want}' line and port closed); log:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait. Returns the exit code; raises if it doesn't exit
        in time (after killing it)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self._expected_exit = True
        self._note("SIGTERM")
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self.exit_codes.append(-9)
            raise BrokerError(f"{self.name} did not exit within {timeout:.0f}s of SIGTERM (killed it); log:\n"
                              f"{self.log_tail()}")
        self.exit_codes.append(code)
        self._note(f"exited with code {code}")
        return code

    def kill9(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._expected_exit = True
        self._note("SIGKILL")
        self.proc.kill()
        self.proc.wait(10)
        self.exit_codes.append(self.proc.returncode)

    def restart(self, graceful: bool = True, timeout: float = READY_TIMEOUT) -> "Broker":
        if not self.alive():
            pass  # already stopped (or killed): just start again
        elif graceful:
            code = self.stop()
            if code != 0:
                raise BrokerError(f"{self.name} exited with code {code} on SIGTERM; log:\n{self.log_tail()}")
        else:
            self.kill9()
        return self.start(timeout)

    def died_unexpectedly(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None and not self._expected_exit

    def close(self) -> None:
        """Teardown: stop gracefully if possible, kill otherwise."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._expected_exit = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._note("still running 10s after SIGTERM at teardown; SIGKILL")
                self.proc.kill()
                self.proc.wait(10)
        _LIVE.discard(self.proc)

    def __repr__(self) -> str:
        return f"Broker({self.name}, {self.bootstrap}, pid={self.pid})"


# ---------------------------------------------------------------- pytest plumbing
_BROKERS_KEY = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in item.stash.get(_BROKERS_KEY, []):
            report.sections.append((f"strata log: {b.name} ({b.log_path})", b.log_tail()))


@pytest.fixture(scope="session")
def strata_binary() -> Path:
    path = strata_bin()
    if not path.exists():
        pytest.fail(f"strata binary not found at {path}: run `cargo build` first or set STRATA_BIN",
                    pytrace=False)
    return path


@pytest.fixture
def broker_factory(request, tmp_path, strata_binary):
    """make(extra_args=(), env=None, start=True, name=None) -> Broker."""
    brokers: list[Broker] = []
    request.node.stash[_BROKERS_KEY] = brokers

    def make(extra_args=(), env=None, start=True, name=None, port=None) -> Broker:
        name = name or f"broker{len(brokers) + 1}"
        b = Broker(strata_binary, tmp_path / name, port=port, extra_args=extra_args, env=env, name=name)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make

    crashed = [b for b in brokers if b.died_unexpectedly()]
    for b in brokers:
        b.close()
    if crashed:
        names = ", ".join(f"{b.name} (exit {b.proc.returncode})" for b in crashed)
        pytest.fail(f"broker process died during the test: {names}; see the strata log section",
                    pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


@pytest.fixture
def topic_name(request):
    """new(tag='') -> a unique, valid topic name derived from the test name."""
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")[:80]

    def new(tag: str = "") -> str:
        tag = re.sub(r"[^a-zA-Z0-9._-]+", "-", tag)
        return "-".join(p for p in (base, tag, uuid.uuid4().hex[:8]) if p)

    return new


# ---------------------------------------------------------------- S3 (moto)
class S3Server:
    """A moto_server on a free loopback port: an S3-compatible server keeping objects in memory.

    pause()/resume() freeze and thaw the process (SIGSTOP/SIGCONT), which looks to the broker like
    an object store that stopped answering, without losing what it holds.
    """

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moto.log"
        exe = Path(os.environ.get("STRATA_TEST_VENV", Path.home() / ".cache" / "strata-test-venv")) / "bin" / "moto_server"
        if not exe.exists():
            exe = Path(subprocess.check_output(["bash", "-c", "command -v moto_server"], text=True).strip())
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _LIVE.add(self.proc)
        deadline = time.monotonic() + 30
        while not port_accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start; log:\n{self.log_path.read_text(errors='replace')}")
            time.sleep(0.1)

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self) -> str:
        name = f"strata-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def list(self, bucket: str, prefix: str = "") -> list[dict]:
        out, token = [], None
        c = self.client()
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            r = c.list_objects_v2(**kw)
            out.extend(r.get("Contents", []))
            if not r.get("IsTruncated"):
                return out
            token = r["NextContinuationToken"]

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.close()


def s3_broker_args(s3: S3Server, bucket: str, *extra: str) -> list[str]:
    """Flags that point a broker's remote tier at `bucket` on the moto server."""
    return ["--object-store", f"s3://{bucket}/cluster-a", "--s3-endpoint", s3.endpoint,
            "--s3-region", "us-east-1", "--s3-path-style", "true", *extra]


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
