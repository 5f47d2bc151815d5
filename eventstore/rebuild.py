"""Rebuild the projections from seq 0 into an empty database: the replay/audit tools'
fold of the log, with the same pure ``core.projection.changes`` the live registry
applies, written in batches."""

from __future__ import annotations

import gc
import sqlite3
from typing import Any, Optional

from eventstore.sqlitelib import sqlite_utils

from core.events import Event
from core.projection import (TABLES, RowChange, State, changes, key_of, own_row,
                             run_row, state_key)
from core.runstate import RunState
from eventstore.reader import iter_for_replay
from eventstore.tables import DELETE, UPSERT, create_projection_tables, load_run, load_state

FLUSH_EVERY = 50_000


class BufferedProjection:
    """Coalesces changes in memory; ``flush`` writes them with executemany."""

    def __init__(self, conn: sqlite3.Connection, starts_empty: bool = True) -> None:
        self.conn = conn
        self.runs: dict[str, RunState] = {}
        # Runs written by an earlier flush; with an empty start, nothing else is on disk.
        self.flushed: set[str] | None = set() if starts_empty else None
        self.rows: dict[str, dict[tuple[Any, ...], Optional[tuple[Any, ...]]]] = {
            t: {} for t in TABLES if t != "runs"}
        # The states of the other streams' kinds (environments), by (kind, key): few.
        self.others: dict[tuple[str, str], State] = {}

    def get(self, run_id: str) -> Optional[RunState]:
        state = self.runs.get(run_id)
        if state is not None:
            return state
        if self.flushed is not None and run_id not in self.flushed:
            return None
        return load_run(self.conn, run_id)

    def get_state(self, kind: str, key: str) -> Optional[State]:
        """The state of a stream of another kind than runs (core.projection.key_of)."""
        state = self.others.get((kind, key))
        return state if state is not None or self.flushed is not None \
            else load_state(self.conn, kind, key)

    def write(self, after: State, extra: list[RowChange]) -> None:
        if isinstance(after, RunState):
            self.runs[after.run_id] = after
        else:
            self.others[state_key(after)] = after  # kept: flushed again each time
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
        self.conn.executemany(UPSERT["runs"], (run_row(s) for s in self.runs.values()))
        for state in self.others.values():
            self.conn.execute(UPSERT[own_row(state)[0]], own_row(state)[1])
        for table, rows in self.rows.items():
            self.conn.executemany(UPSERT[table], (r for r in rows.values() if r is not None))
            self.conn.executemany(DELETE[table], (k for k, r in rows.items() if r is None))
            rows.clear()
        if self.flushed is not None:
            self.flushed.update(self.runs)
        self.runs.clear()


def rebuild(src: sqlite3.Connection, dst: sqlite3.Connection,
            until_seq: Optional[int] = None, flush_every: int = FLUSH_EVERY) -> int:
    """Fold every event of ``src`` (up to ``until_seq``) into empty projection tables
    in ``dst``. Returns the number of events applied."""
    create_projection_tables(sqlite_utils.Database(dst))
    proj = BufferedProjection(dst)
    n = 0
    dst.execute("BEGIN")
    # Millions of short-lived objects and no reference cycles: the cyclic collector
    # would only rescan the growing set of run states, over and over.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for seq, at, event in iter_for_replay(src, until_seq=until_seq):
            before = proj.get(event.run_id) if isinstance(event, Event) \
                else proj.get_state(*key_of(event))
            after, extra = changes(before, event, seq, at, in_place=True)
            proj.write(after, extra)
            n += 1
            if n % flush_every == 0:
                proj.flush()
        proj.flush()
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
    return n
