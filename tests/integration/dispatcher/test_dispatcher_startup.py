"""The dispatcher's start-up decisions about one run: a shim still at work, what an
adopted run keeps, a cancel asked while it was starting, the snapshot's pages, an
exit record written as its shim let go."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from services.dispatcher import recovery
from services.dispatcher.service import DispatcherService
from services.dispatcher.supervision import check
from services.dispatcher.spawner import process_start_time
from tests.integration.dispatcher.fakes import (Registry, _worker, _folder, _exit,
                                                _hold_lock, _record, _outcome, _tagged)


# --- start-up: a shim that still owns the run -------------------------------------

def test_recovery_waits_for_the_exit_record_of_a_shim_still_at_work(
        svc: DispatcherService, procs: list) -> None:
    path = _folder(svc, "r6", _worker(procs, alive=False))  # the worker has exited...
    lock = _hold_lock(path)  # ...and its shim is still writing the exit record
    assert recovery._resume(svc, _record("r6", "RUNNING")) == "awaited"
    assert "finish" not in svc.client.methods()  # type: ignore[attr-defined]
    run = svc.active["r6"]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r6") is None
    _exit(path, 0)
    os.close(lock)
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r6") == {"outcome": "completed", "exit_code": 0}


def test_recovery_never_starts_again_a_run_whose_shim_holds_it(
        svc: DispatcherService, procs: list) -> None:
    path = _folder(svc, "r7")  # DISPATCHING, no worker.json: its shim is starting it
    lock = _hold_lock(path)
    try:
        assert recovery._resume(svc, _record("r7", "DISPATCHING")) == "awaited"
        assert svc.forks.spawned == [] and "r7" in svc.unstarted  # type: ignore
        _folder(svc, "r7", _worker(procs))  # the shim's worker.json appears
        svc._supervise(svc.active["r7"], svc.clock.monotonic(), check_exit=True)
        assert "record_started" in svc.client.methods()  # type: ignore[attr-defined]
        assert svc.active["r7"].pgid is not None and "r7" not in svc.unstarted
    finally:
        os.close(lock)


def test_recovery_starts_a_run_that_no_shim_holds(svc: DispatcherService) -> None:
    path = _folder(svc, "r8")
    assert recovery._resume(svc, _record("r8", "DISPATCHING")) == "restarted"
    assert svc.forks.spawned == [path]  # type: ignore[attr-defined]


def test_recovery_kills_a_worker_whose_shim_died_before_recording_it(
        svc: DispatcherService, procs: list) -> None:
    """No worker.json, no shim, no exit record, but the worker runs (its shim died
    between starting it and recording it): killed, and the run ends lost instead of
    being started a second time."""
    pid = _tagged(procs, "r9")
    _folder(svc, "r9")
    assert recovery._resume(svc, _record("r9", "DISPATCHING")) == "lost"
    assert process_start_time(pid) is None
    assert svc.forks.spawned == []  # type: ignore[attr-defined]
    finish = [a for m, a in svc.client.calls if m == "finish"]  # type: ignore[attr-defined]
    assert [(a["run_id"], a["cause"]) for a in finish] == [("r9", "lost")]


# --- start-up: what an adopted run keeps ------------------------------------------

def test_an_adopted_worker_keeps_its_time_limit_and_its_startup_grace(
        svc: DispatcherService, procs: list) -> None:
    _folder(svc, "r9", _worker(procs), age_s=2.5)
    assert recovery._resume(svc, _record("r9", "RUNNING", time_limit_s=3.0)) == "adopted"
    watch = svc.active["r9"].watch
    assert watch is not None and watch.last_beat is None  # no beat yet: the grace stands
    later = svc.clock.monotonic() + 0.6
    action = check(watch, later, later)
    assert action is not None and action.plan.cause == "time_limit"


def test_an_adopted_worker_past_its_startup_grace_gets_a_fresh_heartbeat_window(
        svc: DispatcherService, procs: list) -> None:
    _folder(svc, "r10", _worker(procs), age_s=600.0)
    assert recovery._resume(svc, _record("r10", "RUNNING", startup_grace_s=120.0,
                                         heartbeat_timeout_s=30.0)) == "adopted"
    watch = svc.active["r10"].watch
    assert watch is not None and watch.last_beat == svc.clock.monotonic()
    later = svc.clock.monotonic() + 29.0
    assert check(watch, later, later) is None


def test_a_cancel_asked_while_the_run_was_starting_survives_a_restart(
        svc: DispatcherService, procs: list) -> None:
    record = {**_record("r11", "DISPATCHING"), "cancel_requested_by": "alice",
              "cancel_reason": "stop it"}
    assert recovery._resume(svc, record) == "restarted"
    run = svc.active["r11"]
    assert run.cancel == ("alice", "stop it")
    pid = _worker(procs)
    _folder(svc, "r11", pid)  # the relaunched worker shows up: it is stopped at once
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert run.watch is not None and run.watch.kill is not None
    assert run.watch.kill.outcome == "cancelled"
    assert procs[-1].wait(5) == -signal.SIGTERM


# --- the start-up snapshot ---------------------------------------------------------

class Listing(Registry):
    """list_runs over runs that change between pages: after the first page, the
    oldest run ends."""

    def __init__(self, seqs: list[int]) -> None:
        super().__init__()
        self.live = {s: {**_record(f"r{s}", "RUNNING"), "submitted_seq": s} for s in seqs}

    def call(self, method: str, args: Any = None) -> dict[str, Any]:
        assert method == "list_runs"
        first = not self.calls
        self.calls.append((method, dict(args)))
        runs = sorted(self.live.values(), key=lambda r: r["submitted_seq"],
                      reverse=bool(args.get("newest_first", True)))
        if args.get("before_seq"):
            runs = [r for r in runs if r["submitted_seq"] < args["before_seq"]]
        offset = int(args.get("offset", 0))
        page = runs[offset:offset + int(args["limit"])]
        if first:
            del self.live[min(self.live)]  # a run ends before the next page is read
        return {"runs": page, "total": len(runs), "head_seq": 100,
                "more": offset + len(page) < len(runs)}


def test_the_startup_snapshot_misses_no_run_when_one_ends_between_pages(
        svc: DispatcherService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "PAGE", 2)
    listing = Listing([1, 2, 3, 4, 5])
    svc.client = listing  # type: ignore[assignment]
    runs, as_of = recovery.snapshot(svc)
    seqs = [r["submitted_seq"] for r in runs]
    assert set(listing.live) <= set(seqs) and as_of == 100
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))  # oldest first, once each


class CutListing(Registry):
    """list_runs whose pages the registry cuts to 2 runs by their size ("more")."""

    def __init__(self, seqs: list[int]) -> None:
        super().__init__()
        self.runs = [{**_record(f"r{s}", "RUNNING"), "submitted_seq": s}
                     for s in sorted(seqs, reverse=True)]

    def call(self, method: str, args: Any = None) -> dict[str, Any]:
        before = (args or {}).get("before_seq") or 10**9
        rest = [r for r in self.runs if r["submitted_seq"] < before]
        return {"runs": rest[:2], "total": len(self.runs), "head_seq": 100,
                "more": len(rest) > 2}


def test_the_startup_snapshot_pages_on_past_a_page_cut_short_by_size(
        svc: DispatcherService) -> None:
    svc.client = CutListing([1, 2, 3, 4, 5])  # type: ignore[assignment]
    runs, _ = recovery.snapshot(svc)
    assert [r["submitted_seq"] for r in runs] == [1, 2, 3, 4, 5]


def test_recovery_finds_the_exit_record_its_shim_wrote_as_it_let_go(
        svc: DispatcherService, procs: list, monkeypatch: Any) -> None:
    """The worker has ended and no shim holds the run any more, but the exit record
    appeared after recovery first looked: the run is finished from it, not lost."""
    from services.dispatcher import spawner
    _folder(svc, "r13", _worker(procs, alive=False))
    real = spawner.shim_alive

    def shim_just_left(run_dir: str) -> bool:
        _exit(run_dir, 0)  # written just before the shim let go
        return real(run_dir)
    monkeypatch.setattr(spawner, "shim_alive", shim_just_left)
    assert recovery._resume(svc, _record("r13", "RUNNING")) == "finished_later"
    assert "finish" not in svc.client.methods()  # type: ignore[attr-defined]
    svc._supervise(svc.active["r13"], svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r13") == {"outcome": "completed", "exit_code": 0}
