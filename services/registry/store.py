"""The projection tables in SQLite: the registry's queries, and ``SqlProjection``,
which writes the RowChanges of each event at once (inside the live transaction). The
tables' layout and the statements that write them are in ``eventstore.tables``; the
rebuild's ``BufferedProjection`` (eventstore/rebuild.py) uses the same ones."""

from __future__ import annotations

import json
import sqlite3
from typing import Iterable, Optional

from core.envstate import EnvState
from core.projection import RowChange, State, env_from_row, own_row, run_from_row
from core.runstate import ACTIVE, RunState
from eventstore.tables import DELETE as _DELETE, RUN_SELECT as _RUN_SELECT, UPSERT as _INSERT
from eventstore.tables import ENV_SELECT, load_env, load_run, load_state

PROJECTION = "main"


def run_by_digest(conn: sqlite3.Connection, digest: str,
                  code_digest: str = "") -> Optional[RunState]:
    """The run of this config and this code (docs/CONFIG.md, "The same run")."""
    row = conn.execute(f"{_RUN_SELECT} WHERE digest = ? AND code_digest = ?",
                       (digest, code_digest)).fetchone()
    return run_from_row(row) if row else None


def latest_with_config(conn: sqlite3.Connection, digest: str) -> Optional[RunState]:
    """The newest run of this config, whatever its code."""
    row = conn.execute(f"{_RUN_SELECT} WHERE digest = ? ORDER BY submitted_seq DESC LIMIT 1",
                       (digest,)).fetchone()
    return run_from_row(row) if row else None


def legacy_digests_until(conn: sqlite3.Connection) -> int:
    """The last seq that may hold a run with the digest of before whole floats in
    hyperparameters counted as integers (migration 005); 0: no run can."""
    row = conn.execute("SELECT before_seq FROM digest_rule").fetchone()
    return int(row[0]) if row else 0


def gpu_holders(conn: sqlite3.Connection, uuids: Iterable[str]) -> dict[str, str]:
    uuids = list(uuids)
    if not uuids:
        return {}
    marks = ",".join("?" * len(uuids))
    return dict(conn.execute(f"SELECT gpu_uuid, run_id FROM gpu_slots WHERE gpu_uuid IN "
                             f"({marks})", uuids).fetchall())


def gpu_inventory(conn: sqlite3.Connection) -> Optional[frozenset[str]]:
    """The GPU inventory stored with the last claim that listed one (the dispatcher's),
    None if no claim ever did. An empty one (a machine without GPUs) is kept too."""
    row = conn.execute("SELECT gpu_uuids FROM gpu_inventory WHERE id = 1").fetchone()
    return frozenset(json.loads(row[0])) if row else None


def save_gpu_inventory(conn: sqlite3.Connection, uuids: frozenset[str], at: float) -> None:
    conn.execute("INSERT INTO gpu_inventory (id, gpu_uuids, recorded_at) VALUES (1, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET gpu_uuids = excluded.gpu_uuids, "
                 "recorded_at = excluded.recorded_at", (json.dumps(sorted(uuids)), at))


def list_runs(conn: sqlite3.Connection, statuses: list[str], limit: int, offset: int,
              newest_first: bool, tag: str = "",
              before_seq: int = 0) -> tuple[list[RunState], int]:
    """A page of runs and the number matching. ``tag``: config.tags holds it;
    ``before_seq``: only runs submitted before that seq (keyset paging)."""
    conds: list[str] = []
    args: list[object] = []
    if statuses:
        conds.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    if tag:
        conds.append("EXISTS (SELECT 1 FROM json_each(runs.config, '$.tags') WHERE value = ?)")
        args.append(tag)
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    total = conn.execute(f"SELECT COUNT(*) FROM runs {where}", args).fetchone()[0]
    if before_seq:
        where = f"WHERE {' AND '.join([*conds, 'submitted_seq < ?'])}"
        args = [*args, before_seq]
    order = "DESC" if newest_first else "ASC"
    rows = conn.execute(f"{_RUN_SELECT} {where} ORDER BY submitted_seq {order} LIMIT ? OFFSET ?",
                        (*args, limit, offset)).fetchall()
    return [run_from_row(r) for r in rows], total


def list_envs(conn: sqlite3.Connection, include_removed: bool = False) -> list[EnvState]:
    """The registered environments by name (the removed ones too, if asked)."""
    where = "" if include_removed else " WHERE removed = 0"
    return [env_from_row(r) for r in conn.execute(f"{ENV_SELECT}{where} ORDER BY name")]


def get_env(conn: sqlite3.Connection, name: str) -> Optional[EnvState]:
    """The environment ``name``, None where none is registered (or it was removed)."""
    env = load_env(conn, name)
    return env if env is not None and not env.removed else None


def runs_using_env(conn: sqlite3.Connection, name: str, limit: int = 20) -> list[str]:
    """The ids of the runs not ended (PENDING, DISPATCHING, RUNNING) whose config names
    the environment ``name`` (at most ``limit``, oldest first)."""
    statuses = sorted(s.value for s in ACTIVE)
    rows = conn.execute(
        f"SELECT run_id FROM runs WHERE status IN ({','.join('?' * len(statuses))}) AND "
        "json_extract(config, '$.python_env') = ? ORDER BY submitted_seq LIMIT ?",
        (*statuses, name, limit)).fetchall()
    return [r[0] for r in rows]


def load_runs(conn: sqlite3.Connection, run_ids: Iterable[str]) -> list[RunState]:
    """The runs of these ids that exist, in the order given."""
    ids = list(run_ids)
    found: dict[str, RunState] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows = conn.execute(f"{_RUN_SELECT} WHERE run_id IN ({','.join('?' * len(chunk))})",
                            chunk).fetchall()
        found.update((run.run_id, run) for run in map(run_from_row, rows))
    return [found[i] for i in ids if i in found]


def cell_statuses(conn: sqlite3.Connection, experiment: str) -> dict[str, int]:
    """How many of the experiment's cells have a run in each status."""
    return dict(conn.execute(
        "SELECT r.status, COUNT(*) FROM experiment_cells c JOIN runs r ON r.run_id = c.run_id "
        "WHERE c.experiment = ? GROUP BY r.status ORDER BY r.status", (experiment,)).fetchall())


def experiment_limits(conn: sqlite3.Connection) -> list[dict]:
    """Every ACTIVE experiment that sets a limit or a priority: {name, max_concurrent,
    priority}, by name (what the dispatcher schedules its cells by)."""
    rows = conn.execute(
        "SELECT name, max_concurrent, priority FROM experiments WHERE status = 'ACTIVE' "
        "AND (max_concurrent > 0 OR priority IS NOT NULL) ORDER BY name").fetchall()
    return [{"name": n, "max_concurrent": m, "priority": p} for n, m, p in rows]


CELL_RUN_KEYS = ("point", "seed", "run_id", "status", "attempt", "cause", "started_at",
                 "finished_at", "message")


def cell_runs(conn: sqlite3.Connection, experiment: str) -> list[dict]:
    """Each cell of the experiment with its run's status, attempt, cause, start and end,
    by point then seed."""
    rows = conn.execute(
        "SELECT c.point, c.seed, c.run_id, r.status, r.attempt, r.cause, r.started_at, "
        "r.finished_at, r.message FROM experiment_cells c JOIN runs r ON r.run_id = c.run_id "
        "WHERE c.experiment = ? ORDER BY c.point, c.seed", (experiment,)).fetchall()
    return [dict(zip(CELL_RUN_KEYS, row)) for row in rows]


class SqlProjection:
    """Applies changes immediately on the connection (inside the caller's transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, run_id: str) -> Optional[RunState]:
        return load_run(self.conn, run_id)

    def get_state(self, kind: str, key: str) -> Optional[State]:
        """The state of the stream (kind, key) (core.projection.key_of)."""
        return load_state(self.conn, kind, key)

    def write(self, after: State, extra: list[RowChange]) -> None:
        table, row = own_row(after)
        self.conn.execute(_INSERT[table], row)
        for change in extra:
            if change.row is not None:
                self.conn.execute(_INSERT[change.table], change.row)
            else:
                self.conn.execute(_DELETE[change.table], change.key)
