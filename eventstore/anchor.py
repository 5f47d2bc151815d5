"""``events.anchor``: the log's head (seq and hash) recorded outside events.db, beside
it. The registry writes it (at each checkpoint and at stop); the audit reads it, so
that a rewrite of the log's tail, hashes and projections all together is still caught."""

from __future__ import annotations

import json
import os

from runtime.atomicfile import atomic_file

ANCHOR_NAME = "events.anchor"


def anchor_path(db_path: str) -> str:
    return os.path.join(os.path.dirname(db_path), ANCHOR_NAME)


def write_anchor(path: str, seq: int, digest: bytes) -> None:
    with atomic_file(path, encoding="ascii") as fh:
        json.dump({"seq": seq, "hash": digest.hex()}, fh)


def read_anchor(path: str) -> tuple[int, str] | None:
    """(seq, hash hex) or None when there is no readable anchor."""
    try:
        with open(path, encoding="ascii") as fh:
            data = json.load(fh)
        return int(data["seq"]), str(data["hash"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
