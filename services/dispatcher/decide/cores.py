"""Which CPUs a starting run is pinned to (pure).

The dispatcher's own CPUs are its affinity mask at start-up (``DispatcherConfig.cores``).
A run is pinned to as many of them as it has CPU slots, the lowest-numbered ones that no
run holding its slots is pinned to, so that concurrent runs never share a core. Runs
are pinned only where every CPU slot can have a core of its own (TRAINER_CPU_SLOTS at
most the number of the dispatcher's CPUs): with more slots than cores, pinning would
crowd some runs onto shared cores while others run free, so none is pinned (their
thread-count variables still say how many threads to use). A run for which too few
cores are free is not pinned either, nor one started while runs adopted after a restart
are still being read (their cores are not known yet): the reason is logged. Cores are
logical CPUs as the kernel numbers them (SMT siblings count as two).
"""

from __future__ import annotations

from typing import Iterable


def choose(cores: tuple[int, ...], total_slots: int, taken: Iterable[int],
           slots: int, unread: int = 0) -> tuple[tuple[int, ...], str]:
    """(the cores for a run with ``slots`` CPU slots, "") or ((), why it is not pinned)
    given the dispatcher's ``cores``, its ``total_slots``, the cores ``taken`` by the
    runs that hold slots, and how many of those are ``unread`` (being recovered: their
    cores are not known)."""
    if not cores:
        return (), "the dispatcher's CPUs are not known"
    if total_slots > len(cores):
        return (), (f"TRAINER_CPU_SLOTS ({total_slots}) exceeds the {len(cores)} CPU(s) "
                    "the dispatcher may use: runs are not pinned")
    if unread:
        return (), (f"{unread} run(s) adopted after the restart are still being read: "
                    "the cores they are pinned to are not known yet")
    busy = set(taken)
    free = [c for c in sorted(cores) if c not in busy]
    if len(free) < slots:
        return (), (f"{len(free)} of the dispatcher's CPUs are free of other runs, fewer "
                    f"than its {slots} CPU slot(s)")
    return tuple(free[:slots]), ""
