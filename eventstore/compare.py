"""Comparing two databases' projection tables row by row (the live one and a rebuild)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Iterator, Optional

from core.projection import TABLES

COMPARED_TABLES = tuple(TABLES)


@dataclass(frozen=True)
class Difference:
    table: str
    key: str
    left: str
    right: str

    def __str__(self) -> str:
        return f"{self.table} {self.key}: live={self.left} rebuilt={self.right}"


def _rows(conn: sqlite3.Connection, table: str) -> Iterator[tuple[str, str]]:
    """(primary key, exact text of the row) in primary-key order; quote() keeps types."""
    cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    pk = TABLES[table][1]  # the row's identity (runs: run_id, not its rowid)
    row_sql = " || '|' || ".join(f"quote({c})" for c in cols)
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
