"""How long the dispatcher's loop may sleep, and how often its status goes out.

While it watches runs, the loop wakes every tick (exits, timeouts, logs) and drains
telemetry every TELEMETRY_S, and its status, which doubles as the probe of the bus,
goes out every probe_s. Idle (nothing to watch, send or read), it sleeps until its
next status, every status interval: a committed event, a shim's end or a signal wakes
it at once. Probing starts again, at once, when the first run is watched.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.status import StatusBeacon
from services.dispatcher.supervision import BusHealth

TELEMETRY_S = 0.02  # heartbeats and reported artifacts are read at least this often


@dataclass
class Pacer:
    beacon: StatusBeacon
    bus: BusHealth
    probe_s: float      # our status while runs are watched
    idle_s: float       # ... and while none is (the status interval)
    tick_s: float
    probing: bool = False

    def wait_s(self, timeout_s: float, busy: bool, until_gpu_read: float | None) -> float:
        """``until_gpu_read``: seconds until GPUs are read again for a waiting run."""
        if busy:
            return min(timeout_s, self.tick_s, TELEMETRY_S)
        wait = min(timeout_s, self.beacon.due_in())
        if until_gpu_read is not None:
            wait = min(wait, max(0.0, until_gpu_read))
        return wait

    def update(self, watching: bool) -> None:
        if watching == self.probing:
            return
        self.probing = watching
        if watching:
            self.beacon.interval = self.probe_s
            self.bus.rearm(3 * self.probe_s)
            self.beacon.hurry()
        else:
            self.beacon.interval = self.idle_s
            self.bus.window_s = 3 * self.idle_s
