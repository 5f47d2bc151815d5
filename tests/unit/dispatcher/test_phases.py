"""The dispatcher's run lifecycle, straight from its table."""

from __future__ import annotations

import itertools

import pytest

from core.runconfig import RunConfig
from services.dispatcher.decide.phases import (HOLDING, MOVES, OBSERVED, IllegalMove, Move,
                                               Phase, allows, next_phase)
from services.dispatcher.decide.state import RunRecord

ILLEGAL = [(p, m) for p, m in itertools.product(Phase, Move) if (p, m) not in MOVES]


def record(phase: Phase) -> RunRecord:
    return RunRecord("r1", phase, RunConfig())


@pytest.mark.parametrize(("before", "move"), sorted(MOVES, key=str), ids=str)
def test_every_legal_move_is_accepted(before: Phase, move: Move) -> None:
    after = record(before).moved(move)
    expected = MOVES[(before, move)]
    if expected is None:
        assert after is None
    else:
        assert after is not None and after.phase is expected and after.run_id == "r1"
    assert allows(before, move)


@pytest.mark.parametrize(("before", "move"), ILLEGAL, ids=str)
def test_every_illegal_move_raises_naming_run_phase_and_move(before: Phase, move: Move) -> None:
    with pytest.raises(IllegalMove) as err:
        record(before).moved(move)
    text = str(err.value)
    assert "r1" in text and before.value in text and move.value in text
    assert not allows(before, move)
    with pytest.raises(IllegalMove):
        next_phase("r1", before, move)


def test_every_phase_is_reachable_from_the_queue_or_recovery() -> None:
    seen = {Phase.QUEUED, Phase.RECOVERING}
    grown = True
    while grown:
        grown = False
        for (before, _), after in MOVES.items():
            if before in seen and after is not None and after not in seen:
                seen.add(after)
                grown = True
    assert seen == set(Phase)


def test_every_phase_can_leave_the_state() -> None:
    """From each phase some path drops the run: nothing is stuck for ever."""
    ends = {p for (p, _), after in MOVES.items() if after is None}
    grown = True
    while grown:
        grown = False
        for (before, _), after in MOVES.items():
            if after in ends and before not in ends:
                ends.add(before)
                grown = True
    assert ends == set(Phase)


def test_a_moved_record_keeps_the_rest_and_the_old_one_is_unchanged() -> None:
    before = record(Phase.QUEUED).changed(gpus=("GPU-0",))
    after = before.moved(Move.CLAIM_SENT)
    assert before.phase is Phase.QUEUED
    assert after is not None and after.gpus == ("GPU-0",) and after.phase is Phase.CLAIMING


def test_phase_groups_are_phases_of_the_table() -> None:
    assert Phase.QUEUED not in HOLDING and Phase.ENDING not in HOLDING
    assert OBSERVED <= HOLDING
