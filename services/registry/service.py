"""The registry's loop: the ROUTER for commands and queries, the PUB for committed
events, group commit, maintenance and its status beacon.

Group commit: when requests are waiting, the loop takes all of them (up to
max_batch) and runs them in one ``BEGIN IMMEDIATE`` transaction; replies go out and
events are published only after COMMIT. An idle registry answers a lone request at
once; under load, requests that arrive while a batch commits form the next batch.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Optional

import zmq

from bus.badframes import BadFrameLog
from bus.codec import FrameError
from runtime.logs import ServiceLogger
from bus.pubsub import Publisher
from bus import rpc
from bus.rpc import Request, RpcServer
from runtime.status import StatusBeacon
from runtime.throttle import LogThrottle
from bus.topics import stream_event_topic
from core.errors import Expired, Internal, StorageFull
from services.registry import storage
from eventstore.reader import StoredEvent
from services.registry.handlers import Handled, RequestHandler
from services.registry.maintenance import Checkpointer

SOURCE = "registry"
FULL_LOG_S = 10.0  # a full disk is logged at most this often
SHRINK_S = 1.0     # ... and the WAL checkpointed at most this often meanwhile
LOW_DISK_BYTES = 1024 * 1024  # below this, the status says the disk is full


class RegistryService:
    def __init__(self, server: RpcServer, publisher: Publisher, registry: RequestHandler,
                 checkpointer: Checkpointer, status_interval: float, max_batch: int,
                 log: ServiceLogger, spin_s: float = 0.0) -> None:
        self.server = server
        self.publisher = publisher
        self.registry = registry
        self.checkpointer = checkpointer
        self.max_batch = max_batch
        self.spin_s = spin_s
        self._spin_until = 0.0
        self._last_end = 0.0
        self._quick = 0  # requests in a row that came within spin_s of the last answer
        self.log = log
        self.bad_frames = BadFrameLog(log)
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0, "events": 0,
                      "errors": 0, "expired": 0, "storage_full": 0}
        self._full_log = LogThrottle(FULL_LOG_S, registry.clock)
        self._shrunk_at = -SHRINK_S
        self._full_at: Optional[float] = None   # monotonic time of the last refusal
        self.beacon = StatusBeacon(SOURCE, status_interval, registry.clock, self.counters)
        self.poller = zmq.Poller()
        self.poller.register(server.sock, zmq.POLLIN)

    def wake_on(self, fd: int) -> None:
        self.poller.register(fd, zmq.POLLIN)

    def counters(self) -> dict[str, Any]:
        return {**self.stats, "head_seq": self.registry.log.head_seq,
                "head_hash": self.registry.log.head_hash.hex(),
                "bad_frames": self.bad_frames.total,
                "undeliverable_replies": self.server.undeliverable,
                "checkpoint_failures": self.checkpointer.failures, **self._disk()}

    def _disk(self) -> dict[str, Any]:
        """``disk_free_bytes`` where events.db lies, and ``disk_full``: a command was
        refused for it within FULL_LOG_S, or less than LOW_DISK_BYTES is free."""
        try:
            free = shutil.disk_usage(os.path.dirname(self.registry.db_path) or ".").free
        except OSError:
            free = -1
        refused = (self._full_at is not None
                   and self.registry.clock.monotonic() - self._full_at < FULL_LOG_S)
        return {"disk_free_bytes": free, "disk_full": refused or 0 <= free < LOW_DISK_BYTES}

    def step(self, timeout_s: float) -> None:
        """Serve what waits, or sleep until a request comes or the next status or
        checkpoint is due (an idle registry wakes once per status interval)."""
        timeout_s = min(timeout_s, self.beacon.due_in(), self.checkpointer.due_in())
        if self._ready(timeout_s):
            gap = time.perf_counter() - self._last_end
            batch = self._drain()
            if batch:
                self._run_batch(batch)
                self._last_end = time.perf_counter()
                # Spin only for a client that came back quickly twice in a row: a
                # command that follows another now and then (the dispatcher's claim
                # after a finish) costs no CPU.
                self._quick = self._quick + 1 if gap < self.spin_s else 0
                self._spin_until = self._last_end + self.spin_s if self._quick >= 2 else 0.0
        self.checkpointer.tick()
        due = self.beacon.due()
        if due is not None:
            self.publisher.send(*due)

    def _ready(self, timeout_s: float) -> bool:
        """Whether a request waits: polled without sleeping for a short while after a
        batch when the requests keep coming soon after the answers (the next request
        of a busy client is then served by a running CPU instead of a woken one), then
        with a blocking poll."""
        sock = self.server.sock
        while time.perf_counter() < self._spin_until:
            if sock.get(zmq.EVENTS) & zmq.POLLIN:
                return True
        if sock.get(zmq.EVENTS) & zmq.POLLIN:
            return True
        ready = dict(self.poller.poll(int(timeout_s * 1000) + 1))
        return sock in ready

    def _drain(self) -> list[Request]:
        batch: list[Request] = []
        now = time.time()
        while len(batch) < self.max_batch:
            item = self.server.recv_nowait()
            if item is None:
                break
            if isinstance(item, FrameError):
                self.bad_frames.record(str(item.details.get("sender", "?")), item)
                continue
            if item.expired(now):
                self._expired(item, now)
                continue
            batch.append(item)
        return batch

    def _expired(self, req: Request, now: float) -> None:
        """Read after its caller gave up (this registry was hung, or far behind):
        not applied, so that a caller told "unavailable" finds nothing half-done."""
        self.stats["expired"] += 1
        self.log.warning("request.expired", method=req.method, source=req.source,
                         request_id=req.id, late_s=round(now - (req.expires_at or now), 3))
        self.server.reply(req.identity, req.id, rpc.error(Expired(
            "the request expired before the registry read it; nothing was applied")))

    def _run_batch(self, batch: list[Request]) -> None:
        conn = self.registry.conn
        mark = self.registry.log.mark()
        handled: list[Handled] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for req in batch:
                handled.append(self.registry.handle(req.method, req.args, req.id, req.source))
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - the whole batch is answered below
            # A bug or a storage failure: nothing of this batch is kept or published,
            # and every command in it gets an error it may retry.
            if conn.in_transaction:  # (SQLite may have rolled it back itself)
                conn.execute("ROLLBACK")
            self.registry.log.reset(mark)
            self._batch_failed(batch, exc)
            return
        self.stats["batches"] += 1
        self.stats["requests"] += len(batch)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        for req, done in zip(batch, handled):
            self.server.reply(req.identity, req.id, done.reply)
            if not done.reply.get("ok"):
                self.stats["errors"] += 1
                error = done.reply.get("error") or {}
                if error.get("code") == StorageFull.code:
                    self._disk_full(1, error.get("message", ""))
                elif error.get("code") == Internal.code:  # a bug, or an input no check caught
                    self.log.error("request.internal", method=req.method, source=req.source,
                                   request_id=req.id, message=error.get("message", ""))
        for done in handled:
            for stored in done.events:
                self._publish(stored)

    def _batch_failed(self, batch: list[Request], exc: Exception) -> None:
        """Commands get the error; reads in the batch are answered again outside it
        (they change nothing, and a client reading the log, such as the dispatcher's
        catch-up, must not fail because a submit next to it did)."""
        if not storage.is_full(exc):
            self.log.exception("batch.failed", size=len(batch))
            error = Internal("the registry failed to commit; retry").to_dict()
        else:
            error = storage.full_error(self.registry.db_path)
            self._disk_full(len(batch), str(exc))
        for req in batch:
            reply = {"ok": False, "error": error}
            if req.method in self.registry.queries:
                try:
                    reply = self.registry.handle(req.method, req.args, req.id,
                                                 req.source).reply
                except Exception as again:  # noqa: BLE001 - answered, not raised
                    reply = {"ok": False, "error": storage.failure(
                        req.method, again, self.registry.db_path)}
            self.server.reply(req.identity, req.id, reply)

    def _disk_full(self, refused: int, reason: str) -> None:
        """Counted per refused request; logged at most every FULL_LOG_S, without a
        traceback; and the WAL is checkpointed (at most every SHRINK_S) with the space
        of the reserve: truncating it gives space back (services/registry/reserve.py)."""
        self.stats["storage_full"] += refused
        now = self.registry.clock.monotonic()
        self._full_at = now
        if self._full_log.admit() is not None:  # refused_so_far counts them all
            self.log.warning("storage.full", path=self.registry.db_path,
                             refused_so_far=self.stats["storage_full"], reason=reason[:200],
                             hint="commands are refused until space is freed; reads still "
                                  "work")
        if now - self._shrunk_at >= SHRINK_S:
            self._shrunk_at = now
            self.checkpointer.shrink()

    def _publish(self, stored: StoredEvent) -> None:
        self.publisher.send(stream_event_topic(stored.stream, stored.type),
                            stored.envelope(SOURCE))
        self.stats["events"] += 1
        self.log.debug("event.committed", stream=stored.stream, seq=stored.seq,
                       type=stored.type)

    def close(self) -> None:
        try:
            self.checkpointer.write_anchor()
        except OSError as exc:  # a full disk: the log itself is intact, the anchor older
            self.log.warning("anchor.not_written", reason=str(exc))
        self.server.sock.close(linger=0)
        self.publisher.sock.close(linger=500)
        self.registry.conn.close()
