"""A registered Python environment's state: the fold of its stream ``env-<name>``
(EnvAdded, EnvRemoved), the only place an environment's status changes.

    (new) | REMOVED --EnvAdded--> PRESENT --EnvAdded--> PRESENT (what it said, again)
    PRESENT --EnvRemoved--> REMOVED

A removed environment keeps its row (``removed``), so that its stream's version and
last seq stay in the projection; it can be added again under its name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from core import events as ev
from core.errors import IllegalTransition

PRESENT, REMOVED = "PRESENT", "REMOVED"

# (status before or None for a new environment, event type) -> status after
ENV_TRANSITIONS: dict[tuple[Optional[str], str], str] = {
    (None, "EnvAdded"): PRESENT,
    (PRESENT, "EnvAdded"): PRESENT,
    (REMOVED, "EnvAdded"): PRESENT,
    (PRESENT, "EnvRemoved"): REMOVED,
}


@dataclass(slots=True)
class EnvState:
    """Everything the log says about one environment, as of ``last_seq``."""

    name: str
    python: str
    python_version: str
    sys_path: tuple[str, ...]
    prefix: str
    sdk_version: str
    added_by: str
    added_seq: int
    added_at: float
    updated_at: float
    last_seq: int
    version: int                 # the env stream's version (events applied)
    removed: bool = False
    removed_by: str = ""
    removed_at: Optional[float] = None
    remove_reason: str = ""

    @property
    def status(self) -> str:
        return REMOVED if self.removed else PRESENT


def apply_env(state: Optional[EnvState], event: ev.EnvEvent, seq: int,
              at: float) -> EnvState:
    """The environment after ``event`` (committed at ``seq``, time ``at``); ``state``
    is left as it was. Pure. Raises IllegalTransition for a move the table lacks."""
    before = state.status if state is not None else None
    if (before, event.TYPE) not in ENV_TRANSITIONS:
        raise IllegalTransition(event.name, before or "NEW", event.TYPE, what="environment")
    version = state.version + 1 if state is not None else 1
    if isinstance(event, ev.EnvAdded):
        return EnvState(event.name, event.python, event.python_version,
                        tuple(event.sys_path), event.prefix, event.sdk_version,
                        event.added_by, seq, at, at, seq, version)
    assert state is not None and isinstance(event, ev.EnvRemoved)
    return dataclasses.replace(state, removed=True, removed_by=event.removed_by,
                               removed_at=at, remove_reason=event.reason, updated_at=at,
                               last_seq=seq, version=version)


def env_view(s: EnvState) -> dict[str, Any]:
    """An environment as plain data for replies and tools."""
    return {"name": s.name, "python": s.python, "python_version": s.python_version,
            "sys_path": list(s.sys_path), "prefix": s.prefix, "sdk_version": s.sdk_version,
            "added_by": s.added_by, "added_seq": s.added_seq, "added_at": s.added_at,
            "updated_at": s.updated_at, "last_seq": s.last_seq, "version": s.version,
            "removed": s.removed, "removed_by": s.removed_by, "removed_at": s.removed_at,
            "remove_reason": s.remove_reason}
