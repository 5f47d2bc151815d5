"""The launcher contract (services/dispatcher/shell/launcher.py), with real workers:
what every launcher must do for the dispatcher's loop, written against the protocol
and run over each implementation (the ``launcher`` / ``launcher_harness`` fixtures,
tests/system/conftest.py; what is implementation-specific, such as killing a run's
shim, is the harness's, tests/system/launchers.py).

Workers (tests/workers): test-silent (no SDK: starts in a few hundred ms, sleeps
``seconds``, the default action on SIGTERM), test-mark (exits 0 at once), test-exit
(writes ``message`` to stderr, exits ``code``), test-sleep (the SDK: a result, a
manifest entry; with ``child`` and ``escape``, processes in and out of its group)."""

from __future__ import annotations

import os
import select
import signal
import time
import uuid
from typing import Optional

import pytest

from core.runconfig import RunConfig
from services.dispatcher.decide.inputs import FolderRead, KillRecord, ShimEnded
from services.dispatcher.decide.supervise import Sig
from services.dispatcher.shell.launcher import Launcher, LauncherGone, StartError
from tests.helpers import wait_until
from tests.system.launchers import LauncherHarness

START_S = 20   # a worker is up (python -m worker.runner on a loaded 2-core machine)
END_S = 20     # a worker's end is recorded


def unique(name: str) -> str:
    """A run id no other test has: run ids are unique in a real system, and a run's
    processes are also found by the run id in their environment, whichever
    TRAINER_HOME they belong to (suites running side by side on one host)."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


def config(worker: str, **params: object) -> RunConfig:
    return RunConfig(worker=worker, hyperparameters=dict(params), heartbeat_interval_s=0.2)


def started(launcher: Launcher, run_id: str, worker: str = "test-silent",
            **params: object) -> FolderRead:
    """Start the run and wait until observe() shows its worker alive."""
    launcher.start(run_id, config(worker, **params), ())
    return running(launcher, run_id)


def running(launcher: Launcher, run_id: str) -> FolderRead:
    def up() -> Optional[FolderRead]:
        read = launcher.observe(run_id)
        return read if read.worker is not None and read.worker_alive else None
    return wait_until(up, START_S, message=f"{run_id}'s worker to be observed alive")


def ended_read(launcher: Launcher, run_id: str) -> FolderRead:
    """Wait until the run's end is recorded and its process group is gone; the read."""
    wait_until(lambda: launcher.exited(run_id), END_S, message=f"{run_id}'s end recorded")
    def final() -> Optional[FolderRead]:
        read = launcher.observe(run_id)
        return read if read.exit is not None and not read.group_alive else None
    return wait_until(final, END_S, message=f"{run_id}'s group to be gone")


def ends_until(launcher: Launcher, run_id: str, seen: list[ShimEnded]) -> list[ShimEnded]:
    """Collect ended() into ``seen`` until it reports the run with its status."""
    def told() -> bool:
        seen.extend(launcher.ended())
        return any(e.run_id == run_id and e.status is not None for e in seen)
    wait_until(told, END_S, message=f"ended() to report {run_id} with its status")
    return seen


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_started_worker_is_observed_alive(launcher: Launcher) -> None:
    alive_id = unique("alive")
    before = time.time()
    read = started(launcher, alive_id)
    worker = read.worker
    assert worker is not None and worker.pid > 0 and worker.pid != os.getpid()
    assert worker.pgid == os.getpgid(worker.pid) != os.getpgid(0)  # a group of its own
    assert worker.start_time is not None
    assert worker.started_at is not None and before - 1 <= worker.started_at <= time.time()
    assert read.shim_alive and read.worker_alive
    assert read.exit is None and not launcher.exited(alive_id)
    assert launcher.processes_of(frozenset({worker.pgid})) == {worker.pid}
    assert launcher.processes_of(frozenset()) == frozenset()
    again = launcher.observe(alive_id)  # observing changes nothing
    assert again.worker == worker and again.worker_alive and not launcher.exited(alive_id)


def test_a_worker_that_exits_0_ends_with_its_result_and_manifest(launcher: Launcher) -> None:
    ok_id = unique("ok")
    read = started(launcher, ok_id, "test-sleep", seconds=0.05, result_return=1.5)
    assert read.worker is not None
    pgid = read.worker.pgid
    final = ended_read(launcher, ok_id)
    wait_until(lambda: readable(launcher.wake_fd), 10, message="wake_fd to be readable")
    ends = ends_until(launcher, ok_id, [])
    assert {e.run_id for e in ends} == {ok_id}
    assert all(isinstance(e, ShimEnded) for e in ends)
    assert final.exit is not None and final.exit.exit_code == 0 and final.exit.signal is None
    assert final.exit.spawn_error == ""
    assert final.worker == read.worker and not final.worker_alive
    assert not final.group_alive and final.processes == frozenset()
    assert launcher.processes_of(frozenset({pgid})) == frozenset()
    assert final.metrics["return"] == 1.5 and final.metrics["steps"] >= 0
    assert final.result_problem == ""
    # the worker's own artifact, after the code identity the runner records (kind code)
    assert [(m.kind, m.path, m.size, m.outside) for m in final.manifest
            if m.kind != "code"] == [("checkpoint", "ckpt.bin", 10, "")]
    code = [m for m in final.manifest if m.kind == "code"]
    assert [m.path for m in code] == ["code/attempt-1.json"]
    assert code[0].meta["worker"] == "test-sleep" and code[0].meta["attempt"] == 1
    assert final.disk_free is not None and final.disk_free > 0
    assert final.stderr_tail == ""
    assert launcher.exited(ok_id)
    launcher.signal(ok_id, pgid, Sig.TERM)  # its group is gone: nothing happens


def test_a_worker_without_a_result_says_why(launcher: Launcher) -> None:
    mark_id = unique("mark")
    launcher.start(mark_id, config("test-mark"), ())
    final = ended_read(launcher, mark_id)
    assert final.exit is not None and final.exit.exit_code == 0
    assert final.metrics == {} and "result.json" in final.result_problem
    assert [m.kind for m in final.manifest] == ["code"]  # the runner's record alone


def test_a_failing_worker_leaves_its_code_and_stderr_tail(launcher: Launcher) -> None:
    fail_id = unique("fail")
    launcher.start(fail_id, config("test-exit", code=7, message="the last words"), ())
    final = ended_read(launcher, fail_id)
    assert final.exit is not None and final.exit.exit_code == 7 and final.exit.signal is None
    assert final.stderr_tail.splitlines()[-1] == "the last words"
    ends_until(launcher, fail_id, [])  # its shim's end, with its status, is reported


@pytest.mark.parametrize("sig, expected", [(Sig.TERM, signal.SIGTERM),
                                           (Sig.KILL, signal.SIGKILL)])
def test_a_signalled_group_ends_and_its_signal_is_recorded(
        launcher: Launcher, sig: Sig, expected: signal.Signals) -> None:
    sig_id = unique("sig")
    read = started(launcher, sig_id, seconds=60)  # test-silent: SIGTERM's default action
    assert read.worker is not None
    launcher.signal(sig_id, read.worker.pgid, sig)
    final = ended_read(launcher, sig_id)
    assert final.exit is not None
    assert (final.exit.exit_code, final.exit.signal, final.exit.signal_name) == \
        (None, expected.value, expected.name)
    assert not final.worker_alive and final.processes == frozenset()
    ends_until(launcher, sig_id, [])  # its shim's end, with its status, is reported


def test_processes_of_a_run_without_its_shim_are_listed_and_killed(
        launcher: Launcher, launcher_harness: LauncherHarness) -> None:
    orphan_id = unique("orphan")
    read = started(launcher, orphan_id, "test-sleep", seconds=60, child=True, escape=True)
    assert read.worker is not None
    folder = launcher_harness.folder(orphan_id)
    def pids() -> Optional[set[int]]:
        found = set()
        for name in ("child.pid", "escaped.pid", "escaped2.pid"):
            try:
                with open(os.path.join(folder, name), encoding="ascii") as fh:
                    found.add(int(fh.read()))
            except (FileNotFoundError, ValueError):
                return None  # not written yet (or half written)
        return found
    others = wait_until(pids, START_S, message="the worker's child and escaped processes")
    launcher_harness.kill_supervisor(orphan_id)
    def orphaned() -> Optional[FolderRead]:
        now = launcher.observe(orphan_id)
        return now if not now.shim_alive else None
    now = wait_until(orphaned, 10, message="observe() to show no shim")
    assert now.exit is None and not launcher.exited(orphan_id)
    assert now.worker == read.worker and now.worker_alive
    assert now.processes == {read.worker.pid} | others  # its group, and those out of it
    launcher.kill(orphan_id, now.processes)
    def gone() -> Optional[FolderRead]:
        after = launcher.observe(orphan_id)
        # (one read is no snapshot: worker_alive is read before the processes)
        return after if not after.processes and not after.worker_alive else None
    after = wait_until(gone, 10, message="the run's processes to be gone")
    assert after.exit is None and not after.shim_alive
    assert not launcher.exited(orphan_id)


def test_a_recorded_kill_is_observed(launcher: Launcher) -> None:
    kill_id = unique("kill")
    started(launcher, kill_id, seconds=60)
    record = KillRecord("CANCELLED", "cancel", "asked by alice", time.time(), 2.5)
    assert launcher.observe(kill_id).kill is None
    assert launcher.record_kill(kill_id, record) == ""
    assert launcher.observe(kill_id).kill == record
    later = KillRecord("FAILED", "timeout", "time limit", record.term_at + 1, 0.5)
    assert launcher.record_kill(kill_id, later) == ""  # a second kill replaces it
    assert launcher.observe(kill_id).kill == later


@pytest.mark.parametrize("spoiled", [False, True], ids=["no-folder", "not-a-folder"])
def test_a_kill_that_cannot_be_recorded_says_why(
        launcher: Launcher, launcher_harness: LauncherHarness, spoiled: bool) -> None:
    nofolder_id = unique("nofolder")
    if spoiled:
        launcher_harness.spoil_folder(nofolder_id)
    record = KillRecord("CANCELLED", "cancel", "", time.time(), 1.0)
    reason = launcher.record_kill(nofolder_id, record)
    assert isinstance(reason, str) and reason != ""


def test_a_second_launcher_observes_and_adopts_the_first_ones_run(
        launcher: Launcher, launcher_harness: LauncherHarness) -> None:
    adopt_id = unique("adopt")
    first = started(launcher, adopt_id, seconds=60)
    assert first.worker is not None
    second = launcher_harness.new()  # a restarted dispatcher's
    seen = second.observe(adopt_id)
    assert seen.worker == first.worker  # same pid, group and start time
    assert seen.shim_alive and seen.worker_alive and not second.exited(adopt_id)
    launcher_harness.close(launcher)  # the first dispatcher goes: the run lives on
    after = second.observe(adopt_id)
    assert after.worker == first.worker and after.shim_alive and after.worker_alive
    assert second.processes_of(frozenset({first.worker.pgid})) == {first.worker.pid}
    second.signal(adopt_id, first.worker.pgid, Sig.TERM)  # adopted: it ends by its word
    final = ended_read(second, adopt_id)
    assert final.exit is not None and final.exit.signal == signal.SIGTERM


def test_an_unknown_worker_is_a_start_error_and_starts_nothing(launcher: Launcher) -> None:
    unknown_id = unique("unknown")
    with pytest.raises(StartError, match="no-such-worker"):
        launcher.start(unknown_id, config("no-such-worker"), ())
    read = launcher.observe(unknown_id)
    assert read.worker is None and read.exit is None
    assert not read.shim_alive and not read.worker_alive and read.processes == frozenset()
    assert not launcher.exited(unknown_id)
    launcher.check()  # the launcher itself is fine


def test_a_dead_backend_is_launcher_gone_and_its_runs_live_on(
        launcher: Launcher, launcher_harness: LauncherHarness) -> None:
    before_id = unique("before")
    after_id = unique("after")
    read = started(launcher, before_id, seconds=60)
    launcher.check()
    launcher_harness.kill_backend(launcher)
    def gone() -> bool:
        try:
            launcher.check()
        except LauncherGone:
            return True
        return False
    wait_until(gone, 10, message="check() to raise LauncherGone")
    with pytest.raises(LauncherGone):
        launcher.ended()
    with pytest.raises(LauncherGone):
        launcher.start(after_id, config("test-mark"), ())
    now = launcher.observe(before_id)
    assert now.worker == read.worker and now.shim_alive and now.worker_alive


@pytest.mark.parametrize("status_first", [True, False], ids=["after-status", "at-once"])
def test_a_forgotten_run_is_not_reported_again(
        launcher: Launcher, launcher_harness: LauncherHarness, status_first: bool) -> None:
    forget_id = unique("forget")
    next_id = unique("next")
    launcher.start(forget_id, config("test-mark"), ())
    if status_first:
        ends_until(launcher, forget_id, [])
    else:  # forgotten at its first report, its exit status maybe still on its way
        wait_until(lambda: any(e.run_id == forget_id for e in launcher.ended()), END_S,
                   message=f"ended() to report {forget_id}")
    launcher.forget(forget_id)
    after_forget(launcher, launcher_harness, forget_id, next_id)


def test_a_run_forgotten_before_its_status_came_leaves_nothing_kept(
        launcher: Launcher, launcher_harness: LauncherHarness) -> None:
    forget_id = unique("forget")
    next_id = unique("next")
    started(launcher, forget_id, seconds=60)
    with launcher_harness.status_held(launcher):
        read = launcher.observe(forget_id)
        assert read.worker is not None
        launcher.signal(forget_id, read.worker.pgid, Sig.KILL)
        ends = wait_until(lambda: [e for e in launcher.ended() if e.run_id == forget_id],
                          END_S, message=f"ended() to report {forget_id}")
        assert ends[0].status is None  # its end is told, its status held back
        launcher.forget(forget_id)
    after_forget(launcher, launcher_harness, forget_id, next_id)


def after_forget(launcher: Launcher, harness: LauncherHarness, forget_id: str,
                 next_id: str) -> None:
    """A later run's end, status and all, is reported after anything still due of the
    forgotten run (whose shim ended before this one started): then nothing of the
    forgotten run may be reported, or kept."""
    launcher.start(next_id, config("test-mark"), ())
    seen = ends_until(launcher, next_id, [])
    seen.extend(launcher.ended())
    assert forget_id not in {e.run_id for e in seen}
    assert launcher.exited(forget_id)  # its folder is the run's: forget drops only news
    assert not harness.remembers(launcher, forget_id)
