"""Start-up check: the projections must be at the log's head. They are written in
the append's transaction, so they always are; a projection found behind the log
(MAX(runs.last_seq) < head, say after a hand-made restore) is caught up here with
the same functions. A migration that adds a projection table fills it itself."""

from __future__ import annotations

import sqlite3

from core.projection import changes, key_of
from eventstore.reader import iter_events
from eventstore.tables import projection_seq
from services.registry import store


def catch_up_projection(conn: sqlite3.Connection) -> int:
    start = projection_seq(conn)
    proj = store.SqlProjection(conn)
    n = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stored in iter_events(conn, after_seq=start):
            event = stored.event()
            after, extra = changes(proj.get_state(*key_of(event)), event, stored.seq,
                                   stored.recorded_at)
            proj.write(after, extra)
            n += 1
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return n
