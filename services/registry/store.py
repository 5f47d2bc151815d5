"""The projection tables in SQLite: read a run, write the RowChanges of an event.

``SqlProjection`` writes each change at once (the live registry, inside its
transaction). ``BufferedProjection`` coalesces changes in memory and flushes them in
batches (the rebuild). Both consume the same pure ``core.projection.changes``.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Optional

from core.projection import RUN_COLUMNS, TABLES, RowChange, run_from_row, run_row
from core.runstate import RunState

PROJECTION = "main"

# Upserts update rows in place (no delete + insert, so indexes move only if needed).
# A run's submitted_seq is its rowid (see migrations) and never changes.
_FIXED = {"runs": {"submitted_seq"}}
_INSERT = {t: f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
              f"ON CONFLICT ({', '.join(pk)}) DO UPDATE SET "
              + ", ".join(f"{c} = excluded.{c}" for c in cols
                          if c not in pk and c not in _FIXED.get(t, ()))
           for t, (cols, pk) in TABLES.items()}
_DELETE = {t: f"DELETE FROM {t} WHERE " + " AND ".join(f"{k} = ?" for k in pk)
           for t, (_, pk) in TABLES.items()}
_RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"


def load_run(conn: sqlite3.Connection, run_id: str) -> Optional[RunState]:
    row = conn.execute(f"{_RUN_SELECT} WHERE run_id = ?", (run_id,)).fetchone()
    return run_from_row(row) if row else None


def run_by_digest(conn: sqlite3.Connection, digest: str) -> Optional[RunState]:
    row = conn.execute(f"{_RUN_SELECT} WHERE digest = ?", (digest,)).fetchone()
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


def projection_seq(conn: sqlite3.Connection) -> int:
    """The seq of the last event the projections hold: every event rewrites its run's
    row (with last_seq = its seq) in the transaction that appends it."""
    row = conn.execute("SELECT MAX(last_seq) FROM runs").fetchone()
    return row[0] or 0


class SqlProjection:
    """Applies changes immediately on the connection (inside the caller's transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, run_id: str) -> Optional[RunState]:
        return load_run(self.conn, run_id)

    def write(self, after: RunState, extra: list[RowChange]) -> None:
        self.conn.execute(_INSERT["runs"], run_row(after))
        for change in extra:
            if change.row is not None:
                self.conn.execute(_INSERT[change.table], change.row)
            else:
                self.conn.execute(_DELETE[change.table], change.key)


class BufferedProjection:
    """Coalesces changes in memory; ``flush`` writes them with executemany."""

    def __init__(self, conn: sqlite3.Connection, starts_empty: bool = True) -> None:
        self.conn = conn
        self.runs: dict[str, RunState] = {}
        # Runs written by an earlier flush; with an empty start, nothing else is on disk.
        self.flushed: set[str] | None = set() if starts_empty else None
        self.rows: dict[str, dict[tuple[Any, ...], Optional[tuple[Any, ...]]]] = {
            t: {} for t in TABLES if t != "runs"}

    def get(self, run_id: str) -> Optional[RunState]:
        state = self.runs.get(run_id)
        if state is not None:
            return state
        if self.flushed is not None and run_id not in self.flushed:
            return None
        return load_run(self.conn, run_id)

    def write(self, after: RunState, extra: list[RowChange]) -> None:
        self.runs[after.run_id] = after
        for change in extra:
            pk = TABLES[change.table][1]
            if change.row is not None:
                cols = TABLES[change.table][0]
                key = tuple(change.row[cols.index(k)] for k in pk)
                self.rows[change.table][key] = change.row
            else:
                assert change.key is not None
                self.rows[change.table][change.key] = None

    def flush(self) -> None:
        self.conn.executemany(_INSERT["runs"], (run_row(s) for s in self.runs.values()))
        for table, rows in self.rows.items():
            self.conn.executemany(_INSERT[table], (r for r in rows.values() if r is not None))
            self.conn.executemany(_DELETE[table], (k for k, r in rows.items() if r is None))
            rows.clear()
        if self.flushed is not None:
            self.flushed.update(self.runs)
        self.runs.clear()
