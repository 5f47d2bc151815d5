"""A kill's grace survives a dispatcher restart: the run folder's kill record (wall
clock at SIGTERM) becomes a kill plan on the new dispatcher's monotonic clock."""

from __future__ import annotations

import os

import pytest

from core.rundir import KILL_FILE
from services.dispatcher.active import ActiveRun
from services.dispatcher.logfollow import RunLogs
from services.dispatcher.supervision import KillPlan, check

WALL_TERM = 1_000_000.0   # wall clock when the first dispatcher sent SIGTERM
NOW = 50.0                # the restarted dispatcher's monotonic clock at adoption
GRACE = 6.0


def active(path: str) -> ActiveRun:
    return ActiveRun("r1", path, {"cancel_grace_s": GRACE}, [], 1, RunLogs("r1", path, 0))


@pytest.mark.parametrize("wall_at_restart, kill_due_at", [
    (WALL_TERM + 2.0, NOW + 4.0),    # 2 s of the 6 s grace gone: 4 s left
    (WALL_TERM + 18.0, NOW),         # the grace is over: SIGKILL at once
    (WALL_TERM - 5.0, NOW + GRACE),  # the wall clock went back: the whole grace, no more
])
def test_the_grace_counts_from_the_recorded_sigterm(tmp_path, wall_at_restart: float,
                                                    kill_due_at: float) -> None:
    first = active(str(tmp_path))
    assert first.record_kill(KillPlan("cancelled", "cancelled", "cancelled by a: b",
                                      term_at=3.0, grace_s=GRACE), WALL_TERM) is None
    plan = active(str(tmp_path)).recorded_kill(NOW, wall_at_restart)
    assert plan is not None and (plan.outcome, plan.cause) == ("cancelled", "cancelled")
    watch = first.new_watch(NOW)
    watch.kill = plan
    if kill_due_at > NOW:
        assert check(watch, kill_due_at - 0.01, None) is None
    action = check(watch, kill_due_at, None)
    assert action is not None and action.signal == "KILL"


@pytest.mark.parametrize("content", [None, "{", '{"outcome": "cancelled"}', "[]"])
def test_no_or_an_unreadable_kill_record_gives_no_plan(tmp_path, content: str | None) -> None:
    if content is not None:
        with open(os.path.join(tmp_path, KILL_FILE), "w", encoding="utf-8") as fh:
            fh.write(content)
    assert active(str(tmp_path)).recorded_kill(NOW, WALL_TERM) is None


def test_a_kill_record_that_cannot_be_written_says_why(tmp_path) -> None:
    missing = os.path.join(tmp_path, "gone")
    error = active(missing).record_kill(KillPlan("failed", "time_limit", "m", 0.0, 1.0), 0.0)
    assert error and "gone" in error
