"""The registry's experiments (docs/EXPERIMENTS.md): one request creates every cell's
run and the experiment's revision in one transaction; the same spec again creates
nothing; a new axis value creates only the new cells; a bad value is refused naming
the axis and nothing is stored; cancel and rerun reach every run; the projection and
a rebuild from the log agree; the stream's events round-trip and fold."""

from __future__ import annotations

import copy
import sqlite3
from typing import Any

import pytest

from core import events as ev
from core.experimentstate import ACTIVE, CANCELLED, apply_experiment
from core.projection import changes, key_of
from core.streams import experiment_stream, stream_kind
from core.upcasting import load_event
from eventstore.compare import first_difference
from eventstore.rebuild import rebuild
from services.registry.handlers import RequestHandler
from tests.unit.workload import open_registry

SPEC = {"name": "noise", "template": {"worker": "cartpole", "steps": 1000},
        "axes": {"hyperparameters.noise_std": [0.1, 0.5]}, "seeds": [0, 1, 2]}
CODE = {"worker": "cartpole", "distribution": "trainer-orchestrator", "version": "0.1.0",
        "python": "3.11.7", "packages": {}}

EXPERIMENT_SAMPLES: dict[str, ev.DomainEvent] = {
    "ExperimentSubmitted": ev.ExperimentSubmitted(
        name="noise", spec=SPEC, spec_digest="d" * 64, points=[{"steps": 1}],
        cells=[[0, 0, "r000000000001"]], max_concurrent=2, priority=None, submitted_by="me"),
    "ExperimentCancelled": ev.ExperimentCancelled(name="noise", requested_by="me",
                                                  reason="wrong", runs=("r000000000001",)),
    "ExperimentRerun": ev.ExperimentRerun(name="noise", requested_by="me",
                                          runs=("r000000000001",)),
}


def call(registry: RequestHandler, method: str, args: dict[str, Any], rid: str,
         ok: bool = True) -> dict:
    registry.conn.execute("BEGIN IMMEDIATE")
    out = registry.handle(method, args, rid, "test").reply
    registry.conn.execute("COMMIT")
    assert out["ok"] is ok, out
    return out["result"] if ok else out["error"]


def submit(registry: RequestHandler, rid: str, spec: dict | None = None, **kw: Any) -> dict:
    return call(registry, "submit_experiment", {"spec": spec or SPEC, "submitted_by": "me",
                                                "codes": [{"worker": "cartpole",
                                                           "code": CODE}], **kw}, rid)


def count(conn: sqlite3.Connection, sql: str) -> int:
    return conn.execute(sql).fetchone()[0]


def test_every_experiment_event_belongs_to_its_stream_and_folds() -> None:
    assert set(EXPERIMENT_SAMPLES) == ev.TYPES_OF_KIND["exp"]
    for event in EXPERIMENT_SAMPLES.values():
        assert event.stream == "exp-noise" == experiment_stream("noise")
        assert key_of(event) == ("exp", "noise")
        again = load_event(event.TYPE, event.SCHEMA_VERSION, event.to_payload())
        assert again == event
    assert stream_kind("exp-noise") == ("exp", "noise")
    s = apply_experiment(None, EXPERIMENT_SAMPLES["ExperimentSubmitted"], 5, 50.0)
    assert (s.status, s.cells, s.revision) == (ACTIVE, ((0, 0, "r000000000001"),), 1)
    s = apply_experiment(s, EXPERIMENT_SAMPLES["ExperimentCancelled"], 6, 60.0)
    assert (s.status, s.cancelled_by, s.version) == (CANCELLED, "me", 2)
    s = apply_experiment(s, EXPERIMENT_SAMPLES["ExperimentRerun"], 7, 70.0)
    assert s.status == ACTIVE and s.last_seq == 7
    _, cells = changes(None, EXPERIMENT_SAMPLES["ExperimentSubmitted"], 5, 50.0)
    assert [c.row for c in cells] == [("noise", 0, 0, "r000000000001")]


def test_an_experiment_is_one_request_and_every_cell_an_ordinary_run(tmp_path) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    out = submit(registry, "x1")
    exp = out["experiment"]
    assert out["created"] == 6 and exp["status"] == "ACTIVE" and exp["revision"] == 1
    assert exp["runs"] == {"PENDING": 6}
    runs = [call(registry, "get_run", {"run_id": c["run_id"]}, "g")["run"] for c in exp["cells"]]
    assert [(r["config"]["seed"], r["config"]["hyperparameters"]) for r in runs] == \
        [(s, {"noise_std": n}) for n in (0.1, 0.5) for s in (0, 1, 2)]
    assert {r["experiment"] for r in runs} == {"noise"} and all(r["code"]["distribution"] == "trainer-orchestrator" for r in runs)
    # one request: one stored reply, every event of one correlation id
    assert count(conn, "SELECT COUNT(*) FROM requests") == 1
    assert count(conn, "SELECT COUNT(DISTINCT correlation_id) FROM events") == 1
    assert count(conn, "SELECT COUNT(*) FROM experiment_cells") == 6


def test_the_same_spec_again_creates_nothing_and_a_new_value_only_its_cells(tmp_path) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    first = submit(registry, "x1")["experiment"]
    events = count(conn, "SELECT COUNT(*) FROM events")
    again = submit(registry, "x2", copy.deepcopy(SPEC))
    assert again["created"] == 0 and count(conn, "SELECT COUNT(*) FROM events") == events
    wider = copy.deepcopy(SPEC)
    wider["axes"]["hyperparameters.noise_std"] = [0.1, 0.3, 0.5]
    out = submit(registry, "x3", wider)
    assert out["created"] == 3 and out["experiment"]["revision"] == 2
    old = {(c["point"], c["seed"]): c["run_id"] for c in first["cells"]}
    new = {(c["point"], c["seed"]): c["run_id"] for c in out["experiment"]["cells"]}
    assert [new[(0, s)] for s in range(3)] == [old[(0, s)] for s in range(3)]   # 0.1
    assert [new[(2, s)] for s in range(3)] == [old[(1, s)] for s in range(3)]   # 0.5
    assert count(conn, "SELECT COUNT(*) FROM runs") == 9
    assert count(conn, "SELECT COUNT(*) FROM experiment_cells") == 9
    # a standalone submit of a cell's config is that cell's run
    config = call(registry, "get_run", {"run_id": new[(1, 0)]}, "g")["run"]["config"]
    alone = call(registry, "submit", {"config": config, "code": CODE}, "s1")  # its code too
    assert not alone["created"] and alone["run"]["run_id"] == new[(1, 0)]


@pytest.mark.parametrize(("axes", "field"), [
    ({"steps": [1000, -5]}, "axes.steps[1]"),
    ({"hyperparameters.noise_std": [0.1], "worker": ["cartpole", "nope"]}, "axes.worker[1]"),
    ({"hyperparameters.noise_std": []}, "axes.hyperparameters.noise_std"),
])
def test_a_value_that_makes_an_invalid_config_is_refused_and_nothing_stored(
        tmp_path, axes, field) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    registry.known_worker = lambda name: name == "cartpole"
    err = call(registry, "submit_experiment", {"spec": {**SPEC, "axes": axes}}, "x1", ok=False)
    assert err["code"] == "invalid_argument" and err["details"]["field"] == field, err
    assert count(conn, "SELECT COUNT(*) FROM events") == 0
    assert count(conn, "SELECT COUNT(*) FROM runs") == 0


def test_a_template_field_refusal_names_the_template(tmp_path) -> None:
    _, registry, _ = open_registry(str(tmp_path / "events.db"))
    spec = {**SPEC, "template": {"steps": 0}}
    err = call(registry, "submit_experiment", {"spec": spec}, "x1", ok=False)
    assert err["details"]["field"] == "template.steps"


def test_cancel_ends_every_run_and_rerun_gives_the_cancelled_cells_new_attempts(
        tmp_path) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    exp = submit(registry, "x1")["experiment"]
    ids = [c["run_id"] for c in exp["cells"]]
    call(registry, "claim_gpus", {"run_id": ids[0], "gpu_uuids": [], "claimed_by": "d"}, "c1")
    call(registry, "record_started", {"run_id": ids[0], "pid": 42, "pid_start_time": 1.0}, "c2")
    call(registry, "finish", {"run_id": ids[1], "outcome": "completed", "exit_code": 0}, "c3",
         ok=False)  # (a PENDING run cannot complete: the table refuses it)
    out = call(registry, "cancel_experiment", {"name": "noise", "requested_by": "me",
                                               "reason": "wrong axis"}, "k1")
    assert out["experiment"]["status"] == "CANCELLED" and sorted(out["cancelled"]) == sorted(ids)
    # the PENDING ones are CANCELLED at once; the RUNNING one waits for its worker
    assert out["experiment"]["runs"] == {"CANCELLED": 5, "RUNNING": 1}
    running = call(registry, "get_run", {"run_id": ids[0]}, "g")["run"]
    assert running["cancel_requested_by"] == "me"
    again = call(registry, "cancel_experiment", {"name": "noise"}, "k2")
    assert again["cancelled"] == [ids[0]]  # asked again: the first request stands
    call(registry, "finish", {"run_id": ids[0], "outcome": "cancelled",
                              "requested_by": "me"}, "f1")
    assert call(registry, "cancel_experiment", {"name": "noise"}, "k3")["cancelled"] == []
    rerun = call(registry, "rerun_experiment", {"name": "noise", "requested_by": "me"}, "r1")
    assert sorted(rerun["rerun"]) == sorted(ids) and rerun["experiment"]["status"] == "ACTIVE"
    assert rerun["experiment"]["runs"] == {"PENDING": 6}
    attempts = {call(registry, "get_run", {"run_id": i}, "g")["run"]["attempt"] for i in ids}
    assert attempts == {2}
    nothing = call(registry, "rerun_experiment", {"name": "noise"}, "r2")
    assert nothing["rerun"] == []
    shown = call(registry, "get_experiment", {"name": "noise"}, "g")["experiment"]
    assert [c["status"] for c in shown["cells"]] == ["PENDING"] * 6
    assert shown["cells"][0]["attempt"] == 2
    listed = call(registry, "list_experiments", {}, "l")["experiments"]
    assert [e["name"] for e in listed] == ["noise"] and listed[0]["cell_count"] == 6


def test_an_unknown_experiment_is_not_found(tmp_path) -> None:
    _, registry, _ = open_registry(str(tmp_path / "events.db"))
    for method in ("get_experiment", "cancel_experiment", "rerun_experiment"):
        err = call(registry, method, {"name": "nope"}, method, ok=False)
        assert err["code"] == "not_found", err
    err = call(registry, "get_experiment", {"name": "a.b"}, "bad", ok=False)
    assert err["details"]["field"] == "name"


def test_the_projection_and_a_rebuild_from_the_log_agree(tmp_path) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    submit(registry, "x1")
    wider = copy.deepcopy(SPEC)
    wider["axes"]["hyperparameters.noise_std"] = [0.5, 0.9]  # 0.1 dropped, 0.9 added
    submit(registry, "x2", wider)
    call(registry, "cancel_experiment", {"name": "noise"}, "k1")
    assert count(conn, "SELECT COUNT(*) FROM experiment_cells") == 6
    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    rebuild(conn, scratch)
    assert first_difference(conn, scratch) is None


def test_a_v3_run_submitted_reads_as_no_experiments_cell() -> None:
    event = load_event("RunSubmitted", 3, {"run_id": "r1", "digest": "d", "config": {},
                                           "priority": 0, "submitted_by": "x", "code": {},
                                           "code_digest": ""})
    assert event.experiment == ""


def test_the_experiments_priority_is_the_queue_priority_of_its_new_cells(tmp_path) -> None:
    _, registry, _ = open_registry(str(tmp_path / "events.db"))
    exp = submit(registry, "x1", {**SPEC, "priority": 7, "max_concurrent": 2})["experiment"]
    assert exp["priority"] == 7 and exp["max_concurrent"] == 2
    run = call(registry, "get_run", {"run_id": exp["cells"][0]["run_id"]}, "g")["run"]
    assert run["priority"] == 7 and run["config"]["priority"] == 0


def test_the_same_spec_with_other_code_is_a_new_revision_of_new_runs(tmp_path) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    first = submit(registry, "x1")["experiment"]
    other = {**CODE, "version": "0.2.0"}
    out = call(registry, "submit_experiment", {"spec": SPEC, "codes": [
        {"worker": "cartpole", "code": other}]}, "x2")
    assert out["created"] == 6 and out["experiment"]["revision"] == 2
    assert {c["run_id"] for c in out["experiment"]["cells"]}.isdisjoint(
        c["run_id"] for c in first["cells"])
    again = call(registry, "submit_experiment", {"spec": SPEC, "codes": [
        {"worker": "cartpole", "code": other}]}, "x3")
    assert again["created"] == 0 and again["experiment"]["revision"] == 2
