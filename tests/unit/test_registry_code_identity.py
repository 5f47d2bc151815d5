"""The registry's rule for "the same run" (docs/CONFIG.md): the same config with the
same code identity returns the existing run; other code makes a new run and the reply
names the earlier run of the config and what changed. The attempt's code artifact is
projected; a rebuild from the log agrees; migration 010 keeps every run, and a run
stored before it is still found for a submit without an identity."""

from __future__ import annotations

import sqlite3
from typing import Any

from core.upcasting import load_event
from eventstore.compare import first_difference
from eventstore.rebuild import rebuild
from services.registry.handlers import RequestHandler
from services.registry.migrations import connect, migrate
from tests.unit.workload import open_registry

CONFIG = {"worker": "cartpole", "env": "CartPole-v1", "seed": 3}
CODE_A = {"worker": "cartpole", "distribution": "agent", "version": "0.1", "python": "3.11.7",
          "packages": {"numpy": "2.1.3"},
          "git": {"commit": "a" * 40, "diff_sha256": "", "diff_bytes": 0, "untracked": 0,
                  "root": "/src/agent"}}
CODE_B = {**CODE_A, "git": {**CODE_A["git"], "commit": "b" * 40}}


def call(registry: RequestHandler, method: str, args: dict[str, Any], rid: str) -> dict:
    registry.conn.execute("BEGIN IMMEDIATE")
    out = registry.handle(method, args, rid, "test").reply
    registry.conn.execute("COMMIT")
    assert out["ok"], out
    return out["result"]


def submit(registry: RequestHandler, rid: str, code: dict | None = None) -> dict:
    args: dict[str, Any] = {"config": CONFIG, "submitted_by": "test"}
    if code is not None:
        args["code"] = code
    return call(registry, "submit", args, rid)


def test_the_same_config_and_code_is_the_same_run_other_code_a_new_one(tmp_path) -> None:
    _, registry, _ = open_registry(str(tmp_path / "events.db"))
    first = submit(registry, "s1", CODE_A)
    assert first["created"] and "same_config" not in first
    assert first["run"]["code"] == CODE_A and len(first["run"]["code_digest"]) == 64
    same = submit(registry, "s2", CODE_A | {"git": {**CODE_A["git"], "root": "/moved"}})
    assert not same["created"] and same["run"]["run_id"] == first["run"]["run_id"]
    other = submit(registry, "s3", CODE_B)
    assert other["created"] and other["run"]["run_id"] != first["run"]["run_id"]
    assert other["same_config"] == {"run_id": first["run"]["run_id"],
                                    "changes": [f"commit {'a' * 12} -> {'b' * 12}"]}
    # without an identity (a client of the registry's socket): the same only as another
    bare = submit(registry, "s4")
    assert bare["created"] and bare["run"]["code_digest"] == ""
    assert bare["same_config"] == {"run_id": other["run"]["run_id"],
                                   "changes": ["code identity not recorded now"]}
    assert submit(registry, "s5")["run"]["run_id"] == bare["run"]["run_id"]
    # back to the first code: its run, not a fourth
    assert submit(registry, "s6", CODE_A)["run"]["run_id"] == first["run"]["run_id"]


def test_a_malformed_identity_is_refused_and_nothing_is_stored(tmp_path) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    conn.execute("BEGIN IMMEDIATE")
    out = registry.handle("submit", {"config": CONFIG, "code": {"git": {"commit": 5}}},
                          "bad", "test").reply
    conn.execute("COMMIT")
    assert not out["ok"] and out["error"]["details"]["field"] == "code.git.commit"
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_the_attempts_code_artifact_is_projected_and_a_rebuild_agrees(tmp_path) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    run_id = submit(registry, "s1", CODE_A)["run"]["run_id"]
    started = {**CODE_B, "attempt": 1}
    call(registry, "register_artifact", {"run_id": run_id, "kind": "code",
                                         "path": "code/attempt-1.json", "size": 400,
                                         "meta": started}, "a1")
    view = call(registry, "get_run", {"run_id": run_id}, "g")["run"]
    assert view["attempt_code"] == started and view["code"] == CODE_A
    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    rebuild(conn, scratch)
    assert first_difference(conn, scratch) is None


def test_a_v2_run_submitted_reads_as_one_without_an_identity() -> None:
    event = load_event("RunSubmitted", 2, {"run_id": "r1", "digest": "d", "config": {},
                                           "priority": 0, "submitted_by": "x"})
    assert event.code == {} and event.code_digest == ""


def test_migration_010_keeps_every_run_and_the_old_runs_stay_found(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    conn, registry, _ = open_registry(path)
    old = submit(registry, "s1")["run"]
    conn.executescript("""
        BEGIN;
        DROP INDEX runs_identity;
        ALTER TABLE runs DROP COLUMN code_digest; ALTER TABLE runs DROP COLUMN code;
        ALTER TABLE runs DROP COLUMN attempt_code;
        CREATE UNIQUE INDEX runs_digest ON runs (digest);
        DELETE FROM _migrations WHERE name = '010_code_identity';
        COMMIT;
    """)
    conn.close()
    conn = connect(path)
    assert migrate(conn) == ["010_code_identity"]
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "runs_identity" in indexes and "runs_digest" not in indexes
    registry = RequestHandler(conn, registry.clock, path)
    again = submit(registry, "s2")
    assert not again["created"] and again["run"]["run_id"] == old["run_id"]
    assert submit(registry, "s3", CODE_A)["same_config"]["run_id"] == old["run_id"]
    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    rebuild(conn, scratch)
    assert first_difference(conn, scratch) is None
