"""The dispatcher when the registry's disk is full (the registry answers commands with
``resource_exhausted``) or its own run folders' disk is: a refused artifact is
registered again before its run's end is sent (before: dropped for good); an error
where the loop needed an answer makes it read the state again instead of exiting
(before: the dispatcher exited until supervisord gave up on it); a refusal that
repeats every pass is logged once; a run we were ending (a cancel) whose shim could
not write its exit record still ends as we decided (before: lost)."""

from __future__ import annotations

import logging
import signal

import pytest

from core.clock import FakeClock
from core.commands import FinishRun, RegisterArtifact
from core.errors import OrchestratorError
from core.protocol import Ping, Snapshot
from services.dispatcher.decide.phases import Phase
from services.dispatcher.shell.loop import DispatcherLoop
from tests.integration.dispatcher.fakes import (Harness, ScriptedRegistry, folder, full,
                                                manifest, worker, write_exit)

SHIM_FAILED = 1 << 8   # a shim's wait status: it exited 1 (it could not write exit.json)


def test_refused_artifacts_are_registered_before_the_run_ends(
        h: Harness, procs: list) -> None:
    path = h.started("r1", worker(procs, alive=False))
    manifest(path, "a.mp4", "b.mp4")
    write_exit(path, 0)
    h.registry.refuse(RegisterArtifact, full(), times=2, when=lambda c: c.path == "b.mp4")
    h.shim_ended("r1", 0)                # its end is read: its manifest's artifacts first
    assert _stored(h) == ["a.mp4", "b.mp4"]   # b.mp4 refused: no end yet
    assert not h.registry.finishes() and h.phase("r1") is Phase.ENDING
    assert h.state.retry_due
    h.sweep()                            # still refused: no end yet
    assert _stored(h) == ["a.mp4", "b.mp4", "b.mp4"] and not h.registry.finishes()
    assert h.state.retry_due
    h.sweep()                            # stored: then the end
    requests = h.registry.requests
    assert _stored(h).count("b.mp4") == 3 and isinstance(requests[-1], FinishRun)
    assert (requests[-1].outcome, requests[-1].exit_code) == ("completed", 0)
    assert sorted(a.path for a in h.registry.artifacts) == ["a.mp4", "b.mp4"]
    assert "r1" not in h.state.runs


def _stored(h: Harness) -> list[str]:
    """The paths of the artifacts the dispatcher asked the registry to register."""
    return [c.path for c in h.registry.sent(RegisterArtifact)]


def test_an_error_instead_of_an_answer_makes_the_loop_read_the_state_again(
        loop: DispatcherLoop, registry: ScriptedRegistry, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    loop.follower.error = OrchestratorError.from_dict(  # type: ignore[attr-defined]
        {"code": "internal", "message": "the registry failed to commit"})
    for _ in range(5):
        loop.step(0.01)                  # does not raise
    refused = [r for r in caplog.records if r.getMessage() == "registry.refused"]
    assert len(refused) == 1             # five passes, the same refusal: one line
    assert len(registry.sent(Snapshot)) == 1
    clock.advance(1.0)                   # the registry answers a ping again:
    loop.step(0.01)
    assert len(registry.sent(Ping)) == 2 and len(registry.sent(Snapshot)) == 2  # read again


def test_a_cancelled_run_without_an_exit_record_ends_cancelled(
        h: Harness, procs: list) -> None:
    h.started("r2", worker(procs))
    h.cancel("r2", "alice", "wrong seed")
    assert h.phase("r2") is Phase.KILLING
    assert procs[-1].wait(5) == -signal.SIGTERM
    h.shim_ended("r2", SHIM_FAILED)      # its shim could not write exit.json
    (finish,) = h.registry.finishes("r2")
    assert (finish.outcome, finish.cause, finish.exit_code, finish.signal,
            finish.requested_by, finish.reason) == ("cancelled", "", None, None,
                                                     "alice", "wrong seed")


def test_a_shim_that_exited_0_without_a_record_means_its_worker_completed(
        h: Harness) -> None:
    """Its shim could not write exit.json (a full disk): it exits 0 only when its
    worker did (spawner.UNRECORDED_OK). Before, such a run ended FAILED lost."""
    for run_id, status in (("r3", 0), ("r4", SHIM_FAILED)):
        folder(h, run_id)
        h.ours(run_id)
        h.shim_ended(run_id)             # ended by its pidfd: the status is on its way
        assert not h.registry.finishes(run_id) and h.phase(run_id) is Phase.STARTING
        h.shim_ended(run_id, status)
    (ok,), (bad,) = h.registry.finishes("r3"), h.registry.finishes("r4")
    assert (ok.outcome, ok.cause, ok.exit_code) == ("completed", "", 0)
    assert (bad.outcome, bad.cause) == ("failed", "lost")
