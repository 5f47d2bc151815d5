"""The dispatcher's start-up decisions about one run: a shim still at work, what an
adopted run keeps, a cancel asked while it was starting, the snapshot's pages, an
exit record written as its shim let go."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from core.commands import FinishRun, RecordAdopted, RecordStarted
from core.events import TerminalCause
from core.protocol import Snapshot
from core.rundir import KILL_FILE
from services.dispatcher import spawner
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.supervise import Outcome
from services.dispatcher.procs import process_start_time
from tests.integration.dispatcher.fakes import (Harness, folder, record, tagged, worker,
                                                write_exit)


def _signals(h: Harness) -> list[fx.Signal]:
    return [e for e in h.done if isinstance(e, fx.Signal)]


# --- start-up: a shim that still owns the run -------------------------------------

def test_recovery_waits_for_the_exit_record_of_a_shim_still_at_work(
        cold: Harness, procs: list) -> None:
    h = cold
    path = folder(h, "r6", worker(procs, alive=False))  # the worker has exited...
    h.lock("r6")  # ...and its shim is still writing the exit record
    h.registry.add(record("r6", "RUNNING"))
    h.boot()
    assert h.phase("r6") is Phase.RECOVERING and h.logged("run.awaited")
    assert not h.registry.finishes()
    h.sweep()                            # read again: still its shim's
    assert h.phase("r6") is Phase.RECOVERING and not h.registry.finishes()
    write_exit(path, 0)
    h.unlock("r6")
    h.sweep()
    (finish,) = h.registry.finishes("r6")
    assert (finish.outcome, finish.cause, finish.exit_code) == ("completed", "", 0)


def test_recovery_never_starts_again_a_run_whose_shim_holds_it(
        cold: Harness, procs: list) -> None:
    h = cold
    folder(h, "r7")  # DISPATCHING, no worker.json: its shim is starting it
    h.lock("r7")
    h.registry.add(record("r7", "DISPATCHING"))
    h.boot()
    assert h.phase("r7") is Phase.RECOVERING and h.logged("run.awaited")
    assert h.forks.spawned == [] and not h.registry.commands()
    pid = worker(procs)
    folder(h, "r7", pid)  # the shim's worker.json appears
    h.sweep()
    assert [(c.run_id, c.pid) for c in h.registry.sent(RecordStarted)] == [("r7", pid)]
    assert h.phase("r7") is Phase.RUNNING and h.run("r7").pgid == pid
    assert h.forks.spawned == [] and not h.registry.sent(RecordAdopted)


def test_recovery_starts_a_run_that_no_shim_holds(cold: Harness) -> None:
    h = cold
    path = folder(h, "r8")
    h.registry.add(record("r8", "DISPATCHING"))
    h.boot()
    assert h.logged("run.restarted") and h.phase("r8") is Phase.STARTING
    assert h.forks.spawned == [path]


def test_recovery_kills_a_worker_whose_shim_died_before_recording_it(
        cold: Harness, procs: list) -> None:
    """No worker.json, no shim, no exit record, but the worker runs (its shim died
    between starting it and recording it): killed, and the run ends lost instead of
    being started a second time."""
    h = cold
    pid = tagged(procs, "r9")
    folder(h, "r9")
    h.registry.add(record("r9", "DISPATCHING"))
    h.boot()
    assert not h.registry.finishes()     # killed first; its end once none is left
    assert procs[-1].wait(5) == -signal.SIGKILL and process_start_time(pid) is None
    h.sweep()
    assert h.forks.spawned == []
    assert [(f.run_id, f.cause) for f in h.registry.finishes()] == [("r9", "lost")]


# --- start-up: what an adopted run keeps ------------------------------------------

def test_an_adopted_worker_keeps_its_time_limit_and_its_startup_grace(
        cold: Harness, procs: list) -> None:
    h = cold
    folder(h, "r9", worker(procs), age_s=2.5)
    h.lock("r9")                         # its shim, at work
    h.registry.add(record("r9", "RUNNING", time_limit_s=3.0))
    h.boot()
    assert h.logged("run.adopted") and h.phase("r9") is Phase.RUNNING
    assert [c.run_id for c in h.registry.sent(RecordAdopted)] == ["r9"]
    watch = h.run("r9").watch
    assert watch is not None and watch.last_beat is None  # no beat yet: the grace stands
    h.tick(0.6)
    kill = h.run("r9").kill
    assert kill is not None and kill.cause is TerminalCause.TIME_LIMIT
    assert h.phase("r9") is Phase.KILLING
    assert procs[-1].wait(5) == -signal.SIGTERM


def test_an_adopted_worker_past_its_startup_grace_gets_a_fresh_heartbeat_window(
        cold: Harness, procs: list) -> None:
    h = cold
    folder(h, "r10", worker(procs), age_s=600.0)
    h.lock("r10")
    h.registry.add(record("r10", "RUNNING", startup_grace_s=120.0, heartbeat_timeout_s=30.0))
    h.boot()
    watch = h.run("r10").watch
    assert watch is not None and watch.last_beat == h.clock.monotonic()
    h.pass_time(29.0)                    # silent, the bus proven healthy meanwhile
    assert h.run("r10").kill is None and not _signals(h) and procs[-1].poll() is None
    h.pass_time(2.0)                     # past its window (from its adoption): killed
    kill = h.run("r10").kill
    assert kill is not None and kill.cause is TerminalCause.HEARTBEAT_TIMEOUT


def test_a_cancel_asked_while_the_run_was_starting_survives_a_restart(
        cold: Harness, procs: list) -> None:
    h = cold
    h.registry.add({**record("r11", "DISPATCHING"), "cancel_requested_by": "alice",
                    "cancel_reason": "stop it"})
    h.boot()
    assert h.logged("run.restarted") and h.phase("r11") is Phase.STARTING
    cancel = h.run("r11").cancel
    assert cancel is not None and (cancel.requested_by, cancel.reason) == ("alice", "stop it")
    path = folder(h, "r11", worker(procs))  # the relaunched worker shows up: stopped at once
    h.sweep()
    kill = h.run("r11").kill
    assert h.phase("r11") is Phase.KILLING and kill is not None
    assert kill.outcome is Outcome.CANCELLED
    assert procs[-1].wait(5) == -signal.SIGTERM
    assert os.path.exists(os.path.join(path, KILL_FILE))  # a restart keeps its grace


# --- the start-up snapshot ---------------------------------------------------------

def _running(h: Harness, seqs: list[int]) -> None:
    for s in seqs:
        h.registry.add({**record(f"r{s}", "RUNNING"), "submitted_seq": s})
    h.registry.head_seq = 100


def test_the_startup_snapshot_misses_no_run_when_one_ends_between_pages(
        cold: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = cold
    monkeypatch.setattr(fx, "SNAPSHOT_PAGE", 2)
    _running(h, [1, 2, 3, 4, 5])

    def oldest_ends() -> None:           # a run ends before the next page is read
        h.registry.commit("r1", status="FAILED")
    h.registry.between_pages = oldest_ends
    h.boot()
    live = {r for r, run in h.registry.runs.items() if run["status"] == "RUNNING"}
    read = h.observed()                  # each run of the snapshot, its folder judged
    assert live <= set(read) and h.follower.resets == [100]
    assert read == sorted(read) and len(read) == len(set(read))  # oldest first, once each
    assert all(q.limit == 2 for q in h.registry.sent(Snapshot))


def test_the_startup_snapshot_pages_on_past_a_page_cut_short_by_size(cold: Harness) -> None:
    h = cold
    _running(h, [1, 2, 3, 4, 5])
    h.registry.page_cut = 2              # pages cut to 2 runs by their size ("more")
    h.boot()
    assert h.observed() == ["r1", "r2", "r3", "r4", "r5"]
    assert len(h.registry.sent(Snapshot)) == 3


def test_recovery_finds_the_exit_record_its_shim_wrote_as_it_let_go(
        cold: Harness, procs: list, monkeypatch: Any) -> None:
    """The worker has ended and no shim holds the run any more, but the exit record
    appeared after recovery first looked: the run is finished from it, not lost."""
    h = cold
    folder(h, "r13", worker(procs, alive=False))
    real = spawner.shim_alive

    def shim_just_left(run_dir: str) -> bool:
        write_exit(run_dir, 0)  # written just before the shim let go
        return real(run_dir)
    monkeypatch.setattr(spawner, "shim_alive", shim_just_left)
    h.registry.add(record("r13", "RUNNING"))
    h.boot()
    assert [type(c) for c in h.registry.commands()] == [FinishRun]
    (finish,) = h.registry.finishes("r13")
    assert (finish.outcome, finish.cause, finish.exit_code) == ("completed", "", 0)
    assert h.forks.spawned == []
