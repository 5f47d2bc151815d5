"""The hash chain over the event log: each event's hash covers the previous hash and
every stored column, so an edited, removed or reordered row breaks the chain."""

from __future__ import annotations

import hashlib

GENESIS = bytes(32)


def chain_hash(prev: bytes, seq: int, stream: str, version: int, type_name: str,
               schema_version: int, payload: bytes, caused_by: str, correlation_id: str,
               recorded_at: float) -> bytes:
    head = "\x1f".join((str(seq), stream, str(version), type_name, str(schema_version),
                        caused_by, correlation_id, repr(float(recorded_at))))
    h = hashlib.sha256(prev)
    h.update(head.encode("utf-8"))
    h.update(b"\x1e")
    h.update(payload)
    return h.digest()
