"""GetMetrics' TensorBoard points (``tensorboard: true``; docs/API.md, GetMetrics): the
scalars of the event files a worker wrote itself in its run folder (runtime.tbevents),
read on from a cursor that holds a byte offset per file.

The cursor is opaque to clients: base64url of a JSON list of ``[path, offset]`` pairs,
the path relative to the run folder. It only says how far each file was read: the
files read are always those found in the run folder, so a cursor cannot name a file to
open. A file the cursor does not name is read from its start.

Points: the consecutive scalars of one file at one step make one point (SB3 writes each
scalar of a step as its own event), its ``time`` the last one's wall time, its
``source`` the file's path. ``keys`` filters the tags; a point left with no value is not
sent, its records are still read past. Files are taken in the order they started; a
corrupt record ends a file's reading at that record (logged once per file and offset).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from typing import Any, Optional

from runtime import tbevents
from services.gateway.errors import invalid
from services.gateway.mapping import timestamp
from trainer_api.v1 import trainer_pb2 as pb

FIELD = "tensorboard_cursor"
MAX_CURSOR = 64 * 1024          # characters
MAX_READS = 8                   # reads of one file in one call (each at most 4 MiB)
_warned: set[tuple[str, int]] = set()
_warned_lock = threading.Lock()
MAX_WARNED = 4096


def decode_cursor(text: str) -> dict[str, int]:
    """The offsets a cursor holds; raises the INVALID_ARGUMENT CallError naming
    ``tensorboard_cursor`` when it is not one this gateway gave."""
    if not text:
        return {}
    if len(text) > MAX_CURSOR:
        raise invalid(FIELD, f"longer than {MAX_CURSOR} characters")
    try:
        pairs: Any = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid(FIELD, "not a cursor from next_tensorboard_cursor") from None
    out: dict[str, int] = {}
    if not isinstance(pairs, list):
        raise invalid(FIELD, "not a cursor from next_tensorboard_cursor")
    for pair in pairs:
        if (not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str)
                or isinstance(pair[1], bool) or not isinstance(pair[1], int)
                or pair[1] < 0):
            raise invalid(FIELD, f"{str(pair)[:60]!r} is not a [path, offset] pair")
        out[pair[0]] = pair[1]
    return out


def encode_cursor(offsets: dict[str, int]) -> str:
    text = json.dumps(sorted(offsets.items()), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


def _warn(log: Any, path: str, offset: int, error: str) -> None:
    with _warned_lock:
        if (path, offset) in _warned:
            return
        if len(_warned) >= MAX_WARNED:
            _warned.clear()
        _warned.add((path, offset))
    if log is not None:
        log.warning("tensorboard.corrupt", path=path, offset=offset, error=error)


def points(run_dir: str, cursor: dict[str, int], limit: int, keys: frozenset[str],
           log: Any = None) -> tuple[list[pb.MetricPoint], dict[str, int]]:
    """In a pool thread: up to ``limit`` points from the worker's event files, read on
    from ``cursor``; and the cursor to read on from."""
    out: list[pb.MetricPoint] = []
    offsets = {}
    for rel in tbevents.event_files(run_dir):
        offset = cursor.get(rel, 0)
        path = os.path.join(run_dir, rel)
        for _ in range(MAX_READS):
            room = limit - len(out)
            if room <= 0:
                break
            read = tbevents.read_scalars(path, offset, max_scalars=room)
            out += _group(read.scalars, rel, keys)
            offset = read.next_offset
            if read.error:
                _warn(log, path, offset, read.error)
            if not read.more or read.error:
                break
        offsets[rel] = offset
    return out, offsets


def _group(scalars: list[tbevents.Scalar], source: str,
           keys: frozenset[str]) -> list[pb.MetricPoint]:
    out: list[pb.MetricPoint] = []
    point: Optional[pb.MetricPoint] = None
    for s in scalars:
        if keys and s.tag not in keys:
            continue
        if point is None or point.step != s.step or s.tag in point.values:
            point = pb.MetricPoint(step=s.step, source=source)
            out.append(point)
        point.values[s.tag] = s.value
        point.time.CopyFrom(timestamp(s.wall_time))
    return out
