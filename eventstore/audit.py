"""``python -m eventstore.audit [--db PATH]``: verify an event log without the
services running: the hash chain and gapless seq, then a rebuild of every projection
from seq 0 in a scratch database compared table by table with the live one.
Exits 0 when everything matches, 1 with the first difference named otherwise."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile

from core.settings import Settings
from eventstore.anchor import anchor_path, read_anchor
from eventstore.chaincheck import verify_chain
from eventstore.compare import first_difference
from eventstore.rebuild import rebuild
from eventstore.tables import projection_seq


def verify(db_path: str) -> tuple[bool, str]:
    live = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        report = verify_chain(live)
        if not report.ok:
            return False, f"hash chain broken at seq {report.first_bad_seq}: {report.reason}"
        anchor = read_anchor(anchor_path(db_path))
        if anchor is not None:
            seq, digest = anchor
            row = live.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
            if row is None or row[0].hex() != digest:
                return False, (f"the log ends at {report.events} and does not hold the head "
                               f"recorded in events.anchor (seq {seq}): its tail was "
                               "rewritten or truncated")
        recorded = projection_seq(live)
        if recorded != report.events:
            return False, (f"the projections say seq {recorded} but the log ends at "
                           f"{report.events}: events are missing (truncated log?)")
        with tempfile.TemporaryDirectory() as scratch:
            rebuilt = sqlite3.connect(os.path.join(scratch, "rebuilt.db"), isolation_level=None)
            try:
                rebuild(live, rebuilt)
                diff = first_difference(live, rebuilt)
            finally:
                rebuilt.close()
        if diff is not None:
            return False, f"projection differs from the rebuild: {diff}"
        return True, f"ok: {report.events} events, chain intact, projections match a rebuild"
    finally:
        live.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventstore.audit",
                                     description=__doc__)
    parser.add_argument("--db", help="events.db to check (default: $TRAINER_HOME/events.db)")
    args = parser.parse_args(argv)
    path = args.db or Settings.from_env(os.environ).db_path
    if not os.path.exists(path):
        print(f"no event log at {path}", file=sys.stderr)
        return 2
    ok, message = verify(path)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
