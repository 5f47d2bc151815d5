"""The events table enforces append-only and gapless seq by itself; the chain detects
edits; upcasting turns old payloads into current events."""

from __future__ import annotations

import sqlite3

import pytest

from bus.codec import pack
from core import events as ev
from core.errors import Conflict, ValidationError
from core.upcasting import UPCASTERS, load_event, upcast
from eventstore.chaincheck import verify_chain
from services.registry.eventlog import EventLog
from services.registry.migrations import connect, migrate


@pytest.fixture
def log(tmp_path) -> EventLog:
    conn = connect(str(tmp_path / "events.db"))
    migrate(conn)
    elog = EventLog(conn)
    conn.execute("BEGIN")
    elog.append("run-r1", 0, [ev.RunSubmitted("r1", "d", {"a": 1}, 0, "me"),
                              ev.RunWaiting("r1", "busy")], caused_by="t", correlation_id="c",
                at=1.0)
    conn.execute("COMMIT")
    return elog


def test_update_and_delete_are_refused_by_the_database(log: EventLog) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log.conn.execute("UPDATE events SET type = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log.conn.execute("DELETE FROM events WHERE seq = 2")
    assert log.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2


def test_a_gap_in_seq_is_refused_by_the_database(log: EventLog) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="previous seq"):
        log.conn.execute("INSERT INTO events VALUES (5, 's', 1, 'RunWaiting', 1, x'80', '', '', "
                         "1.0, x'00')")


def test_a_stale_expected_version_is_a_conflict(log: EventLog) -> None:
    log.conn.execute("BEGIN")
    with pytest.raises(Conflict):
        log.append("run-r1", 1, [ev.RunWaiting("r1", "x")], caused_by="t", correlation_id="c",
                   at=2.0)
    log.conn.execute("ROLLBACK")


def test_chain_detects_an_edited_row(log: EventLog) -> None:
    assert verify_chain(log.conn).ok
    log.conn.execute("DROP TRIGGER events_no_update")
    log.conn.execute("UPDATE events SET payload = ? WHERE seq = 2",
                     (pack({"run_id": "r1", "reason": "edited"}),))
    report = verify_chain(log.conn)
    assert report.first_bad_seq == 2 and "changed" in report.reason


def test_upcaster_fills_fields_added_in_v2() -> None:
    assert ("RunSubmitted", 1) in UPCASTERS
    v1 = {"run_id": "r1", "digest": "d", "config": {}, "priority": 0}
    assert upcast("RunSubmitted", 1, v1)["submitted_by"] == "unknown"
    event = load_event("RunSubmitted", 1, v1)
    assert isinstance(event, ev.RunSubmitted) and event.submitted_by == "unknown"


def test_unknown_schema_versions_are_refused() -> None:
    with pytest.raises(ValidationError):
        load_event("RunSubmitted", 3, {})
    with pytest.raises(ValidationError):
        load_event("NoSuchEvent", 1, {})
