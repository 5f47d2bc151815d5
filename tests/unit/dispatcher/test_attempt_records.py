"""A run folder may still hold an earlier attempt's worker and exit records: the launcher
sets them aside (``attempt-<n>/``) only as it starts the next attempt, so a dispatcher
killed between the claim of attempt 2 and its start leaves attempt 1's there. The shim
records the attempt it runs in both; the decision core takes a record of another
attempt as absent: the recovered attempt 2 is started (never finished with attempt 1's
end, never adopted as attempt 1's worker), and a record without an attempt (a shim
from before) is the current attempt's, as it always was."""

from __future__ import annotations

from typing import Any

from core.commands import ClaimGpus, FinishRun, RecordAdopted, RecordStarted
from services.dispatcher import spawner
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import ExitRecord, RunView, ShimEnded, WorkerRecord
from services.dispatcher.decide.phases import Phase
from services.dispatcher.shell.folders import exit_record, worker_record
from tests.unit.dispatcher.driver import WALL0, Driver, commands, folder, logged, of


def view(status: str, attempt: int = 2, **fields: Any) -> RunView:
    return RunView("r", status, {}, 5, submitted_seq=1, attempt=attempt, **fields)


def recovered(status: str = "DISPATCHING", attempt: int = 2) -> Driver:
    d = Driver()
    d.boot(view(status, attempt))
    assert d.phase("r") is Phase.RECOVERING
    return d


def old_worker(pid: int = 40, attempt: Any = 1) -> WorkerRecord:
    return WorkerRecord(pid, pid, 12345.0, WALL0 - 60.0, attempt=attempt)


def old_exit(attempt: Any = 1) -> ExitRecord:
    return ExitRecord(None, 9, "SIGKILL", attempt=attempt)


def test_attempt_1s_exit_record_does_not_end_a_recovered_attempt_2_which_is_started() -> None:
    d = recovered()
    effects = d.feed(folder("r", worker=old_worker(), exit=old_exit()))
    assert not commands(effects, FinishRun)
    (start,) = of(effects, fx.StartWorker)
    assert (start.run_id, start.attempt) == ("r", 2) and d.phase("r") is Phase.STARTING
    (line,) = logged(effects, "run.restarted")
    assert line.fields["attempt"] == 2 and line.fields["earlier_records"] == 1


def test_attempt_1s_dead_worker_record_alone_is_not_attempt_2s_lost_worker() -> None:
    d = recovered()
    effects = d.feed(folder("r", worker=old_worker()))   # attempt 1 was lost: no exit record
    assert not commands(effects, FinishRun) and not logged(effects, "run.lost")
    assert [s.attempt for s in of(effects, fx.StartWorker)] == [2]


def test_attempt_1s_live_worker_is_killed_never_adopted_then_attempt_2_starts() -> None:
    d = recovered()
    effects = d.feed(folder("r", worker=old_worker(40), worker_alive=True,
                            processes=frozenset({40, 41})))
    assert not commands(effects, RecordAdopted) and not of(effects, fx.StartWorker)
    assert of(effects, fx.KillProcesses)[0].pids == {40, 41}
    assert d.phase("r") is Phase.RECOVERING
    effects = d.feed(folder("r", worker=old_worker(40), worker_alive=True))
    assert of(effects, fx.KillProcesses)[0].pids == {40}   # even where no scan found it
    d.tick(0.3)
    effects = d.feed(folder("r", worker=old_worker(40)))   # none left
    assert not commands(effects, FinishRun), "killing attempt 1's leftovers is no end"
    assert [s.attempt for s in of(effects, fx.StartWorker)] == [2]
    run = d.state.runs["r"]
    assert run.phase is Phase.STARTING and run.reaping_since is None and run.pgid is None


def test_a_shim_holding_the_run_is_awaited_whatever_the_records_say() -> None:
    d = recovered()
    effects = d.feed(folder("r", worker=old_worker(), shim_alive=True))
    assert not of(effects, fx.StartWorker) and d.phase("r") is Phase.RECOVERING
    assert d.state.runs["r"].pgid is None   # not attempt 1's group


def test_the_current_attempts_records_are_taken_as_before() -> None:
    d = recovered()
    (finish,) = commands(d.feed(folder("r", exit=old_exit(attempt=2))), FinishRun)
    assert finish.message == "killed by SIGKILL"
    d = recovered("RUNNING")
    effects = d.feed(folder("r", worker=old_worker(50, attempt=2), worker_alive=True))
    assert commands(effects, RecordAdopted) == [RecordAdopted("r", 50, "dispatcher")]


def test_records_without_an_attempt_from_an_older_shim_are_the_current_attempts() -> None:
    d = recovered()
    (finish,) = commands(d.feed(folder("r", exit=old_exit(attempt=None))), FinishRun)
    assert finish.message == "killed by SIGKILL" and not of(d.log, fx.StartWorker)
    d = recovered()
    (finish,) = commands(d.feed(folder("r", worker=old_worker(attempt=None))), FinishRun)
    assert finish.cause == "lost" and not of(d.log, fx.StartWorker)
    d = recovered("RUNNING")
    effects = d.feed(folder("r", worker=old_worker(50, attempt=None), worker_alive=True))
    assert commands(effects, RecordAdopted) and d.phase("r") is Phase.RUNNING


def test_a_started_attempt_2_ignores_attempt_1s_records_read_before_they_were_set_aside(
        ) -> None:
    """Outside recovery: attempt 1 ends, the registry begins attempt 2, which is claimed
    and started; a read that still shows attempt 1's records neither notes attempt 1's
    worker as attempt 2's nor ends attempt 2."""
    d = Driver()
    d.boot()
    d.start("r", pid=40)
    effects = d.feed(folder("r", worker=old_worker(40), exit=ExitRecord(None, 9, "SIGKILL",
                                                                         attempt=1)))
    assert d.phase("r") is Phase.ENDING
    d.seq += 1
    effects = d.answer(effects, only=FinishRun, run=RunView("r", "PENDING", {}, d.seq,
                                                            attempt=2))
    effects = effects + d.tick(0.0)
    assert commands(effects, ClaimGpus)
    d.seq += 1
    effects = d.answer(effects, only=ClaimGpus, run=RunView("r", "DISPATCHING", {}, d.seq,
                                                            attempt=2))
    assert [s.attempt for s in of(effects, fx.StartWorker)] == [2]
    assert d.phase("r") is Phase.STARTING
    effects = d.feed(folder("r", worker=old_worker(40), exit=old_exit()))
    assert d.phase("r") is Phase.STARTING
    assert not commands(effects, RecordStarted) and not commands(effects, FinishRun)
    effects = d.feed(folder("r", worker=old_worker(60, attempt=2)))
    assert d.phase("r") is Phase.RUNNING and d.state.runs["r"].pid == 60
    assert [c.pid for c in commands(effects, RecordStarted)] == [60]


def test_attempt_1s_shim_ending_after_attempt_2_was_queued_is_not_attempt_2s_shim() -> None:
    """The end of attempt 1's shim told late (its exit record was read first): attempt
    2, queued or claiming, has no shim yet; once started it still waits for its own."""
    d = Driver()
    d.boot()
    d.start("r", pid=40)
    effects = d.feed(folder("r", worker=old_worker(40), exit=old_exit()))
    d.seq += 1
    effects = d.answer(effects, only=FinishRun, run=RunView("r", "PENDING", {}, d.seq,
                                                            attempt=2))
    assert d.phase("r") is Phase.CLAIMING
    d.feed(ShimEnded("r", 0))
    assert not d.state.runs["r"].shim_ended
    d.seq += 1
    effects = d.answer(effects + d.tick(0.0), only=ClaimGpus,
                       run=RunView("r", "DISPATCHING", {}, d.seq, attempt=2))
    assert d.phase("r") is Phase.STARTING
    effects = d.feed(folder("r"))   # attempt 2's shim has not locked the folder yet
    assert d.phase("r") is Phase.STARTING and not commands(effects, FinishRun)


def test_the_shell_reads_the_attempt_a_shim_recorded() -> None:
    def attempt(**fields: Any) -> Any:
        record = worker_record({"pid": 7, "pgid": 7, "start_time": 1.0, "started_at": 2.0,
                                **fields})
        assert record is not None
        return record.attempt
    assert attempt(attempt=3) == 3 and attempt() is None   # (an older shim's: None)
    for bad in (None, 0, -1, "2", True, 2.0):
        assert attempt(attempt=bad) is None, bad
    ended = exit_record({"exit_code": 0, "signal": None, "attempt": 2})
    older = exit_record({"exit_code": 0, "signal": None})
    assert ended is not None and ended.attempt == 2 and older is not None and older.attempt is None


def test_the_shim_takes_its_attempt_from_its_workers_environment() -> None:
    assert spawner.attempt_of({spawner.ATTEMPT_VAR: "2"}) == 2
    for bad in ("", "0", "-1", "two", " 2", "²", "1.5"):
        assert spawner.attempt_of({spawner.ATTEMPT_VAR: bad}) is None, bad
    assert spawner.attempt_of({}) is None
