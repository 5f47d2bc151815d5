"""Reruns at the user-facing edges, without a server: the gateway's RerunRun (the typed
command it sends, its refusals said as what to do, bad input naming the field), and
`trainer rerun`, `ls` and `show` on stand-in clients (the new attempt, where it
resumes, the ATTEMPT column only where a run has attempts)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterable, Optional

import grpc
import pytest
from click.testing import CliRunner

from core import commands as cmds
from core import events as ev
from core.errors import OrchestratorError
from core.projection import run_view
from core.runstate import RunState, apply
from services.gateway import servicer as gw
from services.gateway.errors import from_registry
from services.gateway.mapping import Mapper
from trainer.cli import format as fmt
from trainer.cli import runs as cli_runs
from trainer.client import TrainerError
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(30)

RUN = "r0123456789ab"
CKPT = "checkpoints/iter-000004.npz"


# --- the gateway's RerunRun, on a registry stand-in that decides as the registry does --

def _state(end: Optional[ev.Event], retry: Optional[dict] = None) -> RunState:
    config = {"worker": "test-sleep", "env": "CartPole-v1", "name": "n"}
    if retry:
        config["retry"] = retry
    s = apply(None, ev.RunSubmitted(RUN, "d" * 64, config, 0, "me"), 1, 100.0)
    s = apply(s, ev.GpusClaimed(RUN, ("GPU-1",), "disp"), 2, 101.0)
    s = apply(s, ev.RunStarted(RUN, 77, 1.0, "host"), 3, 102.0)
    s = apply(s, ev.ArtifactRegistered(RUN, "checkpoint", CKPT, 10), 4, 103.0)
    if end is not None:
        s = apply(s, end, 5, 104.0)
    return s


class Registry:
    """RegistryAccess's ``call``: decides the rerun on ``state`` with core.commands and
    fails it as RegistryAccess does (from_registry); records every command."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.sent: list[Any] = []

    async def call(self, request: Any, context: Any = None, **kw: Any) -> Any:
        self.sent.append(request)
        try:
            if request.run_id != RUN:
                cmds.decide_rerun(None, request)
            state = self.state
            for i, e in enumerate(cmds.decide_rerun(state, request)):
                state = apply(state, e, 10 + i, 200.0)
        except OrchestratorError as exc:
            raise from_registry(exc) from None
        return {"run": run_view(state)}


class Aborted(Exception):
    pass


class Context:
    def __init__(self) -> None:
        self.code: Optional[grpc.StatusCode] = None
        self.details, self.meta = "", {}

    def time_remaining(self) -> float:
        return 10.0

    def peer(self) -> str:
        return "test"

    async def abort(self, code: grpc.StatusCode, details: str, meta: Any = ()) -> None:
        self.code, self.details, self.meta = code, details, dict(meta)
        raise grpc.aio.AbortError()


class Beats:
    def last_heartbeat(self, run_id: str) -> None:
        return None


def _rerun(state: RunState, **fields: Any) -> tuple[Any, Context, Registry]:
    registry = Registry(state)
    servicer = gw.Servicer(None, registry, None, Beats(), Mapper(), None, None,  # type: ignore[arg-type]
                           None, None)  # type: ignore[arg-type]
    context = Context()
    request = pb.RerunRunRequest(**{"run_id": RUN, **fields})

    async def call() -> Any:
        try:
            return await servicer.RerunRun(request, context)
        except grpc.aio.AbortError:
            return None
    return asyncio.run(call()), context, registry


def _failed(attempt: int = 1) -> ev.Event:
    return ev.RunFailed(RUN, "signal", None, 9, "killed", attempt=attempt)


def test_the_servicer_sends_the_typed_rerun_and_answers_the_new_attempt() -> None:
    got, context, registry = _rerun(_state(_failed(), {"max_attempts": 3}), reason="node died")
    assert context.code is None, context.details
    assert registry.sent == [cmds.RerunRun(RUN, "grpc", "node died", False, False)]
    run = got.run
    assert (run.status, run.attempt, run.max_attempts) == (pb.RUN_STATUS_PENDING, 2, 3)
    assert run.resume_from == CKPT and run.last_attempt_cause == pb.TERMINAL_CAUSE_SIGNAL
    got, _, registry = _rerun(_state(_failed()), from_scratch=True, requested_by="alice")
    assert registry.sent[0].requested_by == "alice" and registry.sent[0].from_scratch
    assert got.run.resume_from == "" and got.run.max_attempts == 1


def test_the_servicer_says_what_to_do_when_the_run_state_refuses() -> None:
    got, context, _ = _rerun(_state(None))
    assert got is None and context.code == grpc.StatusCode.FAILED_PRECONDITION
    assert context.details == f"run {RUN} is RUNNING: only an ended run can be rerun " \
        "(cancel it first)"
    assert context.meta["trainer-code"] == "failed_precondition"
    done = ev.RunCompleted(RUN, 0)
    got, context, _ = _rerun(_state(done))
    assert got is None and context.code == grpc.StatusCode.FAILED_PRECONDITION
    assert context.details == f"run {RUN} is COMPLETED: a completed run is rerun only with force"
    got, context, registry = _rerun(_state(done), force=True)
    assert context.code is None and registry.sent[0].force and got.run.attempt == 2


def test_the_servicer_refuses_bad_input_naming_the_field_and_passes_not_found() -> None:
    for fields, field in (({"run_id": "nope"}, "run_id"), ({"reason": "x" * 1001}, "reason"),
                          ({"requested_by": "y" * 201}, "requested_by")):
        got, context, registry = _rerun(_state(_failed()), **fields)
        assert got is None and context.code == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert context.meta["trainer-field"] == field and registry.sent == []
    got, context, _ = _rerun(_state(_failed()), run_id="r000000000000")
    assert got is None and context.code == grpc.StatusCode.NOT_FOUND


def test_every_rpc_of_the_proto_is_served() -> None:
    rpcs = pb.DESCRIPTOR.services_by_name["TrainerService"].methods
    assert "RerunRun" in {m.name for m in rpcs}
    assert all(callable(getattr(gw.Servicer, m.name, None)) for m in rpcs)


# --- `trainer rerun` ---------------------------------------------------------------------

def record(run_id: str = RUN, **fields: Any) -> pb.RunRecord:
    cfg = {"name": "n", "worker": "w", "env": "E"}
    return pb.RunRecord(run_id=run_id, config_json=json.dumps(cfg), **fields)


class FakeClient:
    """RerunRun answering ``answer`` (a record, or a TrainerError to raise), GetRun
    answering ``current``; ListRuns, ListArtifacts and a watch for `ls` and `show`."""

    address = "127.0.0.1:1"

    def __init__(self, answer: Any = None, current: Optional[pb.RunRecord] = None,
                 runs: Iterable[pb.RunRecord] = ()) -> None:
        self.answer, self.current, self.runs = answer, current, list(runs)
        self.reruns: list[dict[str, Any]] = []

    def __enter__(self) -> "FakeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def rerun(self, run_id: str, **kw: Any) -> pb.RunRecord:
        self.reruns.append({"run_id": run_id, **kw})
        if isinstance(self.answer, TrainerError):
            raise self.answer
        return self.answer

    def get(self, run_id: str) -> pb.RunRecord:
        if self.current is None:
            raise TrainerError(grpc.StatusCode.NOT_FOUND, f"run {run_id} does not exist",
                               trainer_code="not_found")
        return self.current

    def list(self, statuses: Iterable[int] = (), tag: str = "", page_size: int = 0,
             page_token: str = "") -> pb.ListRunsResponse:
        return pb.ListRunsResponse(runs=self.runs, total_size=len(self.runs))

    def artifacts(self, run_id: str) -> list[pb.Artifact]:
        return []

    def watch(self, *a: Any, **kw: Any) -> Iterable[pb.WatchRunsResponse]:
        return iter(())


def _invoke(monkeypatch: pytest.MonkeyPatch, fake: FakeClient, command: Any,
            *args: str) -> Any:
    monkeypatch.setattr(cli_runs, "client", lambda: fake)
    monkeypatch.setenv("USER", "alice")
    return CliRunner().invoke(command, list(args))


def test_rerun_prints_the_new_attempt_and_where_it_resumes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient(record(status=pb.RUN_STATUS_PENDING, attempt=2, max_attempts=3,
                             resume_from=CKPT))
    got = _invoke(monkeypatch, fake, cli_runs.rerun, RUN, "--reason", "node died")
    assert got.exit_code == 0, got.output
    assert got.output == f"{RUN} PENDING attempt 2/3, resuming from {CKPT}\n"
    assert fake.reruns == [{"run_id": RUN, "reason": "node died", "from_scratch": False,
                            "force": False, "requested_by": "alice"}]
    fake = FakeClient(record(status=pb.RUN_STATUS_PENDING, attempt=2, max_attempts=1))
    got = _invoke(monkeypatch, fake, cli_runs.rerun, RUN, "--from-scratch", "--force")
    assert got.exit_code == 0 and got.output == f"{RUN} PENDING attempt 2, from scratch\n"
    assert fake.reruns[0]["from_scratch"] and fake.reruns[0]["force"]


def _refusal() -> TrainerError:
    return TrainerError(grpc.StatusCode.FAILED_PRECONDITION, "refused",
                        trainer_code="failed_precondition")


def test_rerun_refusals_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient(_refusal(), record(status=pb.RUN_STATUS_RUNNING))
    got = _invoke(monkeypatch, fake, cli_runs.rerun, RUN)
    assert got.exit_code == 1 and "cancel it first" in got.output, got.output
    assert f"`trainer cancel {RUN}`" in got.output and f"{RUN} is RUNNING" in got.output
    fake = FakeClient(_refusal(), record(status=pb.RUN_STATUS_COMPLETED))
    got = _invoke(monkeypatch, fake, cli_runs.rerun, RUN)
    assert got.exit_code == 1 and "add --force" in got.output, got.output
    # a refusal the status does not explain (the run changed meanwhile): as it came
    fake = FakeClient(_refusal(), record(status=pb.RUN_STATUS_FAILED))
    got = _invoke(monkeypatch, fake, cli_runs.rerun, RUN)
    assert got.exit_code == 1 and "failed_precondition: refused" in got.output, got.output
    missing = TrainerError(grpc.StatusCode.NOT_FOUND, f"run {RUN} does not exist",
                           trainer_code="not_found")
    got = _invoke(monkeypatch, FakeClient(missing), cli_runs.rerun, RUN)
    assert got.exit_code == 1 and "not_found: run" in got.output and "--force" not in got.output
    gone = TrainerError(grpc.StatusCode.UNAVAILABLE, "connect failed")
    got = _invoke(monkeypatch, FakeClient(gone), cli_runs.rerun, RUN)
    assert got.exit_code == 1 and "not reachable at 127.0.0.1:1" in got.output, got.output


# --- `ls` and `show` ----------------------------------------------------------------------

def _header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def test_ls_adds_the_attempt_column_only_when_a_run_has_attempts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    single = [record("r00000000000a", status=pb.RUN_STATUS_RUNNING, attempt=1,
                     max_attempts=1), record("r00000000000b")]  # (b: an older gateway: 0)
    got = _invoke(monkeypatch, FakeClient(runs=single), cli_runs.ls)
    assert got.exit_code == 0 and _header(got.output) == list(fmt.RUN_HEADERS), got.output
    assert "ATTEMPT" not in got.output
    mixed = [record("r00000000000a", status=pb.RUN_STATUS_RUNNING, attempt=2, max_attempts=3),
             record("r00000000000b", status=pb.RUN_STATUS_PENDING, attempt=1, max_attempts=1),
             record("r00000000000c", status=pb.RUN_STATUS_PENDING, attempt=4, max_attempts=3)]
    got = _invoke(monkeypatch, FakeClient(runs=mixed), cli_runs.ls)
    assert got.exit_code == 0, got.output
    header = _header(got.output)
    assert header[:4] == ["RUN", "NAME", "STATUS", "ATTEMPT"] and len(header) == 10
    rows = {line.split()[0]: line.split() for line in got.output.splitlines()[1:]}
    assert [rows[r][3] for r in ("r00000000000a", "r00000000000b", "r00000000000c")] == \
        ["2/3", "1/1", "4"]
    assert rows["r00000000000a"][2] == "RUNNING" and rows["r00000000000a"][4] == "w"


def _shown(output: str) -> dict[str, str]:
    """`show`'s "key  value" lines (keys right-aligned to 16) as a map."""
    out = {}
    for line in output.splitlines():
        key, sep, value = line[:16].strip(), line[16:18], line[18:]
        if key and sep == "  ":
            out[key] = value
    return out


def test_show_prints_the_attempt_and_after_the_first_how_the_last_one_ended(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = record(status=pb.RUN_STATUS_RUNNING, attempt=1, max_attempts=3)
    got = _invoke(monkeypatch, FakeClient(current=first), cli_runs.show, RUN)
    lines = _shown(got.output)
    assert got.exit_code == 0 and lines["attempt"] == "1/3", got.output
    assert "previous attempt" not in lines and "resumes from" not in lines
    second = record(status=pb.RUN_STATUS_RUNNING, attempt=2, max_attempts=3,
                    resume_from=CKPT, last_attempt_cause=pb.TERMINAL_CAUSE_SIGNAL)
    got = _invoke(monkeypatch, FakeClient(current=second), cli_runs.show, RUN)
    lines = _shown(got.output)
    assert (lines["attempt"], lines["previous attempt"], lines["resumes from"]) == \
        ("2/3", "ended: signal", CKPT), got.output
    assert "         attempt  2/3\n" in got.output
    rerun = record(status=pb.RUN_STATUS_PENDING, attempt=2, max_attempts=1,
                   last_attempt_cause=pb.TERMINAL_CAUSE_CANCELLED)
    lines = _shown(_invoke(monkeypatch, FakeClient(current=rerun), cli_runs.show, RUN).output)
    assert lines["attempt"] == "2 (a rerun past retry.max_attempts 1)"
    assert (lines["previous attempt"], lines["resumes from"]) == \
        ("ended: cancelled", "- (from scratch)")
