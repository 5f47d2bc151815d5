"""core.rundir: the run-folder contract is written once, and its records parse what
the shim and the dispatcher write."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.errors import ValidationError
from core.rundir import RUN_FILES, ExitRecord, KillRecord, WorkerRecord

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "bus", "runtime", "eventstore", "services", "worker", "trainer",
            "scripts", "bench")


def test_no_run_file_name_is_spelled_outside_core_rundir() -> None:
    spelled = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "core" / "rundir.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in RUN_FILES:
                    spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not spelled, "use the names in core/rundir.py: " + ", ".join(spelled)


def test_worker_record_parses_what_the_shim_writes() -> None:
    written = {"pid": 10, "pgid": 10, "start_time": 123.5, "shim_pid": 9,
               "shim_start_time": None, "started_at": 1.7e9, "run_lock": True,
               "cores": [0, 1], "cores_note": "", "memory_limit_mb": 64,
               "memory_enforced_by": "sampled", "attempt": 2}
    record = WorkerRecord.from_map(written)
    assert record.pgid == 10 and record.run_lock and record.shim_start_time is None
    assert record.to_map() == written and record.attempt == 2
    older = {k: v for k, v in written.items() if k != "attempt"}  # a shim from before
    assert WorkerRecord.from_map(older).attempt is None


def test_exit_record_parses_an_end_and_a_spawn_error() -> None:
    ended = ExitRecord.from_map({
        "pid": 10, "started_at": 1.0, "ended_at": 2.0, "exit_code": None, "signal": 9,
        "core_dumped": False, "maxrss_kb": 2048, "utime_s": 0.5, "stime_s": 0.1,
        "leftovers_killed": 2, "attempt": 1})
    assert ended.signal == 9 and ended.leftovers_killed == 2 and ended.spawn_error is None
    assert ended.attempt == 1
    failed = ExitRecord.from_map({"exit_code": None, "signal": None, "spawn_error": "ENOENT",
                                  "started_at": 1.0, "ended_at": 1.0, "pid": None,
                                  "attempt": None})
    assert failed.spawn_error == "ENOENT" and failed.pid is None and failed.maxrss_kb == 0
    assert failed.attempt is None


@pytest.mark.parametrize("record, field", [
    ({"pid": "10", "started_at": 1.0, "ended_at": 2.0, "exit_code": 0, "signal": None},
     "pid"),
    ({"pid": 10, "started_at": 1.0, "exit_code": 0, "signal": None}, "ended_at"),
])
def test_a_bad_exit_record_names_its_field(record: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ExitRecord.from_map(record)
    assert err.value.field == field


def test_kill_record_round_trips() -> None:
    record = KillRecord("failed", "timeout", "over its limit", 1.7e9, 30.0)
    assert KillRecord.from_map(record.to_map()) == record
    with pytest.raises(ValidationError):
        KillRecord.from_map({**record.to_map(), "grace_s": "30"})
