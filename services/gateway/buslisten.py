"""The gateway's one bus connection, in its own thread: committed events (gap-free
through bus.catchup.EventFollower, holes filled from the registry), heartbeats and
service status messages, and the gateway's own status beacon.

Each event is turned into its wire form once here (an ``Item``), then handed to the
event loop in seq order; the loop fans it out to every watcher.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

import zmq

from bus import curvekeys
from bus.badframes import BadFrameLog
from bus.catchup import EventFollower, Fetch, registry_fetch
from bus.codec import Envelope
from runtime.logs import ServiceLogger
from bus.pubsub import Publisher, Subscriber
from bus.registry import RegistryClient
from bus.rpc import RpcClient
from runtime.status import StatusBeacon
from bus.topics import Topic
from core.clock import SystemClock
from core.errors import OrchestratorError
from core.streams import is_run_stream
from core.protocol import Ping
from core.runstate import TERMINAL
from core.settings import Settings
from services.gateway.mapping import Mapper, StatusTracker, heartbeat_message
from trainer_api.v1 import trainer_pb2 as pb

SOURCE = "gateway"
MAX_WAIT_S = 5.0               # the longest the thread sleeps with nothing due
IDLE_BATCH_S = 0.05            # the hand-over window while no watcher is live
BATCH_PER_WATCHER_S = 0.0001   # ... grows with the live watchers (100: 10 ms)
MAX_BATCH_S = 0.025
_TERMINAL = {s.value for s in TERMINAL}


class Item:
    """One committed event for the watchers. ``data`` is its wire form: a
    WatchRunsResponse holding only this event, so that a batch is the concatenation
    of its items (protobuf merges repeated fields), encoded once for every watcher.
    The bus thread encodes it when live watchers exist; otherwise it is encoded on
    first use (only if a watcher went live meanwhile)."""

    __slots__ = ("seq", "run_id", "type", "status", "ts", "_env", "_mapper", "_data")

    def __init__(self, seq: int, run_id: str, type: str, status: Optional[str] = None,
                 env: Optional[Envelope] = None, mapper: Optional[Mapper] = None,
                 data: Optional[bytes] = None, ts: float = 0.0) -> None:
        self.seq, self.run_id, self.type, self.status = seq, run_id, type, status
        self.ts = env.ts if env is not None else ts    # commit time in the registry
        self._env, self._mapper, self._data = env, mapper, data

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL

    @property
    def data(self) -> bytes:
        if self._data is None:
            assert self._env is not None and self._mapper is not None
            event = self._mapper.run_event(self._env, self.status)
            self._data = pb.WatchRunsResponse(events=[event]).SerializeToString()
            self._env = self._mapper = None
        return self._data


def make_item(mapper: Mapper, env: Envelope, tracker: StatusTracker,
              encode: bool = True) -> Item:
    run_id = (env.stream or "").removeprefix("run-")
    item = Item(env.seq or 0, run_id, env.type, tracker.after(run_id, env.type), env, mapper)
    if encode:
        item.data  # noqa: B018 - encode now, off the event loop
    return item


class Telemetry:
    """Latest heartbeat per run (bounded, least recently heard dropped) and the last
    status message of each service. Written by the bus thread, read by any thread."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._beats: OrderedDict[str, tuple[dict[str, Any], float, float]] = OrderedDict()
        self._status: dict[str, tuple[dict[str, Any], float]] = {}

    def heartbeat(self, run_id: str, payload: dict[str, Any], sent_at: float) -> None:
        with self._lock:
            self._beats[run_id] = (payload, sent_at, time.time())
            self._beats.move_to_end(run_id)
            while len(self._beats) > self.capacity:
                self._beats.popitem(last=False)

    def last_heartbeat(self, run_id: str) -> Optional[pb.Heartbeat]:
        with self._lock:
            entry = self._beats.get(run_id)
        if entry is None:
            return None
        return heartbeat_message(*entry)

    def heartbeat_count(self) -> int:
        with self._lock:
            return len(self._beats)

    def service_status(self, service: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._status[service] = (payload, time.time())

    def statuses(self) -> dict[str, tuple[dict[str, Any], float]]:
        with self._lock:
            return dict(self._status)


class BusListener:
    def __init__(self, settings: Settings, ctx: zmq.Context, mapper: Mapper,
                 telemetry: Telemetry, post: Callable[[list[Item], int], None],
                 counters: Callable[[], dict[str, Any]], log: ServiceLogger,
                 wanted: Callable[[], int] = lambda: 1, batch_s: float = 0.0,
                 registry_timeout: float = 1.0) -> None:
        self.settings = settings
        self.ctx = ctx
        self.mapper = mapper
        self.telemetry = telemetry
        self.post = post
        self.counters = counters
        self.log = log
        self.wanted = wanted          # how many live watchers (encode items now if any)
        self.batch_s = batch_s        # the least time between two hand-overs
        self.registry_timeout = registry_timeout
        self.head: Optional[int] = None      # last seq handed to the loop
        self.fetched = 0
        self.registry_down = False
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # stop() wakes the thread's poll
        self._thread = threading.Thread(target=self._run, name="gw-bus", daemon=True)
        self.tracker = StatusTracker()

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    # --- the thread --------------------------------------------------------------
    def _run(self) -> None:
        bad = BadFrameLog(self.log)
        events_sock = self._sub(1_000_000)
        tele_sock = self._sub(100_000)
        pub = self.ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        curvekeys.connect(pub, self.settings.bus_pub, self._keys())
        client = RpcClient(self.ctx, self.settings.registry, SOURCE,
                           timeout_s=self.registry_timeout, retries=0)
        try:
            telemetry = Subscriber(tele_sock, bad)
            telemetry.subscribe(Topic.HEARTBEAT.value + ".")
            telemetry.subscribe(Topic.STATUS.value + ".")
            follower = EventFollower(Subscriber(events_sock, bad),
                                     self._safe(registry_fetch(client)), idle_probe_s=0.5)
            beacon = StatusBeacon(SOURCE, self.settings.status_interval, SystemClock(),
                                  self.counters)
            self._loop(follower, telemetry, client, Publisher(pub, SOURCE), beacon)
        except Exception:  # pragma: no cover - a bug: log it, the server reports it
            self.log.exception("bus.thread_failed")
            raise
        finally:
            client.close()
            for sock in (events_sock, tele_sock, pub):
                sock.close(linger=0)

    def _sub(self, hwm: int) -> zmq.Socket:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, hwm)
        curvekeys.connect(sock, self.settings.bus_sub, self._keys())
        return sock

    def _keys(self) -> curvekeys.ClientKeys | None:
        return curvekeys.service_keys(self.settings.home, self.settings.bus_curve)

    def _loop(self, follower: EventFollower, telemetry: Subscriber, client: RpcClient,
              publisher: Publisher, beacon: StatusBeacon) -> None:
        poller = zmq.Poller()
        poller.register(follower.sub.sock, zmq.POLLIN)
        poller.register(telemetry.sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        posted = 0.0
        while not self._stop.is_set():
            if self.head is None:
                self._start_from_head(follower, client)
            # Idle, the thread sleeps until our status or the follower's probe is due.
            wait = min(beacon.due_in(), follower.due_in(), MAX_WAIT_S)
            ready = dict(poller.poll(int(wait * 1000) + 1))
            if self.head is not None:
                # Hand events over at most once per window: the first after a quiet
                # spell at once, later ones gathered (fewer wake-ups, bigger batches).
                watchers = self.wanted()
                watched = watchers > 0
                wait = posted + self.window(watchers) - time.monotonic()
                if wait > 0 and follower.sub.sock in ready:
                    self._stop.wait(wait)
                envs = follower.poll(0)
                if envs:
                    # Only runs' events are watched (an environment's stream is not a run)
                    items = [make_item(self.mapper, e, self.tracker, watched) for e in envs
                             if is_run_stream(e.stream)]
                    self.head = follower.last_seq
                    self.fetched = follower.fetched
                    self.post(items, self.head)
                    posted = time.monotonic()
            if telemetry.sock in ready:
                self._drain(telemetry)
            due = beacon.due()
            if due is not None:
                publisher.send(*due)

    def window(self, watchers: int) -> float:
        """Time between hand-overs: the more live watchers, the bigger each batch, so
        that the messages the gateway writes per second stay bounded."""
        if not watchers:
            return IDLE_BATCH_S
        return min(MAX_BATCH_S, max(self.batch_s, watchers * BATCH_PER_WATCHER_S))

    def _start_from_head(self, follower: EventFollower, client: RpcClient) -> None:
        """Live delivery starts at the registry's head when the gateway starts."""
        try:
            head = int(RegistryClient(client).call(Ping())["head_seq"])
        except OrchestratorError as exc:
            self._down(exc)
            self._stop.wait(0.2)
            return
        self._up()
        follower.reset(head)
        self.head = head
        self.post([], head)
        self.log.info("bus.following", after_seq=head)

    def _drain(self, telemetry: Subscriber) -> None:
        for _ in range(10_000):
            msg = telemetry.recv_nowait()
            if msg is None:
                if not telemetry.sock.poll(0):
                    return
                continue
            env = msg.envelope
            if msg.topic.startswith("hb."):
                run_id = msg.topic[3:]
                self.telemetry.heartbeat(run_id, env.payload, env.ts)
            elif msg.topic.startswith("status."):
                self.telemetry.service_status(msg.topic[7:], env.payload)

    def _safe(self, fetch: Fetch) -> Fetch:
        """A fetch that never raises: an unanswered registry gives an empty page, and
        the follower tries again on its next gap or idle probe (nothing is lost)."""
        def safe(after_seq: int, limit: int) -> tuple[list[Envelope], int]:
            try:
                out = fetch(after_seq, limit)
            except OrchestratorError as exc:
                self._down(exc)
                return [], 0
            self._up()
            return out
        return safe

    def _down(self, exc: OrchestratorError) -> None:
        if not self.registry_down:
            self.registry_down = True
            self.log.warning("registry.unavailable", reason=exc.message)

    def _up(self) -> None:
        if self.registry_down:
            self.registry_down = False
            self.log.info("registry.available")

