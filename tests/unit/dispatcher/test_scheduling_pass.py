"""Scheduling as decisions: claims, verdicts and waiting reasons of one pass, and
what each answer of the registry does to the run."""

from __future__ import annotations

from core import events as ev
from core.commands import ClaimGpus, FinishRun, RecordWaiting
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import GpusRead, ReplyKind
from services.dispatcher.decide.phases import Phase
from tests.unit.dispatcher.driver import Driver, commands, folder, gpus, logged, of, worker

R2 = {"resources": {"gpus": 2}}


def test_a_submitted_run_is_claimed_then_started_then_recorded_started(d2: Driver) -> None:
    effects = d2.submit("r1", resources={"gpus": 1})
    (claim,) = commands(effects, ClaimGpus)
    assert claim.gpu_uuids == ("GPU-0",) and claim.claimed_by == "dispatcher"
    assert claim.inventory == ("GPU-0", "GPU-1")
    assert d2.phase("r1") is Phase.CLAIMING
    (start,) = of(d2.answer(effects), fx.StartWorker)
    assert start.gpus == ("GPU-0",) and start.config.resources.gpus == 1
    assert d2.phase("r1") is Phase.STARTING and d2.state.stats.started == 1
    effects = d2.feed(folder("r1", worker=worker(4242)))
    (call,) = fx.calls(effects)
    assert call.command.pid == 4242 and call.command.host == "host-1"
    assert d2.phase("r1") is Phase.RUNNING


def test_claims_of_one_pass_are_one_batch_and_claiming_runs_hold_their_gpus(d2: Driver) -> None:
    effects = d2.submit("a", resources={"gpus": 1}) + d2.submit("b", resources={"gpus": 1}) \
        + d2.submit("c", resources={"gpus": 1})
    claims = commands(effects, ClaimGpus)
    assert [c.gpu_uuids for c in claims] == [("GPU-0",), ("GPU-1",)]
    assert commands(effects, RecordWaiting)[0].run_id == "c"  # the claims in flight hold both


def test_a_run_that_can_never_fit_fails_unschedulable_and_a_verdict_not_applied_requeues(
        d: Driver) -> None:
    effects = d.submit("big", **R2)
    (finish,) = commands(effects, FinishRun)
    assert finish.outcome == "failed" and finish.cause == "unschedulable"
    assert "asks for 2 GPU(s) but this machine has 0" in finish.message
    assert d.phase("big") is Phase.JUDGING
    d.answer(effects, ReplyKind.NOT_APPLIED, code="internal")
    assert d.phase("big") is Phase.QUEUED and d.state.retry_due
    effects = d.tick(0.3)  # the sweep sends it again
    assert commands(effects, FinishRun)[0].cause == "unschedulable"
    d.answer(effects)
    assert d.phase("big") is None


def test_a_claim_not_applied_puts_the_run_back_in_the_queue(d: Driver) -> None:
    effects = d.submit("r1")
    assert not of(d.answer(effects, ReplyKind.NOT_APPLIED, code="internal"), fx.StartWorker)
    assert d.phase("r1") is Phase.QUEUED
    assert not commands(d.tick(0.1), ClaimGpus)  # not before the sweep
    assert commands(d.tick(0.2), ClaimGpus)[0].run_id == "r1"


def test_a_gpu_held_elsewhere_is_left_out_until_released(d2: Driver) -> None:
    effects = d2.submit("r1", resources={"gpus": 1})
    d2.answer(effects, ReplyKind.BUSY, code="resource_busy", gpu_uuid="GPU-0", holder="old")
    assert d2.phase("r1") is Phase.QUEUED and d2.state.held_elsewhere == {"GPU-0": "old"}
    effects = d2.tick(0.3)
    assert [c.gpu_uuids for c in commands(effects, ClaimGpus)] == [("GPU-1",)]


def test_a_release_by_the_holder_offers_the_gpu_again() -> None:
    d = Driver(gpu_count=1)
    d.boot()
    effects = d.submit("r1", resources={"gpus": 1})
    d.answer(effects, ReplyKind.BUSY, code="resource_busy", gpu_uuid="GPU-0", holder="old")
    effects = d.tick(0.3)
    assert not commands(effects, ClaimGpus)
    assert commands(effects, RecordWaiting)
    effects = d.event(ev.GpusReleased("old", ("GPU-0",)))
    assert commands(effects, ClaimGpus)[0].gpu_uuids == ("GPU-0",)


def test_a_claim_refused_for_a_cancelled_run_drops_it(d: Driver) -> None:
    effects = d.submit("r1")
    after = d.answer(effects, ReplyKind.REFUSED, code="failed_precondition")
    assert not of(after, fx.StartWorker) and d.phase("r1") is None
    (refused,) = logged(after, "registry.refused")
    assert refused.get("method") == "claim_gpus" and refused.get("run_id") == "r1"


def test_a_waiting_reason_is_sent_again_until_stored_then_not_repeated() -> None:
    d = Driver(cpu_slots=1)
    d.boot()
    d.settle(d.submit("a"))
    effects = d.submit("b")
    (wait,) = commands(effects, RecordWaiting)
    assert wait.run_id == "b" and "CPU slot" in wait.reason
    d.answer(effects, ReplyKind.NOT_APPLIED, code="resource_exhausted")
    effects = d.tick(0.3)
    assert commands(effects, RecordWaiting) == [wait]
    d.answer(effects)
    assert d.state.runs["b"].waiting_reason == wait.reason
    effects = d.submit("c")  # another pass: b's reason is stored already
    assert [w.run_id for w in commands(effects, RecordWaiting)] == ["c"]


def test_the_head_keeps_its_cpu_slots_from_later_smaller_runs() -> None:
    d = Driver(cpu_slots=4)
    d.boot()
    d.settle(d.submit("small1", resources={"cpu_slots": 1}))
    effects = d.submit("big", resources={"cpu_slots": 4})
    assert commands(effects, RecordWaiting)[0].run_id == "big"
    d.answer(effects)
    effects = d.submit("small2", resources={"cpu_slots": 1})
    assert not commands(effects, ClaimGpus)
    (wait,) = commands(effects, RecordWaiting)
    assert wait.run_id == "small2" and "kept for big" in wait.reason


def test_the_concurrent_run_cap_is_kept() -> None:
    d = Driver(cpu_slots=8, max_runs=1)
    d.boot()
    d.settle(d.submit("a"))
    (wait,) = commands(d.submit("b"), RecordWaiting)
    assert "concurrent-run cap (1)" in wait.reason


def test_a_run_cancelled_or_failed_while_queued_leaves_the_queue() -> None:
    d = Driver(cpu_slots=1)
    d.boot()
    d.settle(d.submit("a"))
    d.settle(d.submit("b"))
    d.event(ev.RunCancelled("b", "me", "why", None, None))
    assert d.phase("b") is None


def test_the_gpus_are_read_again_while_a_gpu_run_waits_and_a_change_is_scheduled() -> None:
    d = Driver(gpu_count=1)
    d.boot()
    d.settle(d.submit("a", resources={"gpus": 1}))
    d.settle(d.submit("b", resources={"gpus": 1, "min_gpu_memory_mb": 1}))
    d.settle(d.feed(folder("a", worker=worker(77))))
    effects = d.tick(2.0)  # a full sweep
    (read,) = of(effects, fx.ReadGpus)
    assert read.our_pgids == frozenset({77})
    assert not of(d.tick(0.3), fx.ReadGpus)  # one read at a time
    (claim,) = commands(d.feed(GpusRead(gpus(2))), ClaimGpus)
    assert claim.run_id == "b" and claim.gpu_uuids == ("GPU-1",)
    assert d.state.inventory.uuids == ("GPU-0", "GPU-1")
    assert d.state.runs["b"].phase is Phase.CLAIMING


def test_the_claims_interpreter_starts_the_worker_or_fails_the_run(d: Driver) -> None:
    """The claim's answer names the interpreter of the run's python_env: the worker is
    started with it; one that cannot be had (the environment removed) fails the run
    spawn_error with the registry's reason, and nothing is started."""
    from services.dispatcher.decide.inputs import RunView
    effects = d.submit("r1", python_env="gpu")
    (start,) = of(d.answer(effects, run=RunView("r1", "DISPATCHING", {}, 5,
                                               python="/envs/gpu/bin/python")), fx.StartWorker)
    assert start.python == "/envs/gpu/bin/python"
    effects = d.submit("r2", python_env="gone", seed=2)
    after = d.answer(effects, run=RunView("r2", "DISPATCHING", {}, 7,
                                          python_error="python_env 'gone' is not registered"))
    assert not of(after, fx.StartWorker)
    (finish,) = commands(after, FinishRun)
    assert finish.cause == "spawn_error" and "'gone' is not registered" in finish.message
    plain = d.submit("r3", seed=3)
    (start,) = of(d.answer(plain), fx.StartWorker)
    assert start.python == ""      # the dispatcher's own
