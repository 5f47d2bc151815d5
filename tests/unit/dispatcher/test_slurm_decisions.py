"""What the decision core does for runs that go to SLURM: they hold none of our GPUs,
CPU slots or cores (SLURM queues and places them), and the back end's verdict on
their end (a job cancelled from outside, past its time limit) is their cause."""

from __future__ import annotations

from core import events as ev
from core.commands import ClaimGpus, FinishRun, RecordWaiting
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import BackEndMoved, ExitRecord, ShimEnded
from services.dispatcher.decide.state import DispatcherConfig, DispatcherState
from tests.unit.dispatcher.driver import WALL0, Driver, commands, folder, gpus, of

SLURM = {"launcher": "slurm"}


def test_slurm_runs_are_claimed_at_once_without_gpus_beyond_local_capacity() -> None:
    d = Driver(cpu_slots=1, gpu_count=1)
    d.boot()
    effects: list = []
    for run_id in ("a", "b", "c"):
        effects += d.submit(run_id, resources={"gpus": 2, "cpu_slots": 1}, **SLURM)
    claims = commands(effects, ClaimGpus)
    assert [(c.run_id, c.gpu_uuids) for c in claims] == [("a", ()), ("b", ()), ("c", ())]
    assert not commands(effects, RecordWaiting) and not commands(effects, FinishRun)
    starts = of(d.answer(effects), fx.StartWorker)
    assert [(s.run_id, s.gpus, s.cores) for s in starts] == [("a", (), ()), ("b", (), ()),
                                                            ("c", (), ())]
    # a local run still gets the local GPU: the SLURM runs hold none of it
    (claim,) = commands(d.submit("local", resources={"gpus": 1}), ClaimGpus)
    assert claim.gpu_uuids == ("GPU-0",)


def test_the_installation_default_routes_runs_that_name_no_launcher() -> None:
    d = Driver(cpu_slots=1)
    d.state = DispatcherState.initial(DispatcherConfig(1, 0, "host-1", launcher="slurm"),
                                      gpus(0), 0.0, WALL0)
    d.boot()
    effects = d.submit("a", resources={"gpus": 4}) + d.submit("b", launcher="local",
                                                              resources={"gpus": 4})
    assert [c.run_id for c in commands(effects, ClaimGpus)] == ["a"]
    (never,) = commands(effects, FinishRun)   # local: more GPUs than this host has
    assert never.run_id == "b" and never.cause == "unschedulable"


def test_a_job_cancelled_from_outside_ends_slurm_cancelled_even_if_its_worker_exits_0(
        d: Driver) -> None:
    d.start("r1", **SLURM)
    d.feed(ShimEnded("r1", 1))
    effects = d.feed(folder("r1", exit=ExitRecord(0, None), ended_by="slurm_cancelled",
                            ended_message="its SLURM job was cancelled (job 7, CANCELLED)"))
    (finish,) = commands(effects, FinishRun)
    assert (finish.outcome, finish.cause) == ("failed", "slurm_cancelled")
    assert "job 7" in finish.message


def test_a_job_that_never_started_ends_with_the_back_end_s_cause_not_lost(d: Driver) -> None:
    d.settle(d.submit("r1", **SLURM))
    d.feed(ShimEnded("r1", 1))
    effects = d.feed(folder("r1", ended_by="time_limit", ended_message="past its limit"))
    (finish,) = commands(effects, FinishRun)
    assert (finish.outcome, finish.cause, finish.message) == ("failed", "time_limit",
                                                              "past its limit")


def test_our_own_cancel_wins_over_the_back_end_s_verdict(d: Driver) -> None:
    d.start("r1", **SLURM)
    d.event(ev.CancelRequested("r1", "alice", "enough"))
    d.feed(ShimEnded("r1", 1))
    effects = d.feed(folder("r1", exit=ExitRecord(None, 15), ended_by="slurm_cancelled",
                            ended_message="cancelled"))
    (finish,) = commands(effects, FinishRun)
    assert finish.outcome == "cancelled" and finish.requested_by == "alice"


def test_a_cancel_while_its_job_waits_in_slurm_cancels_the_job_and_ends_cancelled(
        d: Driver) -> None:
    d.settle(d.submit("r1", **SLURM))   # started: its job pending, no worker yet
    effects = d.event(ev.CancelRequested("r1", "bob", "not now"))
    (kill,) = of(effects, fx.KillProcesses)   # the launcher scancels its job
    assert kill.run_id == "r1" and kill.pids == frozenset()
    d.feed(ShimEnded("r1", 1))
    effects = d.feed(folder("r1", ended_by="slurm_cancelled", ended_message="cancelled"))
    (finish,) = commands(effects, FinishRun)
    assert (finish.outcome, finish.requested_by, finish.reason) == ("cancelled", "bob",
                                                                    "not now")


def test_a_local_run_cancelled_while_starting_waits_for_its_worker(d: Driver) -> None:
    d.settle(d.submit("r1"))
    assert not of(d.event(ev.CancelRequested("r1", "bob", "")), fx.KillProcesses)


def test_a_slurm_pending_reason_is_recorded_when_it_changes_only(d: Driver) -> None:
    d.settle(d.submit("r1", **SLURM))
    effects = d.feed(folder("r1", shim_alive=True, waiting="SLURM: Priority"))
    (waiting,) = commands(effects, RecordWaiting)
    assert (waiting.run_id, waiting.reason) == ("r1", "SLURM: Priority")
    assert not commands(d.feed(folder("r1", shim_alive=True, waiting="SLURM: Priority")),
                        RecordWaiting)   # in flight
    d.answer(effects)
    assert not commands(d.feed(folder("r1", shim_alive=True, waiting="SLURM: Priority")),
                        RecordWaiting)   # recorded
    (again,) = commands(d.feed(folder("r1", shim_alive=True, waiting="SLURM: Resources")),
                        RecordWaiting)
    assert again.reason == "SLURM: Resources"


def test_the_node_slurm_placed_the_worker_on_is_the_run_s_host(d: Driver) -> None:
    from core.commands import RecordStarted
    from tests.unit.dispatcher.driver import worker
    d.settle(d.submit("r1", **SLURM))
    effects = d.feed(folder("r1", worker=worker(42), host="n7", job_id="12",
                            job_gpus=("0", "1")))
    (started,) = commands(effects, RecordStarted)
    assert (started.host, started.launcher, started.job_id, started.job_gpus) == \
        ("n7", "slurm", "12", ("0", "1"))
    d.settle(d.submit("r2"))
    (local,) = commands(d.feed(folder("r2", worker=worker(43))), RecordStarted)
    assert (local.host, local.launcher, local.job_id, local.job_gpus) == \
        ("host-1", "local", "", ())


def test_a_record_started_sent_again_keeps_the_job(d: Driver) -> None:
    from core.commands import RecordStarted
    from services.dispatcher.decide.inputs import ReplyKind
    from tests.unit.dispatcher.driver import worker
    d.settle(d.submit("r1", **SLURM))
    effects = d.feed(folder("r1", worker=worker(42), host="n7", job_id="12"))
    (first,) = commands(effects, RecordStarted)
    d.answer(effects, ReplyKind.NOT_APPLIED)   # (a full disk: sent again at the sweep)
    again = [c for _ in range(150) for c in commands(d.tick(0.02), RecordStarted)]
    assert again and all(c == first for c in again), again


def test_a_run_whose_job_waits_in_slurm_is_read_at_full_sweeps_not_every_tick(
        d: Driver) -> None:
    d.settle(d.submit("r1", **SLURM))   # started: its job pending, no worker yet
    assert fx.ObserveRun("r1") in d.tick(0.02)   # read at every tick while it starts
    effects = d.feed(folder("r1", shim_alive=True, waiting="SLURM: Resources"))
    (waiting,) = commands(effects, RecordWaiting)
    assert waiting.reason == "SLURM: Resources"
    d.answer(effects)   # the registry stored it: from now on, full sweeps only
    reads = [e for _ in range(150) for e in d.tick(0.02) if isinstance(e, fx.ObserveRun)]
    # 3 s: one read per full sweep (2 s), none between
    assert reads and len(reads) <= 2 and all(r.run_id == "r1" for r in reads), reads
    assert not any(r.if_exited for r in reads)   # its whole folder: a start is seen


def test_a_backlogged_run_needs_no_tick_until_its_launcher_tells_its_job_moved(
        d: Driver) -> None:
    d.settle(d.submit("r1", **SLURM))
    assert d.state.urgent()   # starting: read at every tick
    d.feed(folder("r1", shim_alive=True, waiting="SLURM: Resources"))
    # waiting in SLURM's queue, as its read said (before the registry stored the reason)
    assert d.state.backlogged == {"r1"} and not d.state.urgent()
    assert not of(d.tick(0.02), fx.ObserveRun)
    assert of(d.feed(BackEndMoved(("r1", "gone"))), fx.ObserveRun) == [fx.ObserveRun("r1")]
    d.feed(folder("r1", shim_alive=True))   # its job started: no reason to wait now
    assert not d.state.backlogged and d.state.urgent()
    assert fx.ObserveRun("r1") in d.tick(0.02)   # read at every tick again, until its worker


def test_a_backlogged_run_whose_shim_ended_is_read_until_its_end_is_judged(
        d: Driver) -> None:
    d.settle(d.submit("r1", **SLURM))
    d.feed(folder("r1", shim_alive=True, waiting="SLURM: Priority"))
    assert d.state.backlogged == {"r1"}
    assert of(d.feed(ShimEnded("r1", 1)), fx.ObserveRun)   # (its job left squeue)
    assert not d.state.backlogged and d.state.urgent()
    assert fx.ObserveRun("r1") in [e for _ in range(13) for e in d.tick(0.02)]  # a sweep
