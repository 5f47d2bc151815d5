"""A run's limits, applied by its shim (spawner.py): the cores it is pinned to and its
memory limit. Standard library only: the fork server imports it (through spawner).

Cores: the shim pins itself (``sched_setaffinity``) to the run's cores before it starts
the worker, which inherits the mask, as do its threads and its children (the shim only
waits). The dispatcher chose the cores (services/dispatcher/decide/cores.py).

Memory, ``resources.memory_limit_mb`` (MiB, the run's processes together), one of:

- ``cgroup``: cgroup v2, where a cgroup with the memory controller can be created for
  the run (below TRAINER_CGROUP, or below the shim's own cgroup when that one hands the
  memory controller to its children). The shim creates ``trainer-<run_id>`` there with
  ``memory.max`` = the limit, ``memory.swap.max`` = 0 and ``memory.oom.group`` = 1, moves
  itself in, starts the worker (which is born inside: no race with its first fork), and
  moves itself back out. Over the limit, the kernel's OOM killer ends all the run's
  processes at once; the shim reads ``oom_kill`` from ``memory.events`` when the worker
  has ended, and removes the cgroup.
- ``sampled``: everywhere else (cgroup v1, no delegation, no permission). The shim
  sums the resident set sizes (``/proc/<pid>/statm``) of every process below it every
  SAMPLE_S seconds and SIGKILLs them all once the sum is over the limit. Pages shared
  by processes count once per process; an allocation faster than a sample period can
  overshoot the limit for up to that long.

Either way the shim records the end in exit.json (``memory_exceeded``, ``memory_peak_mb``,
``memory_enforced_by``), so the dispatcher ends the run with the cause memory_limit.
RLIMIT_AS is not used: it limits address space, not memory (CUDA and JAX reserve
terabytes of it), and a worker that hits it sees a MemoryError, not a typed end.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

CGROUP = "cgroup"
SAMPLED = "sampled"
SAMPLE_S = 0.25
MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Limits:
    """What the fork server hands a shim with its run (the JSON of its request)."""

    cores: tuple[int, ...] = ()        # () = not pinned
    memory_limit_mb: int = 0           # 0 = none
    cgroup_root: str = ""              # TRAINER_CGROUP ("" = the shim's own cgroup)

    def to_wire(self) -> dict[str, Any]:
        return {"cores": list(self.cores), "memory_limit_mb": self.memory_limit_mb,
                "cgroup_root": self.cgroup_root}

    @staticmethod
    def from_wire(data: Any) -> "Limits":
        if not isinstance(data, dict):
            return Limits()
        return Limits(tuple(int(c) for c in data.get("cores") or ()),
                      int(data.get("memory_limit_mb") or 0), str(data.get("cgroup_root") or ""))


@dataclass
class Memory:
    """The memory limit of one run, as its shim enforces it."""

    limit_mb: int
    enforced_by: str = SAMPLED
    cgroup: str = ""                   # the run's cgroup folder (CGROUP)
    note: str = ""                     # why the cgroup could not be used ("" if it was)
    exceeded: bool = False
    peak_bytes: int = 0
    _home: str = field(default="", repr=False)   # the shim's own cgroup.procs

    def record(self) -> dict[str, Any]:
        """The exit record's fields of the memory limit."""
        out: dict[str, Any] = {"memory_limit_mb": self.limit_mb,
                               "memory_enforced_by": self.enforced_by,
                               "memory_exceeded": self.exceeded,
                               "memory_peak_mb": round(self.peak_bytes / MIB, 1)}
        if self.note:
            out["memory_note"] = self.note
        return out


def pin(cores: tuple[int, ...]) -> str:
    """Pin this process (and so the worker it starts) to ``cores``; "" or why not."""
    if not cores:
        return ""
    try:
        os.sched_setaffinity(0, cores)
    except (OSError, ValueError, AttributeError) as exc:
        return f"cores {list(cores)} not pinned: {exc}"
    return ""


def placed(cores: tuple[int, ...], pin_note: str, memory: Optional[Memory]) -> dict[str, Any]:
    """worker.json's fields of the run's limits: the cores it is pinned to ([]: not
    pinned; ``cores_note``: why, when pinning failed) and how its memory is limited
    (0 and "" without a limit)."""
    return {"cores": [] if pin_note else list(cores), "cores_note": pin_note,
            "memory_limit_mb": memory.limit_mb if memory is not None else 0,
            "memory_enforced_by": memory.enforced_by if memory is not None else ""}


# --- cgroup v2 ----------------------------------------------------------------------

def _own_cgroup() -> tuple[str, str]:
    """(the cgroup2 mount point, this process's cgroup path in it); ("", "") if none."""
    path = ""
    try:
        with open("/proc/self/cgroup", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("0::"):
                    path = line[3:].strip()
        mount = ""
        with open("/proc/self/mountinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    mount = left.split()[4]
                    break
    except OSError:
        return "", ""
    return (mount, path) if mount and path else ("", "")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as fh:
        return fh.read()


def cgroup_parent(root: str) -> tuple[str, str, str]:
    """(the folder a run's cgroup is made in, this process's own cgroup folder, "") or
    ("", "", why there is none): cgroup v2, and ``memory`` among the controllers the
    folder hands to its children (its ``cgroup.subtree_control``)."""
    mount, path = _own_cgroup()
    if not mount:
        return "", "", "no cgroup v2 hierarchy holds this process (cgroup v1 only?)"
    own = os.path.normpath(os.path.join(mount, path.lstrip("/")))
    parent = root or own
    try:
        controls = _read(os.path.join(parent, "cgroup.subtree_control")).split()
    except OSError as exc:
        return "", "", f"cgroup {parent} cannot be read: {exc.strerror}"
    if "memory" not in controls:
        return "", "", (f"cgroup {parent} does not hand the memory controller to its "
                        "children (memory not in its cgroup.subtree_control)")
    if not os.access(parent, os.W_OK):
        return "", "", f"cgroup {parent} is not writable by this user"
    return parent, own, ""


def memory_for(limit_mb: int, run_id: str, root: str) -> Memory:
    """The run's memory limit: its own cgroup where one can be made, else sampled."""
    memory = Memory(limit_mb)
    parent, own, why = cgroup_parent(root)
    if not parent:
        memory.note = why
        return memory
    folder = os.path.join(parent, f"trainer-{run_id}")
    try:
        try:
            os.mkdir(folder)
        except FileExistsError:
            # An earlier shim's of this run, which died before it removed it: what is
            # left in it is killed, and it is made afresh (its OOM counters are not ours).
            _remove(folder)
            os.mkdir(folder)
        _write(os.path.join(folder, "memory.max"), str(limit_mb * MIB))
        for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            if os.path.exists(os.path.join(folder, name)):
                _write(os.path.join(folder, name), value)
    except OSError as exc:
        memory.note = f"cgroup {folder} cannot be set up: {exc.strerror or exc}"
        _remove(folder)
        return memory
    memory.enforced_by, memory.cgroup = CGROUP, folder
    memory._home = os.path.join(own, "cgroup.procs")
    return memory


def enter(memory: Memory) -> None:
    """Move this process into the run's cgroup (the worker it starts next is born
    there); on failure the limit falls back to sampling."""
    if memory.enforced_by != CGROUP:
        return
    try:
        _write(os.path.join(memory.cgroup, "cgroup.procs"), str(os.getpid()))
    except OSError as exc:
        memory.note = f"cannot move into cgroup {memory.cgroup}: {exc.strerror or exc}"
        memory.enforced_by = SAMPLED
        _remove(memory.cgroup)


def leave(memory: Memory) -> None:
    """Back to our own cgroup, once the worker is started: the shim is not the run's,
    and the run's OOM kill must not take it. Where that fails, the shim asks the OOM
    killer to pass it over (oom_score_adj -1000, set after the worker inherited ours)."""
    if memory.enforced_by != CGROUP:
        return
    try:
        _write(memory._home, str(os.getpid()))
    except OSError:
        try:
            _write("/proc/self/oom_score_adj", "-1000")
        except OSError:
            memory.note = "the shim stays in the run's cgroup (it could not move back)"


def cgroup_end(memory: Memory) -> None:
    """After the worker's end: was anything OOM-killed, how much was used; the
    cgroup's last processes killed and the cgroup removed."""
    if memory.enforced_by != CGROUP:
        return
    try:
        events = dict(line.split() for line in
                      _read(os.path.join(memory.cgroup, "memory.events")).splitlines()
                      if len(line.split()) == 2)
        memory.exceeded = int(events.get("oom_kill", "0")) > 0 or \
            int(events.get("oom_group_kill", "0")) > 0
    except (OSError, ValueError):
        pass
    try:
        memory.peak_bytes = int(_read(os.path.join(memory.cgroup, "memory.peak")))
    except (OSError, ValueError):
        pass
    _remove(memory.cgroup)


def _remove(folder: str) -> None:
    """Kill what is left in the cgroup (cgroup.kill, Linux 5.14+) and remove it."""
    try:
        _write(os.path.join(folder, "cgroup.kill"), "1")
    except OSError:
        pass
    deadline = time.monotonic() + 2.0
    while True:
        try:
            os.rmdir(folder)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return
        time.sleep(0.01)  # its processes are being killed: it empties within ms


# --- sampling -----------------------------------------------------------------------

def resident(pids: list[int]) -> int:
    """The sum of the resident set sizes of ``pids`` in bytes (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                total += int(fh.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def wait_sampling(pid: int, memory: Memory, below: Callable[[], list[int]],
                  any_child: bool) -> tuple[int, Any]:
    """Wait for the worker ``pid`` (its wait status and resource usage) while sampling
    the memory of every process ``below()`` the shim; over the limit, all of them are
    SIGKILLed. ``any_child``: reap orphans on the way (the shim is the subreaper)."""
    limit = memory.limit_mb * MIB
    try:
        pidfd: Optional[int] = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            while True:
                got, status, usage = os.wait4(-1 if any_child else pid, os.WNOHANG)
                if got == pid:
                    return status, usage
                if got == 0:
                    break
            pids = below()
            used = resident(pids)
            memory.peak_bytes = max(memory.peak_bytes, used)
            if used > limit and not memory.exceeded:
                memory.exceeded = True
                for victim in pids:
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if pidfd is not None:
                select.select([pidfd], [], [], SAMPLE_S)
            else:
                time.sleep(SAMPLE_S)
    finally:
        if pidfd is not None:
            os.close(pidfd)
