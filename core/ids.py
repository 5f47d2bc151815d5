"""Identifiers. Run ids are fixed-length so that bus topic prefixes never collide.

Both kinds grow with time: an id that sorts after the previous one lands on the last
page of its B-tree index, so a commit rewrites one hot index page instead of one
random page per new run or request (see docs/EVENTLOG.md, "Pages per commit").
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Callable, NewType, Optional

RunId = NewType("RunId", str)
RequestId = NewType("RequestId", str)

RUN_ID_RE = re.compile(r"\Ar[0-9a-f]{12}\Z")  # \Z, not $: "$" also matches before a final "\n"


_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_PER_MS = 128  # run ids one millisecond can hold before borrowing from the next


class RunIds:
    """Run ids from one writer (the registry): ``r`` + 12 hex digits of
    (milliseconds since 2024) * 128 + a counter, strictly increasing, each after
    ``after`` (the largest id already stored), whatever the clock does."""

    def __init__(self, after: Optional[str] = None,
                 now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.last = int(after[1:], 16) if after and is_run_id(after) else -1
        self.now_ms = now_ms

    def __call__(self) -> RunId:
        self.last = max((self.now_ms() - _EPOCH_MS) * _PER_MS, self.last + 1)
        return RunId(f"r{self.last % (1 << 48):012x}")


def new_request_id() -> RequestId:
    """27 hex digits: the time in ~1 ms units, then 64 random bits (an id is a
    request's identity for a day: two alike would answer one with the other's reply)."""
    return RequestId(f"{time.time_ns() >> 20:011x}{secrets.token_hex(8)}")


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and RUN_ID_RE.fullmatch(value) is not None


def run_stream(run_id: str) -> str:
    """The event-log stream that holds one run's events."""
    return f"run-{run_id}"

