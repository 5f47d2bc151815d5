"""Settings, the version check, the singleton lock and WAL maintenance."""

from __future__ import annotations

import io
import json
import logging
import os
import stat

import pytest

from bus import endpoints
from runtime import logs
from runtime.singleton import AlreadyRunning, SingletonLock
from runtime.versions import version_problems
from core.clock import FakeClock
from core.errors import ValidationError
from core.settings import SETTINGS, Settings
from services.registry.maintenance import Checkpointer
from services.registry.migrations import connect, migrate


def test_defaults_follow_trainer_home() -> None:
    s = Settings.from_env({"HOME": "/home/u", "TRAINER_HOME": "/data/t"})
    assert s.db_path == "/data/t/events.db"
    assert s.registry == "ipc:///data/t/sock/registry"
    assert Settings.from_env({"HOME": "/home/u"}).home == "/home/u/.local/share/trainer"


def test_a_bad_setting_names_the_variable() -> None:
    with pytest.raises(ValidationError) as err:
        Settings.from_env({"HOME": "/h", "TRAINER_CHECKPOINT_INTERVAL": "-1"})
    assert err.value.field == "TRAINER_CHECKPOINT_INTERVAL"


def test_every_setting_has_help() -> None:
    assert all(s.help and s.env.startswith("TRAINER_") for s in SETTINGS)


def test_version_check_reports_too_old_and_missing() -> None:
    problems = version_problems({"pyzmq": "25.1", "grpcio": "1.60", "protobuf": "4.25"},
                                installed={"pyzmq": "22.0.3", "grpcio": "1.70.0"})
    assert any("pyzmq 22.0.3 is older than the minimum 25.1" in p for p in problems)
    assert any("protobuf is not installed" in p for p in problems)
    assert not any("grpcio" in p for p in problems)
    assert version_problems() == []  # what is installed here is new enough


def test_second_lock_on_the_same_home_names_the_holder(tmp_path) -> None:
    first = SingletonLock(str(tmp_path), "registry").acquire()
    try:
        with pytest.raises(AlreadyRunning) as err:
            SingletonLock(str(tmp_path), "registry").acquire()
        import os
        assert str(os.getpid()) in err.value.message
        SingletonLock(str(tmp_path), "bus").acquire().release()  # other services are free
    finally:
        first.release()
    SingletonLock(str(tmp_path), "registry").acquire().release()


def test_checkpointer_logs_the_triple_and_warns_on_busy_streak(tmp_path) -> None:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    conn = connect(str(tmp_path / "events.db"))
    migrate(conn)
    clock = FakeClock()
    cp = Checkpointer(conn, 10.0, 2, clock, logs.service_logger("registry"))
    cp.tick()
    assert cp.runs == 0  # not due yet
    clock.advance(10)
    cp.tick()
    assert cp.runs == 1 and cp.last is not None and cp.last[0] == 0
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["event"] == "wal.checkpoint" and line["service"] == "registry"
    assert {"busy", "log_frames", "checkpointed"} <= set(line)
    # A reader holding a snapshot makes the checkpoint busy.
    reader = connect(str(tmp_path / "events.db"))
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM events").fetchone()
    conn.execute("INSERT INTO _migrations VALUES ('x', 1.0)")
    for _ in range(2):
        clock.advance(10)
        cp.tick()
    reader.execute("ROLLBACK")
    events = [json.loads(l)["event"] for l in stream.getvalue().splitlines()]
    assert cp.busy_streak == 2 and "wal.checkpoint_blocked" in events
    logging.getLogger("trainer").handlers.clear()


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_ipc_folders_are_made_private_only_inside_trainer_home(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    # A new folder is created private.
    assert endpoints.prepare(f"ipc://{home}/sock/registry", str(home))
    assert _mode(home / "sock") == 0o700
    # An existing folder inside TRAINER_HOME is tightened.
    (home / "open").mkdir(mode=0o755)
    os.chmod(home / "open", 0o755)
    assert endpoints.prepare(f"ipc://{home}/open/bus-in", str(home))
    assert _mode(home / "open") == 0o700
    # An existing folder elsewhere (think /tmp) is left as it is, and reported.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    assert not endpoints.prepare(f"ipc://{shared}/bus-in", str(home))
    assert _mode(shared) == 0o1777
    # Abstract and tcp endpoints have no folder to touch (not even the cwd).
    before = _mode(os.getcwd())
    assert endpoints.prepare("ipc://@trainer-test", str(home))
    assert endpoints.prepare("tcp://127.0.0.1:5555", str(home))
    assert _mode(os.getcwd()) == before


def test_the_registry_connection_is_wal_with_synchronous_normal(tmp_path) -> None:
    conn = connect(str(tmp_path / "events.db"))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.isolation_level is None  # autocommit: the registry BEGINs itself
    finally:
        conn.close()
