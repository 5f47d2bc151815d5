"""The append-only event log in SQLite: gapless seq, (stream, version) uniqueness,
msgpack payloads, metadata columns and a hash chain. Only the registry writes it.

``append`` runs inside a transaction the caller opened; ``mark``/``reset`` keep the
in-memory head right when the caller rolls a savepoint back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Iterator, Optional

from bus.codec import Envelope, pack, unpack
from core.chain import GENESIS, chain_hash
from core.errors import Conflict
from core.events import Event
from core.upcasting import load_event

_COLUMNS = ("seq, stream, version, type, schema_version, payload, caused_by, "
            "correlation_id, recorded_at, hash")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    stream: str
    version: int
    type: str
    schema_version: int
    payload: bytes
    caused_by: str
    correlation_id: str
    recorded_at: float
    hash: bytes
    # the payload decoded, when the appender still has it (in memory, not a column)
    fields: Optional[dict] = field(default=None, compare=False, metadata={"column": False})

    def event(self) -> Event:
        return load_event(self.type, self.schema_version, unpack(self.payload), trusted=True)

    def envelope(self, source: str) -> Envelope:
        return Envelope(type=self.type, source=source, ts=self.recorded_at,
                        payload=self.fields if self.fields is not None else unpack(self.payload),
                        seq=self.seq, stream=self.stream,
                        stream_version=self.version, schema=self.schema_version)


class EventLog:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self.head_seq: int = row[0] if row else 0
        self.head_hash: bytes = row[1] if row else GENESIS

    def mark(self) -> tuple[int, bytes]:
        return self.head_seq, self.head_hash

    def reset(self, mark: tuple[int, bytes]) -> None:
        self.head_seq, self.head_hash = mark

    def append(self, stream: str, expected_version: int, events: list[Event], *,
               caused_by: str, correlation_id: str, at: float) -> list[StoredEvent]:
        """Append ``events`` to ``stream`` whose current version must be
        ``expected_version``. Raises Conflict if another writer got there first."""
        stored = []
        version = expected_version
        for event in events:
            version += 1
            seq = self.head_seq + 1
            fields = event.to_payload()
            payload = pack(fields)
            digest = chain_hash(self.head_hash, seq, stream, version, event.TYPE,
                                event.SCHEMA_VERSION, payload, caused_by, correlation_id, at)
            row = StoredEvent(seq, stream, version, event.TYPE, event.SCHEMA_VERSION, payload,
                              caused_by, correlation_id, at, digest, fields)
            try:
                self.conn.execute(f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                  (seq, stream, version, event.TYPE, event.SCHEMA_VERSION,
                                   payload, caused_by, correlation_id, at, digest))
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"stream {stream} is not at version {version - 1}: {exc}",
                               stream=stream, expected_version=expected_version) from None
            self.head_seq, self.head_hash = seq, digest
            stored.append(row)
        return stored

    def read(self, after_seq: int, limit: int) -> list[StoredEvent]:
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq "
                                 "LIMIT ?", (after_seq, limit)).fetchall()
        return [StoredEvent(*row) for row in rows]

    def count(self) -> int:
        return self.head_seq


def iter_events(conn: sqlite3.Connection, after_seq: int = 0,
                until_seq: Optional[int] = None, page: int = 50_000) -> Iterator[StoredEvent]:
    """Every stored event after ``after_seq`` (and up to ``until_seq``), in seq order."""
    last = after_seq
    while True:
        hi = until_seq if until_seq is not None else -1
        rows = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq > ? AND (? < 0 OR seq <= ?)"
                            " ORDER BY seq LIMIT ?", (last, hi, hi, page)).fetchall()
        if not rows:
            return
        for row in rows:
            yield StoredEvent(*row)
        last = rows[-1][0]


def stream_events(conn: sqlite3.Connection, stream: str) -> list[StoredEvent]:
    """One stream's events in version order (uses the (stream, version) index)."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE stream = ? ORDER BY version",
                        (stream,)).fetchall()
    return [StoredEvent(*row) for row in rows]


def iter_for_replay(conn: sqlite3.Connection, until_seq: Optional[int] = None,
                    page: int = 50_000) -> Iterator[tuple[int, float, Event]]:
    """(seq, recorded_at, event) for every stored event in seq order: only the columns
    a replay needs, decoded without re-checking types (the log validated them)."""
    last, hi = 0, (until_seq if until_seq is not None else -1)
    while True:
        rows = conn.execute("SELECT seq, type, schema_version, payload, recorded_at FROM events "
                            "WHERE seq > ? AND (? < 0 OR seq <= ?) ORDER BY seq LIMIT ?",
                            (last, hi, hi, page)).fetchall()
        if not rows:
            return
        for seq, type_name, schema, payload, at in rows:
            yield seq, at, load_event(type_name, schema, unpack(payload), trusted=True)
        last = rows[-1][0]


@dataclass(frozen=True)
class ChainReport:
    events: int
    first_bad_seq: Optional[int]
    reason: str

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


def verify_chain(conn: sqlite3.Connection) -> ChainReport:
    """Check that seq is gapless from 1 and that every hash matches its row."""
    prev, expected, n = GENESIS, 1, 0
    for e in iter_events(conn):
        if e.seq != expected:
            return ChainReport(n, expected, f"seq {expected} is missing (next is {e.seq})")
        digest = chain_hash(prev, e.seq, e.stream, e.version, e.type, e.schema_version,
                            e.payload, e.caused_by, e.correlation_id, e.recorded_at)
        if digest != e.hash:
            return ChainReport(n, e.seq, f"event {e.seq} ({e.type} in {e.stream}) does not "
                                         "match its hash: the row was changed")
        prev, expected, n = e.hash, expected + 1, n + 1
    return ChainReport(n, None, "")
