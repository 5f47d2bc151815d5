"""While the registry is away: a quick ping, asked at most every PROBE_EVERY_S, so
that the dispatcher's loop is never held for long (its status, heartbeats and logs go
on); once it answers, the dispatcher re-reads its state (recovery.recover)."""

from __future__ import annotations

from bus.rpc import RpcClient, Unavailable
from core.clock import Clock

PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 0.5


class RegistryProbe:
    def __init__(self, client: RpcClient, clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self._next = 0.0

    def answers(self) -> bool:
        """Does the registry answer a ping now? (False without asking when the last
        ping was less than PROBE_EVERY_S ago.)"""
        now = self.clock.monotonic()
        if now < self._next:
            return False
        self._next = now + PROBE_EVERY_S
        try:
            self.client.call("ping", {}, timeout_s=PROBE_TIMEOUT_S, retries=0)
        except Unavailable:
            return False
        return True
