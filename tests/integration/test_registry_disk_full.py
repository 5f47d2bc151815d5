"""The registry on a full disk (SQLite's SQLITE_FULL, made real here with
``PRAGMA max_page_count``): its loop keeps running; commands get
``resource_exhausted`` with a message that says the disk is full (before: ``internal``
"failed to commit", or an exception out of the loop); reads in the same batch are
still answered (before: the dispatcher's catch-up read failed with the batch and the
dispatcher exited); it is logged once, not per batch; nothing half-stored; the same
request succeeds once there is room. A failing WAL checkpoint is logged, not raised
(before: the registry exited every checkpoint interval while the disk was full). A
reserve file gives the checkpoint its room on a full disk."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from typing import Any

import pytest
import zmq

from bus.codec import Envelope, MessageType, decode, encode
from runtime.logs import ServiceLogger
from bus.pubsub import Publisher
from bus.rpc import RpcServer, request_payload
from services.registry.maintenance import Checkpointer
from services.registry.service import SOURCE, RegistryService
from tests.unit.workload import open_registry

pytestmark = pytest.mark.timeout(60)
BLOB = "x" * 3000   # a config that fills most of a page


class Harness:
    def __init__(self, tmp_path: Any) -> None:
        self.ctx = zmq.Context()
        self.conn, self.reg, self.clock = open_registry(str(tmp_path / "events.db"))
        router = self.ctx.socket(zmq.ROUTER)
        router.bind(f"inproc://reg-{id(self)}")
        pub = self.ctx.socket(zmq.PUB)
        pub.bind(f"inproc://pub-{id(self)}")
        log = ServiceLogger("registry-test")
        self.checkpointer = Checkpointer(self.conn, 60.0, 3, self.clock, log,
                                         anchor=(str(tmp_path / "events.anchor"),
                                                 self.reg.log.mark))
        self.svc = RegistryService(RpcServer(router, SOURCE, self.clock),
                                   Publisher(pub, SOURCE, self.clock), self.reg,
                                   self.checkpointer, 60.0, 64, log)
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.connect(f"inproc://reg-{id(self)}")
        self.n = 0

    def batch(self, *calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Send every call, let the loop take them as one batch, return the replies."""
        ids = []
        for method, args in calls:
            self.n += 1
            ids.append(f"t-{self.n}")
            self.dealer.send(encode(Envelope(type=MessageType.REQUEST.value, source="test",
                                             ts=0.0, id=ids[-1],
                                             payload=request_payload(method, args, None))))
        self.svc.step(1.0)
        replies = {}
        while len(replies) < len(ids):
            assert self.dealer.poll(5000), "no reply"
            env = decode(self.dealer.recv())
            replies[env.id] = env.payload
        return [replies[i] for i in ids]

    def close(self) -> None:
        self.svc.close()
        self.dealer.close(linger=0)
        self.ctx.term()


def test_a_full_disk_refuses_commands_clearly_and_reads_still_work(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(tmp_path)
    try:
        pages = h.conn.execute("PRAGMA page_count").fetchone()[0]
        h.conn.execute(f"PRAGMA max_page_count={pages}")   # the disk is full from now
        caplog.set_level(logging.WARNING)
        failed = []
        for n in range(40):
            submit, read = h.batch(
                ("submit", {"config": {"seed": n, "hyperparameters": {"blob": BLOB}}}),
                ("events_since", {"after_seq": 0}))
            assert read["ok"], read           # the read next to it is answered
            if not submit["ok"]:
                failed.append((n, submit["error"]))
                if len(failed) == 2:
                    break
        assert len(failed) == 2, "the page limit never filled"
        for _, error in failed:
            assert error["code"] == "resource_exhausted", error
            assert "disk is full" in error["message"] and "free space" in error["message"]
        stored = h.reg.log.head_seq
        assert h.batch(("list_runs", {"limit": 1000}))[0]["result"]["total"] == stored
        full_lines = [r for r in caplog.records if r.getMessage() == "storage.full"]
        assert len(full_lines) == 1 and not [r for r in caplog.records
                                             if r.getMessage() == "batch.failed"]
        assert h.svc.counters()["storage_full"] == 2

        h.conn.execute("PRAGMA max_page_count=1073741823")  # space freed
        n = failed[0][0]
        again = h.batch(("submit", {"config": {"seed": n, "hyperparameters": {"blob": BLOB}}}))
        assert again[0]["ok"] and again[0]["result"]["created"]
        assert h.reg.log.head_seq == stored + 1
    finally:
        h.close()


def test_a_failing_checkpoint_is_logged_and_the_registry_goes_on(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(tmp_path)
    try:
        assert h.batch(("submit", {"config": {"seed": 1}}))[0]["ok"]
        (tmp_path / "events.anchor").unlink()    # written with the log's first event
        os.mkdir(str(tmp_path / "events.anchor"))   # the anchor cannot be written
        caplog.set_level(logging.WARNING)
        h.clock.advance(61)
        h.svc.step(0.01)                                 # the checkpoint is due: fails
        assert h.checkpointer.failures == 1
        assert [r for r in caplog.records if r.getMessage() == "wal.checkpoint_failed"]
        assert h.batch(("submit", {"config": {"seed": 2}}))[0]["ok"]   # still serving
    finally:
        h.close()


def test_reads_in_a_batch_whose_commit_failed_on_a_full_disk_are_answered(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """On a real disk the WAL write of COMMIT is what fails (SQLite then rolls the
    whole batch back): the helper's disk-full audit saw the dispatcher's catch-up read
    fail with the batch, and the dispatcher exit until supervisord gave up on it."""
    h = Harness(tmp_path)
    try:
        assert h.batch(("submit", {"config": {"seed": 1}}))[0]["ok"]
        handle = h.reg.handle

        def full_at_commit(method: str, *args: Any) -> Any:
            if method == "submit":
                h.conn.execute("ROLLBACK")   # what SQLite does on SQLITE_FULL in COMMIT
                raise sqlite3.OperationalError("database or disk is full")
            return handle(method, *args)
        monkeypatch.setattr(h.reg, "handle", full_at_commit)
        caplog.set_level(logging.WARNING)
        read, submit, run = h.batch(("events_since", {"after_seq": 0}),
                                    ("submit", {"config": {"seed": 2}}),
                                    ("get_run", {"run_id": "r000000000000"}))
        assert read["ok"] and [e["seq"] for e in read["result"]["events"]] == [1]
        assert run["ok"] and run["result"]["run"]["run_id"] == "r000000000000"
        assert submit["error"]["code"] == "resource_exhausted"
        assert [r.getMessage() for r in caplog.records].count("storage.full") == 1
        assert "batch.failed" not in [r.getMessage() for r in caplog.records]
        assert h.reg.log.head_seq == 1
    finally:
        h.close()


def test_the_reserve_is_held_while_there_is_room_and_given_up_to_fold_the_wal(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a full disk a checkpoint cannot grow events.db by the pages it needs, so the
    WAL (many times larger) is never given back. The registry holds a reserve file
    while the disk has room and gives it up for that checkpoint; the WAL truncated,
    the reserve is made again from the space it gave back."""
    from services.registry import reserve as reserve_module
    log = ServiceLogger("registry-test")
    res = reserve_module.Reserve(str(tmp_path / "events.reserve"), log, size=64 * 1024)
    assert res.ensure() and os.path.getsize(res.path) == 64 * 1024 and res.held()
    assert res.release() and not os.path.exists(res.path) and not res.release()
    real = shutil.disk_usage
    monkeypatch.setattr(reserve_module.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=100 * 1024))  # < its size + 1 MiB
    assert not res.ensure() and not os.path.exists(res.path)
    monkeypatch.undo()

    conn, reg, clock = open_registry(str(tmp_path / "events.db"))
    order: list[str] = []

    class Spy(reserve_module.Reserve):
        def release(self) -> bool:
            order.append("release")
            return super().release()

        def ensure(self) -> bool:
            order.append("ensure")
            return super().ensure()
    spy = Spy(res.path, log, size=64 * 1024)
    spy.ensure()
    cp = Checkpointer(conn, 60.0, 3, clock, log, reserve=spy)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")   # (a real checkpoint follows)
    cp.shrink()
    assert order == ["ensure", "release", "ensure"] and cp.runs == 1 and spy.held()
    conn.close()


def test_health_says_the_registry_refuses_commands_for_a_full_disk(tmp_path: Any) -> None:
    """`trainer health` showed every service "up" and nothing else while no command
    could be stored; the registry's NOTE now says why."""
    import time

    from services.gateway.health import Health
    h = Harness(tmp_path)
    try:
        pages = h.conn.execute("PRAGMA page_count").fetchone()[0]
        h.conn.execute(f"PRAGMA max_page_count={pages}")
        for n in range(40):
            if not h.batch(("submit", {"config": {"seed": n, "hyperparameters": {
                    "blob": BLOB}}}))[0]["ok"]:
                break
        counters = h.svc.counters()
        assert counters["disk_full"] is True and counters["storage_full"] == 1
        health = Health.__new__(Health)
        now = time.time()
        row = health._service("registry", ({"interval": 2.0, "counters": counters}, now), now,
                              {"pid": 1, "started_at": now}, "")
        assert row.alive and row.error.startswith("disk full (") and \
            "commands are refused (1 so far)" in row.error
        quiet = health._service("registry", ({"interval": 2.0, "counters": {
            **counters, "disk_full": False}}, now), now, {"pid": 1, "started_at": now}, "")
        assert quiet.alive and quiet.error == ""
    finally:
        h.close()


def test_an_idle_registry_gives_up_its_reserve_when_its_own_checkpoint_hits_a_full_disk(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Only a refused command gave the reserve up, so an idle registry could sit with
    a full disk, a large WAL and its reserve held (the re-verification saw it stay so
    for 50 s). Its checkpoint now gives the reserve up itself; a checkpoint that still
    fails is tried again at the next interval, not logged every second."""
    from services.registry.reserve import Reserve
    conn, reg, clock = open_registry(str(tmp_path / "events.db"))
    log = ServiceLogger("registry-test")
    res = Reserve(str(tmp_path / "events.reserve"), log, size=64 * 1024)
    assert res.ensure()
    cp = Checkpointer(conn, 60.0, 3, clock, log, reserve=res)
    real, fails = cp.checkpoint, [0]   # failures still due once the reserve is gone

    def full_disk() -> Any:
        if res.held() or fails[0] > 0:   # no room while the reserve is held
            fails[0] -= 0 if res.held() else 1
            raise sqlite3.OperationalError("database or disk is full")
        return real()
    monkeypatch.setattr(cp, "checkpoint", full_disk)
    clock.advance(61)
    cp.tick()                       # fails, gives the reserve up, folds, makes it again
    assert cp.failures == 0 and res.held() and res.released == 1

    caplog.set_level(logging.WARNING)
    fails[0] = 10                       # the disk stays full
    clock.advance(61)
    cp.tick()                           # gives the reserve up, fails all the same
    assert cp.failures == 1 and not res.held()
    assert [r.getMessage() for r in caplog.records].count("wal.checkpoint_failed") == 1
    conn.close()


def test_the_status_says_the_disk_is_full_when_it_is_nearly_full_and_idle(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """disk_full was only "a command refused within 10 s": an idle registry on a full
    disk showed nothing. The free space itself counts too."""
    from services.registry import service as service_module
    h = Harness(tmp_path)
    try:
        assert h.svc.counters()["disk_full"] is False
        real = service_module.shutil.disk_usage
        monkeypatch.setattr(service_module.shutil, "disk_usage",
                            lambda p: real(p)._replace(free=100 * 1024))
        counters = h.svc.counters()
        assert counters["disk_full"] is True and counters["disk_free_bytes"] == 100 * 1024
    finally:
        h.close()
