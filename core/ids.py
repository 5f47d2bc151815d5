"""Identifiers. Run ids are fixed-length so that bus topic prefixes never collide."""

from __future__ import annotations

import re
import secrets
from typing import NewType

RunId = NewType("RunId", str)
RequestId = NewType("RequestId", str)

RUN_ID_RE = re.compile(r"^r[0-9a-f]{12}$")


def new_run_id() -> RunId:
    return RunId("r" + secrets.token_hex(6))


def new_request_id() -> RequestId:
    return RequestId(secrets.token_hex(8))


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and bool(RUN_ID_RE.match(value))


def run_stream(run_id: str) -> str:
    """The event-log stream that holds one run's events."""
    return f"run-{run_id}"
