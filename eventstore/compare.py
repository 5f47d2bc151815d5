"""Comparing two databases' projection tables row by row (the live one and a rebuild):
the first difference names the table, the row's key, the column and both values."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from core.projection import TABLES

COMPARED_TABLES = tuple(TABLES)
SHOWN_CHARS = 80   # of each value in a Difference's text


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit - 15]}...({len(text)} chars)"


@dataclass(frozen=True)
class Difference:
    table: str
    key: str
    column: Optional[str]   # None: the row is in one database only
    left: str               # the live value (SQL literal, quote()), or "(missing)"
    right: str              # the rebuilt value

    def __str__(self) -> str:
        if self.column is None:
            where = "live table" if self.left == "(missing)" else "rebuild"
            return f"table {self.table}, key {self.key}: the row is missing in the {where}"
        return (f"table {self.table}, key {self.key}, column {self.column}: "
                f"live={shorten(self.left)} rebuilt={shorten(self.right)}")


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _rows(conn: sqlite3.Connection, table: str,
          cols: list[str]) -> Iterator[tuple[Any, ...]]:
    """(primary key, then each column's exact text) in primary-key order; quote()
    keeps types (1 and '1' and 1.0 differ). A column the database lacks reads as
    NULL."""
    pk = TABLES[table][1]  # the row's identity (runs: run_id, not its rowid)
    have = set(_columns(conn, table))
    key_sql = " || '|' || ".join(f"quote({c})" for c in pk)
    values = ", ".join(f"quote({c})" if c in have else "'NULL'" for c in cols)
    yield from conn.execute(f"SELECT {key_sql}, {values} FROM {table} ORDER BY "
                            f"{', '.join(pk)}")


def first_difference(live: sqlite3.Connection, rebuilt: sqlite3.Connection) -> Optional[Difference]:
    """The first row where the two databases' projection tables differ, or None."""
    for table in COMPARED_TABLES:
        # A column the live database lacks is one a migration not run yet adds (and
        # fills from the log): there is nothing stored in it to compare.
        have = set(_columns(live, table))
        if not have:
            continue  # a table a migration not run yet creates: nothing stored in it
        cols = [c for c in TABLES[table][0] if c in have]
        left, right = _rows(live, table, cols), _rows(rebuilt, table, cols)
        a, b = next(left, None), next(right, None)
        while a is not None or b is not None:
            if a is not None and b is not None and a[0] == b[0]:
                for column, x, y in zip(cols, a[1:], b[1:]):
                    if x != y:
                        return Difference(table, a[0], column, x, y)
                a, b = next(left, None), next(right, None)
            elif b is None or (a is not None and a[0] < b[0]):
                return Difference(table, a[0], None, "(row)", "(missing)")
            else:
                return Difference(table, b[0], None, "(missing)", "(row)")
    return None
