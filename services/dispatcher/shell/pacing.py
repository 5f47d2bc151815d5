"""How long the dispatcher's loop may wait, and how often its status goes out.

While it watches runs (or has commands to send, a GPU read in flight, the registry to
find), the loop wakes every tick and drains telemetry at least every TELEMETRY_S; its
status, which doubles as the probe of the bus, goes out every ``probe_s`` and the bus
is judged on three of them. Idle, it sleeps until its next status (every status
interval; a committed event, a launcher's news or a signal wakes it at once), or until
the GPUs are read again for a queued GPU run. Probing starts again, at once, when the
first run is watched.

Runs that only wait in their back end's queue (backlogged: SLURM jobs pending) need no
tick: with nothing else to watch, the loop sleeps until its next status or their next
full sweep, whichever comes first; their launcher's news (a job that moved or ended)
wakes it at once.
"""

from __future__ import annotations

from typing import Optional, Union

from runtime.status import StatusBeacon
from services.dispatcher.decide.inputs import BusIdle, BusRearmed
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.state import DispatcherState, Registry

TELEMETRY_S = 0.02   # heartbeats and reported artifacts are read at least this often
PROBE_S = 0.5        # our status while runs are watched (at most the status interval)


def watching(state: DispatcherState) -> bool:
    """A run past the queue (backlogged ones included): the bus is probed often."""
    return bool(state.past_queue)


def busy(state: DispatcherState) -> bool:
    """Anything that may be due before our next tick-less wake."""
    return (state.dirty or state.retry_due or state.gpu_read_due
            or state.registry is not Registry.UP or state.urgent())


class Pacer:
    def __init__(self, beacon: StatusBeacon, idle_s: float, tick_s: float) -> None:
        self.beacon = beacon
        self.idle_s = idle_s
        self.probe_s = min(idle_s, PROBE_S)
        self.tick_s = tick_s
        self.watching = False

    def wait_s(self, state: DispatcherState, now: float, timeout_s: float) -> float:
        if busy(state):
            return min(timeout_s, self.tick_s, TELEMETRY_S)
        wait = min(timeout_s, self.beacon.due_in())
        if state.backlogged or (len(state.runs) > len(state.past_queue) and any(
                r.config.resources.gpus for r in state.in_phase(Phase.QUEUED))):
            wait = min(wait, max(0.0, state.next_full - now))   # their full sweep
        return wait

    def update(self, state: DispatcherState) -> Optional[Union[BusRearmed, BusIdle]]:
        """The status interval for ``state``; the observation for the decision core
        when it changed (probing again on a fresh window, or a wider one idle)."""
        now_watching = watching(state)
        if now_watching == self.watching:
            return None
        self.watching = now_watching
        if now_watching:
            self.beacon.interval = self.probe_s
            self.beacon.hurry()
            return BusRearmed(3 * self.probe_s)
        self.beacon.interval = self.idle_s
        return BusIdle(3 * self.idle_s)


def poll_ms(wait_s: float) -> int:
    """A poll timeout in ms that does not wake before ``wait_s``."""
    return int(wait_s * 1000) + (wait_s > 0)
