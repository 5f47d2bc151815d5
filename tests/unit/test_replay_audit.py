"""`trainer replay` and the audit (eventstore/audit.py) on small logs written by the
registry's real code in a temp folder, then changed with plain sqlite3 (triggers
dropped, hashes recomputed) as a tamperer, or a newer version, would."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result

from bus.codec import pack, unpack
from core.chain import GENESIS, chain_hash
from eventstore import audit
from eventstore.anchor import anchor_path, read_anchor, write_anchor
from eventstore.rebuild import rebuild
from tests.unit.workload import open_registry
from trainer.cli.replay import replay

pytestmark = pytest.mark.timeout(30)
START = 1_700_000_000.0   # FakeClock's wall time; every command moves it by 10 s
CONFIG = {"env": "CartPole-v1", "worker": "cartpole"}


@pytest.fixture
def log(tmp_path: Path) -> Iterator[str]:
    """events.db with two runs (r000000000000 finished, r000000000001 pending) and an
    anchor at its head."""
    db = str(tmp_path / "events.db")
    conn, registry, clock = open_registry(db)
    try:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("submit", {"config": {**CONFIG, "seed": 1}}),
            ("submit", {"config": {**CONFIG, "seed": 2, "name": "x" * 150}}),
            ("claim_gpus", {"run_id": "r000000000000", "gpu_uuids": ["GPU-0"],
                            "claimed_by": "d"}),
            ("record_started", {"run_id": "r000000000000", "pid": 42, "pid_start_time": 1.0}),
            ("finish", {"run_id": "r000000000000", "outcome": "completed", "exit_code": 0}),
        ]
        for n, (method, args) in enumerate(calls):
            clock.advance(10)
            conn.execute("BEGIN IMMEDIATE")
            out = registry.handle(method, args, f"req-{n}", "test")
            conn.execute("COMMIT")
            assert out.reply["ok"], out.reply
        write_anchor(anchor_path(db), *registry.log.mark())
    finally:
        conn.close()
    yield db


def run(*args: str) -> Result:
    return CliRunner().invoke(replay, list(args))


def tamper(db: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    return conn


def rehash(conn: sqlite3.Connection, db: str) -> None:
    """Recompute every hash in order and move the anchor to the new head: a log that
    is whole as far as the chain can tell (as one written by a newer version)."""
    prev, seq = GENESIS, 0
    for row in conn.execute("SELECT seq, stream, version, type, schema_version, payload, "
                            "caused_by, correlation_id, recorded_at FROM events ORDER BY seq"
                            ).fetchall():
        prev, seq = chain_hash(prev, *row), row[0]
        conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (prev, seq))
    write_anchor(anchor_path(db), seq, prev)


def seq_of(db: str, type_name: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT MIN(seq) FROM events WHERE type = ?",
                            (type_name,)).fetchone()[0]
    finally:
        conn.close()


def test_the_untouched_log_verifies(log: str) -> None:
    got = run("--db", log, "--verify")
    assert got.exit_code == 0 and "chain intact" in got.output, got.output


# --- 2. an event of an unknown schema version ----------------------------------------

@pytest.mark.parametrize("flags", [["--verify"], ["--until-seq", "6"],
                                   ["--run", "r000000000000"]])
def test_an_unknown_schema_version_is_named_not_a_traceback(log: str, flags: list[str]) -> None:
    seq = seq_of(log, "RunStarted")
    conn = tamper(log)
    try:
        conn.execute("UPDATE events SET schema_version = 9 WHERE seq = ?", (seq,))
        rehash(conn, log)
    finally:
        conn.close()
    got = run("--db", log, *flags)
    assert got.exit_code == 1, got.output
    assert isinstance(got.exception, SystemExit), got.exception   # no traceback
    assert f"seq {seq} (RunStarted v9)" in got.output, got.output


# --- 3. --run shows what the projections see --------------------------------------------

def test_run_history_shows_the_upcast_payload(log: str) -> None:
    conn = tamper(log)
    try:
        (payload,) = conn.execute("SELECT payload FROM events WHERE seq = 1").fetchone()
        old = unpack(payload)
        del old["submitted_by"]   # RunSubmitted v1 had no submitted_by
        conn.execute("UPDATE events SET schema_version = 1, payload = ? WHERE seq = 1",
                     (pack(old),))
        rehash(conn, log)
    finally:
        conn.close()
    got = run("--db", log, "--run", "r000000000000")
    assert got.exit_code == 0, got.output
    first = got.output.splitlines()[0]
    assert "RunSubmitted" in first and "submitted_by='unknown'" in first, first


# --- 4. no anchor: a cut tail cannot be seen -------------------------------------------

def cut_tail_and_anchor(db: str, keep: int) -> None:
    """Delete events after ``keep`` and events.anchor, and make the projections those of
    the shorter log, as a careful tamperer would."""
    os.remove(anchor_path(db))
    scratch = db + ".scratch"
    src = sqlite3.connect(db)
    dst = sqlite3.connect(scratch, isolation_level=None)
    try:
        rebuild(src, dst, until_seq=keep)
    finally:
        src.close()
        dst.close()
    conn = tamper(db)
    try:
        conn.execute("DELETE FROM events WHERE seq > ?", (keep,))
        conn.execute("ATTACH DATABASE ? AS cut", (scratch,))
        for table in ("runs", "gpu_slots", "artifacts"):
            conn.execute(f"DELETE FROM {table}")
            conn.execute(f"INSERT INTO {table} SELECT * FROM cut.{table}")
        conn.execute("DETACH DATABASE cut")
    finally:
        conn.close()


def test_without_an_anchor_a_cut_tail_is_not_called_intact(log: str, capsys) -> None:
    cut_tail_and_anchor(log, keep=3)
    got = run("--db", log, "--verify")
    assert got.exit_code == 1, got.output
    assert "truncation could not be checked" in got.output and "--no-anchor-ok" in got.output
    accepted = run("--db", log, "--verify", "--no-anchor-ok")
    assert accepted.exit_code == 0, accepted.output
    assert "ok: 3 events" in accepted.output
    assert "truncation could not be checked" in accepted.output
    assert audit.main(["--db", log]) == 1
    assert "truncation could not be checked" in capsys.readouterr().err
    assert audit.main(["--db", log, "--no-anchor-ok"]) == 0


# --- 5. a projection mismatch names table, key and column --------------------------------

def test_a_projection_mismatch_names_table_key_and_column(log: str) -> None:
    conn = sqlite3.connect(log, isolation_level=None)
    try:
        conn.execute("UPDATE runs SET priority = 7 WHERE run_id = 'r000000000000'")
    finally:
        conn.close()
    got = run("--db", log, "--verify")
    assert got.exit_code == 1
    message = got.output.strip()
    assert ("table runs, key 'r000000000000', column priority: live=7 rebuilt=0"
            in message), message


def test_a_long_differing_value_is_shortened(log: str) -> None:
    conn = sqlite3.connect(log, isolation_level=None)
    try:
        conn.execute("UPDATE runs SET config = config || ' ' WHERE run_id = 'r000000000001'")
    finally:
        conn.close()
    got = run("--db", log, "--verify")
    assert got.exit_code == 1
    message = got.output.strip()
    assert "table runs, key 'r000000000001', column config: live='" in message, message
    assert "chars)" in message and len(message) < 300, message


def test_a_row_missing_from_the_live_table_is_named(log: str) -> None:
    conn = sqlite3.connect(log, isolation_level=None)
    try:
        conn.execute("DELETE FROM runs WHERE run_id = 'r000000000001'")   # still pending
    finally:
        conn.close()
    got = run("--db", log, "--verify")
    assert got.exit_code == 1
    assert "table runs, key 'r000000000001': the row is missing in the live table" \
        in got.output, got.output


# --- 7. --until-seq and --until-time ---------------------------------------------------

def test_until_is_refused_naming_the_two_options(log: str) -> None:
    got = run("--db", log, "--until", "1796620916")
    assert got.exit_code == 2
    assert "--until-seq" in got.output and "--until-time" in got.output, got.output


def test_until_seq_and_until_time_are_apart(log: str) -> None:
    by_seq = run("--db", log, "--until-seq", "2")
    assert by_seq.exit_code == 0 and "state after seq 2 " in by_seq.output, by_seq.output
    # A whole unix time: the state after the last event recorded at or before it.
    third = int(START + 30)
    by_time = run("--db", log, "--until-time", str(third))
    assert by_time.exit_code == 0 and "state after seq 3 " in by_time.output, by_time.output
    in_the_future = run("--db", log, "--until-time", "1796620916")
    assert "state after seq 6 " in in_the_future.output, in_the_future.output
    iso = run("--db", log, "--until-time", "2023-11-14T22:13:40+00:00")  # START + 20
    assert "state after seq 2 " in iso.output, iso.output
    both = run("--db", log, "--until-seq", "1", "--until-time", "1")
    assert both.exit_code == 2 and "not both" in both.output
    bad = run("--db", log, "--until-time", "yesterday")
    assert bad.exit_code == 2 and "--until-time" in bad.output


def test_anchor_fixture_is_at_the_head(log: str) -> None:
    anchor = read_anchor(anchor_path(log))
    assert anchor is not None and anchor[0] == 6
