"""The typed registry protocol (core.protocol) and the error classes of its wire codes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from core import commands as cmds
from core import envcommands as envcmds
from core import experimentcommands as xcmds
from core import flagcommands as flagcmds
from core import errors
from core import protocol as p
from tests.unit.workload import open_registry

REQUESTS: list[Any] = [
    cmds.SubmitRun({"seed": 1}, "me"), cmds.ClaimGpus("r1", ("GPU-0",), "dispatcher", ("GPU-0",)),
    cmds.RecordWaiting("r1", "needs 2 GPUs"), cmds.RecordStarted("r1", 10, 5.0, "h"),
    cmds.RecordAdopted("r1", 10, "dispatcher"), cmds.RequestCancel("r1", "me", "why"),
    cmds.FinishRun("r1", "failed", cause="lost", attempt=2),
    cmds.RegisterArtifact("r1", "video", "a.mp4", 3), cmds.RerunRun("r1", "me", "why", True, True),
    p.GetRun("r1"), p.ListRuns(("RUNNING",), 5, 1, "t", 9, False), p.Snapshot(limit=7),
    p.EventsSince(3, 10), p.GpuSlots(), p.ListArtifacts("r1", 2, 3, "video"), p.Ping(),
    envcmds.AddEnv("gpu", "/e/bin/python", "3.11.7", ("/e/lib",), "/e", "0.1.0", "me"),
    envcmds.RemoveEnv("gpu", "me", "why"), p.ListEnvs(True), p.GetEnv("gpu"),
    xcmds.SubmitExperiment({"name": "x"}, "me", [{"worker": "cartpole", "code": {}}]),
    xcmds.CancelExperiment("x", "me", "why"), xcmds.RerunExperiment("x", "me", "why", True),
    p.GetExperiment("x"), p.ListExperiments(5, 1),
    flagcmds.FlagRun("r1", 1, "stalled", "warn", {"step": 3}),
    flagcmds.ClearRunFlag("r1", 1, "stalled", {"step": 4}),
]


def test_every_method_has_a_request_type_used_here() -> None:
    assert {p.method_of(r) for r in REQUESTS} == set(p.Method)


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_a_request_survives_the_wire_map(request_: Any) -> None:
    method = p.method_of(request_)
    assert p.parse(p.method_named(method.value), p.to_args(request_)) == request_


@pytest.mark.parametrize("method, args, field, reason", [
    (p.Method.GET_RUN, {}, "run_id", "missing"),
    (p.Method.GET_RUN, {"run_id": ""}, "run_id", "non-empty"),
    (p.Method.LIST_RUNS, {"status": ["NOPE"]}, "status", "unknown status 'NOPE'"),
    (p.Method.LIST_RUNS, {"status": 3}, "status", "a status name or a list of them"),
    (p.Method.LIST_RUNS, {"limit": 0}, "limit", "from 1 to 1000"),
    (p.Method.LIST_RUNS, {"limit": True}, "limit", "an integer"),
    (p.Method.LIST_RUNS, {"tag": 5}, "tag", "a string"),
    (p.Method.EVENTS_SINCE, {"limit": 5001}, "limit", "from 1 to 5000"),
    (p.Method.EVENTS_SINCE, {"after_seq": -1}, "after_seq", "from 0"),
    (p.Method.LIST_ARTIFACTS, {"run_id": "r", "kind": 1}, "kind", "a string"),
    (p.Method.SNAPSHOT, {"offset": -2}, "offset", "from 0"),
])
def test_bad_query_args_name_the_field(method: p.Method, args: dict, field: str,
                                       reason: str) -> None:
    with pytest.raises(errors.ValidationError) as err:
        p.parse(method, args)
    assert err.value.field == field and reason in err.value.message, err.value.message


def test_nil_query_args_count_as_absent_and_one_status_is_a_list() -> None:
    assert p.parse(p.Method.LIST_RUNS, {"tag": None, "limit": None, "status": "FAILED"}) == \
        p.ListRuns(status=("FAILED",))
    assert p.parse(p.Method.PING, None) == p.Ping()
    with pytest.raises(errors.ValidationError, match="method: unknown method 'nope'"):
        p.method_named("nope")


@pytest.mark.parametrize("code, cls, not_applied", [
    ("internal", errors.Internal, True), ("resource_exhausted", errors.StorageFull, True),
    ("unavailable", errors.Expired, True), ("invalid_argument", errors.ValidationError, False),
    ("not_found", errors.NotFound, False), ("resource_busy", errors.ResourceBusy, False),
    ("failed_precondition", errors.IllegalTransition, False),
])
def test_a_reply_error_is_read_as_its_class(code: str, cls: type, not_applied: bool) -> None:
    err = errors.OrchestratorError.from_dict({"code": code, "message": "m", "details": {}})
    assert type(err) is cls and err.code == code and err.message == "m"
    assert isinstance(err, errors.NotApplied) is not_applied
    kept = errors.OrchestratorError.from_dict({"code": "from_the_future", "message": "x"})
    assert type(kept) is errors.OrchestratorError and kept.code == "from_the_future"


def test_the_registry_answers_typed_queries_and_names_bad_fields(tmp_path: Any) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    run_id = registry.handle("submit", p.to_args(cmds.SubmitRun({"seed": 1})), "s", "t") \
        .reply["result"]["run"]["run_id"]
    got = registry.handle(p.Method.GET_RUN, p.to_args(p.GetRun(run_id)), "q1", "t").reply
    assert got["ok"] and got["result"]["run"]["run_id"] == run_id
    listed = registry.handle("list_runs", {"status": "PENDING", "limit": None}, "q2", "t").reply
    assert [r["run_id"] for r in listed["result"]["runs"]] == [run_id]
    bad = registry.handle("events_since", {"limit": 0}, "q3", "t").reply
    assert bad["error"]["code"] == "invalid_argument" and \
        bad["error"]["details"]["field"] == "limit"
    assert dataclasses.asdict(p.GpuSlots()) == {}
    conn.close()
