"""The shim fork server as a real process: it starts shims that run their worker and
leave their records, reports each shim's end, ends with its input, and its death is
an error the dispatcher sees instead of a silent stall."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from services.dispatcher.forkserver import ForkServer, ForkServerGone
from core.rundir import EXIT_FILE, WORKER_FILE
from core.rundir import STDOUT_FILE as STDOUT
from services.dispatcher.spawner import read_json
from services.dispatcher.procs import process_start_time
from tests.helpers import wait_until


def _notices_until(server: ForkServer, want: int, timeout: float = 20) -> list[dict]:
    seen: list[dict] = []
    def enough() -> bool:
        seen.extend(server.notices())
        return sum(1 for n in seen if "exited" in n) >= want
    wait_until(enough, timeout, message=f"{want} shims to end")
    return seen


def _gate(folder) -> str:
    """A FIFO a worker blocks on (opening it to read) until _release opens it to write."""
    path = os.path.join(folder, "gate")
    os.mkfifo(path)
    return path


def _release(gate: str) -> None:
    fd = os.open(gate, os.O_WRONLY)  # returns once the worker has it open to read
    os.close(fd)


def test_shims_run_their_worker_and_their_end_is_reported(tmp_path) -> None:
    server = ForkServer()
    try:
        dirs = []
        for i in range(3):
            run_dir = tmp_path / f"run{i}"
            run_dir.mkdir()
            dirs.append(str(run_dir))
            code = f"print('hello {i}'); raise SystemExit({i})"
            server.spawn(str(run_dir), [sys.executable, "-c", code], dict(os.environ))
        notices = _notices_until(server, 3)
    finally:
        server.close()
    shims = {n["shim"]: n["run_dir"] for n in notices if "shim" in n}
    assert sorted(shims.values()) == dirs
    assert {n["exited"] for n in notices if "exited" in n} == set(shims)
    for i, run_dir in enumerate(dirs):
        worker, exit_ = (read_json(os.path.join(run_dir, f)) for f in (WORKER_FILE, EXIT_FILE))
        assert worker is not None and worker["shim_pid"] in shims
        assert exit_ is not None and exit_["exit_code"] == i and exit_["pid"] == worker["pid"]
        with open(os.path.join(run_dir, STDOUT), encoding="utf-8") as fh:
            assert fh.read() == f"hello {i}\n"


def test_end_of_input_ends_the_server_but_not_a_running_shim(tmp_path) -> None:
    server = ForkServer()
    run_dir = str(tmp_path)
    marker = tmp_path / "done"
    gate = _gate(tmp_path)
    code = f"import pathlib; open({gate!r}).read(); pathlib.Path({str(marker)!r}).touch()"
    server.spawn(run_dir, [sys.executable, "-c", code], dict(os.environ))
    worker = wait_until(lambda: read_json(os.path.join(run_dir, WORKER_FILE)), 20,
                        message="worker.json")
    server.close()  # the dispatcher going away, while the worker is still blocked
    assert server.proc.returncode == 0
    assert not marker.exists()
    _release(gate)
    wait_until(lambda: read_json(os.path.join(run_dir, EXIT_FILE)), 20, message="exit.json")
    assert marker.exists() and read_json(os.path.join(run_dir, EXIT_FILE))["exit_code"] == 0
    assert worker["shim_pid"] != server.proc.pid


def test_a_killed_server_is_reported_not_waited_for(tmp_path) -> None:
    server = ForkServer()
    try:
        # a shim that outlives the server must not keep its pipes open
        gate = _gate(tmp_path)
        code = f"open({gate!r}).read()"  # blocks until the test releases it
        server.spawn(str(tmp_path), [sys.executable, "-c", code], dict(os.environ))
        worker = wait_until(lambda: read_json(os.path.join(tmp_path, WORKER_FILE)), 20,
                            message="worker.json")
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        with pytest.raises(ForkServerGone):
            server.check()
        with pytest.raises(ForkServerGone):
            wait_until(lambda: server.notices() and False, 5, message="EOF")
        with pytest.raises(ForkServerGone):
            server.spawn(str(tmp_path), [sys.executable, "-c", "pass"], dict(os.environ))
        assert process_start_time(worker["shim_pid"]) is not None  # the shim lives on
    finally:
        server.close()
        _release(gate)
        wait_until(lambda: read_json(os.path.join(tmp_path, EXIT_FILE)), 20,
                   message="the orphaned shim's exit record")


def test_many_requests_before_any_notice_is_read_do_not_stall(tmp_path) -> None:
    """A dispatcher that asks for many shims in one pass and reads the notices only
    afterwards: the server must keep taking requests while its notices pile up."""
    server = ForkServer()
    count = 800  # ~76 KB of notices: more than a pipe holds (64 KB)
    try:
        for i in range(count):
            run_dir = tmp_path / f"r{i}"
            run_dir.mkdir()
            server.spawn(str(run_dir), ["/bin/true"], dict(os.environ))  # real-sized asks
        notices = _notices_until(server, count, timeout=120)
    finally:
        server.close()
    assert sum(1 for n in notices if "shim" in n) == count


def test_a_shim_end_wakes_the_dispatcher_through_its_pidfd_before_any_notice(tmp_path) -> None:
    """With the server stopped (it cannot reap the shim or write its notice), the
    shim's end is still seen, through the pidfd opened on its start notice."""
    import select
    server = ForkServer()
    gate = _gate(tmp_path)
    try:
        server.spawn(str(tmp_path), [sys.executable, "-c", f"open({gate!r}).read()"],
                     dict(os.environ))
        wait_until(lambda: server._pidfds or server.ended(), 20, message="the shim's pidfd")
        assert not server.ended()  # running: nothing to report
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            _release(gate)
            ready = select.select([server.wake_fd], [], [], 20)[0]
            assert ready == [server.wake_fd]
            assert server.ended() and not server._pidfds
            assert read_json(os.path.join(tmp_path, EXIT_FILE))["exit_code"] == 0
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # the server's own notice still comes, and is not a second end
        seen: list[bool] = []
        wait_until(lambda: seen.append(server.ended()) or not server._ended_pids, 20,
                   message="the exited notice")
        assert not any(seen)
    finally:
        server.close()


def test_the_end_of_a_shim_done_with_is_not_reported_as_the_next_ones(tmp_path) -> None:
    """A run's shim that is still ending as the run's next attempt starts (the launcher
    calls done_with before it asks for the new shim): its end is not that attempt's."""
    server = ForkServer()
    gate = _gate(tmp_path)
    try:
        server.spawn(str(tmp_path), [sys.executable, "-c", f"open({gate!r}).read()"],
                     dict(os.environ))
        wait_until(lambda: server._pidfds or server.ended(), 20, message="the shim's pidfd")
        server.done_with(str(tmp_path))
        _release(gate)
        wait_until(lambda: (server.ended() or True) and not server._pidfds
                   and not server._ended_pids, 20, message="the shim's end and notice")
        assert str(tmp_path) not in server.ended_dirs
        assert str(tmp_path) not in server.exit_status
    finally:
        server.close()
    assert read_json(os.path.join(tmp_path, EXIT_FILE))["exit_code"] == 0


def test_workers_get_the_file_limit_the_dispatcher_was_started_with(tmp_path) -> None:
    """The dispatcher raises its own RLIMIT_NOFILE (a pidfd per shim); the fork server
    puts the soft limit it is given back, for the shims and their workers."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(soft, 512)
    server = ForkServer(want)
    try:
        code = "import resource; print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
        server.spawn(str(tmp_path), [sys.executable, "-c", code], dict(os.environ))
        _notices_until(server, 1)
    finally:
        server.close()
    with open(os.path.join(tmp_path, STDOUT), encoding="utf-8") as fh:
        assert fh.read().split() == [str(want), str(hard)]


def test_a_worker_that_cannot_be_started_leaves_an_exit_record_saying_why(tmp_path) -> None:
    server = ForkServer()
    try:
        server.spawn(str(tmp_path), [str(tmp_path / "no-such-program"), "--x"],
                     {**os.environ, "TRAINER_ATTEMPT": "3"})
        _notices_until(server, 1)
    finally:
        server.close()
    record = read_json(os.path.join(tmp_path, EXIT_FILE))
    assert record is not None and record["pid"] is None and record["exit_code"] is None
    assert record["attempt"] == 3   # the attempt it was for (its worker's TRAINER_ATTEMPT)
    assert "No such file" in record["spawn_error"] and "no-such-program" in record["spawn_error"]
    assert read_json(os.path.join(tmp_path, WORKER_FILE)) is None


def test_the_worker_gets_its_own_group_the_run_dir_and_default_signals(tmp_path) -> None:
    """What a shell worker sees: its own process group, the run directory, stdin at end
    of file, and no ignored signal (the shim's Python ignores SIGPIPE; Popen reset it)."""
    server = ForkServer()
    script = ("echo $(ps -o pgid= -p $$) $$; pwd; cat; echo eof; "
              "grep SigIgn /proc/self/status")
    try:
        server.spawn(str(tmp_path), ["sh", "-c", script], dict(os.environ))
        _notices_until(server, 1)
    finally:
        server.close()
    with open(os.path.join(tmp_path, STDOUT), encoding="utf-8") as fh:
        group, cwd, eof, ignored = fh.read().splitlines()
    pgid, pid = group.split()
    assert pgid == pid and cwd == str(tmp_path) and eof == "eof"
    assert int(ignored.split()[1], 16) & (1 << (signal.SIGPIPE - 1)) == 0, ignored


def test_a_shim_that_cannot_write_its_exit_record_tells_a_clean_end_by_its_status(
        tmp_path) -> None:
    """A full disk keeps the shim from writing exit.json. Before, every such run ended
    FAILED lost, even one whose worker exited 0. Now the shim exits 0 exactly when its
    worker did (1 otherwise), and the dispatcher's fork client keeps that status per
    run folder, also when the shim's pidfd told of its end first."""
    server = ForkServer()
    try:
        dirs = []
        for i, code in enumerate((0, 3)):
            run_dir = tmp_path / f"run{i}"
            (run_dir / EXIT_FILE).mkdir(parents=True)   # the record cannot be written
            dirs.append(str(run_dir))
            server.spawn(str(run_dir), [sys.executable, "-c", f"raise SystemExit({code})"],
                         dict(os.environ))
        wait_until(lambda: (server.ended() or True) and set(dirs) <= set(server.exit_status),
                   20, message="both shims' exit status")
        assert [server.exit_status[d] for d in dirs] == [0, 256]   # exit codes 0 and 1
        assert not any(server.status_due(d) for d in dirs)
        server.forget({dirs[1]})
        assert set(server.exit_status) == {dirs[1]} and server.ended_dirs <= {dirs[1]}
    finally:
        server.close()
    assert all(os.path.isdir(os.path.join(d, EXIT_FILE)) for d in dirs)
