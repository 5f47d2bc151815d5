"""The state machine, straight from its table."""

from __future__ import annotations

import itertools

import pytest

from core import events as ev
from core.errors import IllegalTransition
from core.runstate import ACTIVE, TERMINAL, TRANSITIONS, RunStatus, apply, fold, next_status

SAMPLES: dict[str, ev.Event] = {
    "RunSubmitted": ev.RunSubmitted("r1", "d", {"env": "CartPole-v1"}, 0, "me"),
    "RunWaiting": ev.RunWaiting("r1", "no free GPU"),
    "GpusClaimed": ev.GpusClaimed("r1", ("GPU-0",), "dispatcher"),
    "RunStarted": ev.RunStarted("r1", 42, 1.0, "host"),
    "RunAdopted": ev.RunAdopted("r1", 42, "dispatcher"),
    "CancelRequested": ev.CancelRequested("r1", "me", "changed my mind"),
    "RunCompleted": ev.RunCompleted("r1", 0),
    "RunFailed": ev.RunFailed("r1", "exit_code", 3, None, "boom"),
    "RunCancelled": ev.RunCancelled("r1", "me", "why", None, 15),
    "GpusReleased": ev.GpusReleased("r1", ("GPU-0",)),
    "ArtifactRegistered": ev.ArtifactRegistered("r1", "video", "videos/a.mp4", 10, {}),
    "AttemptEnded": ev.AttemptEnded("r1", 1, "lost", None, None, "gone", "ckpt/a.npz"),
    "RerunRequested": ev.RerunRequested("r1", 2, "me", "fixed the env", ""),
    "RunFlagged": ev.RunFlagged("r1", 1, "stalled", "warn", {"step": 10, "for_s": 300.0}),
    "RunFlagCleared": ev.RunFlagCleared("r1", 1, "stalled", {"step": 11}),
}

# A shortest path of events from a new run to each status.
PATHS = {
    RunStatus.PENDING: ["RunSubmitted"],
    RunStatus.DISPATCHING: ["RunSubmitted", "GpusClaimed"],
    RunStatus.RUNNING: ["RunSubmitted", "GpusClaimed", "RunStarted"],
    RunStatus.COMPLETED: ["RunSubmitted", "GpusClaimed", "RunStarted", "RunCompleted"],
    RunStatus.FAILED: ["RunSubmitted", "RunFailed"],
    RunStatus.CANCELLED: ["RunSubmitted", "RunCancelled"],
}


def state_in(status: RunStatus):
    state = None
    for seq, name in enumerate(PATHS[status], start=1):
        state = apply(state, SAMPLES[name], seq, float(seq))
    assert state is not None and state.status is status
    return state


def test_every_event_type_has_a_sample() -> None:
    assert set(SAMPLES) == ev.TYPES_OF_KIND["run"]


@pytest.mark.parametrize(("before", "event_type"), sorted(TRANSITIONS, key=str))
def test_every_legal_move_is_accepted(before, event_type) -> None:
    state = state_in(before) if before else None
    after = apply(state, SAMPLES[event_type], 100, 100.0)
    assert after.status is TRANSITIONS[(before, event_type)]
    assert after.last_seq == 100


ILLEGAL = [(s, t) for s, t in itertools.product([None, *RunStatus], sorted(ev.TYPES_OF_KIND["run"]))
           if (s, t) not in TRANSITIONS]


@pytest.mark.parametrize(("before", "event_type"), ILLEGAL, ids=str)
def test_every_illegal_move_raises_naming_run_state_and_move(before, event_type) -> None:
    state = state_in(before) if before else None
    with pytest.raises(IllegalTransition) as err:
        apply(state, SAMPLES[event_type], 100, 100.0)
    assert "r1" in err.value.message
    assert (before.value if before else "NEW") in err.value.message
    assert event_type in err.value.message


def test_terminal_states_have_no_exits_but_a_rerun() -> None:
    for (before, event_type), after in TRANSITIONS.items():
        if before in TERMINAL:
            assert after == (RunStatus.PENDING if event_type == "RerunRequested" else before)
    assert not TERMINAL & ACTIVE and TERMINAL | ACTIVE == set(RunStatus)


def test_new_run_must_start_with_submission() -> None:
    with pytest.raises(IllegalTransition):
        next_status("r1", None, "RunStarted")


def test_fold_records_causes_and_times() -> None:
    names = ["RunSubmitted", "GpusClaimed", "RunStarted", "CancelRequested", "RunCancelled",
             "GpusReleased"]
    runs = fold((i, 10.0 * i, SAMPLES[n]) for i, n in enumerate(names, start=1))
    run = runs["r1"]
    assert run.status is RunStatus.CANCELLED
    assert run.cause == "cancelled" and run.signal == 15
    assert run.cancel_requested_by == "me" and run.cancel_reason == "why"
    assert run.started_at == 30.0 and run.finished_at == 50.0
    assert run.gpus == ("GPU-0",) and run.gpus_held is False
    assert run.version == 6 and run.last_seq == 6
