"""The dispatcher when the registry's disk is full (the registry answers commands with
``resource_exhausted``) or its own run folders' disk is: a refused artifact is
registered again before its run's end is sent (before: dropped for good); an error
where the loop needed an answer makes it read the state again instead of exiting
(before: the dispatcher exited until supervisord gave up on it); a refusal that
repeats every pass is logged once per interval; a run we were ending (a cancel)
whose shim could not write its exit record still ends as we decided (before: lost)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest

from core.errors import OrchestratorError
from core.rundir import MANIFEST_FILE as MANIFEST
from services.dispatcher.service import DispatcherService
from services.dispatcher.supervision import Watch, begin_kill
from tests.integration.dispatcher.fakes import _folder, _ours, _outcome


def _full() -> OrchestratorError:
    return OrchestratorError.from_dict({"code": "resource_exhausted",
                                        "message": "the registry's disk is full"})


def _manifest(path: str, *names: str) -> None:
    with open(os.path.join(path, MANIFEST), "w", encoding="utf-8") as fh:
        for name in names:
            open(os.path.join(path, name), "wb").close()
            fh.write(json.dumps({"kind": "video", "path": name, "size": 0}) + "\n")


def test_refused_artifacts_are_registered_before_the_run_ends(
        svc: DispatcherService) -> None:
    path = _folder(svc, "r1")
    _manifest(path, "a.mp4", "b.mp4")
    run = _ours(svc, "r1", path)
    svc.client.fail["register_artifact"] = [_full()]  # type: ignore[attr-defined]
    svc.finish(run, {"outcome": "completed", "exit_code": 0})
    assert run.artifacts_left and "r1" in svc.finishing
    svc.client.fail["register_artifact"] = [_full()]  # type: ignore[attr-defined]
    svc._schedule()                                    # still refused: no end yet
    assert "finish" not in svc.client.methods() and svc.retry_due  # type: ignore
    svc._schedule()                                    # stored: then the end
    calls = svc.client.calls  # type: ignore[attr-defined]
    stored = [a["path"] for m, a in calls if m == "register_artifact"]
    assert stored.count("a.mp4") == 3 and calls[-1][0] == "finish"
    assert not svc.finishing and not svc.active


def test_an_error_instead_of_an_answer_makes_the_loop_read_the_state_again(
        svc: DispatcherService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    class Failing:
        def poll(self, timeout_s: float) -> list[Any]:
            raise OrchestratorError.from_dict({"code": "internal",
                                               "message": "the registry failed to commit"})
    svc.follower = Failing()  # type: ignore[assignment]
    svc.resync_needed, svc.resync = False, None
    svc._wait = lambda timeout_s: False  # type: ignore[method-assign]
    svc.send_status = lambda: None       # type: ignore[method-assign]
    for _ in range(5):
        svc.step(0.01)                   # does not raise
        svc.resync_needed = False        # (the registry answered again)
    refused = [r for r in caplog.records if r.getMessage() == "registry.refused"]
    assert len(refused) == 1             # five times the same refusal: one line


def test_a_cancelled_run_without_an_exit_record_ends_cancelled(
        svc: DispatcherService) -> None:
    path = _folder(svc, "r2")            # no worker.json: its shim died early
    run = _ours(svc, "r2", path)
    run.cancel = ("alice", "wrong seed")
    run.watch = Watch("r2", 0.0, 30.0, 120.0, 0.0, 5.0)
    begin_kill(run.watch, 0.0, "cancelled", "cancelled", "cancelled by alice", 5.0)
    svc.forks.ended_dirs.add(path)       # type: ignore[attr-defined]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r2") == {"outcome": "cancelled", "exit_code": None, "signal": None,
                                   "requested_by": "alice", "reason": "wrong seed"}


def test_a_shim_that_exited_0_without_a_record_means_its_worker_completed(
        svc: DispatcherService) -> None:
    """Its shim could not write exit.json (a full disk): it exits 0 only when its
    worker did (spawner.UNRECORDED_OK). Before, such a run ended FAILED lost."""
    ok, bad = _folder(svc, "r3"), _folder(svc, "r4")
    runs = [(_ours(svc, "r3", ok), 0), (_ours(svc, "r4", bad), 256)]   # exit codes 0, 1
    for run, status in runs:
        svc.forks.ended_dirs.add(run.run_dir)                       # type: ignore[attr-defined]
        svc.forks.due.add(run.run_dir)   # ended by its pidfd: the status is on its way
        svc._supervise(run, svc.clock.monotonic(), check_exit=True)
        assert _outcome(svc, run.run_id) is None
        svc.forks.due.discard(run.run_dir)
        svc.forks.exit_status[run.run_dir] = status                 # type: ignore[attr-defined]
        svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r3") == {"outcome": "completed", "exit_code": 0}
    assert (_outcome(svc, "r4") or {}).get("cause") == "lost"
