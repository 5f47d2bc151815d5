"""The projection tables (runs, gpu_slots, artifacts, envs, experiments,
experiment_cells) in SQLite: their layout, the
statements that write a row of each, reading a run and the projections' position.
The registry's live projection (services/registry/store.py) and the rebuild
(eventstore/rebuild.py) write them with the same statements."""

from __future__ import annotations

import sqlite3
from typing import Optional

from eventstore.sqlitelib import sqlite_utils

from core.streams import ENV_STREAM, EXPERIMENT_STREAM, RUN_STREAM
from core.experimentstate import ExperimentState
from core.projection import (ENV_COLUMNS, EXPERIMENT_COLUMNS, RUN_COLUMNS, STREAM_TABLES,
                             TABLES, State, env_from_row, experiment_from_row, run_from_row)
from core.envstate import EnvState
from core.runstate import RunState

_TYPES: dict[str, type] = {
    "priority": int, "submitted_seq": int, "submitted_at": float, "updated_at": float,
    "last_seq": int, "version": int, "gpus_held": int, "pid": int, "pid_start_time": float,
    "started_at": float, "finished_at": float, "exit_code": int, "signal": int,
    "artifact_count": int, "adoptions": int, "claimed_seq": int, "size": int, "seq": int,
    "registered_at": float, "cancel_requested_at": float, "attempt": int,
    "added_seq": int, "added_at": float, "removed": int, "removed_at": float,
    "cell_count": int, "max_concurrent": int, "created_seq": int, "created_at": float,
    "revision": int, "cancelled_at": float, "point": int,
}


def _columns(names: tuple[str, ...]) -> dict[str, type]:
    return {name: _TYPES.get(name, str) for name in names}


def create_projection_tables(db: sqlite_utils.Database) -> None:
    """The projection tables in their current layout (also used for the replay tool's
    scratch database). ``runs`` is stored in submission order: its rowid is
    ``submitted_seq`` and ``run_id`` is a unique index, so a new run appends to the
    table's last page and listing newest-first needs no index of its own."""
    for table, (columns, pk) in TABLES.items():
        key = "submitted_seq" if table == "runs" else (pk if len(pk) > 1 else pk[0])
        db[table].create(_columns(columns), pk=key, not_null=list(pk), if_not_exists=True)
    db["runs"].create_index(["run_id"], unique=True, index_name="runs_id", if_not_exists=True)
    # One run per config and code (core.codeid); also finds the runs of one config
    # (a few rows: a new run of it takes another page of no other index).
    db["runs"].create_index(["digest", "code_digest"], unique=True, index_name="runs_identity",
                            if_not_exists=True)
    db["runs"].create_index(["status", "submitted_seq"], index_name="runs_status",
                            if_not_exists=True)
    db["gpu_slots"].create_index(["run_id"], index_name="gpu_slots_run", if_not_exists=True)
    # The experiments a run is a cell of.
    db["experiment_cells"].create_index(["run_id"], index_name="experiment_cells_run",
                                        if_not_exists=True)


# Upserts update rows in place (no delete + insert, so indexes move only if needed).
# A run's submitted_seq is its rowid (see create_projection_tables) and never changes.
_FIXED = {"runs": {"submitted_seq"}}
UPSERT = {t: f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
             f"ON CONFLICT ({', '.join(pk)}) DO UPDATE SET "
             + ", ".join(f"{c} = excluded.{c}" for c in cols
                         if c not in pk and c not in _FIXED.get(t, ()))
          for t, (cols, pk) in TABLES.items()}
DELETE = {t: f"DELETE FROM {t} WHERE " + " AND ".join(f"{k} = ?" for k in pk)
          for t, (_, pk) in TABLES.items()}
RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
ENV_SELECT = f"SELECT {', '.join(ENV_COLUMNS)} FROM envs"
EXPERIMENT_SELECT = f"SELECT {', '.join(EXPERIMENT_COLUMNS)} FROM experiments"


def load_run(conn: sqlite3.Connection, run_id: str) -> Optional[RunState]:
    row = conn.execute(f"{RUN_SELECT} WHERE run_id = ?", (run_id,)).fetchone()
    return run_from_row(row) if row else None


def load_env(conn: sqlite3.Connection, name: str) -> Optional[EnvState]:
    row = conn.execute(f"{ENV_SELECT} WHERE name = ?", (name,)).fetchone()
    return env_from_row(row) if row else None


def load_experiment(conn: sqlite3.Connection, name: str) -> Optional[ExperimentState]:
    row = conn.execute(f"{EXPERIMENT_SELECT} WHERE name = ?", (name,)).fetchone()
    return experiment_from_row(row) if row else None


def load_state(conn: sqlite3.Connection, kind: str, key: str) -> Optional[State]:
    """The stored state of the stream (kind, key) (core.projection.key_of)."""
    if kind == RUN_STREAM:
        return load_run(conn, key)
    if kind == EXPERIMENT_STREAM:
        return load_experiment(conn, key)
    assert kind == ENV_STREAM, kind
    return load_env(conn, key)


def projection_seq(conn: sqlite3.Connection) -> int:
    """The seq of the last event the projections hold: every event rewrites its
    stream's own row (runs, envs: with last_seq = its seq) in the transaction that
    appends it. (A table a migration not run yet adds holds nothing.)"""
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    sql = " UNION ALL ".join(f"SELECT MAX(last_seq) AS s FROM {t}"
                             for t in STREAM_TABLES.values() if t in have)
    row = conn.execute(f"SELECT MAX(s) FROM ({sql})").fetchone()
    return row[0] or 0
