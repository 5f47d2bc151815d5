"""Run files by byte offset: stdout/stderr logs (StreamLogs) and metrics.jsonl
(GetMetrics). File reads run in the pool, never on the event loop.

A followed log ends once the run is terminal and every byte is sent: the terminal
status is read *before* the last read that finds no more bytes, and a worker that
has ended writes nothing more (the dispatcher records the end after the worker
process is gone).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from typing import Any, AsyncIterator, Optional

import grpc

from core.ids import is_run_id
from core.protocol import GetRun
from core.rundir import METRICS_FILE, STDERR_FILE, STDOUT_FILE
from core.runstate import TERMINAL
from services.gateway.calls import RegistryAccess
from services.gateway.errors import invalid
from services.gateway.mapping import timestamp
from services.gateway.watch import WatchHub
from trainer_api.v1 import trainer_pb2 as pb

CHUNK = 64 * 1024
RECHECK_S = 2.0                     # re-read the run's status this often while following
MAX_METRICS_READ = 4 * 1024 * 1024   # a metrics line longer than this is skipped
MAX_SKIPS = 4                        # oversized lines skipped per GetMetrics call
STREAM_FILES = {pb.LOG_STREAM_UNSPECIFIED: STDOUT_FILE, pb.LOG_STREAM_STDOUT: STDOUT_FILE,
                pb.LOG_STREAM_STDERR: STDERR_FILE}
_TERMINAL = {s.value for s in TERMINAL}


def check_run_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise invalid("run_id", f"{run_id[:40]!r} is not a run id (r + 12 hex digits)")
    return run_id


def read_chunk(path: str, offset: int, size: int = CHUNK) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)
    except FileNotFoundError:
        return b""


class LogFiles:
    def __init__(self, runs_dir: str, hub: WatchHub, registry: RegistryAccess,
                 poll_s: float) -> None:
        self.runs_dir = runs_dir
        self.hub = hub
        self.registry = registry
        self.poll_s = poll_s

    def path(self, run_id: str, name: str) -> str:
        return os.path.join(self.runs_dir, run_id, name)

    async def stream(self, request: pb.StreamLogsRequest,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[pb.LogChunk]:
        run_id = check_run_id(request.run_id)
        name = STREAM_FILES.get(request.stream)
        if name is None:
            raise invalid("stream", f"unknown log stream {request.stream}")
        if request.offset < 0:
            raise invalid("offset", "must not be negative")
        path = self.path(run_id, name)
        signal = self.hub.terminal_signal(run_id) if request.follow else None
        try:
            terminal = await self._terminal(run_id, context)
            checked = time.monotonic()
            offset = request.offset
            while True:
                ended = terminal
                data = await self.registry.run(read_chunk, path, offset)
                if data:
                    yield pb.LogChunk(offset=offset, data=data)
                    offset += len(data)
                    continue
                if ended:
                    yield pb.LogChunk(offset=offset, eof=True)
                    return
                if signal is None:
                    return
                try:
                    await asyncio.wait_for(signal.wait(), self.poll_s)
                    terminal = True
                except asyncio.TimeoutError:
                    if time.monotonic() - checked >= RECHECK_S:
                        terminal = await self._terminal(run_id, context)
                        checked = time.monotonic()
        finally:
            if signal is not None:
                self.hub.drop_signal(run_id, signal)

    async def _terminal(self, run_id: str, context: grpc.aio.ServicerContext) -> bool:
        got = await self.registry.call(GetRun(run_id), context)
        return got["run"]["status"] in _TERMINAL

    def metrics(self, run_id: str, offset: int, limit: int,
                keys: frozenset[str]) -> pb.GetMetricsResponse:
        """In a pool thread: up to ``limit`` points from ``offset`` (whole lines only).
        A line longer than MAX_METRICS_READ is skipped once it is complete, so
        ``next_offset`` always moves past every complete line it read."""
        path = self.path(run_id, METRICS_FILE)
        out = pb.GetMetricsResponse(next_offset=offset)
        for _ in range(MAX_SKIPS + 1):
            data = read_chunk(path, offset, MAX_METRICS_READ)
            pos = 0
            while len(out.points) < limit:
                end = data.find(b"\n", pos)
                if end < 0:
                    break
                point = _point(data[pos:end], keys)
                pos = end + 1
                if point is not None:
                    out.points.append(point)
            if pos or len(data) < MAX_METRICS_READ:
                out.next_offset = offset + pos
                return out
            end = _line_end(path, offset + len(data))   # one line fills the whole read
            if end is None:
                break                                    # not complete yet: wait for it
            offset = out.next_offset = end + 1
        return out


def _line_end(path: str, start: int) -> Optional[int]:
    """The offset of the first newline at or after ``start``; None before the end."""
    while True:
        data = read_chunk(path, start, CHUNK * 16)
        at = data.find(b"\n")
        if at >= 0:
            return start + at
        if len(data) < CHUNK * 16:
            return None
        start += len(data)


def _point(line: bytes, keys: frozenset[str]) -> Optional[pb.MetricPoint]:
    try:
        record: Any = json.loads(line)
    except ValueError:
        return None  # a torn or foreign line: skipped, never fatal
    if not isinstance(record, dict) or not isinstance(record.get("values"), dict):
        return None
    step = record.get("step")
    point = pb.MetricPoint(step=step if isinstance(step, int) and not isinstance(step, bool)
                           else 0)
    ts = record.get("ts")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
        point.time.CopyFrom(timestamp(ts))
    for key, value in record["values"].items():
        if keys and key not in keys:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                point.values[str(key)] = float(value)
            except OverflowError:   # an integer too large for a double
                continue
    return point if point.values else None  # nothing asked for (or no number): no point
