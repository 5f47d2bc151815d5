"""Where a run's attempt was started, as fields of its own (issue 18): RunStarted's
launcher, job_id (the SLURM job) and job_gpus (the GPUs SLURM gave it), checked by the
registry, kept on the run through the projection and a rebuild, shown by the gateway
and the CLI; a log written before the fields replays and verifies unchanged, before
and after migration 014."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bus.codec import pack, unpack
from core import commands as c
from core import events as ev
from core.errors import ValidationError
from core.projection import run_from_row, run_row, run_view
from core.runstate import RunStatus, apply
from core.upcasting import load_event
from eventstore.audit import verify
from services.gateway.mapping import Mapper
from services.registry.migrations import migrate
from tests.unit.test_replay_audit import rehash, tamper
from tests.unit.workload import open_registry
from trainer.cli import format as fmt
from trainer.cli.replay import replay
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(30)
SLURM_START = {"launcher": "slurm", "job_id": "12", "job_gpus": ("0", "1")}


def submitted() -> Any:
    s = apply(None, ev.RunSubmitted("r1", "d", {"steps": 10}, 0, "me"), 1, 1.0)
    return apply(s, ev.GpusClaimed("r1", (), "d"), 2, 2.0)


def started(**fields: Any) -> Any:
    return apply(submitted(), ev.RunStarted("r1", 7, 1.0, "n7", **fields), 3, 3.0)


def test_the_run_keeps_its_launcher_job_and_gpus_through_the_projection_row() -> None:
    s = started(**SLURM_START)
    assert (s.status, s.host, s.launcher, s.job_id, s.job_gpus) == \
        (RunStatus.RUNNING, "n7", "slurm", "12", ("0", "1"))
    assert run_from_row(run_row(s)) == s
    view = run_view(s)
    assert (view["launcher"], view["job_id"], view["job_gpus"]) == ("slurm", "12", ["0", "1"])
    local = started(launcher="local")
    assert (local.launcher, local.job_id, local.job_gpus) == ("local", "", ())
    assert run_from_row(run_row(local)) == local


def test_the_next_attempt_forgets_the_last_attempt_s_job() -> None:
    s = apply(started(**SLURM_START), ev.AttemptEnded("r1", 1, "node_failure", None, None,
                                                     "gone", ""), 4, 4.0)
    assert s.status is RunStatus.PENDING
    assert (s.host, s.launcher, s.job_id, s.job_gpus) == ("", "", "", ())


@pytest.mark.parametrize("version, payload", [
    (2, {"run_id": "r1", "pid": 7, "pid_start_time": 1.0, "host": "n (SLURM job 5, GPUs 0)",
         "attempt": 1}),
    (1, {"run_id": "r1", "pid": 7, "pid_start_time": 1.0, "host": "h"}),
])
@pytest.mark.parametrize("trusted", [True, False])
def test_a_run_started_payload_from_before_the_fields_loads_with_them_empty(
        version: int, payload: dict, trusted: bool) -> None:
    event = load_event("RunStarted", version, payload, trusted=trusted)
    assert isinstance(event, ev.RunStarted)
    assert (event.host, event.launcher, event.job_id, event.job_gpus) == \
        (payload["host"], "", "", ())


@pytest.mark.parametrize("trusted", [True, False])
def test_a_new_payload_round_trips_with_its_gpus_as_a_tuple(trusted: bool) -> None:
    event = ev.RunStarted("r1", 7, 1.0, "n7", 2, **SLURM_START)
    payload = unpack(pack(event.to_payload()))   # as stored: lists
    assert payload["job_gpus"] == ["0", "1"]
    assert load_event("RunStarted", 2, payload, trusted=trusted) == event


def test_record_started_carries_the_job_into_the_event() -> None:
    (event,) = c.decide_started(submitted(), c.RecordStarted("r1", 7, 1.0, "n7",
                                                             **SLURM_START))
    assert (event.launcher, event.job_id, event.job_gpus, event.host) == \
        ("slurm", "12", ("0", "1"), "n7")
    (old,) = c.decide_started(submitted(), c.RecordStarted("r1", 7, 1.0, "h"))
    assert (old.launcher, old.job_id, old.job_gpus) == ("", "", ())   # an older dispatcher


@pytest.mark.parametrize("fields, field, words", [
    ({"launcher": "kubernetes"}, "launcher", "'local' or 'slurm'"),
    ({"launcher": "local", "job_id": "12"}, "job_id", "only with launcher 'slurm'"),
    ({"job_gpus": ("0",)}, "job_gpus", "only with launcher 'slurm'"),
    ({"launcher": "slurm", "job_id": "12; rm"}, "job_id", "1-20 digits"),
    ({"launcher": "slurm", "job_id": "1" * 21}, "job_id", "1-20 digits"),
    ({"launcher": "slurm", "job_id": "١٢"}, "job_id", "1-20 digits"),   # not ASCII digits
    ({"launcher": "slurm", "job_gpus": ("0", "")}, "job_gpus", "not a GPU's name"),
    ({"launcher": "slurm", "job_gpus": ("0\x1b[2J",)}, "job_gpus", "control characters"),
    ({"launcher": "slurm", "job_gpus": ("0",) * 65}, "job_gpus", "at most 64"),
])
def test_record_started_refuses_a_bad_placement_naming_the_field(
        fields: dict, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        c.decide_started(submitted(), c.RecordStarted("r1", 7, 1.0, "n7", **fields))
    assert err.value.field == field and words in str(err.value), err.value


def test_the_registry_records_the_job_and_a_rebuild_agrees(tmp_path: Path) -> None:
    path = str(tmp_path / "events.db")
    conn, registry, _ = open_registry(path)
    run_id = registry.handle("submit", {"config": {"env": "CartPole-v1"}}, "s", "t"
                             ).reply["result"]["run"]["run_id"]
    assert registry.handle("claim_gpus", {"run_id": run_id, "gpu_uuids": [],
                                          "claimed_by": "d"}, "c", "t").reply["ok"]
    out = registry.handle("record_started", {"run_id": run_id, "pid": 7, "pid_start_time": 1.0,
                                             "host": "n7", "launcher": "slurm",
                                             "job_id": "12", "job_gpus": ["1"]}, "r", "t")
    assert out.reply["ok"], out.reply
    view = out.reply["result"]["run"]
    assert (view["launcher"], view["job_id"], view["job_gpus"]) == ("slurm", "12", ["1"])
    bad = registry.handle("record_started", {"run_id": run_id, "pid": 7, "pid_start_time": 1.0,
                                             "job_gpus": "0,1"}, "b", "t").reply
    assert not bad["ok"] and "job_gpus" in str(bad), bad
    assert conn.execute("SELECT launcher, job_id, job_gpus FROM runs").fetchone() == \
        ("slurm", "12", '["1"]')
    conn.close()
    ok, message = verify(path, anchor_required=False)
    assert ok, message


def test_the_gateway_and_the_cli_show_the_job() -> None:
    rec = Mapper().run_record({"run_id": "r1", "status": "RUNNING", "config": {},
                               "host": "n7", "launcher": "slurm", "job_id": "12",
                               "job_gpus": ["0", "1"]})
    assert (rec.host, rec.launcher, rec.job_id, list(rec.job_gpus)) == \
        ("n7", "slurm", "12", ["0", "1"])
    assert fmt.launcher_text(rec) == "slurm job 12, GPUs 0,1"
    assert fmt.gpus_text(rec) == "slurm:0,1"
    local = Mapper().run_record({"run_id": "r2", "status": "RUNNING", "config": {},
                                 "launcher": "local", "gpus": ["GPU-0123456789abcdef"]})
    assert (local.launcher, local.job_id, list(local.job_gpus)) == ("local", "", [])
    assert (fmt.launcher_text(local), fmt.gpus_text(local)) == ("local", "…89abcdef")
    assert fmt.launcher_text(pb.RunRecord()) == "-" and fmt.gpus_text(pb.RunRecord()) == "-"
    assert fmt.launcher_text(pb.RunRecord(launcher="slurm", job_id="5")) == \
        "slurm job 5, GPUs none"


def write_old_log(path: str) -> str:
    """events.db as the code before the fields wrote it: a SLURM run and a local one
    started with RunStarted v2 payloads without them (the SLURM job in the host text),
    runs without the three columns, migration 014 not applied; its run ids."""
    conn, registry, clock = open_registry(path)
    ids = []
    for seed, host in ((1, "n7 (SLURM job 12, GPUs 0)"), (2, "host-1")):
        clock.advance(10)
        run_id = registry.handle("submit", {"config": {"env": "CartPole-v1", "seed": seed}},
                                 f"s{seed}", "t").reply["result"]["run"]["run_id"]
        for n, (method, args) in enumerate([
                ("claim_gpus", {"run_id": run_id, "gpu_uuids": [], "claimed_by": "d"}),
                ("record_started", {"run_id": run_id, "pid": 40 + seed, "pid_start_time": 1.0,
                                    "host": host})]):
            clock.advance(10)
            assert registry.handle(method, args, f"{method}{seed}{n}", "t").reply["ok"]
        ids.append(run_id)
    clock.advance(10)
    assert registry.handle("finish", {"run_id": ids[1], "outcome": "completed",
                                      "exit_code": 0}, "f", "t").reply["ok"]
    conn.close()
    conn = tamper(path)
    try:
        for seq, payload in conn.execute("SELECT seq, payload FROM events WHERE type = "
                                         "'RunStarted'").fetchall():
            old = unpack(payload)
            for name in ("launcher", "job_id", "job_gpus"):
                del old[name]
            conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (pack(old), seq))
        rehash(conn, path)
        for name in ("launcher", "job_id", "job_gpus"):
            conn.execute(f"ALTER TABLE runs DROP COLUMN {name}")
        conn.execute("DELETE FROM _migrations WHERE name = '014_run_launcher'")
    finally:
        conn.close()
    return ids[0]


def test_an_old_log_verifies_before_and_after_migration_014(tmp_path: Path) -> None:
    path = str(tmp_path / "events.db")
    slurm_run = write_old_log(path)
    got = CliRunner().invoke(replay, ["--db", path, "--verify"])
    assert got.exit_code == 0 and "chain intact" in got.output, got.output
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn) == ["014_run_launcher"]
    rows = conn.execute("SELECT run_id, host, launcher, job_id, job_gpus FROM runs "
                        "ORDER BY run_id").fetchall()
    conn.close()
    assert rows[0] == (slurm_run, "n7 (SLURM job 12, GPUs 0)", "", "", "[]")
    assert rows[1][2:] == ("", "", "[]")
    got = CliRunner().invoke(replay, ["--db", path, "--verify"])
    assert got.exit_code == 0 and "chain intact" in got.output, got.output
    # and the registry goes on with it: a new start records the fields
    conn, registry, _ = open_registry(path)
    try:
        view = registry.handle("get_run", {"run_id": slurm_run}, "g", "t").reply["result"]["run"]
        assert (view["launcher"], view["job_id"], view["job_gpus"]) == ("", "", [])
    finally:
        conn.close()
