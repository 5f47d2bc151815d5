"""One bad request fails alone: it gets a typed error, its batch commits, and nothing
it could store makes a run unreadable later (deep nesting, huge status lists, any
argument shape)."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.digest import MAX_DEPTH, check_depth
from core.errors import ValidationError
from services.registry.handlers import RequestHandler
from tests.unit.workload import open_registry


def _nested(depth: int) -> dict[str, Any]:
    top = cur = {}
    for _ in range(depth):
        cur["a"] = {}
        cur = cur["a"]
    return top


_ids = itertools.count()


def _batch(conn: sqlite3.Connection, registry: RequestHandler,
           requests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run requests in one transaction, as the registry's loop does; COMMIT."""
    conn.execute("BEGIN IMMEDIATE")
    replies = [registry.handle(m, a, f"req-{next(_ids)}", "test").reply for m, a in requests]
    conn.execute("COMMIT")
    return replies


@pytest.fixture()
def reg(tmp_path):
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    yield conn, registry
    conn.close()


def test_check_depth_counts_levels_of_maps_and_lists() -> None:
    check_depth({"a": [1, {"b": [2]}]}, "meta")
    check_depth(_nested(MAX_DEPTH - 1), "meta")
    with pytest.raises(ValidationError) as err:
        check_depth(_nested(MAX_DEPTH + 1), "hyperparameters")
    assert err.value.details["field"] == "hyperparameters"
    deep_list: list[Any] = []
    cur = deep_list
    for _ in range(MAX_DEPTH + 1):
        cur.append([])
        cur = cur[0]
    with pytest.raises(ValidationError):
        check_depth(deep_list, "meta")


def test_a_deeply_nested_config_or_meta_is_refused_and_the_run_stays_readable(reg) -> None:
    conn, registry = reg
    ok = _batch(conn, registry, [("submit", {"config": {"seed": 1}})])[0]
    run_id = ok["result"]["run"]["run_id"]
    refused = _batch(conn, registry, [
        ("submit", {"config": {"seed": 2, "hyperparameters": {"h": _nested(990)}}}),
        ("register_artifact", {"run_id": run_id, "path": "a.bin", "kind": "file",
                               "size": 1, "meta": {"m": _nested(990)}}),
    ])
    for reply in refused:
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_argument", reply
    assert refused[0]["error"]["details"]["field"] == "hyperparameters"
    assert refused[1]["error"]["details"]["field"] == "meta"
    # Nothing unreadable was stored: every query and command on the run still works.
    after = _batch(conn, registry, [("get_run", {"run_id": run_id}), ("snapshot", {}),
                                    ("request_cancel", {"run_id": run_id, "by": "t"})])
    assert [r["ok"] for r in after] == [True, True, True], after


def test_a_request_that_raises_fails_alone_and_its_batch_commits(reg, monkeypatch) -> None:
    conn, registry = reg

    def boom(args: dict[str, Any]) -> Any:
        raise RecursionError("maximum recursion depth exceeded")
    monkeypatch.setitem(registry.queries, "gpu_slots", boom)
    head = registry.log.head_seq
    replies = _batch(conn, registry, [("submit", {"config": {"seed": 1}}),
                                      ("gpu_slots", {}),
                                      ("list_runs", {"status": ["PENDING"] * 300_000}),
                                      ("submit", {"config": {"seed": 2}})])
    assert replies[0]["ok"] and replies[3]["ok"], replies
    assert replies[1]["error"]["code"] == "internal"
    assert "RecursionError" in replies[1]["error"]["message"]
    assert replies[2]["ok"] and replies[2]["result"]["total"] == 1  # one status, once
    # Both submits were committed with their batch, in order.
    assert registry.log.head_seq == head + 2
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2


def test_a_command_that_raises_is_rolled_back_alone_and_not_stored(reg, monkeypatch) -> None:
    conn, registry = reg
    run_id = _batch(conn, registry, [("submit", {"config": {"seed": 1}})])[0][
        "result"]["run"]["run_id"]
    calls = {"n": 0}
    real = registry.commands["request_cancel"]

    def flaky(args: dict[str, Any], rid: str, src: str) -> Any:
        calls["n"] += 1
        result = real(args, rid, src)  # appends its event, then fails
        if calls["n"] == 1:
            raise KeyError("a bug after the append")
        return result
    monkeypatch.setitem(registry.commands, "request_cancel", flaky)
    head = registry.log.head_seq
    conn.execute("BEGIN IMMEDIATE")
    first = registry.handle("request_cancel", {"run_id": run_id, "by": "t"}, "cancel-1", "t")
    conn.execute("COMMIT")
    assert first.reply["error"]["code"] == "internal" and not first.events
    assert registry.log.head_seq == head  # the in-memory head was reset too
    assert conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] == head
    # Not stored: the same id, retried, is applied this time.
    conn.execute("BEGIN IMMEDIATE")
    again = registry.handle("request_cancel", {"run_id": run_id, "by": "t"}, "cancel-1", "t")
    conn.execute("COMMIT")
    assert again.reply["ok"] and registry.log.head_seq == head + len(again.events) > head


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                     | st.text(max_size=20) | st.binary(max_size=10),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=30)
_methods = st.sampled_from(["submit", "claim_gpus", "record_waiting", "record_started",
                            "record_adopted", "request_cancel", "finish",
                            "register_artifact", "get_run", "list_runs", "events_since",
                            "snapshot", "gpu_slots", "list_artifacts", "ping", "nope"])
_arg_keys = st.sampled_from(["config", "run_id", "gpu_uuids", "reason", "pid", "status",
                             "cause", "path", "meta", "limit", "offset", "after_seq",
                             "hyperparameters", "by", "size", "kind", "tag"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.tuples(_methods, st.dictionaries(_arg_keys, _json,
                                                              max_size=5)),
                         min_size=1, max_size=4))
def test_any_arguments_get_a_typed_reply_and_never_fail_the_batch(reg, requests) -> None:
    conn, registry = reg
    replies = _batch(conn, registry, list(requests))  # raises if a request escaped
    for reply in replies:
        assert reply["ok"] in (True, False)
        if not reply["ok"]:
            assert isinstance(reply["error"]["code"], str) and reply["error"]["message"]
