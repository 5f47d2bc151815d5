"""Rebuild the projections from seq 0 into an empty database, and compare two
databases' projection tables row by row. The replay/audit tools use these too."""

from __future__ import annotations

import gc
import sqlite3
from dataclasses import dataclass
from typing import Iterator, Optional

import sqlite_utils

from core.projection import TABLES, changes
from services.registry.eventlog import iter_for_replay
from services.registry.migrations import create_projection_tables
from services.registry.store import BufferedProjection

FLUSH_EVERY = 50_000
COMPARED_TABLES = tuple(TABLES)


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
            after, extra = changes(proj.get(event.run_id), event, seq, at, in_place=True)
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


@dataclass(frozen=True)
class Difference:
    table: str
    key: str
    left: str
    right: str

    def __str__(self) -> str:
        return f"{self.table} {self.key}: live={self.left} rebuilt={self.right}"


def _rows(conn: sqlite3.Connection, table: str) -> Iterator[tuple[str, str]]:
    """(primary key, exact text of the row) in primary-key order; quote() keeps types.
    A column the database lacks (a log not yet migrated: written before the column
    existed, so it cannot hold a value there) reads as NULL."""
    have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    cols, pk = TABLES[table]  # pk: the row's identity (runs: run_id, not its rowid)
    row_sql = " || '|' || ".join(f"quote({c})" if c in have else "'NULL'" for c in cols)
    key_sql = " || '|' || ".join(f"quote({c})" for c in pk)
    yield from conn.execute(f"SELECT {key_sql}, {row_sql} FROM {table} ORDER BY "
                            f"{', '.join(pk)}")


def first_difference(live: sqlite3.Connection, rebuilt: sqlite3.Connection) -> Optional[Difference]:
    """The first row where the two databases' projection tables differ, or None."""
    for table in COMPARED_TABLES:
        left, right = _rows(live, table), _rows(rebuilt, table)
        while True:
            a, b = next(left, None), next(right, None)
            if a is None and b is None:
                break
            if a != b:
                key = (a or b)[0] if a is None or b is None or a[0] <= b[0] else b[0]
                return Difference(table, key, a[1] if a else "(missing)",
                                  b[1] if b else "(missing)")
    return None
