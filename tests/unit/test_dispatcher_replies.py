"""How the dispatcher's loop reads the registry's answers to a pipelined scheduling
pass (services/dispatcher/service.py): an answer that says "not applied" (code
``internal``: its batch failed) leaves the run where it was, to be sent again; a
claim refused because another run holds the GPU keeps the run queued and that GPU
out of the next plans until its holder releases it. The handlers are driven directly
with the typed errors the RPC client returns."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from runtime.logs import ServiceLogger
from core.errors import IllegalTransition, OrchestratorError, ResourceBusy
from services.dispatcher.active import ActiveRun
from services.dispatcher.allocator import Pending
from services.dispatcher.service import DispatcherService


def _service() -> DispatcherService:
    svc = DispatcherService.__new__(DispatcherService)  # the handlers' state only
    svc.pending, svc.active, svc.finishing, svc.waiting = {}, {}, {}, {}
    svc.held_elsewhere, svc.unstarted, svc.retry_due = {}, set(), False
    svc.stats = {"finished": 0}
    svc.log = ServiceLogger("dispatcher-test")
    svc.forks = SimpleNamespace(done_with=lambda run_dir: None)  # type: ignore[assignment]
    return svc


def _internal() -> OrchestratorError:
    return OrchestratorError.from_dict({"code": "internal", "message": "disk I/O error"})


def _run(run_id: str) -> ActiveRun:
    return ActiveRun(run_id, "/nonexistent", {}, ["GPU-a"], 1, logs=None)  # type: ignore[arg-type]


def test_a_finish_not_applied_stays_to_be_sent_again() -> None:
    svc = _service()
    run = _run("r1")
    svc.active["r1"], svc.finishing["r1"] = run, (run, {"outcome": "completed"})
    svc._finished(_internal(), run, {"outcome": "completed"})
    assert "r1" in svc.finishing and "r1" in svc.active and svc.stats["finished"] == 0
    svc._finished({"run": {"run_id": "r1"}}, run, {"outcome": "completed"})
    assert not svc.finishing and not svc.active and svc.stats["finished"] == 1


def test_a_finish_refused_for_good_is_done_and_counted_once() -> None:
    svc = _service()
    run = _run("r1")
    svc.active["r1"], svc.finishing["r1"] = run, (run, {"outcome": "completed"})
    svc._finished(IllegalTransition("r1", "COMPLETED", "RunCompleted"), run, {})
    svc._finished(IllegalTransition("r1", "COMPLETED", "RunCompleted"), run, {})
    assert not svc.finishing and not svc.active and svc.stats["finished"] == 1


def test_a_claim_not_applied_puts_the_run_back_in_the_queue() -> None:
    svc = _service()
    pending = Pending("r2", 0, 7, 1, 0, 1)
    svc._claimed(_internal(), pending, ["GPU-a"])
    assert svc.pending == {"r2": pending} and not svc.held_elsewhere
    assert svc.retry_due  # the next sweep schedules again, even with nothing else new


def test_a_gpu_held_elsewhere_is_left_out_until_released() -> None:
    svc = _service()
    pending = Pending("r2", 0, 7, 1, 0, 1)
    busy = ResourceBusy("GPU GPU-a is held by run r9", gpu_uuid="GPU-a", holder="r9")
    svc._claimed(busy, pending, ["GPU-a"])
    assert svc.pending == {"r2": pending} and svc.held_elsewhere == {"GPU-a": "r9"}


def test_a_claim_refused_for_a_cancelled_run_drops_it() -> None:
    svc = _service()
    refused: Any = IllegalTransition("r2", "CANCELLED", "GpusClaimed")
    svc._claimed(refused, Pending("r2", 0, 7, 1, 0, 1), ["GPU-a"])
    assert not svc.pending


def test_a_waiting_reason_is_remembered_only_once_stored() -> None:
    svc = _service()
    svc._waited(_internal(), "r3", "no free GPU")
    assert "r3" not in svc.waiting and svc.retry_due
    svc._waited({"run": {}}, "r3", "no free GPU")
    assert svc.waiting == {"r3": "no free GPU"}


class _Registry:
    """Answers get_run with a fixed record (the handler's only registry call)."""

    def __init__(self, run: dict[str, Any]) -> None:
        self.run, self.calls = run, []

    def call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, args))
        return {"run": self.run, "head_seq": 10}


def test_a_claim_of_ours_that_we_never_heard_of_is_started() -> None:
    """A retried claim the registry applied after a resync read the run as PENDING:
    its GpusClaimed event is the only news, and the run is started from it."""
    svc = _service()
    svc.known_seq = {}
    svc.client = _Registry({"run_id": "r4", "status": "DISPATCHING", "gpus": ["GPU-a"],
                            "last_seq": 9})
    launched: list[tuple[str, list[str]]] = []
    svc.start_run = lambda run, gpus: launched.append((run["run_id"], gpus))  # type: ignore
    svc._claimed_unawares("r4")
    assert launched == [("r4", ["GPU-a"])] and svc.known_seq["r4"] == 9
    # already supervised, or no longer DISPATCHING: nothing is started
    svc.active["r4"] = _run("r4")
    svc._claimed_unawares("r4")
    del svc.active["r4"]
    svc.client.run = {**svc.client.run, "status": "CANCELLED"}
    svc._claimed_unawares("r4")
    assert launched == [("r4", ["GPU-a"])]


def test_a_cancel_for_a_run_being_reported_signals_nobody() -> None:
    """Its process group is empty (its outcome is on its way to the registry): a
    cancel arriving now must not signal a process group id that may be reused."""
    from bus.codec import Envelope
    from core import events as ev
    svc = _service()
    svc.known_seq = {}
    cancels: list[str] = []
    svc.begin_cancel = lambda run: cancels.append(run.run_id)  # type: ignore
    event = ev.CancelRequested(run_id="r5", requested_by="u", reason="stop")
    env = Envelope(type="CancelRequested", source="registry", ts=0.0,
                   payload=event.to_payload(), seq=12, stream="run-r5")
    run = _run("r5")
    svc.active["r5"], svc.finishing["r5"] = run, (run, {"outcome": "completed"})
    svc._on_event(env)
    assert cancels == [] and run.cancel is None
    del svc.finishing["r5"]
    svc._on_event(env)
    assert cancels == ["r5"] and run.cancel == ("u", "stop")
