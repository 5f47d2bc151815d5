"""Liveness flags in the registry (docs/SUPERVISION.md): flag_run and clear_run_flag on
a RUNNING run's attempt, each refusal naming its field or reason, nothing stored twice,
the flag log in the run view, and a log with flags rebuilt to the same projection. The
liveness config section: defaults left out of the canonical config, bad values named."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from core.digest import config_digest
from core.errors import ValidationError
from core.runconfig import RunConfig
from core.runstate import MAX_FLAGS
from eventstore.compare import first_difference
from eventstore.rebuild import rebuild
from services.registry.handlers import RequestHandler
from tests.unit.workload import open_registry

G0 = "GPU-0"


def call(registry: RequestHandler, method: str, args: dict[str, Any], rid: str) -> dict:
    registry.conn.execute("BEGIN IMMEDIATE")
    out = registry.handle(method, args, rid, "test").reply
    registry.conn.execute("COMMIT")
    return out


def ok(reply: dict) -> dict:
    assert reply["ok"], reply
    return reply["result"]


def running(registry: RequestHandler) -> str:
    run_id = ok(call(registry, "submit", {"config": {"seed": 1}}, "s"))["run"]["run_id"]
    ok(call(registry, "claim_gpus", {"run_id": run_id, "gpu_uuids": [],
                                     "claimed_by": "dispatcher"}, "c"))
    ok(call(registry, "record_started", {"run_id": run_id, "pid": 10,
                                         "pid_start_time": 1.0}, "st"))
    return run_id


def flag(run_id: str, rule: str = "stalled", attempt: int = 1, **more: Any) -> dict:
    return {"run_id": run_id, "attempt": attempt, "rule": rule, "action": "warn",
            "evidence": {"step": 7, "stalled_for_s": 301.5}, **more}


def test_a_flag_and_its_clear_are_events_and_the_run_view_keeps_them(tmp_path) -> None:
    conn, registry, clock = open_registry(str(tmp_path / "events.db"))
    run_id = running(registry)
    out = ok(call(registry, "flag_run", flag(run_id), "f1"))
    assert len(out["events"]) == 1 and out["run"]["status"] == "RUNNING"
    assert ok(call(registry, "flag_run", flag(run_id), "f2"))["events"] == []  # it stands
    ok(call(registry, "flag_run", flag(run_id, "diverged", evidence={"metric": "loss"}), "f3"))
    clock.advance(5.0)
    out = ok(call(registry, "clear_run_flag", {"run_id": run_id, "attempt": 1,
                                               "rule": "stalled", "evidence": {"step": 8}},
                  "c1"))
    assert len(out["events"]) == 1
    assert ok(call(registry, "clear_run_flag", {"run_id": run_id, "attempt": 1,
                                                "rule": "slowed"}, "c2"))["events"] == []
    flags = ok(call(registry, "get_run", {"run_id": run_id}, "g"))["run"]["flags"]
    assert [(f["rule"], f["cleared_at"] is not None) for f in flags] == \
        [("stalled", True), ("diverged", False)]
    stalled = flags[0]
    assert stalled["evidence"] == {"step": 7, "stalled_for_s": 301.5}
    assert stalled["cleared_evidence"] == {"step": 8}
    assert stalled["cleared_at"] - stalled["flagged_at"] == pytest.approx(5.0)
    types = [r[0] for r in conn.execute("SELECT type FROM events ORDER BY seq")]
    assert types[-3:] == ["RunFlagged", "RunFlagged", "RunFlagCleared"]
    # the projection rebuilt from the log is the same
    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    rebuild(conn, scratch, flush_every=2)
    assert first_difference(conn, scratch) is None


@pytest.mark.parametrize(("change", "code", "where"), [
    ({"rule": "bored"}, "invalid_argument", "rule"),
    ({"action": "shout"}, "invalid_argument", "action"),
    ({"evidence": {"x": "y" * 5000}}, "invalid_argument", "evidence"),
    ({"attempt": 2}, "conflict", "attempt 1, not 2"),
])
def test_a_bad_flag_is_refused_naming_why_and_stores_nothing(tmp_path, change, code,
                                                            where) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    run_id = running(registry)
    before = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    out = call(registry, "flag_run", flag(run_id, **change), "bad")
    assert not out["ok"] and out["error"]["code"] == code, out
    assert where in (out["error"].get("field", "") + out["error"]["message"])
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == before


def test_only_a_running_run_is_flagged(tmp_path) -> None:
    _, registry, _ = open_registry(str(tmp_path / "events.db"))
    run_id = ok(call(registry, "submit", {"config": {"seed": 2}}, "s"))["run"]["run_id"]
    out = call(registry, "flag_run", flag(run_id), "f")
    assert out["error"]["code"] == "failed_precondition", out
    assert "RunFlagged is not allowed from PENDING" in out["error"]["message"]
    out = call(registry, "flag_run", flag("r000000000bad"), "g")
    assert out["error"]["code"] == "not_found"


def test_the_flag_log_keeps_the_newest(tmp_path) -> None:
    _, registry, _ = open_registry(str(tmp_path / "events.db"))
    run_id = running(registry)
    clear = {"run_id": run_id, "attempt": 1, "rule": "stalled"}
    for i in range(MAX_FLAGS + 5):
        ok(call(registry, "flag_run", flag(run_id, evidence={"i": i}), f"f{i}"))
        ok(call(registry, "clear_run_flag", clear, f"c{i}"))
    flags = ok(call(registry, "get_run", {"run_id": run_id}, "g"))["run"]["flags"]
    assert len(flags) == MAX_FLAGS and flags[-1]["evidence"] == {"i": MAX_FLAGS + 4}


def test_the_liveness_section_is_left_out_of_the_canonical_config_when_default() -> None:
    plain = RunConfig.from_map({"seed": 3})
    assert "liveness" not in plain.to_map()
    same = RunConfig.from_map({"seed": 3, "liveness": {"stalled": {"window_s": 300}}})
    assert config_digest(same.to_map()) == config_digest(plain.to_map())
    other = RunConfig.from_map({"seed": 3, "liveness": {"stalled": {"action": "stop"}}})
    assert other.to_map()["liveness"]["stalled"] == {
        "enabled": True, "action": "stop", "warmup_s": 60.0, "window_s": 300.0}
    assert RunConfig.from_map(other.to_map()) == other


@pytest.mark.parametrize(("liveness", "field"), [
    ({"sleepy": {}}, "liveness.sleepy"),
    ({"stalled": {"window_s": 0}}, "liveness.stalled.window_s"),
    ({"stalled": {"fraction": 0.5}}, "liveness.stalled.fraction"),
    ({"slowed": {"fraction": 0.6, "clear_fraction": 0.5}}, "liveness.slowed.clear_fraction"),
    ({"gpu_idle": {"threshold_pct": 101}}, "liveness.gpu_idle.threshold_pct"),
    ({"diverged": {"action": "panic"}}, "liveness.diverged.action"),
    ({"diverged": {"enabled": "yes"}}, "liveness.diverged.enabled"),
    ({"stalled": []}, "liveness.stalled"),
    ([], "liveness"),
])
def test_a_bad_liveness_section_names_the_field(liveness: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        RunConfig.from_map({"liveness": liveness})
    assert err.value.field == field


def test_a_window_no_longer_than_the_heartbeat_interval_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        RunConfig.from_map({"heartbeat_interval_s": 5.0,
                            "liveness": {"slowed": {"window_s": 5.0}}})
    assert err.value.field == "liveness.slowed.window_s"
    assert "longer than heartbeat_interval_s (5)" in str(err.value)
    RunConfig.from_map({"heartbeat_interval_s": 5.0,   # off: not judged, not checked
                        "liveness": {"slowed": {"window_s": 5.0, "enabled": False}}})
