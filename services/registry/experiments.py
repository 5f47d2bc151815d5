"""The registry's experiment commands and queries (docs/EXPERIMENTS.md): an
experiment's submission, with every new cell's run, is one request and one savepoint
of the batch's transaction; so are its cancel and its rerun, with every run's events.
No sockets here (service.py owns them); the decisions are core.experimentcommands'.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Optional, Protocol

from core import commands as cmds
from core import experimentcommands as xcmds
from core import protocol as proto
from core.errors import Conflict, NotFound, ValidationError
from core.events import DomainEvent, Event, RunSubmitted
from core.experimentstate import CellRow, ExperimentState, experiment_view
from core.fields import from_map
from core.projection import State
from core.runconfig import RunConfig
from core.runstate import RunState
from eventstore.reader import StoredEvent
from eventstore.tables import EXPERIMENT_SELECT, experiment_from_row, load_experiment
from services.registry import store

MAX_ID_TRIES = 1000  # new run ids tried for one cell (as a submit tries)


class Appender(Protocol):
    """What the experiment commands use of the registry's RequestHandler."""

    conn: sqlite3.Connection
    make_run_id: Callable[[], str]

    def _append(self, before: State | None, events: list[DomainEvent], request_id: str,
                source: str) -> tuple[State | None, list[StoredEvent]]: ...

    def check_config(self, cmd: cmds.SubmitRun) -> RunConfig: ...

    def env_gone(self, run: RunState) -> str: ...


class ExperimentHandlers:
    def __init__(self, registry: Appender) -> None:
        self.registry = registry
        self.conn = registry.conn

    # --- commands ----------------------------------------------------------------
    def submit(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        """The experiment's new revision: each cell's run found by digest and code, the
        missing ones created; nothing at all when the spec is the one recorded and every
        cell's run is the one recorded (the same code: other code makes new runs)."""
        cmd = from_map(xcmds.SubmitExperiment, args, "SubmitExperiment")
        spec = xcmds.parse_submitted(cmd)
        before = load_experiment(self.conn, spec.name)
        planned = xcmds.plan_cells(spec, cmd, self.registry.check_config)
        stored: list[StoredEvent] = []
        cells: list[CellRow] = []
        made: dict[tuple[str, str], str] = {}  # (digest, code_digest) -> run id, this request
        created = 0
        for cell in planned:
            key = (cell.submitted.digest, cell.submitted.code_digest)
            run_id = made.get(key)
            if run_id is None:
                existing = store.run_by_digest(self.conn, *key)
                if existing is not None:
                    run_id = existing.run_id
                else:
                    run_id, events = self._create(cell.submitted, rid, src)
                    stored.extend(events)
                    created += 1
                made[key] = run_id
            cells.append((cell.point, cell.seed, run_id))
        if xcmds.unchanged(before, spec, cells):
            assert before is not None and not stored
            return self._reply(before, created=0), []
        events = xcmds.decide_submit_experiment(spec, cells, cmd.submitted_by)
        state, appended = self.registry._append(before, events, rid, src)
        assert isinstance(state, ExperimentState)
        return self._reply(state, created=created), stored + appended

    def _create(self, planned: RunSubmitted, rid: str, src: str) -> tuple[str, list[StoredEvent]]:
        for _ in range(MAX_ID_TRIES):
            run_id = self.registry.make_run_id()
            event = RunSubmitted(run_id=run_id, digest=planned.digest, config=planned.config,
                                 priority=planned.priority, submitted_by=planned.submitted_by,
                                 code=planned.code, code_digest=planned.code_digest,
                                 experiment=planned.experiment)
            try:
                _, stored = self.registry._append(None, [event], rid, src)
                return run_id, stored
            except Conflict:
                continue  # the id is taken (see RequestHandler._submit): a later one
        raise Conflict(f"no free run id after {MAX_ID_TRIES} tries")

    def cancel(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        cmd = from_map(xcmds.CancelExperiment, args, "CancelExperiment")
        reply, stored, mine = self._each_run(cmd, xcmds.decide_cancel_experiment, rid, src)
        return {**reply, "cancelled": list(mine[0].runs) if mine else []}, stored

    def rerun(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        cmd = from_map(xcmds.RerunExperiment, args, "RerunExperiment")
        reply, stored, mine = self._each_run(cmd, xcmds.decide_rerun_experiment, rid, src,
                                             check=self.registry.env_gone)
        return {**reply, "rerun": list(mine[0].runs) if mine else []}, stored

    def _each_run(self, cmd: Any, decide: Callable[..., Any], rid: str, src: str,
                  check: Optional[Callable[[RunState], str]] = None) -> tuple[Any, Any, Any]:
        """A command on every cell's run: the experiment's event and each run's, in this
        request's savepoint. ``check(run)``: why a run the decision names must not be
        changed ("" where it may)."""
        xcmds.check_experiment_name(cmd.name)
        before = load_experiment(self.conn, cmd.name)
        runs = self._runs(before)
        mine, per_run = decide(before, cmd, runs)
        by_id = {r.run_id: r for r in runs}
        for events in per_run:
            refusal = check(by_id[events[0].run_id]) if check is not None else ""
            if refusal:
                raise ValidationError("python_env", refusal)
        stored = self._apply_runs(runs, per_run, rid, src)
        state, appended = self.registry._append(before, mine, rid, src)
        assert isinstance(state, ExperimentState)
        return self._reply(state), stored + appended, mine

    def _runs(self, state: Optional[ExperimentState]) -> list[RunState]:
        if state is None:
            return []
        return store.load_runs(self.conn, dict.fromkeys(state.run_ids()))

    def _apply_runs(self, runs: list[RunState], per_run: list[list[Event]], rid: str,
                    src: str) -> list[StoredEvent]:
        by_id = {r.run_id: r for r in runs}
        stored: list[StoredEvent] = []
        for events in per_run:
            if events:
                _, appended = self.registry._append(by_id[events[0].run_id], list(events),
                                                    rid, src)
                stored.extend(appended)
        return stored

    # --- queries -----------------------------------------------------------------
    def get(self, q: proto.GetExperiment) -> Any:
        state = load_experiment(self.conn, q.name)
        if state is None:
            raise NotFound(f"experiment {q.name!r} does not exist", name=q.name)
        return self._reply(state, with_runs=True)

    def list(self, q: proto.ListExperiments) -> Any:
        rows = self.conn.execute(f"{EXPERIMENT_SELECT} ORDER BY created_seq DESC LIMIT ? "
                                 "OFFSET ?", (q.limit + 1, q.offset)).fetchall()
        out = []
        for row in rows[:q.limit]:
            state = experiment_from_row(row)
            view = experiment_view(state)
            del view["cells"], view["points"]
            view.update(cell_count=len(state.cells), runs=store.cell_statuses(self.conn,
                                                                              state.name))
            out.append(view)
        return {"experiments": out, "more": len(rows) > q.limit}

    def _reply(self, state: ExperimentState, created: Optional[int] = None,
               with_runs: bool = False) -> dict[str, Any]:
        view = experiment_view(state)
        view["runs"] = store.cell_statuses(self.conn, state.name)
        if with_runs:  # each cell with its run's status, attempt and cause
            view["cells"] = store.cell_runs(self.conn, state.name)
        out: dict[str, Any] = {"experiment": view}
        if created is not None:
            out["created"] = created
        return out
