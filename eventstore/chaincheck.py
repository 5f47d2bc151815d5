"""Checking the hash chain of the stored events: seq gapless from 1, every row's hash
that of its columns chained to the previous one (core.chain)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Optional

from core.chain import GENESIS, chain_hash
from eventstore.reader import iter_events


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
