"""An experiment's max_concurrent and priority as scheduling decisions: at most its
limit of its runs under way at once, a capped cell waits without keeping anything for
itself, a run's end frees its place, a new revision's limit and priority apply at once,
and the start-up snapshot restores what the experiments set."""

from __future__ import annotations

from typing import Any, Optional

from core import events as ev
from core.commands import ClaimGpus, FinishRun, RecordWaiting
from core.protocol import GetExperiment
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide import inputs as obs
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.scheduling import Capacity, ExperimentLimits, Pending, plan
from tests.unit.dispatcher.driver import Driver, commands, folder, of, worker

CAPPED = "experiment noise runs its limit of 2 at once"


def cell(d: Driver, run_id: str, experiment: str = "noise", priority: int = 0,
         **config: Any) -> list[Any]:
    """A run submitted as a cell of ``experiment`` (its experiment's spec not heard yet:
    ``revise`` follows, as in the registry's commit)."""
    return d.event(ev.RunSubmitted(run_id, "d" + run_id, config, priority, "me",
                                   experiment=experiment))


def revise(d: Driver, name: str = "noise", max_concurrent: int = 2,
           priority: Optional[int] = None) -> list[Any]:
    """A committed ExperimentSubmitted of ``name`` (a first spec or a new revision)."""
    d.seq += 1
    return d.feed(obs.ExperimentRevised(d.seq, ExperimentLimits(name, max_concurrent,
                                                                priority)))


def cells(d: Driver, *run_ids: str, experiment: str = "noise", max_concurrent: int = 2,
          priority: Optional[int] = None, **config: Any) -> list[Any]:
    """One submission of an experiment: its new cells' RunSubmitted, then its
    ExperimentSubmitted, as one commit."""
    effects: list[Any] = []
    for run_id in run_ids:
        effects += cell(d, run_id, experiment, **config)
    return effects + revise(d, experiment, max_concurrent, priority)


def claimed(effects: list[Any]) -> list[str]:
    return [c.run_id for c in commands(effects, ClaimGpus)]


def waiting(effects: list[Any]) -> dict[str, str]:
    return {c.run_id: c.reason for c in commands(effects, RecordWaiting)}


def running(d: Driver, run_id: str, pid: int) -> None:
    d.settle(d.feed(folder(run_id, worker=worker(pid))))
    assert d.phase(run_id) is Phase.RUNNING


def end(d: Driver, run_id: str, pid: int) -> list[Any]:
    """The run's worker exits 0: its FinishRun sent and applied; every effect."""
    effects = d.feed(folder(run_id, worker=worker(pid), exit=obs.ExitRecord(0, None)))
    assert commands(effects, FinishRun) and d.phase(run_id) is Phase.ENDING
    return effects + d.answer(effects, only=FinishRun)


def test_no_more_than_the_limit_of_an_experiment_are_claimed_and_the_rest_wait(
        d: Driver) -> None:
    effects = cells(d, "a", "b", "c", "d")
    assert claimed(effects) == ["a", "b"]
    assert waiting(effects) == {"c": CAPPED, "d": CAPPED}
    d.settle(effects)
    assert [d.phase(r) for r in "abcd"] == [Phase.STARTING] * 2 + [Phase.QUEUED] * 2
    # the waiting reason is recorded once: a later pass with the same reason sends none
    assert not commands(d.event(ev.RunSubmitted("x", "dx", {}, 0, "me")), RecordWaiting)
    assert d.phase("x") is Phase.CLAIMING  # a run of no experiment is not held back
    assert waiting(revise(d, max_concurrent=3)) == {"d": "experiment noise runs its limit "
                                                         "of 3 at once"}


def test_runs_of_another_experiment_and_of_none_do_not_count(d: Driver) -> None:
    effects = cells(d, "a", "b", max_concurrent=1) + cells(d, "c", experiment="other") \
        + d.submit("p")
    assert claimed(effects) == ["a", "c", "p"]
    assert "b" in waiting(effects)


def test_a_capped_cell_is_not_the_head_and_keeps_no_gpu_for_itself() -> None:
    d = Driver(gpu_count=2)
    d.boot()
    d.settle(cells(d, "a", max_concurrent=1, priority=5, resources={"gpus": 1}))
    assert d.phase("a") is Phase.STARTING
    # b is first in the queue (the experiment's priority) and could not fit (2 GPUs, one
    # free): were it the head, it would keep GPU-1 from c. Capped, it keeps nothing.
    effects = cells(d, "b", max_concurrent=1, priority=5, resources={"gpus": 2}) \
        + d.submit("c", resources={"gpus": 1})
    assert claimed(effects) == ["c"]
    assert [c.gpu_uuids for c in commands(effects, ClaimGpus)] == [("GPU-1",)]
    assert waiting(effects)["b"] == "experiment noise runs its limit of 1 at once"


def test_a_capped_cell_is_not_the_head_in_the_plan_either() -> None:
    cap = Capacity((), frozenset(), cpu_slots=2, busy_cpu_slots=1, max_runs=0,
                   active_runs=1, experiment_runs={"noise": 1})
    big = Pending("big", 9, 1, 0, 0, 1, "noise", 1)   # would be the head (needs 1 of 1)
    small = Pending("small", 0, 2, 0, 0, 1)
    decisions = {x.run_id: x for x in plan([big, small], cap)}
    assert decisions["small"].verdict.value == "start"
    assert decisions["big"].reason == "experiment noise runs its limit of 1 at once"


def test_an_end_frees_a_place_and_the_next_cell_starts_only_once_it_is_applied(
        d: Driver) -> None:
    d.settle(cells(d, "a", "b", "c"))
    running(d, "a", 101)
    running(d, "b", 102)
    effects = d.feed(folder("a", worker=worker(101), exit=obs.ExitRecord(0, None)))
    assert d.phase("a") is Phase.ENDING and not claimed(effects)  # not ended yet
    effects = d.answer(effects, only=FinishRun)
    assert d.phase("a") is None and claimed(effects) == ["c"]


def test_a_run_ended_and_retried_still_counts_once_queued_again(d: Driver) -> None:
    d.settle(cells(d, "a", "b", max_concurrent=1))
    running(d, "a", 101)
    effects = d.feed(folder("a", worker=worker(101), exit=obs.ExitRecord(1, None)))
    # the registry began a's next attempt: a is queued again, before b (older)
    effects = d.answer(effects, only=FinishRun,
                       run=obs.RunView("a", "PENDING", {}, d.seq + 1, attempt=2))
    assert d.phase("a") is Phase.CLAIMING and d.phase("b") is Phase.QUEUED
    assert claimed(effects) == ["a"]


def test_a_revision_raising_the_limit_starts_more_and_lowering_it_stops_none(
        d: Driver) -> None:
    effects = cells(d, "a", "b", "c", max_concurrent=1)
    assert claimed(effects) == ["a"]
    d.settle(effects)
    effects = revise(d, max_concurrent=3)
    assert claimed(effects) == ["b", "c"]
    d.settle(effects)
    revise(d, max_concurrent=1)
    assert all(d.phase(r) is Phase.STARTING for r in "abc")  # under way: they go on
    d.settle(cells(d, "e", max_concurrent=1))
    assert d.phase("e") is Phase.QUEUED


def test_a_revision_without_limit_or_priority_lifts_the_limit(d: Driver) -> None:
    d.settle(cells(d, "a", "b", max_concurrent=1))
    assert d.phase("b") is Phase.QUEUED
    assert claimed(revise(d, max_concurrent=0)) == ["b"]
    assert "noise" not in d.state.experiments


def test_the_experiment_priority_orders_its_cells_and_a_revision_reorders_them() -> None:
    d = Driver(cpu_slots=1)
    d.boot()
    d.settle(d.submit("blocker"))
    running(d, "blocker", 100)
    # queued behind the blocker: p (its own priority 5), x (its own 0, experiment e)
    d.settle(d.submit("p", priority=5) + cells(d, "x", experiment="e", max_concurrent=0))
    assert d.phase("p") is d.phase("x") is Phase.QUEUED and "e" not in d.state.experiments
    revise(d, "e", max_concurrent=0, priority=10)
    assert d.state.experiments["e"].priority == 10
    effects = end(d, "blocker", 100)
    assert claimed(effects) == ["x"]  # the experiment's 10 before p's 5


def test_a_revision_lowering_the_priority_puts_its_cells_back_behind(d: Driver) -> None:
    d = Driver(cpu_slots=1)
    d.boot()
    d.settle(d.submit("blocker"))
    running(d, "blocker", 100)
    d.settle(d.submit("p", priority=5)
             + cells(d, "x", experiment="e", max_concurrent=0, priority=10))
    revise(d, "e", max_concurrent=0, priority=1)
    assert claimed(end(d, "blocker", 100)) == ["p"]


def test_the_snapshot_restores_the_limits_and_counts_the_runs_it_recovers() -> None:
    d = Driver()
    (query,) = fx.calls(d.feed(obs.RegistryBack()))
    assert isinstance(query.query, fx.Snapshot) and query.query.newest_first
    runs = (obs.RunView("q", "PENDING", {}, 3, submitted_seq=3, experiment="noise"),
            obs.RunView("r2", "RUNNING", {}, 2, submitted_seq=2, experiment="noise"),
            obs.RunView("r1", "DISPATCHING", {}, 1, submitted_seq=1, experiment="noise"))
    effects = d.feed(obs.Replied(query.tag, obs.ReplyKind.APPLIED, runs=runs, head_seq=10,
                                 experiments=(ExperimentLimits("noise", 2, None),
                                              ExperimentLimits("loose", 0, None))))
    assert d.state.experiments == {"noise": ExperimentLimits("noise", 2, None)}
    assert d.phase("r1") is d.phase("r2") is Phase.RECOVERING
    assert d.phase("q") is Phase.QUEUED and not claimed(effects)
    assert waiting(effects) == {"q": CAPPED}
    # a revision the snapshot reflects already is not applied again
    d.feed(obs.ExperimentRevised(9, ExperimentLimits("noise", 5, None)))
    assert d.state.experiments["noise"].max_concurrent == 2
    assert claimed(d.feed(obs.ExperimentRevised(11, ExperimentLimits("noise", 3, None)))) \
        == ["q"]


def test_a_resync_replaces_the_limits_with_the_snapshots(d: Driver) -> None:
    revise(d, max_concurrent=1)
    d.feed(obs.RegistryLost("gone"))
    (query,) = fx.calls(d.feed(obs.RegistryBack()))
    d.feed(obs.Replied(query.tag, obs.ReplyKind.APPLIED, head_seq=d.seq,
                       experiments=(ExperimentLimits("other", 1, 3),)))
    assert d.state.experiments == {"other": ExperimentLimits("other", 1, 3)}


def test_a_rerun_of_an_experiment_not_known_asks_for_its_limits(d: Driver) -> None:
    d.seq += 1
    effects = d.feed(obs.ExperimentResumed(d.seq, "noise"))
    (query,) = fx.calls(effects)
    assert query.query == GetExperiment("noise")
    assert not fx.calls(d.feed(obs.ExperimentResumed(d.seq, "noise")))  # asked already
    d.feed(obs.Replied(query.tag, obs.ReplyKind.APPLIED,
                       experiments=(ExperimentLimits("noise", 1, None),)))
    assert d.state.experiments["noise"].max_concurrent == 1
    assert not fx.calls(d.feed(obs.ExperimentResumed(d.seq + 1, "noise")))  # known


def test_a_cell_waits_for_its_experiments_spec_committed_just_after_it(d: Driver) -> None:
    """The registry commits a submission's new cells first, then the experiment's
    ExperimentSubmitted: the cells heard first are not scheduled before their limit
    is known (else all four would be claimed before the limit of 2 is heard)."""
    effects = cell(d, "a") + cell(d, "b") + cell(d, "c")
    assert not claimed(effects) and not waiting(effects)
    assert d.phase("a") is Phase.QUEUED and d.state.runs["a"].awaits_spec
    assert claimed(revise(d, "other")) == []          # another experiment's spec
    assert claimed(revise(d)) == ["a", "b"]
    assert not any(r.awaits_spec for r in d.state.runs.values())


def test_the_snapshots_cells_do_not_wait_for_a_spec() -> None:
    d = Driver()
    d.boot(obs.RunView("a", "PENDING", {}, 1, submitted_seq=1, experiment="noise"))
    assert d.phase("a") is Phase.CLAIMING


def test_experiment_inputs_wait_for_the_registry() -> None:
    d = Driver()
    assert d.feed(obs.ExperimentRevised(1, ExperimentLimits("noise", 1, None))) == []
    assert not d.state.experiments and of(d.log, fx.Query) == []


def test_an_experiment_s_limit_counts_its_slurm_runs_too(d: Driver) -> None:
    """SLURM places and queues the cells, but no more than max_concurrent of them are
    submitted at once: the rest wait here (a polite use of a shared cluster)."""
    effects = cells(d, "a", "b", "c", launcher="slurm", resources={"gpus": 4})
    assert claimed(effects) == ["a", "b"]
    assert waiting(effects) == {"c": CAPPED}
    d.settle(effects)
    running(d, "a", 101)
    effects = end(d, "a", 101)
    assert claimed(effects) == ["c"]
