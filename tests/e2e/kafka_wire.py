"""Hand-rolled Kafka wire-protocol encoding for the raw-socket tests.

Only the handful of request/response versions the e2e tests need, written out
field by field from the Kafka protocol spec (no client library involved), so
tests can send exactly the bytes they want -- including malformed ones.

Request framing: int32 size, then the request header
(v1: api_key int16, api_version int16, correlation_id int32, client_id
nullable-string; v2 adds an empty tagged-field section), then the body.
Responses: int32 size, correlation_id int32 (header v0; v1 adds tagged fields,
which none of the versions used here have), then the body.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

# ---------------------------------------------------------------- api keys
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
API_VERSIONS = 18
CREATE_TOPICS = 19
INIT_PRODUCER_ID = 22

# ---------------------------------------------------------------- error codes
NONE = 0
CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
INVALID_CONFIG = 40
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_RECORD = 87

# ---------------------------------------------------------------- crc32c
_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)
del _i, _c


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as used by record batch v2."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------- primitives
def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def uint32(v: int) -> bytes:
    return struct.pack(">I", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    """Non-compact (nullable) string: int16 length, -1 for null."""
    if s is None:
        return int16(-1)
    b = s.encode()
    return int16(len(b)) + b


def kbytes(b: bytes | None) -> bytes:
    """Non-compact (nullable) bytes: int32 length, -1 for null."""
    if b is None:
        return int32(-1)
    return int32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    return int32(len(items)) + b"".join(items)


def uvarint(n: int) -> bytes:
    if n < 0:
        raise ValueError("uvarint of a negative number")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n: int) -> bytes:
    """Zig-zag signed varint/varlong (record fields)."""
    return uvarint((n << 1) ^ (n >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Reader:
    """Cursor over a response body."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated: need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def uint32(self) -> int:
        return struct.unpack(">I", self._take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._take(n).decode()

    def bytes(self) -> bytes | None:
        n = self.int32()
        return None if n < 0 else self._take(n)

    def array_len(self) -> int:
        n = self.int32()
        if n > len(self.data):  # cheap sanity bound: every element takes >= 1 byte
            raise ValueError(f"implausible array length {n}")
        return n

    def uvarint(self) -> int:
        shift = 0
        result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def varint(self) -> int:
        z = self.uvarint()
        return (z >> 1) ^ -(z & 1)

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------- record batch v2
def encode_record(offset_delta: int, timestamp_delta: int, key: bytes | None, value: bytes | None,
                  headers: list[tuple[str, bytes | None]] = ()) -> bytes:
    body = bytearray()
    body += int8(0)  # attributes (unused)
    body += varint(timestamp_delta)
    body += varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        hkb = hk.encode()
        body += varint(len(hkb)) + hkb
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def record_batch(records: list[tuple[bytes | None, bytes | None]], *, base_offset: int = 0,
                 base_timestamp: int | None = None, producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1, attributes: int = 0, partition_leader_epoch: int = -1,
                 corrupt_crc: bool = False, claimed_record_count: int | None = None) -> bytes:
    """An uncompressed record batch (magic 2) holding `records` (key, value) pairs.

    corrupt_crc flips bits of the stored CRC; claimed_record_count overrides the
    records-count field (the CRC is computed over the lying count, so only the
    count is wrong).
    """
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    recs = b"".join(encode_record(i, 0, k, v) for i, (k, v) in enumerate(records))
    count = len(records) if claimed_record_count is None else claimed_record_count
    after_crc = (
        int16(attributes)
        + int32(len(records) - 1)  # last offset delta
        + int64(base_timestamp)  # base timestamp
        + int64(base_timestamp)  # max timestamp
        + int64(producer_id)
        + int16(producer_epoch)
        + int32(base_sequence)
        + int32(count)
        + recs
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0x5A5A5A5A
    after_length = int32(partition_leader_epoch) + int8(2) + uint32(crc) + after_crc
    return int64(base_offset) + int32(len(after_length)) + after_length


@dataclass
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def batch_headers(data: bytes) -> list[tuple[int, int, int]]:
    """(base_offset, attributes, record_count) of each complete batch in a
    Fetch response's records, without decoding the records."""
    out = []
    pos = 0
    while pos + 61 <= len(data):
        base_offset, length = struct.unpack(">qi", data[pos:pos + 12])
        end = pos + 12 + length
        if end > len(data):
            break
        attributes = struct.unpack(">h", data[pos + 21:pos + 23])[0]
        count = struct.unpack(">i", data[pos + 57:pos + 61])[0]
        out.append((base_offset, attributes, count))
        pos = end
    return out


def decode_batches(data: bytes) -> list[Record]:
    """Decode uncompressed v2 record batches (as returned by Fetch). Raises on
    compressed batches; a trailing partial batch is ignored, as clients do."""
    out: list[Record] = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack(">qi", data[pos:pos + 12])
        end = pos + 12 + length
        if end > len(data):
            break  # partial batch at the end of a fetch response
        r = Reader(data[pos + 12:end])
        r.int32()  # partition leader epoch
        magic = r.int8()
        if magic != 2:
            raise ValueError(f"unexpected magic {magic}")
        r.uint32()  # crc
        attributes = r.int16()
        if attributes & 0x07:
            raise ValueError("compressed batch; decode_batches only handles uncompressed ones")
        r.int32()  # last offset delta
        base_ts = r.int64()
        r.int64()  # max ts
        r.int64()  # producer id
        r.int16()  # producer epoch
        r.int32()  # base sequence
        count = r.int32()
        control = bool(attributes & 0x20)
        for _ in range(count):
            r.varint()  # length
            r.int8()  # attributes
            ts_delta = r.varint()
            off_delta = r.varint()
            klen = r.varint()
            key = None if klen < 0 else r._take(klen)
            vlen = r.varint()
            value = None if vlen < 0 else r._take(vlen)
            for _h in range(r.varint()):
                hk = r.varint()
                r._take(hk)
                hv = r.varint()
                if hv >= 0:
                    r._take(hv)
            if not control:
                out.append(Record(base_offset + off_delta, base_ts + ts_delta, key, value))
        pos = end
    return out


# ---------------------------------------------------------------- framing / connection
def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes,
                  client_id: str | None = "strata-e2e-raw", flexible_header: bool = False) -> bytes:
    header = int16(api_key) + int16(api_version) + int32(correlation_id) + string(client_id)
    if flexible_header:
        header += uvarint(0)  # no tagged fields
    msg = header + body
    return int32(len(msg)) + msg


class ConnectionClosed(Exception):
    pass


class Conn:
    """A blocking TCP connection speaking raw Kafka frames."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 15.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._corr = 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def next_correlation_id(self) -> int:
        self._corr += 1
        return self._corr

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionClosed(f"peer closed the connection after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self, timeout: float | None = None) -> bytes:
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        (size,) = struct.unpack(">i", self._recv_exact(4))
        if size < 4 or size > 256 * 1024 * 1024:
            raise ValueError(f"implausible response size {size}")
        return self._recv_exact(size)

    def call(self, api_key: int, api_version: int, body: bytes, *, flexible_header: bool = False,
             timeout: float | None = None) -> Reader:
        """Send one request and return a Reader positioned after the response's
        correlation id (header v0)."""
        corr = self.next_correlation_id()
        self.send(request_frame(api_key, api_version, corr, body, flexible_header=flexible_header))
        frame = self.recv_frame(timeout)
        r = Reader(frame)
        got = r.int32()
        if got != corr:
            raise AssertionError(f"correlation id mismatch: sent {corr}, got {got}")
        return r

    def wait_closed(self, timeout: float) -> bool:
        """True if the peer closes (or resets) the connection within `timeout`
        seconds; any bytes received meanwhile are discarded."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True


# ---------------------------------------------------------------- ApiVersions
def parse_api_versions_v0(r: Reader) -> tuple[int, dict[int, tuple[int, int]]]:
    error = r.int16()
    apis: dict[int, tuple[int, int]] = {}
    for _ in range(r.array_len()):
        key = r.int16()
        apis[key] = (r.int16(), r.int16())
    return error, apis


def api_versions(conn: Conn) -> dict[int, tuple[int, int]]:
    r = conn.call(API_VERSIONS, 0, b"")
    error, apis = parse_api_versions_v0(r)
    if error != NONE:
        raise AssertionError(f"ApiVersions v0 returned error {error}")
    return apis


# ---------------------------------------------------------------- Produce v3
def produce_v3_body(topic: str, partition: int, records: bytes | None, *, acks: int = -1,
                    timeout_ms: int = 15000, transactional_id: str | None = None) -> bytes:
    return (
        string(transactional_id)
        + int16(acks)
        + int32(timeout_ms)
        + array([string(topic) + array([int32(partition) + kbytes(records)])])
    )


@dataclass
class ProducePartitionResult:
    topic: str
    partition: int
    error: int
    base_offset: int
    log_append_time: int


def parse_produce_v3(r: Reader) -> list[ProducePartitionResult]:
    out = []
    for _ in range(r.array_len()):
        topic = r.string()
        for _ in range(r.array_len()):
            p = r.int32()
            err = r.int16()
            base = r.int64()
            lat = r.int64()
            out.append(ProducePartitionResult(topic, p, err, base, lat))
    r.int32()  # throttle time
    return out


def produce(conn: Conn, topic: str, partition: int, batch: bytes, *, acks: int = -1,
            timeout_ms: int = 15000) -> ProducePartitionResult:
    r = conn.call(PRODUCE, 3, produce_v3_body(topic, partition, batch, acks=acks, timeout_ms=timeout_ms))
    results = parse_produce_v3(r)
    assert len(results) == 1, results
    return results[0]


# ---------------------------------------------------------------- Fetch v4
def fetch_v4_body(topic: str, partition: int, offset: int, *, max_wait_ms: int, min_bytes: int,
                  max_bytes: int = 1 << 20, partition_max_bytes: int = 1 << 20,
                  isolation_level: int = 0) -> bytes:
    return (
        int32(-1)  # replica id
        + int32(max_wait_ms)
        + int32(min_bytes)
        + int32(max_bytes)
        + int8(isolation_level)
        + array([string(topic) + array([int32(partition) + int64(offset) + int32(partition_max_bytes)])])
    )


@dataclass
class FetchPartitionResult:
    topic: str
    partition: int
    error: int
    high_watermark: int
    last_stable_offset: int
    records: bytes


def parse_fetch_v4(r: Reader) -> list[FetchPartitionResult]:
    r.int32()  # throttle
    out = []
    for _ in range(r.array_len()):
        topic = r.string()
        for _ in range(r.array_len()):
            p = r.int32()
            err = r.int16()
            hw = r.int64()
            lso = r.int64()
            n_aborted = r.int32()
            for _ in range(max(n_aborted, 0)):
                r.int64()
                r.int64()
            recs = r.bytes() or b""
            out.append(FetchPartitionResult(topic, p, err, hw, lso, recs))
    return out


# ---------------------------------------------------------------- ListOffsets v1
EARLIEST = -2
LATEST = -1


def list_offsets_v1(conn: Conn, topic: str, partition: int, timestamp: int) -> tuple[int, int, int]:
    """Returns (error, timestamp, offset)."""
    body = int32(-1) + array([string(topic) + array([int32(partition) + int64(timestamp)])])
    r = conn.call(LIST_OFFSETS, 1, body)
    result = None
    for _ in range(r.array_len()):
        r.string()
        for _ in range(r.array_len()):
            r.int32()
            result = (r.int16(), r.int64(), r.int64())
    assert result is not None, "ListOffsets response had no partition"
    return result


# ---------------------------------------------------------------- InitProducerId v0
def init_producer_id_v0(conn: Conn, transaction_timeout_ms: int = 60000) -> tuple[int, int, int]:
    """Returns (error, producer_id, producer_epoch) for a non-transactional producer."""
    r = conn.call(INIT_PRODUCER_ID, 0, string(None) + int32(transaction_timeout_ms))
    r.int32()  # throttle
    return r.int16(), r.int64(), r.int16()
