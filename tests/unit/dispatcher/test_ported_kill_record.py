"""A kill's grace survives a dispatcher restart (ported from
tests/unit/test_dispatcher_kill_record.py): the kill record the launcher writes beside
the run (wall clock at SIGTERM) is read back by the shell, and the restarted
dispatcher's decision core turns it into a kill plan on its monotonic clock."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest

from core.clock import FakeClock
from core.events import TerminalCause
from core.rundir import KILL_FILE
from core.settings import Settings
from runtime.logs import ServiceLogger
from services.dispatcher import spawner
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import KillRecord, RunView
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.supervise import Outcome, Sig
from services.dispatcher.shell.effectrunner import EffectRunner, LogWriter
from services.dispatcher.shell.folders import kill_record
from services.dispatcher.shell.forklauncher import ForkLauncher
from tests.unit.dispatcher.driver import WALL0, Driver, folder, of, worker

GRACE = 6.0


def launcher(home: Path) -> ForkLauncher:
    """The fork launcher without its fork server (only its run-folder side is used)."""
    return ForkLauncher(Settings.from_env({"TRAINER_HOME": str(home)}),
                        forks=SimpleNamespace(wake_fd=-1))  # type: ignore[arg-type]


def adopted_with(record: Optional[KillRecord]) -> Driver:
    """A restarted dispatcher (monotonic 0, wall WALL0) reading a live worker's folder."""
    d = Driver()
    d.boot(RunView("r1", "RUNNING", {"cancel_grace_s": GRACE}, 1, submitted_seq=1))
    d.feed(folder("r1", worker=worker(31, WALL0 - 100.0), worker_alive=True, kill=record))
    return d


@pytest.mark.parametrize("term_at, kill_due", [
    (WALL0 - 2.0, 4.0),      # 2 s of the 6 s grace gone: 4 s left
    (WALL0 - 18.0, 0.0),     # the grace is over: SIGKILL at once
    (WALL0 + 5.0, GRACE),    # the wall clock went back: the whole grace, no more
])
def test_the_grace_counts_from_the_recorded_sigterm(term_at: float, kill_due: float) -> None:
    d = adopted_with(KillRecord("cancelled", "cancelled", "cancelled by a: b", term_at, GRACE))
    run = d.state.runs["r1"]
    assert run.phase is Phase.KILLING and run.kill is not None
    assert (run.kill.outcome, run.kill.cause) == (Outcome.CANCELLED, TerminalCause.CANCELLED)
    if kill_due > 0:
        assert not of(d.tick(kill_due - 0.01), fx.Signal)
        tail = d.tick(0.01)
    else:
        tail = d.tick(0.0)
    assert [s.sig for s in of(tail, fx.Signal)] == [Sig.KILL]


@pytest.mark.parametrize("outcome, cause", [("exploded", "cancelled"), ("failed", "boredom")])
def test_a_kill_record_that_is_not_ours_gives_no_plan(outcome: str, cause: str) -> None:
    d = adopted_with(KillRecord(outcome, cause, "m", WALL0 - 2.0, GRACE))
    assert d.phase("r1") is Phase.RUNNING and d.state.runs["r1"].kill is None


def test_a_kill_record_written_by_the_launcher_reads_back_the_same(tmp_path: Path) -> None:
    fork = launcher(tmp_path)
    os.makedirs(fork.run_dir("r1"))
    record = KillRecord("failed", "time_limit", "wall-clock limit of 5s reached", WALL0, 2.5)
    assert fork.record_kill("r1", record) == ""
    assert kill_record(spawner.read_json(os.path.join(fork.run_dir("r1"), KILL_FILE))) == record


@pytest.mark.parametrize("content", [None, "{", '{"outcome": "cancelled"}', "[]",
                                     '{"term_at": "soon", "grace_s": 1}'])
def test_no_or_an_unreadable_kill_record_gives_none(tmp_path: Path,
                                                    content: Optional[str]) -> None:
    path = tmp_path / KILL_FILE
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert kill_record(spawner.read_json(str(path))) is None


def test_a_kill_record_that_cannot_be_written_says_why_and_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fork = launcher(tmp_path)  # no folder for run "gone"
    why = fork.record_kill("gone", KillRecord("failed", "time_limit", "m", 0.0, 1.0))
    assert why and "gone" in why
    clock = FakeClock()
    none: Any = None
    runner = EffectRunner(none, fork, none, none, none, none,
                          LogWriter(ServiceLogger("dispatcher-test"), clock), clock)
    caplog.set_level("WARNING", logger="trainer.dispatcher-test")
    assert runner.run([fx.RecordKill("gone", "failed", "time_limit", "m", 0.0, 1.0)]) == []
    (line,) = [r for r in caplog.records if r.getMessage() == "run.kill_unrecorded"]
    assert line.fields["run_id"] == "gone" and "gone" in line.fields["reason"]
