"""The storage layout that keeps pages per commit low: migration 004 from the first
layout, compact stored replies and their pruning, time-ordered ids."""

from __future__ import annotations

import sqlite3

from core.clock import FakeClock
from core.ids import RunIds, is_run_id, new_request_id
from core.projection import RUN_COLUMNS
from services.registry import replylog
from services.registry.handlers import RequestHandler
from services.registry.migrations import connect, migrate
from eventstore.compare import first_difference
from eventstore.rebuild import rebuild
from eventstore.tables import projection_seq
from tests.unit.workload import open_registry, run_workload


def _to_first_layout(conn: sqlite3.Connection) -> None:
    """Turn a current database back into the layout migrations 001-003 made."""
    cols = ", ".join(RUN_COLUMNS)
    conn.executescript(f"""
        BEGIN;
        ALTER TABLE runs RENAME TO runs_new;
        DROP INDEX runs_id; DROP INDEX runs_identity;
        DROP INDEX runs_status;
        CREATE TABLE runs ({", ".join(
            f"{c} INTEGER" if c in ("submitted_seq", "last_seq") else f"{c}"
            for c in RUN_COLUMNS).replace("run_id", "run_id TEXT PRIMARY KEY NOT NULL", 1)});
        INSERT INTO runs ({cols}) SELECT {cols} FROM runs_new ORDER BY run_id DESC;
        DROP TABLE runs_new;
        CREATE UNIQUE INDEX runs_digest ON runs (digest);
        CREATE INDEX runs_status ON runs (status, submitted_seq);
        CREATE INDEX runs_submitted ON runs (submitted_seq);
        CREATE INDEX requests_at ON requests (at);
        CREATE TABLE projection_state (name TEXT PRIMARY KEY, last_seq INTEGER);
        INSERT INTO projection_state VALUES ('main', (SELECT MAX(seq) FROM events));
        DELETE FROM _migrations WHERE name = '004_fewer_pages_per_commit';
        COMMIT;
    """)


def test_migration_004_keeps_every_run_and_the_log_stays_replayable(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    conn, registry, clock = open_registry(path)
    run_workload(registry, clock, commands=400, seed=11)
    before = sorted(conn.execute("SELECT * FROM runs").fetchall())
    head = registry.log.head_seq
    _to_first_layout(conn)
    conn.close()

    conn = connect(path)
    assert migrate(conn) == ["004_fewer_pages_per_commit"]
    pk = [r[1] for r in conn.execute("PRAGMA table_info(runs)") if r[5]]
    assert pk == ["submitted_seq"]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "projection_state" not in tables and "requests_at" not in tables
    assert "runs_v1" not in tables and {"runs_id", "runs_identity", "runs_status"} <= tables
    after = conn.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs").fetchall()
    assert sorted(after) == before
    assert projection_seq(conn) == head
    scratch = sqlite3.connect(str(tmp_path / "rebuilt.db"), isolation_level=None)
    rebuild(conn, scratch)
    assert first_difference(conn, scratch) is None
    # and the migrated registry goes on: listing is in submission order
    registry = RequestHandler(conn, FakeClock(), path)
    conn.execute("BEGIN IMMEDIATE")
    out = registry.handle("submit", {"config": {"seed": 424242}}, "after-004", "test")
    conn.execute("COMMIT")
    assert out.reply["ok"], out.reply
    newest = registry.handle("list_runs", {"limit": 1}, "q", "test").reply["result"]["runs"]
    assert newest[0]["run_id"] == out.reply["result"]["run"]["run_id"]


def test_a_retry_gets_the_run_as_it_is_now_from_a_compact_record(tmp_path) -> None:
    conn, registry, clock = open_registry(str(tmp_path / "events.db"))
    conn.execute("BEGIN IMMEDIATE")
    first = registry.handle("submit", {"config": {"seed": 1}}, "req-a", "test").reply
    conn.execute("COMMIT")
    stored = conn.execute("SELECT reply FROM requests WHERE request_id = 'req-a'").fetchone()[0]
    assert len(stored) < 120, len(stored)  # the run's id, not its ~1 KB view
    run_id = first["result"]["run"]["run_id"]
    conn.execute("BEGIN IMMEDIATE")
    registry.handle("request_cancel", {"run_id": run_id, "requested_by": "me"}, "c", "test")
    head = registry.log.head_seq
    again = registry.handle("submit", {"config": {"seed": 1}}, "req-a", "test").reply
    conn.execute("COMMIT")
    assert again["result"]["created"] is True
    assert again["result"]["run"]["run_id"] == run_id
    assert again["result"]["run"]["status"] == "CANCELLED"  # as it is now
    assert registry.log.head_seq == head  # the retry appended nothing


def test_pruning_deletes_only_replies_older_than_the_cutoff(tmp_path) -> None:
    conn, registry, clock = open_registry(str(tmp_path / "events.db"))
    log = replylog.ReplyLog(conn, lambda run_id: None)
    for i in range(10):
        log.record(f"r{i}", "finish", {"ok": True, "result": {"events": [i]}}, at=100.0 + i)
    assert replylog.prune(conn, 105.0) == 5
    left = [r[0] for r in conn.execute("SELECT request_id FROM requests ORDER BY rowid")]
    assert left == [f"r{i}" for i in range(5, 10)]
    assert log.find("r7") == ("finish", {"ok": True, "result": {"events": [7]}})
    assert replylog.prune(conn, 1e9) == 5 and log.find("r9") is None


def test_run_ids_grow_even_when_the_clock_goes_back() -> None:
    now = [1_800_000_000_000]
    make = RunIds(now_ms=lambda: now[0])
    ids = [make() for _ in range(300)]  # more than one millisecond holds
    now[0] -= 60_000
    ids += [make() for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(is_run_id(i) for i in ids)
    later = RunIds(after=ids[-1], now_ms=lambda: now[0])()
    assert later > ids[-1]


def test_request_ids_sort_by_time() -> None:
    a = new_request_id()
    b = new_request_id()
    assert len(a) == 27 and a[:11] <= b[:11] and a != b


def test_a_retried_claim_gets_its_first_answer_not_a_later_cancel(tmp_path) -> None:
    """The dispatcher takes a claim's last_seq as what it has seen of the run: a retry
    must not fold in a cancel recorded after the claim (it would never act on it)."""
    conn, registry, clock = open_registry(str(tmp_path / "events.db"))
    conn.execute("BEGIN IMMEDIATE")
    run_id = registry.handle("submit", {"config": {"seed": 3, "resources": {"gpus": 1}}},
                             "s", "test").reply["result"]["run"]["run_id"]
    claim = {"run_id": run_id, "gpu_uuids": ["GPU-0"], "claimed_by": "dispatcher"}
    first = registry.handle("claim_gpus", claim, "claim-1", "dispatcher").reply
    registry.handle("request_cancel", {"run_id": run_id, "requested_by": "me"}, "c", "cli")
    again = registry.handle("claim_gpus", claim, "claim-1", "dispatcher").reply
    conn.execute("COMMIT")
    assert again == first
    assert again["result"]["run"]["last_seq"] < registry.log.head_seq
    assert not again["result"]["run"]["cancel_requested_by"]


def test_a_submit_walks_past_run_ids_already_taken(tmp_path) -> None:
    path = str(tmp_path / "events.db")
    conn = connect(path)
    migrate(conn)
    ids = iter(["r000000000001"] * 4 + ["r000000000002"])
    registry = RequestHandler(conn, FakeClock(), path, make_run_id=lambda: next(ids))
    conn.execute("BEGIN IMMEDIATE")
    first = registry.handle("submit", {"config": {"seed": 1}}, "a", "test").reply
    second = registry.handle("submit", {"config": {"seed": 2}}, "b", "test").reply
    conn.execute("COMMIT")
    assert first["result"]["run"]["run_id"] == "r000000000001"
    assert second["ok"] and second["result"]["run"]["run_id"] == "r000000000002"
    assert registry.log.head_seq == 2


def test_a_run_stored_under_the_legacy_digest_is_still_a_duplicate(tmp_path, monkeypatch) -> None:
    """Runs whose digest was computed before whole floats in hyperparameters were read
    as integers are found again by a resubmission of the same config."""
    import hashlib

    from core import commands
    from core.digest import canonical_json

    conn, registry, clock = open_registry(str(tmp_path / "events.db"))
    assert registry.legacy_until == 0  # a log begun under the rule: no second lookup
    config = {"seed": 5, "hyperparameters": {"gamma": 1.0}}
    with monkeypatch.context() as m:  # the old digest: the canonical JSON as given
        m.setattr(commands, "config_digest",
                  lambda cfg: hashlib.sha256(canonical_json(cfg).encode()).hexdigest())
        conn.execute("BEGIN IMMEDIATE")
        first = registry.handle("submit", {"config": config}, "old-1", "t").reply
        conn.execute("COMMIT")
    # That log, upgraded: migration 005 marks where the rule began.
    conn.execute("DROP TABLE digest_rule")
    conn.execute("DELETE FROM _migrations WHERE name = '005_digest_rule'")
    assert migrate(conn) == ["005_digest_rule"]
    registry = RequestHandler(conn, clock, str(tmp_path / "events.db"),
                        make_run_id=registry.make_run_id)
    assert registry.legacy_until == registry.log.head_seq == 1
    conn.execute("BEGIN IMMEDIATE")
    again = registry.handle("submit", {"config": config}, "new-1", "t").reply
    struct = registry.handle("submit", {"config": {**config, "hyperparameters": {"gamma": 1}}},
                             "new-2", "t").reply
    conn.execute("COMMIT")
    assert first["result"]["created"] is True
    assert again["result"] == {**again["result"], "created": False}
    assert again["result"]["run"]["run_id"] == first["result"]["run"]["run_id"]
    # The Struct form (gamma 1) has the new digest of gamma 1.0: the new run it makes is
    # the same config under the new digest, and a JSON resubmission now finds that one.
    assert struct["result"]["created"] is True
    conn.execute("BEGIN IMMEDIATE")
    third = registry.handle("submit", {"config": config}, "new-3", "t").reply
    conn.execute("COMMIT")
    assert third["result"]["created"] is False
    assert third["result"]["run"]["run_id"] == struct["result"]["run"]["run_id"]
    conn.close()
