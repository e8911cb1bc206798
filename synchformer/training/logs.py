"""Scalar training logs: one JSON line per step, plus a TensorBoard event file written without TensorBoard.

The event file is the TFRecord container holding ``Event`` protobufs, both encoded here by hand (only the few
fields scalars need), so training does not depend on tensorboard or protobuf, yet ``tensorboard --logdir`` can
show the curves. ``read_events`` decodes such files back, for tests and for users without TensorBoard.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time

__all__ = ["ScalarLog", "read_events", "crc32c"]


class ScalarLog:
    """Append scalars to ``log_dir/metrics.jsonl`` and a TensorBoard event file; a no-op when not ``enabled``.

    Pass ``enabled=False`` on every rank but 0 in distributed training, so only one process writes.
    Files are created on the first ``add`` and every step is flushed, so a crashed run keeps its log.
    """

    def __init__(self, log_dir, enabled: bool = True):
        self.log_dir = os.fspath(log_dir)
        self.enabled = enabled
        self._jsonl = None
        self._events = None

    def add(self, step: int, **scalars) -> None:
        if not self.enabled:
            return
        if self._jsonl is None:
            self._open()
        now = time.time()
        values = {tag: float(v) for tag, v in scalars.items()}  # also unwraps 0-d tensors and numpy scalars
        self._jsonl.write(json.dumps({"step": int(step), "time": now, **values}) + "\n")
        self._jsonl.flush()
        self._events.write(_record(_event(now, int(step), scalars=values)))
        self._events.flush()

    def close(self) -> None:
        for f in (self._jsonl, self._events):
            if f is not None:
                f.close()
        self._jsonl = self._events = None

    def __enter__(self) -> ScalarLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        self._jsonl = open(os.path.join(self.log_dir, "metrics.jsonl"), "a", encoding="utf-8")
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
        self._events = open(os.path.join(self.log_dir, name), "wb")
        # readers identify the format by this first event
        self._events.write(_record(_event(now, 0, file_version="brain.Event:2")))
        self._events.flush()


def read_events(path) -> list[dict]:
    """Decode a TensorBoard event file: ``{"wall_time", "step", "file_version"}`` or ``{..., "scalars"}`` dicts.

    Raises ValueError (naming the file) on a bad checksum or a truncated record. Events without
    ``simple_value`` scalars (graphs, images, tensor summaries) come back with an empty ``scalars`` dict.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    events, pos = [], 0
    while pos < len(data):
        header = data[pos:pos + 12]
        if len(header) < 12:
            raise ValueError(f"{path}: truncated record header at byte {pos}")
        (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
        if _masked_crc(header[:8]) != length_crc:
            raise ValueError(f"{path}: bad length checksum at byte {pos}")
        body = data[pos + 12:pos + 12 + length]
        footer = data[pos + 12 + length:pos + 16 + length]
        if len(body) < length or len(footer) < 4:
            raise ValueError(f"{path}: truncated record at byte {pos}")
        if _masked_crc(body) != struct.unpack("<I", footer)[0]:
            raise ValueError(f"{path}: bad data checksum in record at byte {pos}")
        events.append(_decode_event(body))
        pos += 16 + length
    return events


# --- CRC32C (Castagnoli), as TFRecord uses it ---------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    # TFRecord stores a rotated, offset CRC so that CRCs of data that itself contains CRCs stay well mixed
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


# --- protobuf: Event {double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5}, ---
# --- Summary {repeated Value value = 1}, Value {string tag = 1; float simple_value = 2} ---------------------

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 is sent as its 64-bit two's complement
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, _BYTES) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, file_version: str | None = None, scalars: dict | None = None) -> bytes:
    out = _key(1, _FIXED64) + struct.pack("<d", wall_time)
    if step:  # proto3 leaves default values out
        out += _key(2, _VARINT) + _varint(step)
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if scalars is not None:
        summary = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + _key(2, _FIXED32) + struct.pack("<f", value))
            for tag, value in scalars.items())
        out += _bytes_field(5, summary)
    return out


def _fields(data: bytes):
    """Yield (field number, value) of a protobuf message: ints for varints, bytes for the fixed and
    length-delimited types (unknown fields are simply skipped by the caller)."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
            value, pos = data[pos:pos + size], pos + size
        elif wire_type == _BYTES:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield field, value


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated protobuf varint")
        byte = data[pos]
        n |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return n, pos


def _decode_event(data: bytes) -> dict:
    event = {"wall_time": 0.0, "step": 0}
    for field, value in _fields(data):
        if field == 1:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif field == 2:
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 3:
            event["file_version"] = value.decode()
        elif field == 5:
            scalars = event.setdefault("scalars", {})
            for summary_field, summary_value in _fields(value):
                if summary_field != 1:
                    continue
                fields = dict(_fields(summary_value))
                if 2 in fields:
                    scalars[fields.get(1, b"").decode()] = struct.unpack("<f", fields[2])[0]
    return event
