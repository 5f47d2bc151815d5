"""Start-up and resync as decisions: the snapshot, then each run's folder."""

from __future__ import annotations

from core import events as ev
from core.commands import ClaimGpus, FinishRun, RecordAdopted
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import (ExitRecord, KillRecord, RegistryBack,
                                               RegistryLost, Replied, ReplyKind, RunView)
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.state import Registry
from services.dispatcher.decide.supervise import Sig
from tests.unit.dispatcher.driver import WALL0, Driver, commands, folder, logged, of, worker


def view(run_id: str, status: str, seq: int = 1, **fields) -> RunView:
    config = fields.pop("config", {})
    return RunView(run_id, status, config, seq, submitted_seq=seq, **fields)


def booted(*runs: RunView) -> tuple[Driver, list]:
    d = Driver()
    return d, d.boot(*runs)


def test_the_snapshot_queues_pending_runs_and_reads_the_folders_of_the_others() -> None:
    d, effects = booted(view("p", "PENDING", 1), view("r", "RUNNING", 2))
    assert d.phase("p") is Phase.CLAIMING and commands(effects, ClaimGpus)[0].run_id == "p"
    assert d.phase("r") is Phase.RECOVERING and fx.ObserveRun("r") in effects
    assert fx.FollowFrom(0) in effects and d.state.registry is Registry.UP


def test_the_snapshot_pages_on_before_the_oldest_run_of_a_page() -> None:
    d = Driver()
    (query,) = fx.calls(d.feed(RegistryBack()))
    effects = d.feed(Replied(query.tag, ReplyKind.APPLIED, runs=(view("b", "PENDING", 9),
                                                                  view("a", "PENDING", 7)),
                             head_seq=12, more=True))
    (page2,) = fx.calls(effects)
    assert page2.query == fx.snapshot_page(before_seq=7)
    effects = d.feed(Replied(page2.tag, ReplyKind.APPLIED, runs=(view("z", "PENDING", 3),),
                             head_seq=20))
    assert fx.FollowFrom(12) in effects  # the head before the first page
    assert [c.run_id for c in commands(effects, ClaimGpus)] == ["z", "a", "b"]


def test_a_live_worker_is_adopted_and_the_adoption_recorded() -> None:
    d, _ = booted(view("r", "RUNNING"))
    effects = d.feed(folder("r", worker=worker(31, WALL0 - 5.0), worker_alive=True,
                            shim_alive=True))
    assert commands(effects, RecordAdopted) == [RecordAdopted("r", 31, "dispatcher")]
    run = d.state.runs["r"]
    assert run.phase is Phase.RUNNING and run.pgid == 31 and d.state.stats.adopted == 1
    assert run.watch.started == d.now - 5.0  # its limits count from its true start


def test_an_adopted_worker_past_its_startup_grace_gets_a_fresh_heartbeat_window() -> None:
    d, _ = booted(view("r", "RUNNING", config={"startup_grace_s": 10.0}))
    d.feed(folder("r", worker=worker(31, WALL0 - 500.0), worker_alive=True))
    assert d.state.runs["r"].watch.last_beat == d.now


def test_a_kill_begun_before_the_restart_keeps_its_grace() -> None:
    d, _ = booted(view("r", "RUNNING"))
    kill = KillRecord("cancelled", "cancelled", "cancelled by me: x", WALL0 - 8.0, 10.0)
    effects = d.feed(folder("r", worker=worker(31, WALL0 - 20.0), worker_alive=True, kill=kill))
    assert d.phase("r") is Phase.KILLING and not of(effects, fx.Signal)
    assert not of(d.tick(1.9), fx.Signal)
    assert [s.sig for s in of(d.tick(0.2), fx.Signal)] == [Sig.KILL]


def test_a_cancel_recorded_while_down_is_acted_on_at_adoption() -> None:
    d, _ = booted(view("r", "RUNNING", cancel_requested_by="me", cancel_reason="x",
                       cancel_requested_at=WALL0 - 100.0))
    effects = d.feed(folder("r", worker=worker(31, WALL0 - 200.0), worker_alive=True))
    assert [s.sig for s in of(effects, fx.Signal)] == [Sig.TERM]
    assert [s.sig for s in of(d.tick(0.0), fx.Signal)] == [Sig.KILL]  # its grace is over


def test_an_exit_record_written_while_down_gives_the_runs_true_end() -> None:
    d, _ = booted(view("r", "RUNNING"))
    effects = d.feed(folder("r", exit=ExitRecord(None, 9, "SIGKILL")))
    assert commands(effects, FinishRun)[0].message == "killed by SIGKILL"


def test_a_run_whose_shim_holds_it_is_awaited_never_started_again() -> None:
    d, _ = booted(view("r", "DISPATCHING"))
    effects = d.feed(folder("r", shim_alive=True))
    assert not of(effects, fx.StartWorker) and d.phase("r") is Phase.RECOVERING
    assert logged(effects, "run.awaited")
    assert fx.ObserveRun("r") in d.tick(0.3)
    effects = d.feed(folder("r", worker=worker(40), worker_alive=True, shim_alive=True))
    assert d.phase("r") is Phase.RUNNING and not commands(effects, RecordAdopted)


def test_a_dispatching_run_with_no_shim_and_no_worker_is_started_again() -> None:
    d, _ = booted(view("r", "DISPATCHING", gpus=()))
    effects = d.feed(folder("r"))
    assert of(effects, fx.StartWorker)[0].run_id == "r" and d.phase("r") is Phase.STARTING


def test_a_running_run_whose_worker_and_shim_are_gone_ends_lost() -> None:
    d, _ = booted(view("r", "RUNNING"))
    (finish,) = commands(d.feed(folder("r", worker=worker(40))), FinishRun)
    assert finish.cause == "lost" and finish.message == "the worker is gone and left no exit record"


def test_a_worker_whose_shim_died_before_recording_it_is_killed_then_lost() -> None:
    d, _ = booted(view("r", "DISPATCHING"))
    effects = d.feed(folder("r", processes=frozenset({55})))
    assert of(effects, fx.KillProcesses)[0].pids == {55} and not of(effects, fx.StartWorker)
    for _ in range(25):  # killed again at each sweep; reported once after a while
        d.feed(folder("r", processes=frozenset({55})))
        d.tick(0.3)
    assert len(logged(d.log, "run.processes_left")) == 1
    (finish,) = commands(d.feed(folder("r")), FinishRun)
    assert "its shim died before it recorded the worker's start" in finish.message


def test_a_registry_lost_mid_claim_forgets_the_claim_and_the_next_snapshot_restarts_it() -> None:
    d, _ = booted()
    effects = d.submit("r")
    assert d.phase("r") is Phase.CLAIMING
    lost = d.feed(RegistryLost("gone"))
    assert d.phase("r") is None and logged(lost, "registry.unavailable")
    assert not d.event(ev.RunSubmitted("x", "d", {}, 0, "me"))  # nothing while it is away
    assert d.answer(effects) == []  # an answer to a forgotten call is ignored
    (query,) = fx.calls(d.feed(RegistryBack()))
    effects = d.feed(Replied(query.tag, ReplyKind.APPLIED, runs=(view("r", "DISPATCHING"),)))
    assert d.phase("r") is Phase.RECOVERING
    assert of(d.feed(folder("r")), fx.StartWorker)


def test_a_claim_of_ours_never_heard_answered_is_found_and_started() -> None:
    d, _ = booted()
    effects = d.event(ev.GpusClaimed("r", (), "dispatcher"))
    (query,) = fx.calls(effects)
    assert query.query == fx.GetRun("r")
    effects = d.feed(Replied(query.tag, ReplyKind.APPLIED, run=view("r", "DISPATCHING", 4)))
    assert of(effects, fx.StartWorker) and d.phase("r") is Phase.STARTING
    assert logged(effects, "run.claim_found")
