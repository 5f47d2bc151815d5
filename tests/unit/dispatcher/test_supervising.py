"""Supervision and ends as decisions: silence (only with a healthy bus), the time
limit, cancels and their grace, exit records, lost shims, leftovers, artifacts."""

from __future__ import annotations

from core import events as ev
from core.commands import ClaimGpus, FinishRun, RecordStarted, RegisterArtifact
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import (ArtifactReported, BusSeen, ExitRecord,
                                               Heartbeat, ManifestEntry, ReplyKind, ShimEnded,
                                               StartFailed)
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.supervise import Sig
from tests.unit.dispatcher.driver import WALL0, Driver, commands, folder, logged, of, worker

FAST = {"heartbeat_timeout_s": 2.0, "startup_grace_s": 0.0, "cancel_grace_s": 3.0}


def signals(effects) -> list[Sig]:
    return [e.sig for e in of(effects, fx.Signal)]


def end(d: Driver, run_id: str, record: ExitRecord | None, status: int | None = 1, **read):
    d.feed(ShimEnded(run_id, status))
    return d.feed(folder(run_id, exit=record, **read))


def test_a_run_that_exits_0_completes_with_its_steps_and_is_dropped_once_applied(d: Driver) -> None:
    d.start("r1", steps=1000)
    d.feed(Heartbeat("r1", 640, d.now))
    effects = end(d, "r1", ExitRecord(0, None), 0, metrics={"mean_return": 9.5})
    (finish,) = commands(effects, FinishRun)
    assert finish.outcome == "completed" and finish.exit_code == 0
    assert finish.result == {"steps": 640, "total_steps": 1000, "mean_return": 9.5}
    assert of(effects, fx.FlushLogs) and d.phase("r1") is Phase.ENDING
    after = d.answer(effects)
    assert d.phase("r1") is None and d.state.stats.finished == 1 and of(after, fx.ForgetRun)


def test_a_nonzero_exit_fails_with_its_code_and_stderr_and_a_signal_is_named(d: Driver) -> None:
    d.start("a")
    d.start("b")
    (fa,) = commands(end(d, "a", ExitRecord(3, None), stderr_tail="Traceback\nboom"), FinishRun)
    assert (fa.cause, fa.exit_code, fa.message) == ("exit_code", 3, "exit code 3\nTraceback\nboom")
    (fb,) = commands(end(d, "b", ExitRecord(None, 9, "SIGKILL")), FinishRun)
    assert fb.cause == "signal" and fb.message == "killed by SIGKILL"


def test_a_finish_not_applied_is_sent_again_and_one_refused_for_good_is_counted_once(
        d: Driver) -> None:
    d.start("r1")
    effects = end(d, "r1", ExitRecord(0, None), 0)
    d.answer(effects, ReplyKind.NOT_APPLIED, code="internal")
    assert d.phase("r1") is Phase.ENDING
    effects = d.tick(0.3)
    assert commands(effects, FinishRun)[0].run_id == "r1"
    d.answer(effects, ReplyKind.REFUSED, code="failed_precondition")
    assert d.phase("r1") is None and d.state.stats.finished == 1


def test_an_end_and_the_claim_it_frees_room_for_are_one_batch_in_that_order() -> None:
    d = Driver(cpu_slots=1)
    d.boot()
    d.start("a")
    d.settle(d.submit("b"))
    effects = end(d, "a", ExitRecord(0, None), 0)
    kinds = [type(c.command) for c in fx.calls(effects)]
    assert kinds == [FinishRun, ClaimGpus]


def test_silence_is_acted_on_only_when_the_bus_is_proven_healthy_after_the_deadline(
        d: Driver) -> None:
    d.feed(BusSeen(d.now))
    d.tick(0.0)  # the bus is healthy before the run starts
    d.start("r1", **FAST)
    d.feed(BusSeen(d.now + 2.0))
    effects = d.tick(2.5)  # overdue, but the bus was last seen before the deadline
    assert not signals(effects) and of(effects, fx.ProbeBus)
    d.feed(BusSeen(d.now))
    effects = d.tick(0.05)
    assert signals(effects) == [Sig.TERM]
    (record,) = of(effects, fx.RecordKill)
    assert record.cause == "heartbeat_timeout" and record.grace_s == 3.0
    assert d.phase("r1") is Phase.KILLING
    assert signals(d.tick(1.0)) == []
    assert signals(d.tick(2.0)) == [Sig.KILL]
    (finish,) = commands(end(d, "r1", ExitRecord(None, 9, "SIGKILL")), FinishRun)
    assert finish.cause == "heartbeat_timeout" and finish.outcome == "failed"


def test_no_run_is_killed_for_silence_while_the_bus_is_down_and_its_return_gives_a_new_window(
        d: Driver) -> None:
    d.start("r1", **FAST)
    for _ in range(10):
        assert not signals(d.tick(1.0))
    d.feed(BusSeen(d.now))
    effects = d.tick(0.01)
    assert logged(effects, "bus.reachable") and not signals(effects)
    assert d.state.runs["r1"].watch.last_beat == d.now
    d.feed(BusSeen(d.now + 2.5))
    assert signals(d.tick(2.6)) == [Sig.TERM]


def test_heartbeats_keep_a_run_alive(d: Driver) -> None:
    d.start("r1", **FAST)
    for _ in range(6):
        d.feed(Heartbeat("r1", 1, d.now + 1.0))
        d.feed(BusSeen(d.now + 1.0))
        assert not signals(d.tick(1.0))


def test_the_time_limit_applies_without_the_bus(d: Driver) -> None:
    d.start("r1", time_limit_s=5.0, cancel_grace_s=1.0)
    assert not signals(d.tick(4.0))
    effects = d.tick(1.0)
    assert signals(effects) == [Sig.TERM]
    assert of(effects, fx.RecordKill)[0].cause == "time_limit"


def test_a_cancel_sends_sigterm_and_sigkill_after_the_grace_counted_from_its_record(
        d: Driver) -> None:
    d.start("r1", cancel_grace_s=10.0)
    d.tick(5.0)
    effects = d.event(ev.CancelRequested("r1", "alice", "enough"), ts=d.state.wall - 4.0)
    assert signals(effects) == [Sig.TERM]
    (record,) = of(effects, fx.RecordKill)
    assert record.term_at == d.state.wall - 4.0 and record.outcome == "cancelled"
    assert not signals(d.tick(5.9))
    assert signals(d.tick(0.2)) == [Sig.KILL]
    (finish,) = commands(end(d, "r1", ExitRecord(None, 15, "SIGTERM")), FinishRun)
    assert (finish.outcome, finish.requested_by, finish.reason) == ("cancelled", "alice", "enough")


def test_a_cancel_whose_grace_ran_out_meanwhile_ends_in_sigkill_at_the_next_tick(d: Driver) -> None:
    d.start("r1", cancel_grace_s=3.0)
    effects = d.event(ev.CancelRequested("r1", "bob", ""), ts=d.state.wall - 60.0)
    assert signals(effects) == [Sig.TERM]
    assert signals(d.tick(0.0)) == [Sig.KILL]


def test_a_cancel_while_the_run_is_starting_is_sent_once_its_worker_is_seen(d: Driver) -> None:
    d.settle(d.submit("r1"))
    assert not signals(d.event(ev.CancelRequested("r1", "me", "no")))
    assert d.phase("r1") is Phase.STARTING
    effects = d.feed(folder("r1", worker=worker(50)))
    assert signals(effects) == [Sig.TERM] and d.phase("r1") is Phase.KILLING


def test_a_cancel_for_a_run_being_reported_signals_nobody(d: Driver) -> None:
    d.start("r1")
    end(d, "r1", ExitRecord(0, None), 0)
    assert not signals(d.event(ev.CancelRequested("r1", "me", "late")))


def test_a_run_whose_shim_ended_without_an_exit_record_ends_lost_with_a_disk_note(
        d: Driver) -> None:
    d.start("r1")
    assert not commands(d.feed(folder("r1")), FinishRun)  # its shim still at work
    (finish,) = commands(end(d, "r1", None, 1, disk_free=1000), FinishRun)
    assert finish.cause == "lost" and "left no exit record" in finish.message
    assert "KiB free" in finish.message


def test_the_shims_status_is_awaited_before_a_run_is_lost(d: Driver) -> None:
    d.start("r1")
    assert not commands(end(d, "r1", None, None), FinishRun)
    assert commands(end(d, "r1", None, 1), FinishRun)[0].cause == "lost"


def test_a_shim_that_exited_0_without_a_record_means_its_worker_completed(d: Driver) -> None:
    d.start("r1")
    effects = end(d, "r1", None, 0)
    assert commands(effects, FinishRun)[0].outcome == "completed"
    assert logged(effects, "run.no_exit_record")


def test_a_cancelled_run_without_an_exit_record_ends_cancelled(d: Driver) -> None:
    d.start("r1")
    d.event(ev.CancelRequested("r1", "me", "stop"))
    assert commands(end(d, "r1", None, 1), FinishRun)[0].outcome == "cancelled"


def test_processes_left_by_a_dead_shim_are_killed_then_the_run_is_lost(d: Driver) -> None:
    d.start("r1")
    effects = end(d, "r1", None, 1, processes=frozenset({7, 8}))
    assert of(effects, fx.KillProcesses)[0].pids == {7, 8} and d.phase("r1") is Phase.REAPING
    assert logged(effects, "run.shim_gone") and not commands(effects, FinishRun)
    effects = d.tick(0.3)
    assert fx.ObserveRun("r1") in effects
    assert commands(d.feed(folder("r1")), FinishRun)[0].cause == "lost"


def test_an_exit_record_with_its_group_alive_gets_sigkill_first(d: Driver) -> None:
    d.start("r1")
    effects = end(d, "r1", ExitRecord(0, None), 0, group_alive=True)
    assert signals(effects) == [Sig.KILL] and d.phase("r1") is Phase.REAPING
    assert commands(d.feed(folder("r1", exit=ExitRecord(0, None))), FinishRun)


def test_a_run_started_answer_not_applied_is_sent_again_before_the_end(d: Driver) -> None:
    d.settle(d.submit("r1"))
    effects = d.feed(folder("r1", worker=worker(60)))
    d.answer(effects, ReplyKind.NOT_APPLIED, code="internal")
    assert not commands(end(d, "r1", ExitRecord(0, None), 0), FinishRun)  # RunStarted first
    effects = d.tick(0.3)
    assert commands(effects, RecordStarted)[0].pid == 60
    d.answer(effects)
    assert commands(d.feed(folder("r1", exit=ExitRecord(0, None))), FinishRun)


def test_a_claimed_gpu_gone_or_an_unstartable_worker_fails_spawn_error() -> None:
    d = Driver(gpu_count=1)
    d.boot()
    from services.dispatcher.decide.inputs import GpusRead
    from services.dispatcher.decide.gpus import GpuSource, Inventory
    effects = d.submit("a", resources={"gpus": 1})
    d.feed(GpusRead(Inventory((), GpuSource.FAKE)))
    effects = d.answer(effects)
    assert not of(effects, fx.StartWorker)
    (finish,) = commands(effects, FinishRun)
    assert finish.cause == "spawn_error" and "no longer in the GPU inventory" in finish.message
    d2 = Driver()
    d2.boot()
    d2.settle(d2.submit("b"))
    (finish,) = commands(d2.feed(StartFailed("b", "worker 'x' is not registered")), FinishRun)
    assert finish.cause == "spawn_error" and d2.phase("b") is Phase.ENDING


def test_reported_artifacts_are_registered_after_run_started_and_once(d: Driver) -> None:
    d.settle(d.submit("r1"))
    art = ArtifactReported("r1", "video", "videos/a.mp4", 10)
    effects = d.feed(art)
    assert not commands(effects, RegisterArtifact) and fx.ObserveRun("r1") in effects
    effects = d.feed(folder("r1", worker=worker(5)))
    assert [type(c.command) for c in fx.calls(effects)] == [RecordStarted, RegisterArtifact]
    d.answer(effects)
    assert not d.feed(art)
    effects = d.feed(ArtifactReported("r1", "file", "../etc/passwd", 1, outside="must lie inside"))
    assert not fx.calls(effects) and logged(effects, "registry.refused")


def test_manifest_artifacts_are_stored_before_the_end_also_when_first_not_applied(
        d: Driver) -> None:
    d.start("r1")
    manifest = (ManifestEntry("checkpoint", "ckpt/1.pt", 5), ManifestEntry("x", "out", 1,
                                                                          outside="symlink"))
    effects = end(d, "r1", ExitRecord(0, None), 0, manifest=manifest)
    (reg,) = commands(effects, RegisterArtifact)
    assert reg.path == "ckpt/1.pt" and not commands(effects, FinishRun)
    d.answer(effects, ReplyKind.NOT_APPLIED, code="resource_exhausted")
    effects = d.tick(0.3)
    assert commands(effects, RegisterArtifact) == [reg] and not commands(effects, FinishRun)
    after = d.answer(effects)
    assert commands(after, FinishRun)[0].outcome == "completed"


def test_a_starting_run_is_read_at_every_tick_until_its_worker_is_seen(d: Driver) -> None:
    d.boot()
    d.settle(d.submit("r1"))
    assert d.phase("r1") is Phase.STARTING
    for _ in range(3):  # ticks between sweeps (SWEEP_S apart) read it too
        assert fx.ObserveRun("r1") in d.tick(0.02)
    d.settle(d.feed(folder("r1", worker=worker(100, WALL0 + d.now))))
    assert d.phase("r1") is Phase.RUNNING
    assert fx.ObserveRun("r1") not in d.tick(0.02)
