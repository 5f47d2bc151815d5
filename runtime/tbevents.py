"""TensorBoard event files: their records framed (``record``, for worker/tbwriter.py)
and read back: their scalars as (tag, step, wall_time, value)
points (docs/WORKERS.md, "TensorBoard").

An event file is a TFRecord stream: each record is a little-endian uint64 length, the
masked CRC-32C of those 8 bytes, the data (one serialized ``Event`` protocol buffer) and
its masked CRC-32C. Both CRCs are checked (``google-crc32c``, in C; tensorboardX's
pure-Python one without it). The ``Event`` is parsed with the protocol
buffers tensorboardX ships (``tensorboardX.proto.event_pb2``, TensorBoard's own schema).

Why not TensorBoard's own loader: the ``tensorboard`` package is large (werkzeug,
markdown, its data server) for what the gateway needs, and its loaders read a file from
its start or keep it open between calls, whereas the gateway is stateless: it reads on
from a byte offset a client hands back (``next_offset``), like metrics.jsonl. The tests
check this reader against TensorBoard's ``EventAccumulator``.

- A record not complete yet (a file being written, or a worker killed mid-write) ends
  the read there: ``next_offset`` stays before it, and the next read takes it once it
  is whole. A record whose CRC does not match ends the file's read for good (``error``
  says where); what came before it counts.
- Scalars: a value's ``simple_value`` (tensorboardX, torch's SummaryWriter: SB3,
  CleanRL), or a tensor holding exactly one number (TF2's ``tf.summary.scalar``, torch's
  ``new_style``). Histograms, images, text and audio are not scalars.
- ``event_files(run_dir)``: the event files a worker wrote itself anywhere in its run
  folder (any name with ``tfevents``), not the SDK's copies of metrics.jsonl (file
  names ending TB_SDK_SUFFIX), in the order they were started.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Optional

from tensorboardX.proto.event_pb2 import Event

try:
    from google_crc32c import value as crc32c   # C, Google's (a dependency)
except ImportError:   # pragma: no cover - a bare environment: tensorboardX's own
    from tensorboardX.crc32c import crc32c  # type: ignore[no-redef]

from core.rundir import TB_MARK, TB_SDK_SUFFIX

MAX_READ = 4 * 1024 * 1024      # bytes read from one file in one call
MAX_RECORD = 64 * 1024 * 1024   # a longer record is taken as corruption
MAX_DEPTH = 6                   # folders below the run folder searched for event files
MAX_FILES = 256                 # event files taken from one run folder
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_STAMP = re.compile(r"tfevents\.(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    wall_time: float
    value: float


@dataclass
class FileScalars:
    """What one read of one event file found, from ``offset`` to ``next_offset``."""
    offset: int
    next_offset: int
    scalars: list[Scalar] = field(default_factory=list)
    events: int = 0                 # records parsed
    error: Optional[str] = None     # a corrupt record ends the file's read here
    more: bool = False              # MAX_READ was reached: read on from next_offset


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data) & 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(body: bytes) -> bytes:
    """``body`` framed as one TFRecord (what split_records reads; the SDK's writer)."""
    header = struct.pack("<Q", len(body))
    return b"".join((header, _CRC.pack(_masked_crc(header)), body,
                     _CRC.pack(_masked_crc(body))))


def split_records(data: bytes) -> tuple[list[tuple[bytes, int]], int, Optional[str]]:
    """The whole records at the start of ``data`` (each with the offset just past it),
    the bytes they take, and an error where a record is corrupt (then nothing after it
    is read). A record cut short by the end of ``data`` is no error: it is simply not
    taken yet."""
    records: list[tuple[bytes, int]] = []
    pos = 0
    end = len(data)
    while end - pos >= _HEADER.size:
        length, header_crc = _HEADER.unpack_from(data, pos)
        if _masked_crc(data[pos:pos + 8]) != header_crc:
            return records, pos, f"bad length checksum at byte {pos}"
        if length > MAX_RECORD:
            return records, pos, f"record of {length} bytes at byte {pos}"
        stop = pos + _HEADER.size + length + _CRC.size
        if stop > end:
            break
        body = data[pos + _HEADER.size:stop - _CRC.size]
        if _masked_crc(body) != _CRC.unpack_from(data, stop - _CRC.size)[0]:
            return records, pos, f"bad data checksum in the record at byte {pos}"
        records.append((body, stop))
        pos = stop
    return records, pos, None


def _tensor_number(tensor: Any) -> Optional[float]:
    """The one number a scalar tensor holds, else None."""
    for name in ("float_val", "double_val", "int_val", "int64_val", "half_val"):
        vals = getattr(tensor, name, None)
        if vals:
            return float(vals[0]) if len(vals) == 1 else None
    content = tensor.tensor_content
    formats = {1: "<f", 2: "<d", 3: "<i", 9: "<q"}   # DT_FLOAT DT_DOUBLE DT_INT32 DT_INT64
    fmt = formats.get(tensor.dtype)
    if fmt and len(content) == struct.calcsize(fmt):
        return float(struct.unpack(fmt, content)[0])
    return None


def event_scalars(body: bytes) -> list[Scalar]:
    """The scalars of one serialized Event (none for a header, graph or histogram)."""
    event = Event.FromString(body)
    if not event.HasField("summary"):
        return []
    out = []
    for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            number: Optional[float] = value.simple_value
        elif kind == "tensor":
            number = _tensor_number(value.tensor)
        else:
            continue
        if number is not None:
            out.append(Scalar(value.tag, int(event.step), float(event.wall_time), number))
    return out


def read_scalars(path: str, offset: int = 0, max_read: int = MAX_READ,
                 max_scalars: Optional[int] = None) -> FileScalars:
    """The scalars of the whole records from ``offset`` (at most ``max_read`` bytes,
    unless one record is longer; records are taken until ``max_scalars`` scalars are
    reached, if given). A file not there reads as empty."""
    out = FileScalars(offset, offset)
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(max_read)
            records, used, out.error = split_records(data)
            if not records and out.error is None and len(data) >= _HEADER.size:
                length = _HEADER.unpack_from(data)[0]   # checked by split_records
                if _HEADER.size + length + _CRC.size > len(data):  # one long record
                    fh.seek(offset)
                    data = fh.read(_HEADER.size + length + _CRC.size)
                    records, used, out.error = split_records(data)
            out.more = used > 0 and len(data) >= max_read
    except FileNotFoundError:
        return out
    out.next_offset = offset
    for body, stop in records:
        if max_scalars is not None and len(out.scalars) >= max_scalars:
            out.more = True
            return out
        try:
            out.scalars.extend(event_scalars(body))
        except ValueError as exc:   # protobuf's DecodeError: the CRC held, the data not
            out.error = f"an event that does not parse at byte {out.next_offset} ({exc})"
            out.more = False
            return out
        out.events += 1
        out.next_offset = offset + stop
    return out


def _started(name: str) -> float:
    got = _STAMP.search(name)
    return float(got.group(1)) if got else 0.0


def is_worker_file(name: str) -> bool:
    """An event file a worker wrote itself (not the SDK's copy of metrics.jsonl)."""
    return TB_MARK in name and not name.endswith(TB_SDK_SUFFIX)


def event_files(run_dir: str, *, sdk: bool = False) -> list[str]:
    """The worker-written event files under ``run_dir`` (with ``sdk``: the SDK's
    instead), as paths relative to it, in the order their names say they started
    (then by path); symlinked folders are not followed."""
    found: list[str] = []
    root_depth = run_dir.rstrip(os.sep).count(os.sep)
    for folder, dirs, files in os.walk(run_dir):
        if folder.count(os.sep) - root_depth >= MAX_DEPTH:
            dirs[:] = []
        dirs.sort()
        for name in files:
            if TB_MARK in name and is_worker_file(name) != sdk:
                found.append(os.path.relpath(os.path.join(folder, name), run_dir))
        if len(found) >= MAX_FILES:
            break
    found.sort(key=lambda rel: (_started(os.path.basename(rel)), rel))
    return found[:MAX_FILES]
