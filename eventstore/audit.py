"""``python -m eventstore.audit [--db PATH] [--no-anchor-ok]``: verify an event log
without the services running: the hash chain and gapless seq, the head recorded in
``events.anchor``, then a rebuild of every projection from seq 0 in a scratch database
compared table by table with the live one. Exits 0 when everything matches, 1 with
the first problem named otherwise (also when there is no events.anchor to check the
log's tail against, unless --no-anchor-ok)."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile

from core.settings import Settings
from eventstore.anchor import ANCHOR_NAME, anchor_path, read_anchor
from eventstore.chaincheck import verify_chain
from eventstore.compare import first_difference
from eventstore.reader import UnreadableEvent
from eventstore.rebuild import rebuild
from eventstore.tables import projection_seq

NO_ANCHOR = (f"truncation could not be checked: no {ANCHOR_NAME} beside the log (the "
             "registry writes it after the first event, at each checkpoint and when it "
             "stops)")


def verify(db_path: str, anchor_required: bool = True) -> tuple[bool, str]:
    """(ok, message). Without a readable anchor a cut tail cannot be seen: that fails
    unless ``anchor_required`` is False, and the message says so either way."""
    live = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        report = verify_chain(live)
        if not report.ok:
            return False, f"hash chain broken at seq {report.first_bad_seq}: {report.reason}"
        anchor = read_anchor(anchor_path(db_path))
        if anchor is not None:
            seq, digest = anchor
            row = live.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
            if seq and (row is None or row[0].hex() != digest):
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
            except UnreadableEvent as exc:
                return False, f"{exc} (written by a newer version, or edited?)"
            finally:
                rebuilt.close()
        if diff is not None:
            return False, f"projection differs from the rebuild: {diff}"
        checked = f"{report.events} events, chain intact, projections match a rebuild"
        if anchor is None:
            if anchor_required:
                return False, (f"{checked}, but {NO_ANCHOR}; give --no-anchor-ok to accept "
                               "a log without one")
            return True, f"ok: {checked}; {NO_ANCHOR}"
        return True, f"ok: {checked}"
    finally:
        live.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventstore.audit",
                                     description=__doc__)
    parser.add_argument("--db", help="events.db to check (default: $TRAINER_HOME/events.db)")
    parser.add_argument("--no-anchor-ok", action="store_true",
                        help=f"accept a log without {ANCHOR_NAME} (its tail is then "
                             "not checked)")
    args = parser.parse_args(argv)
    path = args.db or Settings.from_env(os.environ).db_path
    if not os.path.exists(path):
        print(f"no event log at {path}", file=sys.stderr)
        return 2
    ok, message = verify(path, anchor_required=not args.no_anchor_ok)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
