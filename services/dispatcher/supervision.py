"""Pure supervision of one running worker: heartbeat silence, the wall-clock limit
and the kill sequence (SIGTERM, grace, SIGKILL), decided from a Clock's readings.

Silence is acted on only with positive evidence that the bus works: the dispatcher
hears its own status messages come back through the broker, and a run is killed for
silence only if one of them arrived after the run's heartbeat became overdue. When
they stop, nobody is killed; when they return, every run gets a fresh window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class KillPlan:
    outcome: str            # failed | cancelled
    cause: str              # a TerminalCause value
    message: str
    term_at: float          # monotonic time SIGTERM was sent
    grace_s: float
    killed: bool = False    # SIGKILL sent


@dataclass
class Watch:
    run_id: str
    started: float                  # monotonic
    heartbeat_timeout_s: float
    startup_grace_s: float
    time_limit_s: float             # 0 = none
    cancel_grace_s: float
    last_beat: Optional[float] = None
    kill: Optional[KillPlan] = None

    def beat(self, now: float) -> None:
        self.last_beat = now

    def silence_limit(self) -> float:
        extra = 0.0 if self.last_beat is not None else self.startup_grace_s
        return self.heartbeat_timeout_s + extra


@dataclass(frozen=True)
class Action:
    signal: str             # TERM | KILL
    plan: KillPlan


def begin_kill(watch: Watch, now: float, outcome: str, cause: str, message: str,
               grace_s: float) -> Action:
    plan = KillPlan(outcome, cause, message, now, grace_s)
    watch.kill = plan
    return Action("TERM", plan)


def check(watch: Watch, now: float, bus_seen_at: Optional[float]) -> Optional[Action]:
    """What to do to this run now, if anything. ``bus_seen_at``: when the dispatcher
    last received its own status message through the broker (monotonic)."""
    plan = watch.kill
    if plan is not None:
        if not plan.killed and now >= plan.term_at + plan.grace_s:
            plan.killed = True
            return Action("KILL", plan)
        return None
    if watch.time_limit_s and now - watch.started >= watch.time_limit_s:
        return begin_kill(watch, now, "failed", "time_limit",
                          f"wall-clock limit of {watch.time_limit_s:g}s reached",
                          watch.cancel_grace_s)
    since = watch.last_beat if watch.last_beat is not None else watch.started
    overdue_at = since + watch.silence_limit()
    if now > overdue_at and bus_seen_at is not None and bus_seen_at > overdue_at:
        return begin_kill(watch, now, "failed", "heartbeat_timeout",
                          f"no heartbeat for {now - since:.1f}s (timeout "
                          f"{watch.heartbeat_timeout_s:g}s)", watch.cancel_grace_s)
    return None


def deadline(watch: Watch) -> float:
    """When ``check`` may next have something to do about silence or the time limit
    (monotonic), if no heartbeat comes meanwhile."""
    since = watch.last_beat if watch.last_beat is not None else watch.started
    due = since + watch.silence_limit()
    if watch.time_limit_s:
        due = min(due, watch.started + watch.time_limit_s)
    return due


def awaits_evidence(watch: Watch, now: float, bus_seen_at: Optional[float]) -> bool:
    """Silent past its limit, but the bus was last seen working before that: a probe
    of the bus now settles it (instead of the next scheduled status message)."""
    if watch.kill is not None:
        return False
    since = watch.last_beat if watch.last_beat is not None else watch.started
    overdue_at = since + watch.silence_limit()
    return now > overdue_at and (bus_seen_at is None or bus_seen_at <= overdue_at)


class BusHealth:
    """Healthy while our own status messages come back within ``window`` seconds."""

    def __init__(self, window_s: float, now: float) -> None:
        self.window_s = window_s
        self.last_seen: Optional[float] = None
        self.started = now
        self.was_healthy = False
        self.lost = False    # True on the step the bus stopped answering
        self.rearmed = False  # probing again after an idle spell (see rearm)

    def rearm(self, window_s: float) -> None:
        """Probing starts again after an idle spell, in which our status went out only
        every status interval: the bus is judged on the new window from the next own
        status that comes back, which is no recovery (nothing was lost meanwhile)."""
        self.window_s = window_s
        self.last_seen = None
        self.was_healthy = False
        self.rearmed = True

    def seen(self, now: float) -> None:
        self.last_seen = now

    def healthy(self, now: float) -> bool:
        return self.last_seen is not None and now - self.last_seen <= self.window_s

    def recovered(self, now: float) -> bool:
        """True once each time the bus becomes healthy again after an outage."""
        ok = self.healthy(now)
        came_back = ok and not self.was_healthy
        self.lost = self.was_healthy and not ok
        self.was_healthy = ok
        if came_back and self.rearmed:
            self.rearmed = False
            return False
        return came_back
