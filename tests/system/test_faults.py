"""Faults with real processes: the registry killed mid-storm, retried request ids,
a tampered or truncated log. (Garbage on every socket: test_faults_frames.py; a second
instance and a too-old dependency: test_service_startup.py.)"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest

from bus.codec import pack, unpack
from core.chain import chain_hash
from core.errors import IllegalTransition, ValidationError
from tests.system.faults import CONFIG
from tests.system.stack import Stack
from tests.fixtures.clients import start_submitters
from tests.helpers import REPO, wait_until



def audit(db_path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventstore.audit", "--db", db_path],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def log_seqs(db_path: str) -> list[int]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()


def types_since(c: Any, after_seq: int) -> list[str]:
    return [e["type"] for e in c.call("events_since", {"after_seq": after_seq})["events"]]


def running_run(c: Any, seed: int = 7) -> str:
    run_id = c.call("submit", {"config": {**CONFIG, "seed": seed}})["run"]["run_id"]
    c.call("claim_gpus", {"run_id": run_id, "gpu_uuids": [f"GPU-{seed}"], "claimed_by": "t"})
    c.call("record_started", {"run_id": run_id, "pid": 4242, "pid_start_time": 1.5})
    return run_id


# --- 2. the registry killed with SIGKILL in a submit storm ---------------------------

@pytest.mark.timeout(120)
def test_registry_kill9_in_a_submit_storm_loses_no_acknowledged_run(stack: Stack) -> None:
    processes, per_process = 8, 300
    group = start_submitters(stack.env, stack.settings.home, processes, per_process,
                             "--timeout", "0.05", "--retries", "5", "--deadline", "60")
    pid = stack.registry.pid
    try:
        group.go()
        wait_until(lambda: group.progress(300), 30, interval=0.005,
                   message="300 acknowledged submits")
        # Freeze the registry first: every client times out and retries its request,
        # while the first attempt waits in the registry's socket. Once thawed the
        # registry reads both, so it must answer the second from its record.
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(group.all_stalled, 30, message="every client to retry")
            stalled_at = group.acked_lines()
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: group.progress(stalled_at + 400), 30, interval=0.005,
                   message="the storm to resume")
        stack.registry.kill9()
        acked_at_kill = group.acked_lines()
        stack.start_registry()
        group.finish(timeout=90)
    finally:
        group.kill()
    assert acked_at_kill < processes * per_process, "the storm was over before the kill"
    assert sum(s["retried"] for s in group.summaries) > 0, "no client had to retry"
    acks = group.acks()
    assert len(acks) == processes * per_process
    by_key: dict[str, set[str]] = defaultdict(set)
    created: dict[str, int] = defaultdict(int)
    digests: dict[str, str] = {}
    for ack in acks:
        by_key[ack["key"]].add(ack["run_id"])
        created[ack["key"]] += ack["created"]
        digests[ack["run_id"]] = ack["digest"]
    split = {k: ids for k, ids in by_key.items() if len(ids) != 1}
    assert not split, f"one config got several run ids: {list(split.items())[:3]}"
    # A retry applied a second time would have answered created=False (the digest
    # already named a run): exactly one acknowledged creation per config proves the
    # retried request ids were answered from the record.
    twice = {k: n for k, n in created.items() if n != 1}
    assert not twice, f"configs not created exactly once: {list(twice.items())[:3]}"

    c = stack.client()
    assert c.call("ping")["pid"] not in (pid, None)  # a new registry process
    for run_id, digest in digests.items():
        assert c.call("get_run", {"run_id": run_id})["run"]["digest"] == digest
    assert c.call("list_runs", {"limit": 1})["total"] == len(by_key)
    assert c.call("ping")["head_seq"] == len(by_key)

    assert stack.registry.stop() == 0
    assert log_seqs(stack.settings.db_path) == list(range(1, len(by_key) + 1))
    result = audit(stack.settings.db_path)
    assert result.returncode == 0, result.stderr


# --- 3. request-id idempotency ------------------------------------------------------

def test_same_request_id_is_applied_once(stack: Stack) -> None:
    c = stack.client()
    first = c.call("submit", {"config": CONFIG}, request_id="submit-1")
    again = c.call("submit", {"config": CONFIG}, request_id="submit-1")
    assert again == first and again["created"] is True  # the record, not the digest check

    run_id = running_run(c, seed=8)
    head = c.call("ping")["head_seq"]
    cancel = {"run_id": run_id, "requested_by": "me", "reason": "enough"}
    r1 = c.call("request_cancel", cancel, request_id="cancel-1")
    r2 = c.call("request_cancel", cancel, request_id="cancel-1")
    assert r1 == r2 and r1["events"] == [head + 1]
    assert types_since(c, head) == ["CancelRequested"]

    adopt = {"run_id": run_id, "pid": 4343, "adopted_by": "dispatcher-2"}
    a1 = c.call("record_adopted", adopt, request_id="adopt-1")
    a2 = c.call("record_adopted", adopt, request_id="adopt-1")
    assert a1 == a2 and a1["run"]["adoptions"] == 1
    assert types_since(c, head) == ["CancelRequested", "RunAdopted"]
    a3 = c.call("record_adopted", adopt)  # a new request id is a new command
    assert a3["run"]["adoptions"] == 2
    assert types_since(c, head) == ["CancelRequested", "RunAdopted", "RunAdopted"]
    with pytest.raises(ValidationError) as reused:  # an id names one request, one method
        c.call("record_adopted", adopt, request_id="cancel-1")
    assert reused.value.field == "id"
    assert types_since(c, head) == ["CancelRequested", "RunAdopted", "RunAdopted"]


@pytest.mark.timeout(60)
def test_request_id_is_remembered_across_a_registry_kill9(stack: Stack) -> None:
    c = stack.client()
    run_id = running_run(c)
    finish = {"run_id": run_id, "outcome": "cancelled", "reason": "stop", "signal": 15}
    first = c.call("finish", finish, request_id="finish-1")
    assert first["run"]["status"] == "CANCELLED"
    head = c.call("ping")["head_seq"]

    stack.registry.kill9()
    stack.start_registry()
    c2 = stack.client()
    assert c2.call("finish", finish, request_id="finish-1") == first
    assert c2.call("ping")["head_seq"] == head
    with pytest.raises(IllegalTransition):  # applied again it would be refused like this
        c2.call("finish", finish, request_id="finish-2")
    assert c2.call("ping")["head_seq"] == head
    assert stack.registry.stop() == 0
    assert audit(stack.settings.db_path).returncode == 0


# --- 4. tampering and truncation ----------------------------------------------------

def fill_and_stop(stack: Stack) -> int:
    """Seven events (three runs, one finished) plus a last RunSubmitted; returns N."""
    c = stack.client()
    run_id = c.call("submit", {"config": CONFIG})["run"]["run_id"]
    c.call("submit", {"config": {**CONFIG, "seed": 8}})
    c.call("submit", {"config": {**CONFIG, "seed": 9}})
    c.call("claim_gpus", {"run_id": run_id, "gpu_uuids": ["GPU-0"], "claimed_by": "t"})
    c.call("record_started", {"run_id": run_id, "pid": 4242, "pid_start_time": 1.5})
    c.call("finish", {"run_id": run_id, "outcome": "completed", "exit_code": 0})
    c.call("submit", {"config": {**CONFIG, "seed": 10, "priority": 5}})
    head = c.call("ping")["head_seq"]
    assert head == 8
    assert stack.registry.stop() == 0
    assert audit(stack.settings.db_path).returncode == 0
    return head


def open_rw(db_path: str) -> sqlite3.Connection:
    return sqlite3.connect(db_path, isolation_level=None)


def test_the_database_refuses_update_and_delete_on_events(stack: Stack) -> None:
    head = fill_and_stop(stack)
    conn = open_rw(stack.settings.db_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET caused_by = 'mallory' WHERE seq = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events WHERE seq = ?", (head,))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
        row = conn.execute("SELECT stream, version, type, schema_version, payload, caused_by, "
                           "correlation_id, recorded_at, hash FROM events WHERE seq = 1"
                           ).fetchone()
        with pytest.raises(sqlite3.DatabaseError, match="previous seq"):
            conn.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (head + 5, "run-rffffffffffff", *row[1:]))
    finally:
        conn.close()
    assert log_seqs(stack.settings.db_path) == list(range(1, head + 1))
    assert audit(stack.settings.db_path).returncode == 0


def _new_payload(payload: bytes) -> bytes:
    data = unpack(payload)
    data["config"]["seed"] = 1234
    return pack(data)


@pytest.mark.parametrize("column,change", [
    ("payload", _new_payload),
    ("caused_by", lambda v: "mallory"),
    ("correlation_id", lambda v: v + "x"),
    ("recorded_at", lambda v: v + 1.0),
    ("version", lambda v: v + 10),
])
def test_audit_names_the_edited_row(stack: Stack, column: str, change: Any) -> None:
    fill_and_stop(stack)
    conn = open_rw(stack.settings.db_path)
    try:
        conn.execute("DROP TRIGGER events_no_update")
        (value,) = conn.execute(f"SELECT {column} FROM events WHERE seq = 2").fetchone()
        conn.execute(f"UPDATE events SET {column} = ? WHERE seq = 2", (change(value),))
    finally:
        conn.close()
    result = audit(stack.settings.db_path)
    assert result.returncode == 1, result.stdout
    assert re.search(r"\bseq 2\b", result.stderr), result.stderr


def _rehash(conn: sqlite3.Connection, seq: int, payload: bytes) -> None:
    """Edit a payload and recompute that row's hash, as a careful forger would."""
    (prev,) = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()
    row = conn.execute("SELECT seq, stream, version, type, schema_version, caused_by, "
                       "correlation_id, recorded_at FROM events WHERE seq = ?",
                       (seq,)).fetchone()
    s, stream, version, type_, schema, caused_by, corr, at = row
    digest = chain_hash(prev, s, stream, version, type_, schema, payload, caused_by, corr, at)
    conn.execute("UPDATE events SET payload = ?, hash = ? WHERE seq = ?", (payload, digest, seq))


def test_audit_catches_a_rehashed_edit_at_the_next_link(stack: Stack) -> None:
    fill_and_stop(stack)
    conn = open_rw(stack.settings.db_path)
    try:
        conn.execute("DROP TRIGGER events_no_update")
        (payload,) = conn.execute("SELECT payload FROM events WHERE seq = 2").fetchone()
        _rehash(conn, 2, _new_payload(payload))
    finally:
        conn.close()
    result = audit(stack.settings.db_path)
    assert result.returncode == 1
    assert re.search(r"\bseq 3\b", result.stderr), result.stderr  # the next link breaks


def test_audit_catches_a_rehashed_last_row_by_the_rebuild(stack: Stack) -> None:
    head = fill_and_stop(stack)
    conn = open_rw(stack.settings.db_path)
    try:
        conn.execute("DROP TRIGGER events_no_update")
        (last,) = conn.execute("SELECT payload FROM events WHERE seq = ?", (head,)).fetchone()
        data = unpack(last)
        assert data["priority"] == 5
        data["priority"] = 999
        _rehash(conn, head, pack(data))
    finally:
        conn.close()
    result = audit(stack.settings.db_path)
    assert result.returncode == 1
    # The last row has no next link, but the head hash recorded outside the database
    # (events.anchor, written by the registry) no longer matches.
    assert "events.anchor" in result.stderr and f"seq {head}" in result.stderr, result.stderr
    # Without the anchor, the projections rebuilt from the log give it away.
    os.remove(os.path.join(stack.settings.home, "events.anchor"))
    result = audit(stack.settings.db_path)
    assert result.returncode == 1
    assert "projection differs" in result.stderr, result.stderr


def test_audit_detects_truncation_and_a_missing_row(stack: Stack) -> None:
    head = fill_and_stop(stack)
    db = stack.settings.db_path
    conn = open_rw(db)
    try:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE seq > ?", (head - 2,))
    finally:
        conn.close()
    result = audit(db)
    assert result.returncode == 1
    assert f"log ends at {head - 2}" in result.stderr and "truncated" in result.stderr, \
        result.stderr

    conn = open_rw(db)
    try:
        conn.execute("DELETE FROM events WHERE seq = 3")
    finally:
        conn.close()
    result = audit(db)
    assert result.returncode == 1
    assert re.search(r"\bseq 3\b", result.stderr) and "missing" in result.stderr, result.stderr
