"""2. The registry's append path alone, no sockets.

Row 1 (the target): the write path, RequestHandler._append of already-decided RunSubmitted
events (event row with hash chain + projection row) in group-commit transactions of
BATCH, vs plain sqlite3 inserting the very same rows (the event row and the run row,
with the same tables and indexes) with one commit per event, with the same durability
(WAL, synchronous=NORMAL). Group commit must pay for itself.

Row 2 (information): the whole submit command through RequestHandler.handle (config
validation, digest dedup, request-id record, append) in the same batches, against
the same raw figure."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from typing import Any

from bench.registry_rpc import submit_args
from bench.table import Row, median

BATCH = 64

_RAW_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
    type TEXT NOT NULL, schema_version INTEGER NOT NULL, payload BLOB NOT NULL,
    caused_by TEXT NOT NULL, correlation_id TEXT NOT NULL, recorded_at FLOAT NOT NULL,
    hash BLOB NOT NULL);
CREATE UNIQUE INDEX events_stream_version ON events (stream, version);
"""


def service_checks() -> dict[str, Any]:
    """The config checks services/registry/__main__.py gives its RequestHandler."""
    try:
        from services.registry.catalog import EnvCatalog
    except ImportError:
        return {}
    return {"known_env": EnvCatalog()}


def ours_append(path: str, n: int, tag: str) -> float:
    """events/s through RequestHandler._append of decided events, in batches of BATCH."""
    from core import commands as cmds
    from core.clock import SystemClock
    from core.fields import from_map
    from services.registry.handlers import RequestHandler
    from services.registry.migrations import connect, migrate
    conn = connect(path)
    migrate(conn)
    registry = RequestHandler(conn, SystemClock(), path)
    decided = []
    for i in range(n):
        cmd = from_map(cmds.SubmitRun, submit_args(tag, i), "submit")
        decided.append(cmds.decide_submit(cmd, cmds.validate_config(cmd), f"r{i:012x}"))
    t0 = time.perf_counter()
    for lo in range(0, n, BATCH):
        conn.execute("BEGIN IMMEDIATE")
        for i in range(lo, min(n, lo + BATCH)):
            registry._append(None, decided[i], f"{tag}-{i}", "bench")
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def raw_same_rows(src: str, path: str) -> float:
    """events/s inserting ``src``'s event rows and run rows, one commit per event."""
    from services.registry.migrations import connect, migrate
    with sqlite3.connect(src) as s:
        events = s.execute("SELECT * FROM events ORDER BY seq").fetchall()
        runs = {r[0]: r for r in s.execute("SELECT * FROM runs")}
        run_of = dict(s.execute("SELECT seq, run_id FROM runs JOIN events ON "
                                "events.stream = 'run-' || runs.run_id"))
    s.close()
    conn = connect(path)
    migrate(conn)
    conn.execute("DROP TRIGGER events_gapless")  # plain sqlite3: no checks of ours
    ev_sql = f"INSERT INTO events VALUES ({','.join('?' * len(events[0]))})"
    run_sql = f"INSERT INTO runs VALUES ({','.join('?' * len(next(iter(runs.values()))))})"
    execute = conn.execute
    t0 = time.perf_counter()
    for row in events:
        execute("BEGIN")
        execute(ev_sql, row)
        execute(run_sql, runs[run_of[row[0]]])
        execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(events) / elapsed


def ours(path: str, n: int, tag: str) -> float:
    """events/s through RequestHandler.handle in batches of BATCH."""
    from core.clock import SystemClock
    from services.registry.handlers import RequestHandler
    from services.registry.migrations import connect, migrate
    conn = connect(path)
    migrate(conn)
    registry = RequestHandler(conn, SystemClock(), path, **service_checks())
    args = [submit_args(tag, i) for i in range(n)]
    rids = [f"{tag}-{i:012d}" for i in range(n)]
    warm = registry.handle("submit", submit_args(tag + "-warm", 0), tag + "-warm", "bench")
    if not warm.reply["ok"]:  # also pays for the catalog's first import, untimed
        raise RuntimeError(f"submit failed: {warm.reply}")
    t0 = time.perf_counter()
    for lo in range(0, n, BATCH):
        conn.execute("BEGIN IMMEDIATE")
        for i in range(lo, min(n, lo + BATCH)):
            out = registry.handle("submit", args[i], rids[i], "bench")
            if not out.reply["ok"] or len(out.events) != 1:
                raise RuntimeError(f"submit failed: {out.reply}")
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed  # the warm-up submit is not counted


def raw(src: str, path: str) -> float:
    """events/s inserting ``src``'s event rows into a fresh table, one commit each."""
    with sqlite3.connect(src) as s:
        rows = s.execute("SELECT seq, stream, version, type, schema_version, payload, "
                         "caused_by, correlation_id, recorded_at, hash FROM events "
                         "ORDER BY seq").fetchall()
    s.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_RAW_SCHEMA)
    sql = "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)"
    execute = conn.execute
    t0 = time.perf_counter()
    for row in rows:
        execute("BEGIN")
        execute(sql, row)
        execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(rows) / elapsed


def run(quick: bool = False) -> list[Row]:
    n = 5_000 if quick else 20_000
    repeats = 1 if quick else 3
    append_rates, same_rates, submit_rates, raw_rates = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="tb-append-") as tmp:
        for r in range(repeats):
            a, a_raw = os.path.join(tmp, f"append{r}.db"), os.path.join(tmp, f"same{r}.db")
            append_rates.append(ours_append(a, n, f"a{r}"))
            same_rates.append(raw_same_rows(a, a_raw))
            src, dst = os.path.join(tmp, f"ours{r}.db"), os.path.join(tmp, f"raw{r}.db")
            submit_rates.append(ours(src, n, f"append{r}"))
            raw_rates.append(raw(src, dst))
            payload = sqlite3.connect(src).execute(
                "SELECT avg(length(payload)) FROM events").fetchone()[0]
    o, b = median(append_rates), median(same_rates)
    so, sb = median(submit_rates), median(raw_rates)
    return [Row("append path: event + projection rows, group commit", "events/s", o, b,
                ">= 100% of 1 commit/event", o >= b,
                f"{n:,} events, batches of {BATCH} vs plain sqlite3 writing the same event "
                f"and run rows with 1 commit/event; median of {repeats}"),
            Row("whole submit via RequestHandler.handle (info)", "events/s", so, sb, "-", None,
                f"validation, dedup, request record, append; vs the event row alone with 1 "
                f"commit/event; payload ~{payload:.0f} B; median of {repeats}")]
