"""How the clients reconnect without loss: where a watch stands (WatchResume) and
where a broken log stream stands (LogOutage)."""

from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

import grpc

from trainer.channel import LOGS_MAX_BACKOFF, WATCH_MAX_BACKOFF, TrainerError
from trainer_api.v1 import trainer_pb2 as pb


class WatchResume:
    """Where a watch stands, to reconnect without loss or repeats.

    ``position`` is the resume point: ``since_seq``, then the ``seq`` of every message
    received outside a snapshot. A live watch (no ``since_seq``) is pinned by its first
    message; if a connection fails before any message, ``pin`` sets it to the log's
    head from GetHealth, so what is committed while reconnecting is not lost.

    During a snapshot ``have`` holds, per run, the newest seq the caller has (a
    record's ``last_seq`` or an event's ``seq``). A snapshot cut off is asked for
    again, and ``accept`` passes on only what the caller does not have: a record only
    if it is newer, an event only if its seq is above the run's.
    """

    def __init__(self, run_ids: Iterable[str], since_seq: Optional[int], snapshot: bool,
                 max_backoff: float = WATCH_MAX_BACKOFF,
                 give_up_after: Optional[float] = None) -> None:
        self.run_ids = list(run_ids)
        self.position = since_seq
        self.in_snapshot = snapshot
        self.have: dict[str, int] = {}
        self.restarted = False
        self.max_backoff = max_backoff
        self.give_up_after = give_up_after
        self.backoff = 0.05
        self.down_since: Optional[float] = None

    def request(self) -> pb.WatchRunsRequest:
        req = pb.WatchRunsRequest(run_ids=self.run_ids, snapshot=self.in_snapshot)
        if not self.in_snapshot and self.position is not None:
            req.since_seq = self.position
        return req

    def broken(self, err: grpc.RpcError, resume: bool) -> None:
        """The stream broke: its error is raised unless a reconnect may help (it is
        retryable, resuming is on, and the outage is not past ``give_up_after``). The
        next snapshot (if any) is then a repeat to filter."""
        error = TrainerError.from_rpc(err)
        self.down_since = self.down_since or time.monotonic()
        if not resume or not error.retryable or (
                self.give_up_after is not None
                and time.monotonic() - self.down_since > self.give_up_after):
            raise error from None
        self.restarted = self.in_snapshot

    def next_backoff(self) -> float:
        """Seconds to wait before the next connection: doubled each time, up to
        ``max_backoff``; back to 50 ms once a message arrives."""
        wait, self.backoff = self.backoff, min(self.backoff * 2, self.max_backoff)
        return wait

    @property
    def unpinned(self) -> bool:
        return self.position is None and not self.in_snapshot

    def pin(self, health: pb.GetHealthResponse) -> None:
        """Start from the log's head (when the registry answered GetHealth)."""
        if self.unpinned and any(s.name == "registry" and s.alive for s in health.services):
            self.position = health.last_seq

    def accept(self, msg: pb.WatchRunsResponse) -> Optional[pb.WatchRunsResponse]:
        """Take ``msg`` into account; the message for the caller (None: nothing new)."""
        self.backoff, self.down_since = 0.05, None
        if not self.in_snapshot:
            self.position = msg.seq
            return msg
        if self.restarted:
            msg = self._unseen(msg)
        for rec in msg.snapshot:
            self.have[rec.run_id] = max(self.have.get(rec.run_id, 0), rec.last_seq)
        for ev in msg.events:
            self.have[ev.run_id] = max(self.have.get(ev.run_id, 0), ev.seq)
        if msg.snapshot_complete:
            self.in_snapshot = self.restarted = False
            self.position = msg.seq
            self.have = {}
            return msg
        return msg if msg.snapshot or msg.events else None

    def _unseen(self, msg: pb.WatchRunsResponse) -> pb.WatchRunsResponse:
        out = pb.WatchRunsResponse(seq=msg.seq, snapshot_complete=msg.snapshot_complete)
        out.snapshot.extend(r for r in msg.snapshot
                            if r.run_id not in self.have or r.last_seq > self.have[r.run_id])
        out.events.extend(e for e in msg.events if e.seq > self.have.get(e.run_id, 0))
        return out


class LogOutage:
    """Where a broken log stream stands: since when, its retry backoff, and whether the
    gateway was found unreachable (told to ``notify`` once, and once when it is back)."""

    def __init__(self, notify: Optional[Callable[[Optional[TrainerError], int], None]]) -> None:
        self.notify = notify
        self.since: Optional[float] = None
        self.error: Optional[TrainerError] = None
        self.backoff = 0.05
        self.away = False

    def failed(self, error: TrainerError, offset: int) -> None:
        self.since = self.since or time.monotonic()
        self.error = error
        if error.code == grpc.StatusCode.UNAVAILABLE and not error.trainer_code \
                and not self.away:  # grpc's own UNAVAILABLE: nothing answered
            self.away = True
            if self.notify:
                self.notify(error, offset)

    def wait(self, give_up_after: Optional[float]) -> None:
        """Sleep the backoff; raise the last error once the outage is too long."""
        if give_up_after is not None and self.since is not None and self.error is not None \
                and time.monotonic() - self.since > give_up_after:
            raise self.error
        time.sleep(self.backoff)  # reconnect backoff
        self.backoff = min(self.backoff * 2, LOGS_MAX_BACKOFF)

    def answered(self, offset: int) -> None:
        """GetHealth answered: a gateway found away is back."""
        if self.away:
            self.away = False
            self.over()
            if self.notify:
                self.notify(None, offset)

    def over(self) -> None:
        self.since, self.error, self.backoff = None, None, 0.05
