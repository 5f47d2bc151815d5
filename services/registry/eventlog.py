"""The writing side of the append-only event log: gapless seq, (stream, version)
uniqueness, msgpack payloads, metadata columns and the hash chain. Only the registry
writes it; reading, verifying and rebuilding are in the ``eventstore`` package.

``append`` runs inside a transaction the caller opened; ``mark``/``reset`` keep the
in-memory head right when the caller rolls a savepoint back.
"""

from __future__ import annotations

import sqlite3

from bus.codec import pack
from core.chain import GENESIS, chain_hash
from core.errors import Conflict
from core.events import Event
from eventstore.reader import COLUMNS, StoredEvent, events_after


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
                self.conn.execute(f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                  (seq, stream, version, event.TYPE, event.SCHEMA_VERSION,
                                   payload, caused_by, correlation_id, at, digest))
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"stream {stream} is not at version {version - 1}: {exc}",
                               stream=stream, expected_version=expected_version) from None
            self.head_seq, self.head_hash = seq, digest
            stored.append(row)
        return stored

    def read(self, after_seq: int, limit: int) -> list[StoredEvent]:
        return events_after(self.conn, after_seq, limit)

    def count(self) -> int:
        return self.head_seq
