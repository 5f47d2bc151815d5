"""The OS seam: with procs.py (a run's processes read from /proc, and signalling
them), the only module of the dispatcher that forks or reads /proc.

Each run gets a shim, a tiny parent modelled on SLURM's slurmstepd: the fork server
(forkserver.py, on the dispatcher's request) forks it, it leaves the session, starts the
worker in a process group of its own with stdout/stderr appended to files in the run
directory, writes ``worker.json`` (pid, process start time, the attempt: its worker's
TRAINER_ATTEMPT), waits for the worker and writes its true exit status (code, signal,
resource usage, the attempt) atomically to ``exit.json``.
The shim does
not depend on the dispatcher: a dispatcher restart, or SIGKILL, loses nothing, and a
worker killed by SIGKILL or a segfault still leaves an exit record.

Before it starts the worker the shim takes an exclusive lock (flock) on the run
directory itself and keeps it until it exits: a held lock means "a shim owns this
run" (starting its worker, or waiting for it). A second shim of the same run (a spawn
request that a dispatcher killed mid-start left in its fork server's pipe) waits for
the lock, then finds ``worker.json`` or ``exit.json`` and leaves without starting
anything: a run's worker is started at most once. (The folder, not a lock file: a
file created per run costs every run ~0.5 ms on ext4.)

The shim is also the run's subreaper (Linux ``PR_SET_CHILD_SUBREAPER``): a process the
worker starts in a session of its own (``setsid``, ``start_new_session``) leaves the
worker's process group but not the shim, whose child it becomes when its parent ends.
When the worker has exited, the shim kills (SIGKILL) and reaps whatever is still
below it before it writes ``exit.json``, so a run never ends while a process of it
still holds its GPU.
"""

from __future__ import annotations

import codecs
import fcntl
import gc
import json
import os
import shutil
import signal
import sys
import time
from typing import Any, Callable, Optional

from core.rundir import (EXIT_FILE, RUN_LOCK, SHIM_FILE, STDERR_FILE, STDOUT_FILE,
                         WORKER_FILE)
from runtime.atomicfile import atomic_file
from services.dispatcher import limits as run_limits
from services.dispatcher.limits import Limits
from services.dispatcher.procs import descendants, process_start_time

UNRECORDED_OK = 0  # a shim's exit code: its exit record is written, or its worker exited 0
SHIM_STALE = 2     # ... another shim of the run had started the worker
ATTEMPT_VAR = "TRAINER_ATTEMPT"  # ... and the attempt it runs, recorded by its shim


def write_atomic(path: str, data: dict[str, Any], durable: bool = True) -> None:
    """Readers see the whole record or none. ``durable``: also on disk before the
    rename (an exit record should outlive a power cut; worker.json need not: after
    one, the worker it names is gone anyway)."""
    with atomic_file(path, durable=durable) as fh:
        json.dump(data, fh)


def read_json(path: str) -> Optional[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def take_run_lock(run_dir: str) -> Optional[int]:
    """The run's lock (an flock on its folder), waiting for another holder to end;
    the fd holds it until it is closed or its process exits. None where the file
    system refuses to flock a folder (Linux flocks folders locally, NFS included;
    this is for the odd file system that does not): the run is then judged by its
    shim's pid and start time, recorded in ``shim.json`` before the worker starts."""
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        return None
    return fd


def shim_holds(run_dir: str) -> Optional[bool]:
    """Does a shim hold the run's lock (it owns the run: starting or watching its
    worker)? None when that cannot be told (the folder cannot be locked, or a read
    error). The probe takes the same exclusive lock the shim takes, released at
    once, so it fails where the shim's lock fails (a shim asking meanwhile waits)."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False


def shim_alive(run_dir: str) -> bool:
    """Is a shim still in charge of the run? Its lock says. When the lock cannot
    tell, or for a shim from before the lock existed (worker.json without
    ``run_lock``): whether the shim's recorded process (pid and start time) lives;
    no record at all means no shim ever started the run."""
    held = shim_holds(run_dir)
    if held:
        return True
    worker = read_json(os.path.join(run_dir, WORKER_FILE)) or {}
    if held is False and worker.get(RUN_LOCK):
        return False
    record = worker or read_json(os.path.join(run_dir, SHIM_FILE)) or {}
    pid = int(record.get("shim_pid") or 0)
    started = process_start_time(pid) if pid > 0 else None
    recorded = record.get("shim_start_time")
    return started is not None and (recorded is None or started == float(recorded))


def attempt_of(env: dict[str, str]) -> Optional[int]:
    """The attempt a shim runs, recorded in its worker and exit records (a restarted
    dispatcher tells an earlier attempt's, not set aside yet, by it): its worker's
    TRAINER_ATTEMPT; None unless a whole number >= 1."""
    text = env.get(ATTEMPT_VAR, "")
    return int(text) if text.isascii() and text.isdigit() and int(text) >= 1 else None


def spawn_shim(run_dir: str, argv: list[str], env: dict[str, str],
               limits: Limits = Limits()) -> int:
    """Fork the shim for one run; returns the shim's pid at once. Called by the fork
    server (services/dispatcher/forkserver.py), a single-threaded process. ``limits``:
    the cores and the memory limit of the run (limits.py)."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        # Hold none of the parent's pipes: the fork server's end of input and its
        # notices must close when it goes, whatever shims still run.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.closerange(3, 65536)
        code = _shim(run_dir, argv, env, limits)
    except BaseException:  # noqa: BLE001 - the shim must never return into the parent
        code = 1
    finally:
        os._exit(code)


def prepare_fork_server() -> None:
    """Done once in the fork server, so that no shim does it after its fork (each
    page a shim's Python touches is copied): the ASCII codec that reading /proc uses
    is loaded, and the server's objects are moved out of the garbage collector's
    reach (a shim's collections then leave them, and their pages, alone)."""
    codecs.lookup("ascii")
    gc.freeze()


def _subreaper_switch() -> Optional[Callable[[], bool]]:
    """A call that makes the calling process the subreaper of its descendants (Linux
    3.4+), or None where there is none. Looked up once, in the fork server, so that a
    shim pays only for the call (the setting is not inherited across fork)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


PR_SET_CHILD_SUBREAPER = 36
_become_subreaper = _subreaper_switch()


def end_leftovers() -> int:
    """Kill (SIGKILL) and reap every process still below this one: what a worker left
    when it exited, its own orphans included (they came to us, the subreaper). Waits
    until they are gone; returns how many were signalled."""
    me, killed = os.getpid(), set[int]()
    while True:
        below = descendants(me)
        if not below:
            return len(killed)
        for pid in below:
            if pid in killed:
                continue  # (dead, and not reaped yet)
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)  # one of our children ends (all were killed); look again
        except ChildProcessError:
            pass


def _wait_worker(pid: int) -> tuple[int, Any]:
    """The worker's wait status and resource usage; orphans that end before it (they
    are the subreaper's children now) are reaped on the way."""
    while True:
        got, status, usage = os.wait4(-1, 0)
        if got == pid:
            return status, usage


def _spawn_worker(run_dir: str, argv: list[str], env: dict[str, str]) -> int:
    """The worker, in a process group of its own, in the run directory, stdin from
    /dev/null, stdout/stderr appended to the log files. posix_spawn (vfork and exec in
    the C library): the shim is a fork of the fork server, and every page its Python
    touches is copied, so the less Python here the less CPU per run. The shim holds
    no other descriptor without close-on-exec (spawn_shim closed them)."""
    os.chdir(run_dir)  # the shim's own working directory does not matter
    fds = [os.open(os.devnull, os.O_RDONLY),
           os.open(STDOUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
           os.open(STDERR_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)]
    try:
        path = shutil.which(argv[0], path=env.get("PATH", os.defpath)) or argv[0]
        return os.posix_spawn(path, argv, env, setpgroup=0, setsigdef=_SIGNALS_DEFAULT,
                              file_actions=[(os.POSIX_SPAWN_DUP2, fd, target)
                                            for target, fd in enumerate(fds)])
    finally:
        for fd in fds:
            os.close(fd)


_SIGNALS_DEFAULT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD,
                    signal.SIGPIPE, signal.SIGXFSZ)


# A relaying shim (a SLURM batch step, slurmstep.py) passes these signals on to its
# worker's group instead of dying of them: SIGINT stands for SIGKILL (a SIGKILL
# would end the shim itself), SIGUSR2 goes to the worker alone (the SDK's checkpoint
# request; its children would die of it).
RELAYED = {signal.SIGTERM: signal.SIGTERM, signal.SIGINT: signal.SIGKILL,
           signal.SIGUSR2: signal.SIGUSR2}
_relay: dict[str, Any] = {"pid": 0, "pending": []}


def _relay_signal(signum: int, frame: Any) -> None:
    pid = _relay["pid"]
    if not pid:
        _relay["pending"].append(signum)   # the worker is not started yet
        return
    try:
        if signum == signal.SIGUSR2:
            os.kill(pid, signal.SIGUSR2)
        else:
            os.killpg(pid, RELAYED[signal.Signals(signum)])
    except (ProcessLookupError, PermissionError):
        pass   # its group is gone already


def _shim(run_dir: str, argv: list[str], env: dict[str, str],
          limits: Limits = Limits(), relay: bool = False) -> int:
    """The shim's exit code: UNRECORDED_OK (0) when the exit record is written, or
    when it could not be (a full disk) but the worker exited 0, the one end that
    needs no record to be told; SHIM_STALE when another shim of the run came first;
    1 (an exception) otherwise. ``relay``: the signals of RELAYED are passed on to the
    worker (a SLURM batch step: SLURM signals the shim, not the worker's group)."""
    signal.set_wakeup_fd(-1)  # the parent's, closed by closerange
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    if relay:
        for sig in RELAYED:
            signal.signal(sig, _relay_signal)
    # Held (never closed) until this process exits; not inherited by the worker.
    locked = take_run_lock(run_dir) is not None  # another shim of this run first: its end
    me = {"shim_pid": os.getpid(), "shim_start_time": process_start_time(os.getpid())}
    attempt = attempt_of(env)
    if not locked:  # nothing to tell a restarted dispatcher that a shim owns the run
        write_atomic(os.path.join(run_dir, SHIM_FILE), me, durable=False)
    if os.path.isfile(os.path.join(run_dir, WORKER_FILE)) or \
            os.path.isfile(os.path.join(run_dir, EXIT_FILE)):
        return SHIM_STALE  # that shim started the worker already (a stale second request)
    started = time.time()
    reaper = _become_subreaper() if _become_subreaper is not None else False
    pin_note = run_limits.pin(limits.cores)   # the worker inherits the shim's cores
    memory = run_limits.memory_for(limits.memory_limit_mb, os.path.basename(run_dir),
                                   limits.cgroup_root) if limits.memory_limit_mb else None
    if memory is not None:
        run_limits.enter(memory)   # cgroup: the worker is born in the run's cgroup
    try:
        pid = _spawn_worker(run_dir, argv, env)
    except OSError as exc:
        write_atomic(os.path.join(run_dir, EXIT_FILE), {
            "exit_code": None, "signal": None, "spawn_error": str(exc),
            "started_at": started, "ended_at": time.time(), "pid": None,
            "attempt": attempt})
        return UNRECORDED_OK
    finally:
        if memory is not None:
            run_limits.leave(memory)
    if relay:
        _relay["pid"] = pid
        for signum in _relay["pending"]:
            _relay_signal(signum, None)
    write_atomic(os.path.join(run_dir, WORKER_FILE), {
        "pid": pid, "pgid": pid, "start_time": process_start_time(pid), **me,
        "started_at": started, RUN_LOCK: locked, "attempt": attempt,
        **run_limits.placed(limits.cores, pin_note, memory)}, durable=False)
    if memory is not None and memory.enforced_by == run_limits.SAMPLED:
        status, usage = run_limits.wait_sampling(
            pid, memory, lambda: descendants(os.getpid()), reaper)
    else:
        status, usage = _wait_worker(pid) if reaper else os.wait4(pid, 0)[1:]
    ended = time.time()
    record: dict[str, Any] = {
        "pid": pid, "attempt": attempt, "started_at": started, "ended_at": ended,
        "exit_code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "core_dumped": os.WCOREDUMP(status) if os.WIFSIGNALED(status) else False,
        "maxrss_kb": usage.ru_maxrss, "utime_s": usage.ru_utime, "stime_s": usage.ru_stime,
        # processes the worker left behind, killed before this record was written
        "leftovers_killed": end_leftovers() if reaper else 0,
    }
    if memory is not None:
        run_limits.cgroup_end(memory)
        record.update(memory.record())
    try:
        write_atomic(os.path.join(run_dir, EXIT_FILE), record)
    except OSError:
        if record["exit_code"] != 0:
            raise
    return UNRECORDED_OK
