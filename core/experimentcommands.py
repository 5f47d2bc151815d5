"""The commands on experiments (streams ``exp-<name>``) and their pure decisions:
SubmitExperiment, CancelExperiment, RerunExperiment (docs/EXPERIMENTS.md).

An experiment's cells are ordinary runs: the registry finds each cell's run by its
config's digest (and code), creates the ones that do not exist, and records the
experiment's revision with every cell's run, all in one transaction. The decisions
here say what to record; the reading and appending is the registry's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from core import commands as cmds
from core import events as ev
from core.errors import NotFound, OrchestratorError, ValidationError
from core.experimentstate import ACTIVE, CellRow, ExperimentState
from core.runconfig import RunConfig
from core.runstate import RunState, RunStatus
from core.streams import is_experiment_name
from core.sweepspec import SweepSpec, axis_of, parse_spec

RERUN_STATUSES = (RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class SubmitExperiment:
    """``spec``: the experiment spec (core.sweepspec); ``codes``: the code identity of
    each worker its cells run, as the gateway read it: one map per (worker, python_env)
    with those two names and ``code`` (core.codeid; none: {})."""

    spec: dict
    submitted_by: str = "anonymous"
    codes: list = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CancelExperiment:
    name: str
    requested_by: str = "anonymous"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RerunExperiment:
    """Every FAILED or CANCELLED cell gets a new attempt of its run (from its latest
    checkpoint, or from scratch)."""

    name: str
    requested_by: str = "anonymous"
    reason: str = ""
    from_scratch: bool = False


def check_experiment_name(name: object, field_name: str = "name") -> str:
    if not is_experiment_name(name):
        raise ValidationError(field_name, f"{str(name)[:80]!r} is not an experiment name")
    assert isinstance(name, str)
    return name


def code_of(codes: Sequence[Any], worker: str, python_env: str) -> dict[str, Any]:
    """The code identity SubmitExperiment carries for a worker ({} where none)."""
    for entry in codes:
        if isinstance(entry, dict) and entry.get("worker") == worker and \
                (entry.get("python_env") or "") == python_env:
            code = entry.get("code")
            return code if isinstance(code, dict) else {}
    return {}


@dataclass(frozen=True, slots=True)
class PlannedCell:
    """A cell's run as a submit would make it: its checked config and its
    RunSubmitted (with a placeholder id until the registry knows whether it exists)."""

    point: int
    seed: int
    config: RunConfig
    submitted: ev.RunSubmitted


def plan_cells(spec: SweepSpec, cmd: SubmitExperiment, check: Any) -> list[PlannedCell]:
    """Every cell checked as a submit checks a config (``check(SubmitRun)`` ->
    RunConfig, core.commands.validate_config with the registry's catalogs); a refusal
    names the axis value (``axes.steps[1]``) or the template field that caused it."""
    out: list[PlannedCell] = []
    points = spec.points()
    for cell in spec.cells():
        worker = cell.config.get("worker")
        env = cell.config.get("python_env") or ""
        submit = cmds.SubmitRun(cell.config, cmd.submitted_by or "anonymous",
                                code_of(cmd.codes, str(worker or ""), str(env)))
        try:
            config = check(submit)
            submitted = cmds.decide_submit(submit, config, "")[0]
        except ValidationError as exc:
            field_name = str(exc.details.get("field", ""))
            where = axis_of(spec, points[cell.point], field_name)
            raise ValidationError(where, f"makes an invalid config at point {cell.point} "
                                  f"seed {cell.seed}: {exc.message}") from None
        assert isinstance(submitted, ev.RunSubmitted)
        priority = spec.priority if spec.priority is not None else submitted.priority
        out.append(PlannedCell(cell.point, cell.seed, config,
                               ev.RunSubmitted(run_id="", digest=submitted.digest,
                                               config=submitted.config, priority=priority,
                                               submitted_by=submitted.submitted_by,
                                               code=submitted.code,
                                               code_digest=submitted.code_digest,
                                               experiment=spec.name)))
    return out


def parse_submitted(cmd: SubmitExperiment) -> SweepSpec:
    return parse_spec(cmd.spec)


def unchanged(state: Optional[ExperimentState], spec: SweepSpec,
              cells: Sequence[CellRow]) -> bool:
    """The same spec again, each cell the same run (the same code): nothing to record,
    whatever the experiment's status."""
    return state is not None and state.spec_digest == spec.digest() and \
        tuple(tuple(c) for c in cells) == state.cells


def decide_submit_experiment(spec: SweepSpec, cells: Sequence[CellRow],
                             submitted_by: str) -> list[ev.DomainEvent]:
    """The revision: the spec and every cell's run (``cells``: [point, seed, run_id])."""
    return [ev.ExperimentSubmitted(
        name=spec.name, spec=spec.to_map(), spec_digest=spec.digest(), points=spec.points(),
        cells=[list(c) for c in cells], max_concurrent=spec.max_concurrent,
        priority=spec.priority, submitted_by=submitted_by or "anonymous")]


def require(state: Optional[ExperimentState], name: str) -> ExperimentState:
    if state is None:
        raise NotFound(f"experiment {name!r} does not exist", name=name)
    return state


def decide_cancel_experiment(state: Optional[ExperimentState], cmd: CancelExperiment,
                             runs: Sequence[RunState]) -> tuple[list[ev.DomainEvent],
                                                                list[list[ev.Event]]]:
    """(the experiment's events, each run's events): every cell's run not ended is
    asked to cancel (core.commands.decide_cancel); nothing when the experiment is
    already cancelled and none of its runs is left."""
    s = require(state, cmd.name)
    per_run: list[list[ev.Event]] = []
    asked: list[str] = []
    for run in runs:
        if run.status.terminal:
            continue
        events = cmds.decide_cancel(run, cmds.RequestCancel(run.run_id, cmd.requested_by,
                                                            cmd.reason or
                                                            f"experiment {s.name} cancelled"))
        asked.append(run.run_id)
        if events:  # (none for a run asked before: the first request stands)
            per_run.append(events)
    if s.status != ACTIVE and not asked:
        return [], []
    return [ev.ExperimentCancelled(name=s.name, requested_by=cmd.requested_by or "anonymous",
                                   reason=cmd.reason, runs=tuple(asked))], per_run


def decide_rerun_experiment(state: Optional[ExperimentState], cmd: RerunExperiment,
                            runs: Sequence[RunState]) -> tuple[list[ev.DomainEvent],
                                                               list[list[ev.Event]]]:
    """Each FAILED or CANCELLED cell's run gets a new attempt; nothing when none is."""
    s = require(state, cmd.name)
    per_run: list[list[ev.Event]] = []
    for run in runs:
        if run.status not in RERUN_STATUSES:
            continue
        try:
            per_run.append(cmds.decide_rerun(run, cmds.RerunRun(
                run.run_id, cmd.requested_by, cmd.reason or f"experiment {s.name} rerun",
                from_scratch=cmd.from_scratch)))
        except OrchestratorError as exc:  # not expected for an ended run: said, not hidden
            raise ValidationError("name", f"run {run.run_id} cannot be rerun: {exc}") from None
    if not per_run:
        return [], []
    return [ev.ExperimentRerun(name=s.name, requested_by=cmd.requested_by or "anonymous",
                               runs=tuple(e[0].run_id for e in per_run))], per_run
