"""Pure scheduling: which PENDING runs start now, on which GPUs, and why the others
wait. Order: priority (high first), then submission seq; a cell of an experiment that
sets a priority has the experiment's, not its own. The first run in that order
that cannot start now (the head) keeps the CPU slots it needs and the free GPUs it
can use: a run behind it starts only if it fits in what is left besides them
(backfill that cannot delay the head), so a stream of smaller runs never starves it.
Nothing is kept for a run that waits for GPUs that processes we did not start use
(as NVML lists them): they may never come back; the next waiting run is the head
then. One that can never fit (more GPUs or CPU slots than exist, or more memory than
any GPU has) is reported as unschedulable, and keeps nothing. A run of an experiment
that already runs its ``max_concurrent`` runs at once waits, and keeps nothing either:
it is not the head, and the runs behind it start in what it does not use."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

from services.dispatcher.decide.gpus import Gpu


class Verdict(str, enum.Enum):
    START = "start"
    WAIT = "wait"
    NEVER = "never"


@dataclass(frozen=True)
class ExperimentLimits:
    """How the runs of one experiment are scheduled (its latest ExperimentSubmitted):
    at most ``max_concurrent`` of them at once (0: no limit), queued at ``priority``
    (None: each run at its own)."""

    name: str
    max_concurrent: int = 0
    priority: Optional[int] = None

    @property
    def matters(self) -> bool:
        """Whether it changes anything (an experiment with neither is not kept)."""
        return self.max_concurrent > 0 or self.priority is not None


@dataclass(frozen=True)
class Pending:
    run_id: str
    priority: int
    submitted_seq: int
    gpus: int
    min_gpu_memory_mb: int
    cpu_slots: int
    experiment: str = ""     # the experiment it is a cell of ("": none)
    max_concurrent: int = 0  # ... and that experiment's limit (0: none)


@dataclass(frozen=True)
class Capacity:
    gpus: Sequence[Gpu]        # the whole inventory
    busy_gpus: frozenset[str]  # uuids held by our runs and by runs held elsewhere
    cpu_slots: int             # total
    busy_cpu_slots: int
    max_runs: int              # 0 = no cap
    active_runs: int
    # runs of each experiment under way (claimed, starting, running, killing, ending)
    experiment_runs: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    run_id: str
    verdict: Verdict
    gpus: tuple[str, ...] = ()
    reason: str = ""


def queue_order(runs: Iterable[Pending]) -> list[Pending]:
    return sorted(runs, key=lambda r: (-r.priority, r.submitted_seq))


def never_reason(run: Pending, cap: Capacity) -> str:
    """Why ``run`` can never start on this machine, or "" if it can."""
    if run.gpus > len(cap.gpus):
        return f"asks for {run.gpus} GPU(s) but this machine has {len(cap.gpus)}"
    if run.cpu_slots > cap.cpu_slots:
        return f"asks for {run.cpu_slots} CPU slots but there are {cap.cpu_slots}"
    big_enough = sum(g.memory_total >= run.min_gpu_memory_mb * 1024**2 for g in cap.gpus)
    if run.gpus and big_enough < run.gpus:
        return (f"asks for {run.gpus} GPU(s) with {run.min_gpu_memory_mb} MiB each but "
                f"only {big_enough} here have that much memory")
    return ""


def plan(pending: Iterable[Pending], cap: Capacity) -> list[Decision]:
    out: list[Decision] = []
    busy = set(cap.busy_gpus)
    # The head: the first run in queue order that waits, and that our own runs' ends
    # can start. Its CPU slots and the free GPUs it can use are kept for it: a later
    # run starts only in what is left besides them (so it cannot delay the head).
    head = ""
    kept: set[str] = set()   # free GPUs kept for the head
    kept_cpu = 0             # CPU slots kept for the head
    cpu_used = cap.busy_cpu_slots
    active = cap.active_runs
    per_experiment = dict(cap.experiment_runs)
    for run in queue_order(pending):
        never = never_reason(run, cap)
        if never:
            out.append(Decision(run.run_id, Verdict.NEVER, reason=never))
            continue
        if cap.max_runs and active >= cap.max_runs:
            out.append(Decision(run.run_id, Verdict.WAIT, reason=(
                f"the concurrent-run cap ({cap.max_runs}) is reached")))
            continue
        if run.max_concurrent and per_experiment.get(run.experiment, 0) >= run.max_concurrent:
            # Not the head: it keeps nothing, the runs behind it may use all there is.
            out.append(Decision(run.run_id, Verdict.WAIT, reason=(
                f"experiment {run.experiment} runs its limit of {run.max_concurrent} "
                "at once")))
            continue
        need_mb = run.min_gpu_memory_mb
        usable = [g for g in cap.gpus if g.uuid not in busy and not g.foreign_pids
                  and g.memory_free >= need_mb * 1024**2]
        available = [g for g in usable if g.uuid not in kept]
        cpu_fits = cpu_used + run.cpu_slots <= cap.cpu_slots
        if cpu_fits and cpu_used + kept_cpu + run.cpu_slots <= cap.cpu_slots \
                and len(available) >= run.gpus:
            chosen = tuple(g.uuid for g in available[:run.gpus])
            busy.update(chosen)
            cpu_used += run.cpu_slots
            active += 1
            if run.experiment:
                per_experiment[run.experiment] = per_experiment.get(run.experiment, 0) + 1
            out.append(Decision(run.run_id, Verdict.START, gpus=chosen))
            continue
        # No counts in the reason: it is recorded (RunWaiting) each time it changes,
        # and a count would change for every waiting run whenever a slot or GPU frees.
        if not cpu_fits:
            why = f"needs {run.cpu_slots} CPU slot(s), more than are free"
        elif len(available) >= run.gpus:
            why = f"needs {run.cpu_slots} CPU slot(s): free ones are kept for {head} " \
                  "(ahead in the queue)"
        elif len(usable) >= run.gpus:
            why = f"needs {run.gpus} GPU(s): free ones are kept for {head} (ahead " \
                  "in the queue)"
        elif len([g for g in cap.gpus if g.uuid not in busy]) >= run.gpus:
            why = f"needs {run.gpus} GPU(s) with {need_mb} MiB free and no foreign " \
                  "process: too few are"
        else:
            why = f"needs {run.gpus} GPU(s), more than are free"
        # Kept only if our own runs' ends can give it what it needs: GPUs taken by
        # processes we did not start may never come back, and must not idle others.
        ours_can = sum(1 for g in cap.gpus if not g.foreign_pids
                       and g.memory_total >= need_mb * 1024**2) >= run.gpus
        if not head and ours_can:
            head = run.run_id
            kept_cpu = run.cpu_slots
            kept.update(g.uuid for g in available[:run.gpus])
        out.append(Decision(run.run_id, Verdict.WAIT, reason=why))
    return out
