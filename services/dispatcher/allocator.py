"""Pure scheduling: which PENDING runs start now, on which GPUs, and why the others
wait. Order: priority (high first), then submission seq. A run that does not fit
does not block the runs behind it that need no GPU, or only GPUs it cannot use; but
the first run in that order that waits for GPUs keeps the free ones it can use, so
that a stream of smaller runs behind it never starves it (unless what it waits for
are GPUs that processes we did not start use, as NVML lists them). One that can never fit (more
GPUs than exist, or more memory than any GPU has) is reported as unschedulable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from services.dispatcher.inventory import Gpu


@dataclass(frozen=True)
class Pending:
    run_id: str
    priority: int
    submitted_seq: int
    gpus: int
    min_gpu_memory_mb: int
    cpu_slots: int


@dataclass(frozen=True)
class Capacity:
    gpus: list[Gpu]            # the whole inventory
    busy_gpus: set[str]        # uuids claimed by our runs
    cpu_slots: int             # total
    busy_cpu_slots: int
    max_runs: int              # 0 = no cap
    active_runs: int


@dataclass(frozen=True)
class Decision:
    run_id: str
    action: str                # start | wait | never
    gpus: tuple[str, ...] = ()
    reason: str = ""


def queue_order(runs: Iterable[Pending]) -> list[Pending]:
    return sorted(runs, key=lambda r: (-r.priority, r.submitted_seq))


def plan(pending: Iterable[Pending], cap: Capacity) -> list[Decision]:
    out: list[Decision] = []
    busy = set(cap.busy_gpus)
    kept: set[str] = set()   # free GPUs kept for the first run that waits for GPUs
    kept_for = ""
    cpu_used = cap.busy_cpu_slots
    active = cap.active_runs
    for run in queue_order(pending):
        if run.gpus > len(cap.gpus):
            out.append(Decision(run.run_id, "never", reason=(
                f"asks for {run.gpus} GPU(s) but this machine has {len(cap.gpus)}")))
            continue
        if run.cpu_slots > cap.cpu_slots:
            out.append(Decision(run.run_id, "never", reason=(
                f"asks for {run.cpu_slots} CPU slots but there are {cap.cpu_slots}")))
            continue
        big_enough = sum(g.memory_total >= run.min_gpu_memory_mb * 1024**2 for g in cap.gpus)
        if run.gpus and big_enough < run.gpus:
            out.append(Decision(run.run_id, "never", reason=(
                f"asks for {run.gpus} GPU(s) with {run.min_gpu_memory_mb} MiB each but "
                f"only {big_enough} here have that much memory")))
            continue
        if cap.max_runs and active >= cap.max_runs:
            out.append(Decision(run.run_id, "wait", reason=(
                f"the concurrent-run cap ({cap.max_runs}) is reached")))
            continue
        if cpu_used + run.cpu_slots > cap.cpu_slots:
            out.append(Decision(run.run_id, "wait", reason=(
                f"needs {run.cpu_slots} CPU slot(s), more than are free")))
            continue
        need_mb = run.min_gpu_memory_mb
        usable = [g for g in cap.gpus if g.uuid not in busy and not g.foreign_pids
                  and g.memory_free >= need_mb * 1024**2]
        if len([g for g in usable if g.uuid not in kept]) < run.gpus:
            free = [g for g in cap.gpus if g.uuid not in busy]
            # No counts in the reason: it is recorded (RunWaiting) each time it changes,
            # and a count would change for every waiting run whenever a GPU frees.
            if len(usable) >= run.gpus:
                why = f"needs {run.gpus} GPU(s): free ones are kept for {kept_for} (ahead " \
                      "in the queue)"
            elif len(free) >= run.gpus:
                why = f"needs {run.gpus} GPU(s) with {need_mb} MiB free and no foreign " \
                      "process: too few are"
            else:
                why = f"needs {run.gpus} GPU(s), more than are free"
            # Kept only if our own runs' ends can give it what it needs: GPUs taken by
            # processes we did not start may never come back, and must not idle others.
            ours_can = sum(1 for g in cap.gpus if not g.foreign_pids
                           and g.memory_total >= need_mb * 1024**2) >= run.gpus
            if not kept_for and ours_can:
                kept.update(g.uuid for g in usable)
                kept_for = run.run_id
            out.append(Decision(run.run_id, "wait", reason=why))
            continue
        usable = [g for g in usable if g.uuid not in kept]
        chosen = tuple(g.uuid for g in usable[:run.gpus])
        busy.update(chosen)
        cpu_used += run.cpu_slots
        active += 1
        out.append(Decision(run.run_id, "start", gpus=chosen))
    return out
