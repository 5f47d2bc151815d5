"""Faults with real processes: the registry killed mid-storm, retried request ids,
a tampered or truncated log, garbage on every socket. (A second instance and a too-old
dependency: test_service_startup.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import defaultdict
from typing import Any

import msgpack
import pytest
import zmq

from bus.codec import MAX_FRAME_BYTES, Envelope, MessageType, decode, encode, pack, unpack
from bus.endpoints import MAX_MESSAGE_BYTES, ipc_path
from core.chain import chain_hash
from core.errors import IllegalTransition, ValidationError
from tests.conftest import Stack
from tests.fixtures.clients import start_submitters
from tests.helpers import REPO, wait_until

CONFIG = {"env": "CartPole-v1", "seed": 7, "worker": "cartpole"}


def audit(db_path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.registry.audit", "--db", db_path],
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


# --- 6. malformed frames ------------------------------------------------------------

def _env_map(**fields: Any) -> bytes:
    base: dict[str, Any] = {"v": 1, "type": "Request", "source": "x", "ts": 1.0,
                            "payload": {"method": "ping", "args": {}}}
    base.update(fields)
    return msgpack.packb({k: v for k, v in base.items() if v is not None}, use_bin_type=True)


# (frames, the FrameError class the registry names)
REGISTRY_GARBAGE: list[tuple[list[bytes], str]] = [
    ([b"\xc1" + bytes(range(256))], "FrameMalformed"),                    # not msgpack
    ([b""], "FrameMalformed"),                                            # empty frame
    ([b"a", b"b"], "FrameMalformed"),                                     # two frames
    ([b"\x91" * 200_000 + b"\xc0"], "FrameMalformed"),                    # nested too deep
    ([msgpack.packb([1, 2, 3])], "FrameMalformed"),                       # not a map
    ([msgpack.packb({"hello": "world"})], "FrameMalformed"),              # not an envelope
    ([msgpack.packb(msgpack.ExtType(5, b"x"))], "FrameMalformed"),        # ext type
    ([_env_map(type="LaunchMissiles", id="x1")], "UnknownMessageType"),
    ([_env_map(v=99, id="x2")], "UnsupportedFormat"),
    ([_env_map()], "FrameMalformed"),                                     # Request, no id
    ([_env_map(id="x3", payload={"args": {}})], "FrameMalformed"),        # no method
    ([_env_map(type="Reply", id="x4", payload={"ok": True})], "FrameMalformed"),
    ([b"\x00" * (MAX_FRAME_BYTES + 1)], "FrameTooLarge"),
]


def _rpc(sock: zmq.Socket, rid: str, method: str = "ping") -> tuple[Envelope, list[Envelope]]:
    """The reply to a request sent on ``sock``, and the other replies read before it."""
    sock.send(encode(Envelope(type=MessageType.REQUEST.value, source="t", ts=1.0,
                              payload={"method": method, "args": {}}, id=rid)))
    others = []
    while True:
        assert sock.poll(10_000), "no reply"
        reply = decode(sock.recv())
        if reply.id == rid:
            return reply, others
        others.append(reply)


def _raw_garbage(endpoint: str) -> None:
    """Bytes that are not even ZMTP, straight onto the ipc socket file."""
    path = ipc_path(endpoint)
    assert path is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(path)
        raw.sendall(b"\xffGET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 4)


def _registry_status(sub: Any, predicate: Any) -> Any:
    def check() -> Any:
        msg = sub.recv(100)
        if msg is None or msg.topic != "status.registry":
            return None
        counters = msg.envelope.payload["counters"]
        return counters if predicate(counters) else None
    return wait_until(check, 10, message="a registry status message")


@pytest.mark.timeout(60)
def test_registry_survives_malformed_requests_and_logs_each_kind_once(stack: Stack) -> None:
    c = stack.client()
    c.call("submit", {"config": CONFIG})
    sub = stack.subscriber("event.")
    identity = b"garbage-sender"
    d = stack.socket(zmq.DEALER)
    d.setsockopt(zmq.IDENTITY, identity)
    d.connect(stack.settings.registry)
    _raw_garbage(stack.settings.registry)
    sent = 0
    for frames, _ in REGISTRY_GARBAGE:
        d.send_multipart(frames)
        sent += 1
    for _ in range(50):
        for frames in ([b"\xc1garbage"], [_env_map(type="Nope", id="y")]):
            d.send_multipart(frames)
            sent += 1
    # Frames of one sender are taken in order: this reply means all of them were read.
    reply, others = _rpc(d, "after-garbage")
    assert reply.payload["ok"] is True
    # A bad request that carries an id is answered with the error (not left to time out).
    assert [(r.id, r.payload["ok"], r.payload["error"]["code"]) for r in others] == \
        [("x3", False, "bad_frame")]
    assert reply.payload["result"]["head_seq"] == 1
    assert stack.registry.alive()

    counters = _registry_status(sub, lambda k: k["bad_frames"] >= sent)
    assert counters["bad_frames"] == sent and counters["head_seq"] == 1
    lines = [json.loads(line) for line in stack.registry.log().splitlines()
             if '"bus.bad_frame"' in line]
    mine = [x["error"] for x in lines if x.get("sender") == identity.hex()]
    kinds = {kind for _, kind in REGISTRY_GARBAGE}
    assert sorted(mine) == sorted(kinds), mine  # once per (sender, kind), not per frame

    # A message over the socket's limit: libzmq drops the sender's connection before
    # buffering it (a multi-GB frame never fills the registry's memory).
    huge = stack.socket(zmq.DEALER)
    huge.setsockopt(zmq.IDENTITY, b"huge-sender")
    monitor = huge.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    huge.connect(stack.settings.registry)
    huge.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert wait_until(lambda: monitor.poll(100) and monitor.recv_multipart(), 10,
                      message="the registry dropping the oversized sender")
    huge.disable_monitor()
    monitor.close(linger=0)

    # Still a working registry: a new event is committed and published.
    run_id = c.call("submit", {"config": {**CONFIG, "seed": 8}})["run"]["run_id"]
    (event,) = stack.events(sub, 1)
    assert event.seq == 2 and event.stream == f"run-{run_id}"
    assert c.call("ping")["head_seq"] == 2
    assert stack.registry.alive() and "huge-sender" not in stack.registry.log() \
        and b"huge-sender".hex() not in stack.registry.log()


@pytest.mark.timeout(60)
def test_broker_forwards_garbage_without_dying_and_subscribers_skip_it(stack: Stack) -> None:
    sub = stack.subscriber("")  # everything, garbage included
    pub = stack.socket(zmq.PUB)
    pub.connect(stack.settings.bus_pub)
    probe = encode(Envelope(type=MessageType.SERVICE_STATUS.value, source="t", ts=1.0,
                            payload={}))

    def pub_is_live() -> bool:
        pub.send_multipart([b"probe.live", probe])
        msg = sub.recv(50)
        while msg is not None and msg.topic != "probe.live":
            msg = sub.recv(0)
        return msg is not None
    wait_until(pub_is_live, 10, message="the test PUB to reach the subscriber")

    garbage = [
        [b"single-frame"],
        [b"event.x", probe, b"third"],
        [b"event.\xff\xfe", probe],                     # topic not UTF-8
        [b"event.x", b"\xc1\xc1"],                      # envelope not msgpack
        [b"event.x", msgpack.packb({"v": 1})],          # not a full envelope
        [b"event.x", b""],
        [b"t" * 300, probe],                            # topic too long
    ]
    before = sub.bad_frames.total
    for frames in garbage:
        pub.send_multipart(frames)
    pub.send_multipart([b"probe.end", probe])
    up = stack.socket(zmq.XSUB)  # and junk upstream, from the subscriber side
    up.connect(stack.settings.bus_sub)
    for frames in ([b""], [b"\x07junk"], [b"\x01", b"two"], [b"\x00nothing"]):
        up.send_multipart(frames)
    _raw_garbage(stack.settings.bus_pub)
    _raw_garbage(stack.settings.bus_sub)

    def end_seen() -> bool:
        msg = sub.recv(100)
        return msg is not None and msg.topic == "probe.end"
    wait_until(end_seen, 10, message="the message sent after the garbage")
    assert sub.bad_frames.total - before == len(garbage)
    assert stack.bus.alive() and stack.registry.alive()

    c = stack.client()
    c.call("submit", {"config": CONFIG})
    (event,) = stack.events(sub, 1)
    assert event.seq == 1 and event.type == "RunSubmitted"
    # The broker's counters (frames, not messages) count all of it, garbage included.
    sent_frames = sum(len(f) for f in garbage) + 2

    def counted() -> Any:
        m = sub.recv(100)
        if m is None or m.topic != "status.bus":
            return None
        counters = m.envelope.payload["counters"]
        return counters if counters["frames_in"] >= sent_frames else None
    counters = wait_until(counted, 10, message="bus counters that include the garbage")
    assert counters["frames_out"] >= sent_frames and counters["bytes_in"] > 0
    assert stack.bus.alive()
