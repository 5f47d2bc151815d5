"""An experiment's state: the fold of its stream ``exp-<name>`` (ExperimentSubmitted,
ExperimentCancelled, ExperimentRerun), the only place an experiment's status changes.

    (new) --ExperimentSubmitted--> ACTIVE --ExperimentSubmitted--> ACTIVE (a new revision)
    ACTIVE | CANCELLED --ExperimentCancelled--> CANCELLED --ExperimentSubmitted--> ACTIVE
    ACTIVE | CANCELLED --ExperimentRerun--> ACTIVE

Whether an experiment is done is not a status of its own: it is read from its cells'
runs (every one ended), which change in their own streams.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from core import events as ev
from core.errors import IllegalTransition

ACTIVE, CANCELLED = "ACTIVE", "CANCELLED"

# (status before or None for a new experiment, event type) -> status after
EXPERIMENT_TRANSITIONS: dict[tuple[Optional[str], str], str] = {
    (None, "ExperimentSubmitted"): ACTIVE,
    (ACTIVE, "ExperimentSubmitted"): ACTIVE,
    (CANCELLED, "ExperimentSubmitted"): ACTIVE,
    (ACTIVE, "ExperimentCancelled"): CANCELLED,
    (CANCELLED, "ExperimentCancelled"): CANCELLED,   # runs of it were left (a rerun's)
    (ACTIVE, "ExperimentRerun"): ACTIVE,
    (CANCELLED, "ExperimentRerun"): ACTIVE,
}

# One cell: (point index, seed, run id).
CellRow = tuple[int, int, str]


@dataclass(slots=True)
class ExperimentState:
    """Everything the log says about one experiment, as of ``last_seq``."""

    name: str
    status: str
    spec: dict
    spec_digest: str
    points: list
    cells: tuple[CellRow, ...]
    max_concurrent: int
    priority: Optional[int]
    submitted_by: str
    created_seq: int
    created_at: float
    updated_at: float
    last_seq: int
    version: int                 # the stream's version (events applied)
    revision: int = 1            # ExperimentSubmitted events applied
    cancelled_by: str = ""
    cancel_reason: str = ""
    cancelled_at: Optional[float] = None

    def run_ids(self) -> list[str]:
        return [run_id for _, _, run_id in self.cells]


def apply_experiment(state: Optional[ExperimentState], event: ev.ExperimentEvent, seq: int,
                     at: float) -> ExperimentState:
    """The experiment after ``event`` (committed at ``seq``, time ``at``); ``state`` is
    left as it was. Pure. Raises IllegalTransition for a move the table lacks."""
    before = state.status if state is not None else None
    after = EXPERIMENT_TRANSITIONS.get((before, event.TYPE))
    if after is None:
        raise IllegalTransition(event.name, before or "NEW", event.TYPE, what="experiment")
    if isinstance(event, ev.ExperimentSubmitted):
        cells = tuple((int(p), int(s), str(r)) for p, s, r in event.cells)
        if state is None:
            return ExperimentState(event.name, after, dict(event.spec), event.spec_digest,
                                   list(event.points), cells, event.max_concurrent,
                                   event.priority, event.submitted_by, seq, at, at, seq, 1)
        return dataclasses.replace(
            state, status=after, spec=dict(event.spec), spec_digest=event.spec_digest,
            points=list(event.points), cells=cells, max_concurrent=event.max_concurrent,
            priority=event.priority, submitted_by=event.submitted_by, updated_at=at,
            last_seq=seq, version=state.version + 1, revision=state.revision + 1)
    assert state is not None
    if isinstance(event, ev.ExperimentCancelled):
        return dataclasses.replace(state, status=after, cancelled_by=event.requested_by,
                                   cancel_reason=event.reason, cancelled_at=at, updated_at=at,
                                   last_seq=seq, version=state.version + 1)
    return dataclasses.replace(state, status=after, updated_at=at, last_seq=seq,
                               version=state.version + 1)


def experiment_view(s: ExperimentState) -> dict[str, Any]:
    """An experiment as plain data for replies and tools (its cells as maps)."""
    return {"name": s.name, "status": s.status, "spec": s.spec, "spec_digest": s.spec_digest,
            "points": s.points,
            "cells": [{"point": p, "seed": seed, "run_id": r} for p, seed, r in s.cells],
            "max_concurrent": s.max_concurrent, "priority": s.priority,
            "submitted_by": s.submitted_by, "created_seq": s.created_seq,
            "created_at": s.created_at, "updated_at": s.updated_at, "last_seq": s.last_seq,
            "version": s.version, "revision": s.revision, "cancelled_by": s.cancelled_by,
            "cancel_reason": s.cancel_reason, "cancelled_at": s.cancelled_at}
