"""The fan-out hub: events from the one bus listener to every live watcher, on the
event loop (no locks: only the loop thread touches this).

Each watcher has a bounded inbox (in events and in bytes; the items are shared by
every watcher, so the hub holds at most about one inbox's worth of distinct data). A
watcher whose inbox would overflow (its client reads too slowly) is logged, dropped from
live delivery and left to catch up from the registry at its last delivered seq; it rejoins live
delivery once it has caught up with the hub. So a stalled client never delays the
others, and the gateway's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Optional

from runtime.logs import ServiceLogger
from services.gateway.buslisten import Item

MAX_MESSAGE_BYTES = 1024 * 1024   # a watch message carries at most about this much


class Watcher:
    def __init__(self, peer: str, run_ids: frozenset[str], position: int, limit: int,
                 limit_bytes: int = 16 * 1024 * 1024) -> None:
        self.peer = peer
        self.run_ids = run_ids
        self.position = position       # every matching event <= position has been sent
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.inbox: deque[tuple[list[Item], int, int]] = deque()   # (items, upto, bytes)
        self.queued = 0                # events in the inbox
        self.queued_bytes = 0
        self.offered = position        # every hub event <= offered was offered to us
        self.live = False
        self.lagging = False
        self.lags = 0
        self.last_sent = time.monotonic()
        self.wake = asyncio.Event()

    def offer(self, items: list[Item], upto: int, size: int = -1) -> bool:
        """Queue the matching ``items`` (seq order, last one ``upto``, ``size`` bytes);
        False when the inbox cannot take them (the caller switches us to catch-up)."""
        if upto <= self.offered:
            return True
        whole = items
        if items[0].seq <= self.offered:
            items = [i for i in items if i.seq > self.offered]
        if self.run_ids:
            items = [i for i in items if i.run_id in self.run_ids]
        if items:
            if size < 0 or items is not whole:
                size = sum(len(i.data) for i in items)
            if self.queued + len(items) > self.limit or \
                    self.queued_bytes + size > self.limit_bytes:
                return False
            self.inbox.append((items, upto, size))
            self.queued += len(items)
            self.queued_bytes += size
            self.wake.set()
        self.offered = upto
        return True

    def take(self, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[list[Item], int]:
        """Queued events for one message (at least one), and the position it reaches."""
        if self.queued_bytes <= max_bytes:      # the usual case: everything at once
            out = [i for items, _, _ in self.inbox for i in items]
            self.inbox.clear()
            self.queued = self.queued_bytes = 0
            return out, max(self.position, self.offered)
        out = []
        size, upto = 0, self.position
        while self.inbox:
            items, entry_upto, entry_size = self.inbox[0]
            if size + entry_size <= max_bytes:
                out += items
                size += entry_size
                upto = entry_upto
                self.inbox.popleft()
                self.queued -= len(items)
                self.queued_bytes -= entry_size
                continue
            n, part = 0, 0
            for item in items:
                if (out or n) and size + part + len(item.data) > max_bytes:
                    break
                part += len(item.data)
                n += 1
            if n:
                out += items[:n]
                self.inbox[0] = (items[n:], entry_upto, entry_size - part)
                self.queued -= n
                self.queued_bytes -= part
                upto = out[-1].seq
            break
        if not self.inbox:
            upto = max(upto, self.offered)
        return out, upto


class WatchHub:
    def __init__(self, log: ServiceLogger) -> None:
        self.log = log
        self.seq: Optional[int] = None      # last seq delivered by the bus listener
        self.live: set[Watcher] = set()
        self.open = 0
        self.lagged = 0
        self.advanced = asyncio.Event()     # replaced after each delivery
        self.delays: deque[float] = deque(maxlen=1000)  # commit -> hub, seconds
        self._terminal: dict[str, set[asyncio.Event]] = {}

    async def keepalive(self, interval: float) -> None:
        """Wake live watchers that have sent nothing for ``interval`` (they then send
        a position-only message): one timer for all, none per message."""
        while True:
            await asyncio.sleep(interval / 2)
            due = time.monotonic() - interval
            for w in self.live:
                if w.last_sent <= due:
                    w.wake.set()

    def deliver(self, items: list[Item], head: int) -> None:
        """Called on the loop with each batch from the bus listener, in seq order
        (``head``: the listener's position; with no items, where it starts)."""
        if not items:
            if self.seq is None or head > self.seq:
                self.seq = head
            return
        upto = items[-1].seq
        self.delays.append(time.time() - items[0].ts)
        size = sum(len(i.data) for i in items) if self.live else 0
        for w in tuple(self.live):
            if not w.offer(items, upto, size):
                self._detach(w, upto)
        self.seq = upto
        if self._terminal:
            for item in items:
                if item.terminal:
                    for ev in self._terminal.get(item.run_id, ()):
                        ev.set()
        advanced, self.advanced = self.advanced, asyncio.Event()
        advanced.set()

    def delay_ms(self, q: float) -> float:
        """A quantile of the recent commit-to-hub delays, in ms (0 when none)."""
        if not self.delays:
            return 0.0
        ordered = sorted(self.delays)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    def _detach(self, w: Watcher, upto: int) -> None:
        self.live.discard(w)
        w.live = False
        w.lagging = True
        w.lags += 1
        w.wake.set()
        self.lagged += 1
        self.log.warning("watch.lagging", peer=w.peer, behind=upto - w.position,
                         queued=w.queued, buffer=w.limit,
                         action="switched to catch-up from the registry")
        # Nothing is kept for it: what its inbox held (not sent yet: its position is
        # the last seq sent) comes again from the registry when it reads again.
        w.inbox.clear()
        w.queued = w.queued_bytes = 0

    def try_live(self, w: Watcher) -> bool:
        """Join live delivery if ``w`` has seen everything the hub has delivered."""
        if self.seq is None or w.position < self.seq:
            return False
        w.offered = w.position
        w.live = True
        self.live.add(w)
        return True

    def leave(self, w: Watcher) -> None:
        self.live.discard(w)
        w.live = False

    def terminal_signal(self, run_id: str) -> asyncio.Event:
        """An event set when the hub delivers a terminal event of ``run_id``."""
        ev = asyncio.Event()
        self._terminal.setdefault(run_id, set()).add(ev)
        return ev

    def drop_signal(self, run_id: str, ev: asyncio.Event) -> None:
        waiters = self._terminal.get(run_id)
        if waiters is not None:
            waiters.discard(ev)
            if not waiters:
                del self._terminal[run_id]
