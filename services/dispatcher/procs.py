"""The processes of a run, read from /proc, and signalling them: a process's start
time (a reused pid told apart), whether a process group is alive, the processes of a
run found by its group and by TRAINER_RUN_ID in their environment (a shim gone), the
processes below one (the shim's leftovers). Linux only; what forks and waits is in
spawner.py."""

from __future__ import annotations

import os
import signal
from typing import Iterator, Optional

RUN_ID_VAR = "TRAINER_RUN_ID"  # in every worker's environment (launch.py sets it)


def process_start_time(pid: int) -> Optional[float]:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22);
    None if it does not exist or is a zombie (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return float(fields[19])


def group_alive(pgid: int) -> bool:
    """Is any live (non-zombie) process left in the process group?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(group == pgid for _, group in _live_processes())


def _live_processes() -> Iterator[tuple[int, int]]:
    """(pid, process group) of each live (non-zombie) process, from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] not in ("Z", "X"):
            yield int(entry), int(fields[2])


def run_processes(run_id: str, pgid: Optional[int] = None) -> set[int]:
    """The live processes of a run found without its shim: those of its worker's
    process group, and those whose environment names the run (``TRAINER_RUN_ID``, which
    the worker and all it starts inherit), wherever they went (setsid). Used once the
    shim, the subreaper that would have ended them, is gone. One pass over /proc."""
    tag = b"\0" + f"{RUN_ID_VAR}={run_id}".encode() + b"\0"
    found = set()
    for pid, group in _live_processes():
        if group == pgid:
            found.add(pid)
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if tag in b"\0" + fh.read():
                    found.add(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    found.discard(os.getpid())
    return found


def kill_processes(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def group_members(pgids: set[int]) -> set[int]:
    """The live (non-zombie) processes of these process groups (one pass over /proc)."""
    return {pid for pid, group in _live_processes() if group in pgids} if pgids else set()


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def signal_process(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (zombies included), from /proc's children lists."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found
