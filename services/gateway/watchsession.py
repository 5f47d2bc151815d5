"""One WatchRuns stream: optional snapshot, then catch-up from the registry, then
live delivery from the hub, falling back to catch-up whenever it lags.

The position (``seq`` of each message) only moves forward and only past events
that were sent or do not match the filter, so resuming with since_seq = the last
``seq`` received yields exactly the events that were missed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Optional, Union

import grpc

from bus.codec import envelope_from_map
from runtime.logs import ServiceLogger
from core.errors import OrchestratorError
from core.ids import is_run_id
from core.streams import is_run_stream
from core.protocol import EventsSince, GetRun, Ping, Snapshot
from services.gateway.buslisten import Item, Telemetry, make_item
from services.gateway.calls import RegistryAccess
from services.gateway.errors import CallError, from_registry, invalid
from services.gateway.mapping import Mapper, StatusTracker
from services.gateway.watch import MAX_MESSAGE_BYTES, Watcher, WatchHub
from trainer_api.v1 import trainer_pb2 as pb

Message = Union[bytes, pb.WatchRunsResponse]
PAGE = 1000          # events per registry read
SNAPSHOT_PAGE = 500  # runs per registry read
MAX_RUN_IDS = 1000


def encode(items: list[Item], upto: int) -> bytes:
    """A WatchRunsResponse: field 1 (seq, varint) then the items' encoded events."""
    head = bytearray(b"\x08")
    while upto > 0x7F:
        head.append((upto & 0x7F) | 0x80)
        upto >>= 7
    head.append(upto)
    return bytes(head) + b"".join([i.data for i in items])


class WatchSession:
    def __init__(self, hub: WatchHub, registry: RegistryAccess, mapper: Mapper,
                 telemetry: Telemetry, log: ServiceLogger, buffer: tuple[int, int],
                 keepalive: float,
                 request: pb.WatchRunsRequest, context: grpc.aio.ServicerContext) -> None:
        self.hub = hub
        self.registry = registry
        self.mapper = mapper
        self.telemetry = telemetry
        self.log = log
        self.buffer = buffer
        self.keepalive = keepalive
        self.request = request
        self.context = context
        self.tracker = StatusTracker(4096)
        self.run_ids = frozenset(request.run_ids)

    def validate(self) -> None:
        if len(self.run_ids) > MAX_RUN_IDS:
            raise invalid("run_ids", f"at most {MAX_RUN_IDS} run ids")
        for run_id in self.run_ids:
            if not is_run_id(run_id):
                raise invalid("run_ids", f"{run_id[:40]!r} is not a run id")
        if self.request.snapshot and self.request.HasField("since_seq"):
            raise invalid("since_seq", "cannot be combined with snapshot")

    async def stream(self) -> AsyncIterator[Message]:
        self.validate()
        if self.request.snapshot:
            position = 0
            async for msg in self._snapshot():
                position = msg.seq
                yield msg
        elif self.request.HasField("since_seq"):
            position = await self._checked_since(self.request.since_seq)
        elif self.hub.seq is not None:
            position = self.hub.seq
        else:
            position = int((await self.registry.call(Ping(), self.context))["head_seq"])
        w = Watcher(self.context.peer(), self.run_ids, position, *self.buffer)
        self.hub.open += 1
        try:
            if not self.request.snapshot:
                yield self._sent(encode([], position), w)  # the start: a resume point at once
            async for msg in self._follow(w):
                yield msg
        finally:
            self.hub.open -= 1
            self.hub.leave(w)

    async def _checked_since(self, since: int) -> int:
        if self.hub.seq is None or since > self.hub.seq:
            head = int((await self.registry.call(Ping(), self.context))["head_seq"])
            if since > head:
                raise CallError(grpc.StatusCode.OUT_OF_RANGE,
                                f"since_seq: {since} is beyond the event log's last seq "
                                f"{head} (another TRAINER_HOME?)", "out_of_range",
                                "since_seq", f"beyond the last seq {head}")
        return since

    # --- after the start position ------------------------------------------------
    async def _follow(self, w: Watcher) -> AsyncIterator[Message]:
        backoff = 0.05
        while True:
            if w.inbox:
                items, upto = w.take()
                w.position = upto
                yield self._sent(encode(items, upto), w)
                continue
            if w.live:
                w.position = max(w.position, w.offered)
                if time.monotonic() - w.last_sent >= self.keepalive:
                    yield self._sent(encode([], w.position), w)
                    continue
                w.wake.clear()
                await w.wake.wait()   # set by the hub: events, lagging, or keep-alive due
                continue
            if w.lagging:
                w.lagging = False
                self.log.info("watch.catching_up", peer=w.peer, from_seq=w.position,
                              hub_seq=self.hub.seq)
            if self.hub.try_live(w):
                if w.lags:
                    self.log.info("watch.resumed", peer=w.peer, seq=w.position)
                continue
            try:
                items, upto = await self.registry.run(self._fetch, w.position)
                backoff = 0.05
            except CallError as exc:
                if exc.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                await self._idle(backoff)
                backoff = min(backoff * 2, 1.0)
                if time.monotonic() - w.last_sent >= self.keepalive:
                    yield self._sent(encode([], w.position), w)
                continue
            if items:
                w.position = upto
                yield self._sent(encode(items, upto), w)
            elif upto > w.position:
                w.position = upto
            else:
                # The registry has nothing newer and the hub is behind it (or not
                # started): wait for the hub to move, then try to go live again.
                await self._idle(self.keepalive)
                if time.monotonic() - w.last_sent >= self.keepalive:
                    yield self._sent(encode([], w.position), w)

    async def _idle(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.hub.advanced.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    @staticmethod
    def _sent(msg: bytes, w: Watcher) -> bytes:
        w.last_sent = time.monotonic()
        return msg

    def _fetch(self, after: int, upto: Optional[int] = None,
               skip: Optional[dict[str, int]] = None) -> tuple[list[Item], int]:
        """In a pool thread: the next page of events after ``after`` (up to ``upto``),
        filtered, in wire form; and the last seq examined."""
        try:
            result = self.registry.call_blocking(EventsSince(after, PAGE))
        except OrchestratorError as exc:
            raise from_registry(exc) from None
        items, last, size = [], after, 0
        for raw in result["events"]:
            env = envelope_from_map(raw)
            seq = env.seq or 0
            if upto is not None and seq > upto:
                break
            last = seq
            if not is_run_stream(env.stream):
                continue  # another stream's (an environment's): not a run's event
            run_id = (env.stream or "").removeprefix("run-")
            if self.run_ids and run_id not in self.run_ids:
                continue
            if skip is not None and seq <= skip.get(run_id, 0):
                continue
            item = make_item(self.mapper, env, self.tracker)
            items.append(item)
            size += len(item.data)
            if size >= MAX_MESSAGE_BYTES:
                break
        return items, last

    # --- the snapshot --------------------------------------------------------------
    async def _snapshot(self) -> AsyncIterator[pb.WatchRunsResponse]:
        """Runs page by page, then the events that bring every run to one seq N
        (pages are separate reads: a later page may be newer than an earlier one;
        events a run already reflects are skipped), then snapshot_complete at N."""
        first: Optional[int] = None
        top = 0
        skip: dict[str, int] = {}
        async for views, as_of in self._snapshot_pages():
            first = as_of if first is None else first
            top = max(top, as_of)
            records = []
            for view in views:
                if int(view.get("last_seq") or 0) > first:
                    skip[view["run_id"]] = int(view["last_seq"])
                self.tracker.seed(view["run_id"], str(view.get("status")))
                records.append(self.mapper.run_record(
                    view, self.telemetry.last_heartbeat(view["run_id"])))
            for chunk in _chunks(records) if records else ():
                yield pb.WatchRunsResponse(seq=as_of, snapshot=chunk)
        position = first or 0
        while position < top:
            items, last = await self.registry.run(self._fetch, position, top, skip)
            if last == position:
                break  # pragma: no cover - the log cannot shrink
            position = last
            if items:
                yield pb.WatchRunsResponse.FromString(encode(items, position))
        yield pb.WatchRunsResponse(seq=top, snapshot_complete=True)

    async def _snapshot_pages(self) -> AsyncIterator[tuple[list[dict[str, Any]], int]]:
        if self.run_ids:
            got = await self.registry.call(Ping(), self.context)
            yield [], int(got["head_seq"])
            for run_id in sorted(self.run_ids):
                try:
                    got = await self.registry.call(GetRun(run_id), self.context)
                except CallError as exc:
                    if exc.code == grpc.StatusCode.NOT_FOUND:
                        continue
                    raise
                yield [got["run"]], int(got["head_seq"])
            return
        offset = 0
        while True:
            page = await self.registry.call(Snapshot(limit=SNAPSHOT_PAGE, offset=offset),
                                            self.context)
            runs = page["runs"]
            yield runs, int(page["as_of_seq"])
            offset += len(runs)
            if not page["more"] or not runs:
                return


def _chunks(records: list[pb.RunRecord]) -> list[list[pb.RunRecord]]:
    out: list[list[pb.RunRecord]] = [[]]
    size = 0
    for rec in records:
        n = rec.ByteSize()
        if out[-1] and size + n > MAX_MESSAGE_BYTES:
            out.append([])
            size = 0
        out[-1].append(rec)
        size += n
    return [c for c in out if c]
