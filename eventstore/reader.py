"""Reading stored events: the ``events`` table's rows as ``StoredEvent``, in seq
order, one stream, or decoded for a replay. Nothing here writes."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from bus.codec import Envelope, unpack
from core.errors import OrchestratorError
from core.events import Event
from core.upcasting import load_event, upcast

COLUMNS = ("seq, stream, version, type, schema_version, payload, caused_by, "
           "correlation_id, recorded_at, hash")


class UnreadableEvent(Exception):
    """A stored event this code cannot read (an unknown type or schema version, a
    payload that is not what its type expects): named by seq, type and version."""

    def __init__(self, seq: int, type_name: str, schema_version: int, reason: str) -> None:
        super().__init__(f"event seq {seq} ({type_name} v{schema_version}) cannot be read: "
                         f"{reason}")
        self.seq = seq
        self.type = type_name
        self.schema_version = schema_version
        self.reason = reason


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

    def current_payload(self) -> dict[str, Any]:
        """The payload as the projections see it: upcast to the type's current schema
        version (core.upcasting). Raises UnreadableEvent naming the event."""
        try:
            return upcast(self.type, self.schema_version, unpack(self.payload))
        except OrchestratorError as exc:
            raise UnreadableEvent(self.seq, self.type, self.schema_version,
                                  exc.message) from None

    def envelope(self, source: str) -> Envelope:
        return Envelope(type=self.type, source=source, ts=self.recorded_at,
                        payload=self.fields if self.fields is not None else unpack(self.payload),
                        seq=self.seq, stream=self.stream,
                        stream_version=self.version, schema=self.schema_version)


def events_after(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[StoredEvent]:
    """At most ``limit`` events after ``after_seq``, in seq order."""
    rows = conn.execute(f"SELECT {COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                        (after_seq, limit)).fetchall()
    return [StoredEvent(*row) for row in rows]


def iter_events(conn: sqlite3.Connection, after_seq: int = 0,
                until_seq: Optional[int] = None, page: int = 50_000) -> Iterator[StoredEvent]:
    """Every stored event after ``after_seq`` (and up to ``until_seq``), in seq order."""
    last = after_seq
    while True:
        hi = until_seq if until_seq is not None else -1
        rows = conn.execute(f"SELECT {COLUMNS} FROM events WHERE seq > ? AND (? < 0 OR seq <= ?)"
                            " ORDER BY seq LIMIT ?", (last, hi, hi, page)).fetchall()
        if not rows:
            return
        for row in rows:
            yield StoredEvent(*row)
        last = rows[-1][0]


def stream_events(conn: sqlite3.Connection, stream: str) -> list[StoredEvent]:
    """One stream's events in version order (uses the (stream, version) index)."""
    rows = conn.execute(f"SELECT {COLUMNS} FROM events WHERE stream = ? ORDER BY version",
                        (stream,)).fetchall()
    return [StoredEvent(*row) for row in rows]


def iter_for_replay(conn: sqlite3.Connection, until_seq: Optional[int] = None,
                    page: int = 50_000) -> Iterator[tuple[int, float, Event]]:
    """(seq, recorded_at, event) for every stored event in seq order: only the columns
    a replay needs, decoded without re-checking types (the log validated them). An
    event that cannot be read (an unknown schema version, say) raises UnreadableEvent."""
    last, hi = 0, (until_seq if until_seq is not None else -1)
    while True:
        rows = conn.execute("SELECT seq, type, schema_version, payload, recorded_at FROM events "
                            "WHERE seq > ? AND (? < 0 OR seq <= ?) ORDER BY seq LIMIT ?",
                            (last, hi, hi, page)).fetchall()
        if not rows:
            return
        for seq, type_name, schema, payload, at in rows:
            try:
                event = load_event(type_name, schema, unpack(payload), trusted=True)
            except OrchestratorError as exc:
                raise UnreadableEvent(seq, type_name, schema, exc.message) from None
            yield seq, at, event
        last = rows[-1][0]
