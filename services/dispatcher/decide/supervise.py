"""Supervision of one running worker, as values: heartbeat silence, the wall-clock
limit and the kill sequence (SIGTERM, grace, SIGKILL). Times are monotonic seconds.

Silence is acted on only with positive evidence that the bus works: the dispatcher's
own status came back through the broker after the run's heartbeat became overdue.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Optional

from core.events import TerminalCause
from core.runconfig import RunConfig
from services.dispatcher.decide.values import replaced


class Outcome(str, enum.Enum):
    """FinishRun.outcome values."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Sig(str, enum.Enum):
    TERM = "TERM"
    KILL = "KILL"
    USR2 = "USR2"     # a checkpoint asked for: to the worker alone, not its group


@dataclass(frozen=True)
class KillPlan:
    outcome: Outcome
    cause: TerminalCause
    message: str
    term_at: float            # when SIGTERM went (monotonic)
    grace_s: float
    killed: bool = False      # SIGKILL sent

    @property
    def kill_due(self) -> float:
        return self.term_at + self.grace_s


@dataclass(frozen=True)
class Watch:
    started: float                  # the worker's true start (monotonic)
    heartbeat_timeout_s: float
    startup_grace_s: float
    time_limit_s: float             # 0 = none
    cancel_grace_s: float
    last_beat: Optional[float] = None

    @staticmethod
    def of(config: RunConfig, started: float) -> "Watch":
        return Watch(started, config.heartbeat_timeout_s, config.startup_grace_s,
                     config.time_limit_s, config.cancel_grace_s)

    @staticmethod
    def from_start(config: RunConfig, now: float, age_s: float) -> "Watch":
        """The watch of a worker started ``age_s`` ago (its shim's started_at): the
        limit counts from then; one past its start-up grace (it has been beating, or
        it would have been killed) gets a fresh heartbeat window from now."""
        watch = Watch.of(config, now - max(0.0, age_s))
        return watch.beat(now) if age_s > watch.startup_grace_s else watch

    def beat(self, now: float) -> "Watch":
        return replaced(self, last_beat=now)

    def silence_limit(self) -> float:
        return self.heartbeat_timeout_s + (0.0 if self.last_beat is not None
                                           else self.startup_grace_s)

    def overdue_at(self) -> float:
        since = self.last_beat if self.last_beat is not None else self.started
        return since + self.silence_limit()

    def deadline(self) -> float:
        """When silence or the time limit may next call for an action."""
        due = self.overdue_at()
        if self.time_limit_s:
            due = min(due, self.started + self.time_limit_s)
        return due


def cancel_plan(watch: Watch, now: float, since_s: float, by: str, reason: str) -> KillPlan:
    """A cancel recorded ``since_s`` ago: its grace counts from then."""
    return KillPlan(Outcome.CANCELLED, TerminalCause.CANCELLED, f"cancelled by {by}: {reason}",
                    now - max(0.0, since_s), watch.cancel_grace_s)


def check(watch: Watch, plan: Optional[KillPlan], now: float,
          bus_seen_at: Optional[float]) -> Optional[tuple[Sig, KillPlan]]:
    """The signal due now and the plan after it, if any."""
    if plan is not None:
        if not plan.killed and now >= plan.kill_due:
            return Sig.KILL, dataclasses.replace(plan, killed=True)
        return None
    if watch.time_limit_s and now - watch.started >= watch.time_limit_s:
        return Sig.TERM, KillPlan(Outcome.FAILED, TerminalCause.TIME_LIMIT,
                                  f"wall-clock limit of {watch.time_limit_s:g}s reached",
                                  now, watch.cancel_grace_s)
    overdue_at = watch.overdue_at()
    if now > overdue_at and bus_seen_at is not None and bus_seen_at > overdue_at:
        since = watch.last_beat if watch.last_beat is not None else watch.started
        return Sig.TERM, KillPlan(Outcome.FAILED, TerminalCause.HEARTBEAT_TIMEOUT,
                                  f"no heartbeat for {now - since:.1f}s (timeout "
                                  f"{watch.heartbeat_timeout_s:g}s)", now,
                                  watch.cancel_grace_s)
    return None


def awaits_evidence(watch: Watch, plan: Optional[KillPlan], now: float,
                    bus_seen_at: Optional[float]) -> bool:
    """Silent past its limit, but the bus was last seen working before that: a probe
    of the bus now settles it."""
    if plan is not None:
        return False
    overdue_at = watch.overdue_at()
    return now > overdue_at and (bus_seen_at is None or bus_seen_at <= overdue_at)


@dataclass(frozen=True)
class BusHealth:
    """Healthy while our own status messages come back within ``window_s``."""

    window_s: float
    last_seen: Optional[float] = None
    was_healthy: bool = False
    rearmed: bool = False       # probing again after an idle spell: no recovery to tell

    def healthy(self, now: float) -> bool:
        return self.last_seen is not None and now - self.last_seen <= self.window_s

    def seen(self, now: float) -> "BusHealth":
        return dataclasses.replace(self, last_seen=now)

    def widen(self, window_s: float) -> "BusHealth":
        return dataclasses.replace(self, window_s=window_s)

    def rearm(self, window_s: float) -> "BusHealth":
        return BusHealth(window_s, None, False, True)

    def judge(self, now: float) -> tuple["BusHealth", bool, bool]:
        """(health after, came back now, lost now): each told once per change."""
        ok = self.healthy(now)
        came_back, lost = ok and not self.was_healthy, self.was_healthy and not ok
        rearmed = self.rearmed
        if came_back and rearmed:
            came_back, rearmed = False, False
        return dataclasses.replace(self, was_healthy=ok, rearmed=rearmed), came_back, lost
