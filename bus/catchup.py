"""Gap-free delivery of committed domain events: live from the bus, missing ranges
from the registry ("events since seq"), in the order of the global seq.

PUB/SUB may drop (slow joiner, high-water mark): every consumer that needs all
events uses EventFollower instead of reading the bus directly. It subscribes first
and then catches up, as in the ZeroMQ guide's Clone pattern; a live event at or
below the last delivered seq is a duplicate and is dropped; one above the next
expected seq means a gap, which is fetched before the event is delivered. So that
losing the last message of a burst is noticed too, the registry's own status (every
status interval, carrying its head seq) is read as a hint; and when the bus is quiet
the follower asks the registry for its head, after ``idle_probe_s``, then less and
less often (up to ``idle_probe_max_s``) while nothing happens: an idle follower costs
the registry nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from bus.codec import Envelope, envelope_from_map
from bus.pubsub import Subscriber
from bus.registry import RegistryClient
from bus.topics import Topic, status_topic
from core.clock import Clock, SystemClock
from core.protocol import EventsSince

# fetch(after_seq, limit) -> (events after after_seq in seq order, registry head seq)
Fetch = Callable[[int, int], tuple[list[Envelope], int]]

PAGE = 1000
COMMITTER = "registry"  # the source of every committed event on the bus
HEAD_HINT = status_topic(COMMITTER)  # its status carries counters.head_seq


def registry_fetch(client: Any) -> Fetch:
    """A Fetch backed by the registry's ``events_since`` query over an RpcClient."""
    registry = RegistryClient(client)

    def fetch(after_seq: int, limit: int) -> tuple[list[Envelope], int]:
        result = registry.call(EventsSince(after_seq, limit))
        return [envelope_from_map(item) for item in result["events"]], int(result["head_seq"])
    return fetch


class EventFollower:
    def __init__(self, subscriber: Subscriber, fetch: Fetch, after_seq: int = 0, *,
                 idle_probe_s: float = 1.0, idle_probe_max_s: float = 30.0,
                 head_hint: bool = True, clock: Clock | None = None) -> None:
        self.sub = subscriber
        self.fetch = fetch
        self.last_seq = after_seq
        self.idle_probe_s = idle_probe_s
        self.idle_probe_max_s = max(idle_probe_s, idle_probe_max_s)
        self._probe_every = idle_probe_s
        self.hinted = 0         # fetches started by the registry's head hint
        self.clock = clock or SystemClock()
        self.fetched = 0        # events that came from the registry, not the bus
        self.duplicates = 0
        self.foreign = 0        # event.* messages not from the registry: ignored
        self.sub.subscribe(Topic.EVENT.value + ".")
        self.head_hint = head_hint
        if head_hint:
            self.sub.subscribe(HEAD_HINT)
        self._synced = False
        self._last_activity = self.clock.monotonic()

    def reset(self, after_seq: int) -> None:
        """Continue after ``after_seq`` (a snapshot's seq), catching up on the next poll."""
        self.last_seq = after_seq
        self._synced = False

    def poll(self, timeout_s: float) -> list[Envelope]:
        """Events after the last delivered one, in seq order (possibly none)."""
        out: list[Envelope] = []
        if not self._synced:
            self._fill(out, upto=None)
            self._synced = True
        msg = self.sub.recv(int(timeout_s * 1000))
        hint = None
        while msg is not None:
            if msg.topic == HEAD_HINT:
                hint = msg.envelope if self.head_hint else None
            else:
                self._take(msg.envelope, out)
            msg = self.sub.recv_nowait() if self.sub.sock.poll(0) else None
        if hint is not None and self._behind(hint):
            self.hinted += 1
            self._fill(out, upto=None)
        now = self.clock.monotonic()
        if out:
            self._last_activity = now
            self._probe_every = self.idle_probe_s
        elif now - self._last_activity >= self._probe_every:
            self._last_activity = now
            self._fill(out, upto=None)
            if not out:  # nothing missed: ask again later, less and less often
                self._probe_every = min(self._probe_every * 2, self.idle_probe_max_s)
        return out

    def due_in(self) -> float:
        """Seconds until ``poll`` asks the registry for its head, if nothing comes."""
        return max(0.0, self._last_activity + self._probe_every - self.clock.monotonic())

    def _behind(self, status: Envelope) -> bool:
        """The registry's status says it has committed past what we delivered."""
        if status.source != COMMITTER:
            return False
        counters = status.payload.get("counters") if isinstance(status.payload, dict) else None
        head = counters.get("head_seq") if isinstance(counters, dict) else None
        return isinstance(head, int) and head > self.last_seq

    def _take(self, env: Envelope, out: list[Envelope]) -> None:
        seq = env.seq
        if seq is None:
            return
        if env.source != COMMITTER:
            # Anyone on the bus can publish on event.*: a worker's stray message must not
            # take a seq (the registry's own event would then be dropped as a duplicate).
            self.foreign += 1
            return
        if seq <= self.last_seq:
            self.duplicates += 1
            return
        if seq > self.last_seq + 1:
            self._fill(out, upto=seq - 1)
        if seq == self.last_seq + 1:
            out.append(env)
            self.last_seq = seq

    def _fill(self, out: list[Envelope], upto: int | None) -> None:
        """Fetch from the registry until ``upto`` (or its head) is delivered."""
        while upto is None or self.last_seq < upto:
            limit = PAGE if upto is None else min(PAGE, upto - self.last_seq)
            events, head = self.fetch(self.last_seq, limit)
            before = self.last_seq
            for env in events:
                if env.seq is not None and env.seq == self.last_seq + 1:
                    out.append(env)
                    self.last_seq = env.seq
                    self.fetched += 1
            if not events or self.last_seq >= head or self.last_seq == before:
                return  # done, or a page that does not continue the sequence: stop
