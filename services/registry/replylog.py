"""The reply to every mutating command, kept by request id (table ``requests``), so
that a command retried after a timeout gets its answer back instead of being
applied twice.

A stored submit reply is compact: its ``run`` view (~1 KB, the bulk of it) is kept
as the run's id and filled in again, with the run as it is now, when a retry asks
for it (``created`` is the first answer's). Every other command's reply is kept
whole: its caller acts on the run as that command left it (the dispatcher takes a
claim's ``last_seq`` as the point up to which it has seen the run's events, so a
cancel recorded after the claim must not be folded into a retried claim's answer). Rows
are pruned oldest first by rowid, which grows with time, so the table needs no index but
its primary key.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Optional

from bus.codec import pack, unpack

_RUN_REF = "run_ref"
COMPACT = frozenset({"submit"})  # the commands whose run view is kept as its id


class ReplyLog:
    def __init__(self, conn: sqlite3.Connection,
                 run_view_of: Callable[[str], Optional[dict[str, Any]]]) -> None:
        self.conn = conn
        self.run_view_of = run_view_of

    def find(self, request_id: str) -> Optional[tuple[str, dict[str, Any]]]:
        """(method, reply) stored for ``request_id``, or None."""
        row = self.conn.execute("SELECT method, reply FROM requests WHERE request_id = ?",
                                (request_id,)).fetchone()
        if row is None:
            return None
        reply = unpack(row[1])
        result = reply.get("result")
        if isinstance(result, dict) and _RUN_REF in result:
            result["run"] = self.run_view_of(result.pop(_RUN_REF))
        return row[0], reply

    def record(self, request_id: str, method: str, reply: dict[str, Any], at: float) -> None:
        result = reply.get("result")
        if method in COMPACT and isinstance(result, dict) \
                and isinstance(result.get("run"), dict):
            result = {**result, _RUN_REF: result["run"]["run_id"]}
            del result["run"]
            reply = {**reply, "result": result}
        self.conn.execute("INSERT INTO requests (request_id, method, reply, at) "
                          "VALUES (?, ?, ?, ?)", (request_id, method, pack(reply), at))


def prune(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete the replies recorded before ``cutoff``; returns how many. Walks the rowid
    from the oldest row, so its cost is the number of rows it deletes."""
    first_kept = conn.execute("SELECT rowid FROM requests WHERE at >= ? "
                              "ORDER BY rowid LIMIT 1", (cutoff,)).fetchone()
    if first_kept is None:
        return conn.execute("DELETE FROM requests").rowcount
    return conn.execute("DELETE FROM requests WHERE rowid < ?", (first_kept[0],)).rowcount
