"""EffectRunner.run: each effect goes to its collaborator (the launcher, the registry,
the follower, the beacon, the run log followers, the GPU reader, the log), and what
they find comes back as observations: the replies of the step's registry calls first
(one pipelined batch, in chunks of registrycalls.PIPELINE), then the rest in order."""

from __future__ import annotations

import pytest

from core.clock import FakeClock
from core.commands import FinishRun, RecordWaiting
from core.errors import IllegalTransition, Internal, Unavailable
from core.protocol import GetRun
from core.runconfig import RunConfig
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import (FolderRead, GpusRead, KillRecord,
                                               RegistryLost, Replied, ReplyKind,
                                               StartFailed, WorkerRecord)
from services.dispatcher.decide.supervise import Sig
from services.dispatcher.shell import registrycalls
from services.dispatcher.shell.effectrunner import EffectRunner
from tests.unit.dispatcher.shell.conftest import (FakeBeacon, FakeFollower, FakeGpuReader,
                                                  FakeLauncher, FakeRunLogs,
                                                  RecordingLogger, ScriptedRegistry)

CONFIG = RunConfig(name="t", steps=10)


def _call(tag: int, run_id: str = "r1") -> fx.Call:
    return fx.Call(tag, RecordWaiting(run_id, f"reason {tag}"))


# --- the launcher ----------------------------------------------------------------------
def test_a_start_goes_to_the_launcher_and_its_logs_are_followed_from_the_start(
        runner: EffectRunner, launcher: FakeLauncher, run_logs: FakeRunLogs) -> None:
    assert runner.run([fx.StartWorker("r1", CONFIG, ("GPU-0", "GPU-1"))]) == []
    assert launcher.starts == [("r1", CONFIG, ("GPU-0", "GPU-1"))]
    assert run_logs.calls == [("follow", "r1", False)]


def test_a_start_the_launcher_refuses_comes_back_as_start_failed(
        runner: EffectRunner, launcher: FakeLauncher, run_logs: FakeRunLogs) -> None:
    launcher.start_errors["r1"] = "unknown worker 'nope'"
    out = runner.run([fx.StartWorker("r1", CONFIG, ()), fx.StartWorker("r2", CONFIG, ())])
    assert out == [StartFailed("r1", "unknown worker 'nope'")]
    assert [s[0] for s in launcher.starts] == ["r2"]
    assert run_logs.calls == [("follow", "r2", False)]   # no follower for the failed one


def test_signals_and_kills_go_to_the_launcher_in_order(
        runner: EffectRunner, launcher: FakeLauncher) -> None:
    out = runner.run([fx.Signal(41, Sig.TERM, "r1"), fx.KillProcesses("r2", frozenset({7, 8})),
                      fx.Signal(41, Sig.KILL, "r1")])
    assert out == []
    assert launcher.signals == [("r1", 41, Sig.TERM), ("r1", 41, Sig.KILL)]
    assert launcher.kills == [("r2", frozenset({7, 8}))]


def test_a_kill_record_goes_to_the_launcher_as_a_kill_record(
        runner: EffectRunner, launcher: FakeLauncher, logger: RecordingLogger) -> None:
    assert runner.run([fx.RecordKill("r1", "CANCELLED", "user", "by me", 123.5, 30.0)]) == []
    assert launcher.kill_records == [("r1", KillRecord("CANCELLED", "user", "by me",
                                                       123.5, 30.0))]
    assert logger.lines == []


def test_a_kill_record_not_stored_is_logged(
        runner: EffectRunner, launcher: FakeLauncher, logger: RecordingLogger) -> None:
    launcher.kill_record_errors["r1"] = "[Errno 28] No space left on device"
    assert runner.run([fx.RecordKill("r1", "FAILED", "timeout", "", 1.0, 5.0)]) == []
    assert [(level, event) for level, event, _ in logger.lines] == \
        [("warning", "run.kill_unrecorded")]
    fields = logger.events("run.kill_unrecorded")[0]
    assert fields["run_id"] == "r1"
    assert fields["reason"] == "[Errno 28] No space left on device"


def test_a_forgotten_run_is_dropped_by_its_log_follower_and_the_launcher(
        runner: EffectRunner, launcher: FakeLauncher, run_logs: FakeRunLogs) -> None:
    assert runner.run([fx.ForgetRun("r1")]) == []
    assert run_logs.calls == [("forget", "r1")]
    assert launcher.forgotten == ["r1"]


# --- observing runs --------------------------------------------------------------------
def test_an_observed_run_comes_back_as_the_launchers_folder_read(
        runner: EffectRunner, launcher: FakeLauncher, run_logs: FakeRunLogs) -> None:
    read = FolderRead("r1", worker=WorkerRecord(10, 10, 5.0, 6.0), shim_alive=True)
    launcher.reads["r1"] = read
    assert runner.run([fx.ObserveRun("r1")]) == [read]
    assert launcher.observed == ["r1"]
    assert launcher.exit_checks == []            # not asked: it is read anyway
    assert run_logs.calls == [("follow", "r1", True)]   # a run not started here: adopted


def test_a_run_is_read_once_per_step_and_again_the_next(
        runner: EffectRunner, launcher: FakeLauncher) -> None:
    out = runner.run([fx.ObserveRun("r1"), fx.ObserveRun("r2"), fx.ObserveRun("r1"),
                      fx.ObserveRun("r1", if_exited=True)])
    assert out == [FolderRead("r1"), FolderRead("r2")]
    assert launcher.observed == ["r1", "r2"]
    assert runner.run([fx.ObserveRun("r1")]) == [FolderRead("r1")]
    assert launcher.observed == ["r1", "r2", "r1"]


def test_if_exited_reads_nothing_while_the_run_has_not_exited(
        runner: EffectRunner, launcher: FakeLauncher) -> None:
    assert runner.run([fx.ObserveRun("r1", if_exited=True)]) == []
    assert launcher.exit_checks == ["r1"]
    assert launcher.observed == []
    launcher.exits.add("r1")
    assert runner.run([fx.ObserveRun("r1", if_exited=True)]) == [FolderRead("r1")]
    assert launcher.observed == ["r1"]


def test_a_check_that_read_nothing_does_not_keep_a_full_read_of_the_step_out(
        runner: EffectRunner, launcher: FakeLauncher) -> None:
    out = runner.run([fx.ObserveRun("r1", if_exited=True), fx.ObserveRun("r1")])
    assert out == [FolderRead("r1")]
    assert launcher.observed == ["r1"]


# --- the rest --------------------------------------------------------------------------
def test_follow_from_resets_the_follower(runner: EffectRunner, follower: FakeFollower) -> None:
    assert runner.run([fx.FollowFrom(42)]) == []
    assert follower.resets == [42]


def test_probe_bus_hurries_the_beacon(runner: EffectRunner, beacon: FakeBeacon) -> None:
    assert runner.run([fx.ProbeBus()]) == []
    assert beacon.hurries == 1


def test_a_log_effect_is_one_log_line(runner: EffectRunner, logger: RecordingLogger) -> None:
    assert runner.run([fx.Log("info", "run.started", {"run_id": "r1", "pid": 10})]) == []
    assert logger.lines == [("info", "run.started", {"run_id": "r1", "pid": 10})]


def test_flush_logs_publishes_the_runs_last_bytes_now(
        runner: EffectRunner, run_logs: FakeRunLogs, clock: FakeClock) -> None:
    clock.advance(2.5)
    assert runner.run([fx.FlushLogs("r1")]) == []
    assert run_logs.calls == [("flush", "r1", clock.monotonic())]


def test_a_gpu_read_excludes_our_runs_processes(
        runner: EffectRunner, launcher: FakeLauncher, gpu_reader: FakeGpuReader) -> None:
    launcher.groups = {10: frozenset({10, 11}), 20: frozenset({20}), 30: frozenset({30})}
    assert runner.run([fx.ReadGpus(frozenset({10, 20}))]) == []   # in the background
    assert gpu_reader.starts == [frozenset({10, 11, 20})]
    gpu_reader.answer = GpusRead(None)                             # nothing to re-read
    assert runner.run([fx.ReadGpus()]) == [GpusRead(None)]


def test_an_unknown_effect_is_a_type_error(runner: EffectRunner) -> None:
    with pytest.raises(TypeError, match="not an effect: StartFailed"):
        runner.run([StartFailed("r1", "a value that is no effect")])


# --- registry calls --------------------------------------------------------------------
def test_a_steps_calls_go_out_as_one_batch_and_their_replies_come_first(
        runner: EffectRunner, registry: ScriptedRegistry, launcher: FakeLauncher) -> None:
    finish = FinishRun("r2", "FAILED", "spawn_error")
    registry.script.append([{}, {"run": {"run_id": "r3", "status": "RUNNING", "last_seq": 9}},
                            {}])
    launcher.start_errors["r4"] = "no such worker"
    out = runner.run([fx.ObserveRun("r1"), fx.Call(3, finish), fx.StartWorker("r4", CONFIG, ()),
                      fx.Query(2, GetRun("r3")), _call(1)])
    assert registry.batches == [[finish, GetRun("r3"), RecordWaiting("r1", "reason 1")]]
    assert [type(o) for o in out] == [Replied, Replied, Replied, FolderRead, StartFailed]
    assert [(r.tag, r.kind) for r in out[:3]] == \
        [(3, ReplyKind.APPLIED), (2, ReplyKind.APPLIED), (1, ReplyKind.APPLIED)]
    assert out[1].run is not None and out[1].run.run_id == "r3"
    assert out[3:] == [FolderRead("r1"), StartFailed("r4", "no such worker")]


def test_a_refused_call_in_a_batch_keeps_its_place(
        runner: EffectRunner, registry: ScriptedRegistry) -> None:
    registry.script.append([{}, IllegalTransition("r2", "SUCCEEDED", "RunFailed"),
                            Internal("batch failed")])
    out = runner.run([_call(1), _call(2, "r2"), _call(3, "r3")])
    assert [(r.tag, r.kind, r.code) for r in out] == [
        (1, ReplyKind.APPLIED, ""), (2, ReplyKind.REFUSED, "failed_precondition"),
        (3, ReplyKind.NOT_APPLIED, "internal")]


def test_a_step_without_calls_sends_nothing(
        runner: EffectRunner, registry: ScriptedRegistry) -> None:
    runner.run([fx.ProbeBus(), fx.ObserveRun("r1")])
    runner.run([])
    assert registry.batches == []


def test_more_calls_than_a_pipeline_go_out_in_chunks_in_order(
        runner: EffectRunner, registry: ScriptedRegistry) -> None:
    n = 2 * registrycalls.PIPELINE + 5
    out = runner.run([_call(tag) for tag in range(n)])
    assert [len(b) for b in registry.batches] == [registrycalls.PIPELINE,
                                                 registrycalls.PIPELINE, 5]
    sent = [request for batch in registry.batches for request in batch]
    assert sent == [RecordWaiting("r1", f"reason {tag}") for tag in range(n)]
    assert [r.tag for r in out] == list(range(n))


def test_a_registry_lost_mid_batch_keeps_the_earlier_replies_and_sends_no_more(
        runner: EffectRunner, registry: ScriptedRegistry, launcher: FakeLauncher) -> None:
    n = 2 * registrycalls.PIPELINE + 5
    registry.script.extend([None, Unavailable("no reply from the registry")])
    out = runner.run([_call(tag) for tag in range(n)] + [fx.ObserveRun("r1")])
    assert len(registry.batches) == 2
    replies = out[:registrycalls.PIPELINE]
    assert [r.tag for r in replies] == list(range(registrycalls.PIPELINE))
    assert out[registrycalls.PIPELINE:] == [RegistryLost("no reply from the registry"),
                                           FolderRead("r1")]   # the rest is still done
    assert launcher.observed == ["r1"]


def test_a_registry_lost_at_once_is_the_only_answer(
        runner: EffectRunner, registry: ScriptedRegistry) -> None:
    registry.script.append(Unavailable("timed out"))
    assert runner.run([_call(1), _call(2)]) == [RegistryLost("timed out")]


def test_a_later_attempt_is_started_with_its_number_and_checkpoint(
        runner: EffectRunner, launcher: FakeLauncher) -> None:
    runner.run([fx.StartWorker("r1", CONFIG, (), 2, "checkpoints/iter-000003.npz")])
    assert launcher.attempts == [("r1", 2, "checkpoints/iter-000003.npz")]


def test_a_log_line_before_the_calls_is_written_before_they_go_out(
        runner: EffectRunner, registry: ScriptedRegistry, logger: RecordingLogger) -> None:
    """A test (or a user) that sees the registry's record must find the line the
    dispatcher wrote about that decision: the batch goes where its first call stands."""
    seen_at_send: list[int] = []
    send = registry.call_many

    def call_many(requests: list, **kw: object) -> list:
        seen_at_send.append(len(logger.lines))
        return send(requests, **kw)  # type: ignore[arg-type]
    registry.call_many = call_many  # type: ignore[method-assign]
    runner.run([fx.Log("warning", "run.leftovers_killed", {"run_id": "r1", "count": 2}),
                fx.Call(1, FinishRun("r1", "completed", exit_code=0)),
                fx.Log("info", "after", {})])
    assert seen_at_send == [1]
    assert [e for _, e, _ in logger.lines] == ["run.leftovers_killed", "after"]
