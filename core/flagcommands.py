"""The liveness flags' commands and their pure decisions (docs/SUPERVISION.md):
FlagRun and ClearRunFlag, sent by the dispatcher when a rule starts or stops holding.

A flag judges the attempt under way of a RUNNING run: one naming another attempt (a
late message of an ended attempt) is refused, and so is a flag on a run that is not
running. Asking twice changes nothing: a rule already standing is not flagged again, a
rule not standing is not cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from core import events as ev
from core.digest import canonical_json, check_depth
from core.errors import Conflict, IllegalTransition, NotFound, ValidationError
from core.livenesspolicy import Action, Rule
from core.runstate import RunState, RunStatus

MAX_EVIDENCE_BYTES = 4 * 1024   # a flag's evidence, as canonical JSON


@dataclass(frozen=True, slots=True)
class FlagRun:
    run_id: str
    attempt: int
    rule: str
    action: str
    evidence: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClearRunFlag:
    run_id: str
    attempt: int
    rule: str
    evidence: dict = field(default_factory=dict)


def _running(state: Optional[RunState], run_id: str, attempt: int, event: str) -> RunState:
    if state is None:
        raise NotFound(f"run {run_id} does not exist", run_id=run_id)
    if state.status is not RunStatus.RUNNING:
        raise IllegalTransition(run_id, state.status.value, event)
    if attempt != state.attempt:
        raise Conflict(f"run {run_id} is on attempt {state.attempt}, not {attempt}: a flag "
                       "judges the attempt under way", run_id=run_id)
    return state


def _checked(rule: str, evidence: dict) -> None:
    if rule not in Rule._value2member_map_:
        raise ValidationError("rule", f"{rule[:40]!r} is not a rule (one of "
                              f"{', '.join(r.value for r in Rule)})")
    if not isinstance(evidence, dict):
        raise ValidationError("evidence", "must be a map")
    check_depth(evidence, "evidence")
    try:
        size = len(canonical_json(evidence).encode())
    except (TypeError, ValueError):
        raise ValidationError("evidence", "must be JSON-compatible (finite numbers, "
                              "strings, lists, maps)") from None
    if size > MAX_EVIDENCE_BYTES:
        raise ValidationError("evidence", f"is larger than {MAX_EVIDENCE_BYTES} bytes")


def decide_flag(state: Optional[RunState], cmd: FlagRun) -> list[ev.Event]:
    _checked(cmd.rule, cmd.evidence)
    if cmd.action not in Action._value2member_map_:
        raise ValidationError("action", f"{cmd.action[:40]!r} is not an action (one of "
                              f"{', '.join(a.value for a in Action)})")
    s = _running(state, cmd.run_id, cmd.attempt, "RunFlagged")
    if cmd.rule in s.standing_flags:
        return []  # it stands already
    return [ev.RunFlagged(run_id=s.run_id, attempt=s.attempt, rule=cmd.rule,
                          action=cmd.action, evidence=cmd.evidence)]


def decide_clear_flag(state: Optional[RunState], cmd: ClearRunFlag) -> list[ev.Event]:
    _checked(cmd.rule, cmd.evidence)
    s = _running(state, cmd.run_id, cmd.attempt, "RunFlagCleared")
    if cmd.rule not in s.standing_flags:
        return []  # nothing stands to clear
    return [ev.RunFlagCleared(run_id=s.run_id, attempt=s.attempt, rule=cmd.rule,
                              evidence=cmd.evidence)]
