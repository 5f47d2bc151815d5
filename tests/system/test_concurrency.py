"""Many client processes at once against one registry: group commit, digest
idempotency under races, and a log that stays gapless and verifiable."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import defaultdict

import pytest

from tests.system.stack import Stack
from tests.fixtures.clients import start_submitters
from tests.helpers import REPO, wait_until

PROCESSES = 8
PER_PROCESS = 300   # every other config is shared by all processes


def audit(db_path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventstore.audit", "--db", db_path],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def read_log(db_path: str) -> tuple[list[int], list[tuple[str, str]], list[str]]:
    """(seqs in order, (run_id, digest) of every run, every event type) from events.db."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
        runs = conn.execute("SELECT run_id, digest FROM runs").fetchall()
        types = [r[0] for r in conn.execute("SELECT type FROM events ORDER BY seq")]
    finally:
        conn.close()
    return seqs, runs, types


@pytest.mark.timeout(120)
def test_eight_processes_submitting_with_shared_configs(stack: Stack) -> None:
    status = stack.subscriber("status.registry")
    group = start_submitters(stack.env, stack.settings.home, PROCESSES, PER_PROCESS)
    try:
        group.go()
        group.finish(timeout=100)
    finally:
        group.kill()
    acks = group.acks()
    assert len(acks) == PROCESSES * PER_PROCESS

    by_key: dict[str, set[str]] = defaultdict(set)
    created: dict[str, int] = defaultdict(int)
    for ack in acks:
        by_key[ack["key"]].add(ack["run_id"])
        created[ack["key"]] += ack["created"]
    shared = (PER_PROCESS + 1) // 2
    distinct = shared + PROCESSES * (PER_PROCESS - shared)
    assert len(by_key) == distinct
    split = {k: ids for k, ids in by_key.items() if len(ids) != 1}
    assert not split, f"one config got several run ids: {list(split.items())[:3]}"
    assert set(created.values()) == {1}, "every config is created exactly once"
    assert stack.client().call("ping")["head_seq"] == distinct

    def counters() -> dict | None:
        msg = status.recv(200)
        if msg is None or msg.topic != "status.registry":
            return None
        c = msg.envelope.payload["counters"]
        return c if c["requests"] >= PROCESSES * PER_PROCESS else None
    seen = wait_until(counters, 10, message="a registry status after the storm")
    assert seen["largest_batch"] > 1, "the submits never shared a batch: nothing raced"
    assert seen["errors"] == 0

    assert stack.registry.stop() == 0
    seqs, runs, types = read_log(stack.settings.db_path)
    assert seqs == list(range(1, distinct + 1))
    assert set(types) == {"RunSubmitted"}
    assert len(runs) == distinct
    assert len({digest for _, digest in runs}) == len(runs), "two runs share a digest"
    assert {run_id for run_id, _ in runs} == {a["run_id"] for a in acks}
    result = audit(stack.settings.db_path)
    assert result.returncode == 0, result.stderr
    assert f"ok: {distinct} events" in result.stdout


@pytest.mark.timeout(60)
def test_eight_processes_submitting_the_same_config_get_one_run(stack: Stack) -> None:
    group = start_submitters(stack.env, stack.settings.home, PROCESSES, 3, "--same")
    try:
        group.go()
        group.finish(timeout=40)
    finally:
        group.kill()
    acks = group.acks()
    assert len(acks) == PROCESSES * 3
    assert len({a["run_id"] for a in acks}) == 1
    assert sum(a["created"] for a in acks) == 1
    c = stack.client()
    assert c.call("ping")["head_seq"] == 1
    assert c.call("list_runs")["total"] == 1
    assert stack.registry.stop() == 0
    result = audit(stack.settings.db_path)
    assert result.returncode == 0, result.stderr
