"""The registry's WAL checkpoint logs the frames of its pass (a TRUNCATE that resets
the WAL returns 0, 0 itself), and a new log gets its events.anchor with its first
event rather than a checkpoint interval later."""

from __future__ import annotations

import io
import json
import logging
import os
from typing import Iterator

import pytest

from runtime import logs
from eventstore.anchor import read_anchor
from services.registry.maintenance import Checkpointer
from tests.unit.workload import open_registry

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure("INFO", out)
    yield out
    logging.getLogger("trainer").handlers.clear()


def _lines(stream: io.StringIO, event: str) -> list[dict]:
    return [d for d in map(json.loads, stream.getvalue().splitlines()) if d["event"] == event]


def _submit(conn, registry, n: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for i in range(n):
        out = registry.handle("submit", {"config": {"env": "CartPole-v1", "seed": i}},
                              f"req-{i}", "test")
        assert out.reply["ok"], out.reply
    conn.execute("COMMIT")


def test_the_checkpoint_logs_the_frames_it_copied_back(tmp_path, stream) -> None:
    db = str(tmp_path / "events.db")
    conn, registry, clock = open_registry(db)
    try:
        cp = Checkpointer(conn, 10.0, 3, clock, logs.service_logger("registry"))
        _submit(conn, registry, 20)
        assert os.path.getsize(db + "-wal") > 0
        clock.advance(10)
        cp.tick()
        (line,) = _lines(stream, "wal.checkpoint")
        assert line["busy"] == 0
        assert line["log_frames"] > 0 and line["checkpointed"] == line["log_frames"], line
        assert cp.last == (0, line["log_frames"], line["checkpointed"])
        assert os.path.getsize(db + "-wal") == 0   # still a TRUNCATE
    finally:
        conn.close()


def test_a_new_log_gets_its_anchor_with_its_first_event(tmp_path, stream) -> None:
    db = str(tmp_path / "events.db")
    anchor = str(tmp_path / "events.anchor")
    conn, registry, clock = open_registry(db)
    try:
        cp = Checkpointer(conn, 60.0, 3, clock, logs.service_logger("registry"),
                          anchor=(anchor, registry.log.mark))
        cp.tick()
        assert not os.path.exists(anchor)   # nothing to anchor yet
        _submit(conn, registry, 1)
        cp.tick()                           # long before the first checkpoint
        assert cp.runs == 0
        assert read_anchor(anchor) == (1, registry.log.head_hash.hex())
    finally:
        conn.close()
