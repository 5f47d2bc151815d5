"""Projections against real SQLite: the live result equals a rebuild from seq 0 and
equals the pure fold of the events."""

from __future__ import annotations

import os
import sqlite3

from core.projection import run_row
from core.runstate import fold
from eventstore.chaincheck import verify_chain
from eventstore.compare import first_difference
from eventstore.rebuild import rebuild
from eventstore.reader import iter_events
from eventstore.tables import load_run, projection_seq
from tests.unit.workload import open_registry, run_workload


def test_rebuild_reproduces_the_live_projection_on_thousands_of_mixed_events(tmp_path) -> None:
    conn, registry, clock = open_registry(str(tmp_path / "events.db"))
    counts = run_workload(registry, clock, commands=6000, seed=3)
    head = registry.log.head_seq
    assert head > 3000, counts
    for kind in ("claim_gpus", "record_started", "finish", "request_cancel",
                 "register_artifact", "finish:error"):
        assert counts.get(kind, 0) > 10, f"workload did not exercise {kind}: {counts}"
    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    assert rebuild(conn, scratch, flush_every=700) == head
    assert first_difference(conn, scratch) is None
    assert projection_seq(scratch) == head == projection_seq(conn)
    # and the live tables are the pure fold of the log
    folded = fold((e.seq, e.recorded_at, e.event()) for e in iter_events(conn))
    for run_id, state in folded.items():
        assert run_row(load_run(conn, run_id)) == run_row(state)
    assert verify_chain(conn).ok


def test_first_difference_names_the_row(tmp_path) -> None:
    conn, registry, clock = open_registry(str(tmp_path / "events.db"))
    run_workload(registry, clock, commands=200, seed=5)
    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    rebuild(conn, scratch)
    victim = conn.execute("SELECT run_id FROM runs ORDER BY run_id LIMIT 1 OFFSET 3").fetchone()[0]
    conn.execute("UPDATE runs SET priority = priority + 1 WHERE run_id = ?", (victim,))
    diff = first_difference(conn, scratch)
    assert diff is not None and diff.table == "runs" and victim in diff.key


def test_rebuild_until_seq_gives_the_state_at_that_moment(tmp_path) -> None:
    conn, registry, clock = open_registry(str(tmp_path / "events.db"))
    run_workload(registry, clock, commands=300, seed=9)
    until = registry.log.head_seq // 2
    scratch = sqlite3.connect(str(tmp_path / "half.db"), isolation_level=None)
    assert rebuild(conn, scratch, until_seq=until) == until
    folded = fold((e.seq, e.recorded_at, e.event()) for e in iter_events(conn, until_seq=until))
    assert scratch.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == len(folded)
    assert os.path.exists(tmp_path / "half.db")
