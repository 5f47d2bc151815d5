"""The registry's environment methods against real SQLite (no socket): add, list, a
submit checked among the named environment's workers, the claim's answer naming its
interpreter, removal refused while a run that has not ended names it, a rerun
refused once it is gone; and a log with env events still replays (rebuild, catch-up,
the projections' position)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from eventstore.compare import first_difference
from eventstore.rebuild import rebuild
from eventstore.tables import projection_seq
from services.registry.migrations import connect
from services.registry.projection_catchup import catch_up_projection
from tests.unit.workload import open_registry

PY = "/opt/envs/gpu/bin/python"


@pytest.fixture
def site(tmp_path: Path) -> str:
    """A site-packages folder with one distribution: the worker `ppo`."""
    info = tmp_path / "site" / "their_ppo-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: their-ppo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[trainer.workers]\nppo = their:ppo\n")
    return str(tmp_path / "site")


class Calls:
    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.n = 0

    def __call__(self, method: str, **args: Any) -> dict[str, Any]:
        self.n += 1
        self.registry.conn.execute("BEGIN IMMEDIATE")
        out = self.registry.handle(method, args, f"req-{self.n}", "test")
        self.registry.conn.execute("COMMIT")
        self.last_events = out.events
        return out.reply


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"], reply
    return reply["result"]


def refused(reply: dict[str, Any], code: str) -> dict[str, Any]:
    assert not reply["ok"] and reply["error"]["code"] == code, reply
    return reply["error"]


def add_args(site: str, **kw: Any) -> dict[str, Any]:
    return {"name": "gpu", "python": PY, "python_version": "3.11.7", "sys_path": [site],
            "prefix": "/opt/envs/gpu", "sdk_version": "0.1.0", "added_by": "me", **kw}


def test_environments_through_the_registry_and_the_replay(tmp_path: Path, site: str) -> None:
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    call = Calls(registry)
    added = ok(call("add_env", **add_args(site)))
    assert added["created"] and added["env"]["workers"] == ["ppo"]
    [stored] = call.last_events
    assert (stored.stream, stored.version, stored.type) == ("env-gpu", 1, "EnvAdded")
    assert not ok(call("add_env", **add_args(site)))["created"]        # the same again
    err = refused(call("add_env", **add_args(site, python="/x/bin/python")), "conflict")
    assert "remove it first" in err["message"]
    err = refused(call("add_env", **add_args(site, name="cpu", sdk_version="")),
                  "invalid_argument")
    assert err["details"]["field"] == "python"
    assert [e["name"] for e in ok(call("list_envs"))["envs"]] == ["gpu"]
    assert ok(call("get_env", name="gpu"))["env"]["python"] == PY
    refused(call("get_env", name="cpu"), "not_found")

    # a submit checks the worker among the environment's entry points, not ours
    run = ok(call("submit", config={"worker": "ppo", "python_env": "gpu"}))["run"]
    err = refused(call("submit", config={"worker": "cartpole", "python_env": "gpu"}),
                  "invalid_argument")
    assert err["details"]["field"] == "worker" and "'gpu'" in err["message"]
    err = refused(call("submit", config={"python_env": "cpu"}), "invalid_argument")
    assert err["details"]["field"] == "python_env" and "registered: gpu" in err["message"]
    plain = ok(call("submit", config={"seed": 2}))["run"]

    claim = ok(call("claim_gpus", run_id=run["run_id"], gpu_uuids=[], claimed_by="d"))
    assert (claim["run"]["python"], claim["run"]["python_error"]) == (PY, "")
    claim = ok(call("claim_gpus", run_id=plain["run_id"], gpu_uuids=[], claimed_by="d"))
    assert (claim["run"]["python"], claim["run"]["python_error"]) == ("", "")

    err = refused(call("remove_env", name="gpu"), "resource_busy")
    assert err["details"]["runs"] == [run["run_id"]] and run["run_id"] in err["message"]
    ok(call("finish", run_id=run["run_id"], outcome="failed", cause="spawn_error"))
    removed = ok(call("remove_env", name="gpu", reason="old"))["env"]
    assert removed["removed"] and removed["remove_reason"] == "old" and removed["workers"] == []
    assert ok(call("list_envs"))["envs"] == []
    assert [e["name"] for e in ok(call("list_envs", include_removed=True))["envs"]] == ["gpu"]
    refused(call("remove_env", name="gpu"), "not_found")
    err = refused(call("rerun", run_id=run["run_id"]), "invalid_argument")
    assert err["details"]["field"] == "python_env"
    ok(call("add_env", **add_args(site)))     # back: its stream goes on
    assert call.last_events[0].version == 3
    head = registry.log.head_seq
    assert projection_seq(conn) == head       # the last event is an environment's

    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    assert rebuild(conn, scratch, flush_every=2) == head
    assert first_difference(conn, scratch) is None
    assert scratch.execute("SELECT name, removed, version FROM envs").fetchall() == \
        [("gpu", 0, 3)]

    # a projection found behind the log (a hand-made restore) is caught up, envs too
    conn.close()
    shutil.copy(tmp_path / "events.db", tmp_path / "behind.db")
    behind = connect(str(tmp_path / "behind.db"))
    for table in ("runs", "envs", "gpu_slots", "artifacts"):
        behind.execute(f"DELETE FROM {table}")
    assert projection_seq(behind) == 0
    assert catch_up_projection(behind) == head
    assert first_difference(behind, scratch) is None
