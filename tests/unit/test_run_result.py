"""A run's recorded result: bounded by the dispatcher, checked by the registry,
carried by the terminal event, kept on the run (through a rebuild too), shown by the
gateway when it has no live heartbeat; logs written before it replay unchanged. (How
the dispatcher reads result.json and builds the result it sends:
tests/unit/dispatcher/test_ported_results.py.)"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import pytest

from core import commands as c
from core import events as ev
from core import runresult
from core.errors import ValidationError
from core.runstate import RunStatus, apply
from core.upcasting import load_event
from services.gateway.mapping import Mapper, heartbeat_message
from eventstore.compare import first_difference
from eventstore.rebuild import rebuild
from eventstore.audit import verify
from services.registry.migrations import migrate
from tests.unit.workload import open_registry


def running() -> Any:
    s = apply(None, ev.RunSubmitted("r1", "d", {"steps": 30_000}, 0, "me"), 1, 1.0)
    s = apply(s, ev.GpusClaimed("r1", (), "d"), 2, 2.0)
    return apply(s, ev.RunStarted("r1", 7, 1.0, "h"), 3, 3.0)


def test_summarize_keeps_the_larger_steps_and_only_what_fits() -> None:
    metrics = {"steps": 40_835, "eval_return_mean": 500.0, "flag": True, "name": "x",
               "nan": math.nan, "hist": [1, 2], "k" * 65: 1.0,
               **{f"m{i:02d}": float(i) for i in range(40)}}
    result, dropped = runresult.summarize(metrics, last_step=30_000, total_steps=30_000)
    assert result["steps"] == 40_835 and result["total_steps"] == 30_000
    assert result["eval_return_mean"] == 500.0
    assert len(result) == runresult.MAX_KEYS and dropped == 5 + (40 - 29)
    assert runresult.check(result) is result
    assert runresult.summarize("not a map", last_step=12)[0] == {"steps": 12}
    assert runresult.summarize({"steps": 5}, last_step=9)[0] == {"steps": 9}


def test_the_terminal_event_carries_the_result_and_old_payloads_still_load() -> None:
    done = ev.RunCompleted("r1", 0, result={"steps": 40_835, "eval_return_mean": 500.0})
    payload = done.to_payload()
    assert payload["result"] == {"steps": 40_835, "eval_return_mean": 500.0}
    assert load_event("RunCompleted", 1, payload) == done
    for trusted in (False, True):  # a log written before the field existed
        old = load_event("RunFailed", 1, {"run_id": "r1", "cause": "lost", "exit_code": None,
                                          "signal": None, "message": "m"}, trusted=trusted)
        assert old.result == {}
        assert load_event("RunCancelled", 1, {"run_id": "r1", "requested_by": "u",
                                              "reason": "", "exit_code": None,
                                              "signal": None}, trusted=trusted).result == {}
    with pytest.raises(ValidationError) as err:
        load_event("RunCompleted", 1, {"run_id": "r1", "exit_code": 0, "result": [1]})
    assert err.value.field == "result"


@pytest.mark.parametrize("outcome,extra", [("completed", {}),
                                           ("failed", {"cause": "exit_code", "exit_code": 3}),
                                           ("cancelled", {"requested_by": "me"})])
def test_finish_records_the_result_on_the_run(outcome: str, extra: dict) -> None:
    result = {"steps": 40_835, "total_steps": 30_000, "eval_return_mean": 500.0}
    out = c.decide_finish(running(), c.FinishRun("r1", outcome, result=result, **extra))
    assert out[0].result == result
    assert apply(running(), out[0], 4, 4.0).result == result


@pytest.mark.parametrize("bad", [{"steps": -1}, {"steps": 1.5}, {"r": math.inf},
                                 {"r": "high"}, {"r": True}, {"k" * 65: 1},
                                 {f"m{i}": 1 for i in range(33)}, ["steps"]])
def test_finish_refuses_a_result_that_does_not_fit(bad: Any) -> None:
    with pytest.raises(ValidationError) as err:
        c.decide_finish(running(), c.FinishRun("r1", "completed", result=bad))
    assert err.value.field == "result"


def test_the_projection_keeps_the_result_and_a_rebuild_agrees(tmp_path: Any) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    handle = lambda m, a, i: registry.handle(m, a, f"q{i}", "test").reply  # noqa: E731
    run_id = handle("submit", {"config": {"env": "CartPole-v1", "steps": 30_000}}, 1)[
        "result"]["run"]["run_id"]
    handle("claim_gpus", {"run_id": run_id, "gpu_uuids": [], "claimed_by": "d"}, 2)
    handle("record_started", {"run_id": run_id, "pid": 9, "pid_start_time": 1.0}, 3)
    result = {"steps": 40_835, "total_steps": 30_000, "eval_return_mean": 500.0}
    reply = handle("finish", {"run_id": run_id, "outcome": "completed", "result": result}, 4)
    assert reply["ok"], reply
    assert handle("get_run", {"run_id": run_id}, 5)["result"]["run"]["result"] == result
    listed = handle("list_runs", {}, 6)["result"]["runs"]
    assert [r["result"] for r in listed] == [result]
    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    rebuild(conn, scratch)
    assert first_difference(conn, scratch) is None
    scratch.close()
    conn.close()


def test_the_gateway_shows_the_recorded_result_without_a_live_heartbeat() -> None:
    mapper = Mapper()
    view = {"run_id": "r1", "status": "COMPLETED", "finished_at": 50.0, "config": {},
            "result": {"steps": 40_835, "total_steps": 30_000, "eval_return_mean": 500.0,
                       "episodes": 120}}
    hb = mapper.run_record(view).last_heartbeat
    assert (hb.beat, hb.step, hb.episode, hb.mean_return) == (0, 40_835, 120, 500.0)
    assert hb.sent_at.seconds == 50 and hb.progress["total_steps"] == 30_000
    # a run shorter than one heartbeat: its only beat said step 0
    early = heartbeat_message({"beat": 1, "step": 0, "rss_bytes": 7}, 1.0, 1.0)
    hb = mapper.run_record(view, early).last_heartbeat
    assert (hb.step, hb.rss_bytes, hb.mean_return) == (40_835, 7, 500.0)
    # a running run, or one with no recorded result: the live heartbeat as it is
    live = heartbeat_message({"beat": 3, "step": 10}, 1.0, 1.0)
    assert mapper.run_record({**view, "status": "RUNNING"}, live).last_heartbeat == live
    assert not mapper.run_record({**view, "result": {}}).HasField("last_heartbeat")
    assert RunStatus.COMPLETED.terminal


def test_verify_passes_on_a_log_written_before_the_result_column(tmp_path: Any) -> None:
    """`trainer replay --verify` on an events.db the old code wrote (no runs.result,
    not migrated yet: verify opens it read-only) compares it to a current rebuild."""
    path = str(tmp_path / "events.db")
    conn, registry, _ = open_registry(path)
    for i in range(3):  # what the old code could write: ends without a result
        run_id = registry.handle("submit", {"config": {"env": "CartPole-v1", "seed": i}},
                                 f"s{i}", "t").reply["result"]["run"]["run_id"]
        assert registry.handle("request_cancel", {"run_id": run_id}, f"c{i}", "t").reply["ok"]
    conn.execute("ALTER TABLE runs DROP COLUMN result")  # as migration 006 found it
    conn.execute("DELETE FROM _migrations WHERE name = '006_run_result'")
    conn.execute("ALTER TABLE runs DROP COLUMN cancel_requested_at")  # and 007
    conn.execute("DELETE FROM _migrations WHERE name = '007_cancel_time'")
    conn.close()
    ok, message = verify(path, anchor_required=False)
    assert ok, message
    # Migrated, the cancel times come from the log: the rebuild agrees with them.
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn) == ["006_run_result", "007_cancel_time"]
    stored = conn.execute("SELECT COUNT(*) FROM runs r JOIN events e ON e.stream = "
                          "'run-' || r.run_id AND e.type = 'CancelRequested' "
                          "WHERE r.cancel_requested_at = e.recorded_at").fetchone()[0]
    conn.close()
    assert stored == 3
    ok, message = verify(path, anchor_required=False)
    assert ok, message
