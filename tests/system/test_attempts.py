"""Attempts and retries on the real stack: a run whose end its retry policy names gets
its next attempt (its GPUs released and claimed again, the earlier attempt's records
set aside), attempts are counted and exhausted, a run lost while the dispatcher was
down is retried, and an ended run is given a new attempt by a rerun."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from bus.codec import envelope_from_map, event_from_envelope
from bus.registry import RegistryClient
from core.commands import ClaimGpus, FinishRun
from core.errors import IllegalTransition, ValidationError
from core.events import Event
from core.rundir import EXIT_FILE
from services.dispatcher.spawner import read_json
from tests.helpers import wait_until
from tests.system.dispatch_helpers import (TERMINAL, assert_nothing_left, run_dir, run_of,
                                           submit, wait_status)
from tests.system.stack import Stack


def events_of(stack: Stack, run_id: str) -> list[Event]:
    events = stack.client().call("events_since", {"after_seq": 0, "limit": 5000})["events"]
    decoded = [event_from_envelope(envelope_from_map(e)) for e in events]
    return [e for e in decoded if e.run_id == run_id]


def running_attempt(stack: Stack, run_id: str, attempt: int, timeout: float = 30) -> dict:
    """The run once its ``attempt`` is RUNNING and its worker record is written."""
    def reached() -> dict[str, Any] | None:
        run = run_of(stack, run_id)
        worker = read_json(os.path.join(run_dir(stack, run_id), "worker.json"))
        if run["status"] == "RUNNING" and run["attempt"] == attempt and worker \
                and worker["pid"] == run["pid"]:
            return {**run, "worker": worker}
        return None
    return wait_until(reached, timeout, message=f"attempt {attempt} of {run_id} running")


def gpu_holders(stack: Stack) -> dict[str, str]:
    slots = stack.client().call("gpu_slots", {})["slots"]
    return {s["gpu_uuid"]: s["run_id"] for s in slots}


def test_a_worker_killed_by_a_signal_is_retried_then_its_attempts_run_out(
        dstack: Stack) -> None:
    retry = {"max_attempts": 2, "on": ["signal"], "from_scratch": True}
    run_id = submit(dstack, "test-sleep", gpus=1, retry=retry, params={"seconds": 60})
    first = running_attempt(dstack, run_id, 1)
    assert list(gpu_holders(dstack).values()) == [run_id]
    os.killpg(first["worker"]["pgid"], signal.SIGKILL)
    second = running_attempt(dstack, run_id, 2)
    assert second["pid"] != first["pid"] and second["last_attempt_cause"] == "signal"
    aside = read_json(os.path.join(run_dir(dstack, run_id), "attempt-1", "exit.json"))
    assert aside is not None and aside["signal"] == 9, aside   # attempt 1's own record
    assert list(gpu_holders(dstack).values()) == [run_id]
    os.killpg(second["worker"]["pgid"], signal.SIGKILL)
    run = wait_status(dstack, run_id, TERMINAL)
    assert (run["status"], run["cause"], run["attempt"]) == ("FAILED", "signal", 2), run
    mine = events_of(dstack, run_id)
    types = [e.TYPE for e in mine]
    assert types.count("GpusClaimed") == 2 and types.count("GpusReleased") == 2, types
    ended = [e for e in mine if e.TYPE == "AttemptEnded"]
    assert [(e.attempt, e.cause, e.signal) for e in ended] == [(1, "signal", 9)]  # type: ignore[attr-defined]
    started = [e.attempt for e in mine if e.TYPE == "RunStarted"]  # type: ignore[attr-defined]
    assert started == [1, 2]
    assert [e.attempt for e in mine if e.TYPE == "RunFailed"] == [2]  # type: ignore[attr-defined]
    assert gpu_holders(dstack) == {}
    assert_nothing_left(dstack)


def test_an_exit_code_the_policy_names_is_retried_and_another_is_not(dstack: Stack) -> None:
    retry = {"max_attempts": 3, "exit_codes": [5], "from_scratch": True}
    named = submit(dstack, "test-exit", retry=retry, params={"code": 5})
    other = submit(dstack, "test-exit", retry=retry, params={"code": 7})
    run = wait_status(dstack, named, TERMINAL)
    assert (run["status"], run["cause"], run["exit_code"], run["attempt"]) == \
        ("FAILED", "exit_code", 5, 3), run
    assert [e.TYPE for e in events_of(dstack, named)].count("AttemptEnded") == 2
    run = wait_status(dstack, other, TERMINAL)
    assert (run["status"], run["exit_code"], run["attempt"]) == ("FAILED", 7, 1), run


def test_a_policy_naming_a_user_error_or_resuming_a_worker_that_cannot_is_refused(
        dstack: Stack) -> None:
    with pytest.raises(ValidationError) as err:  # test-exit declares no trainer.resumes
        submit(dstack, "test-exit", retry={"max_attempts": 2, "on": ["signal"]})
    assert err.value.details["field"] == "retry.from_scratch"
    assert "trainer.resumes" in err.value.message
    with pytest.raises(ValidationError) as err:
        submit(dstack, "test-exit", retry={"max_attempts": 3, "exit_codes": [2]})
    assert err.value.details["field"] == "retry.exit_codes"
    with pytest.raises(ValidationError) as err:
        submit(dstack, "test-exit", retry={"max_attempts": 3, "on": ["unschedulable"]})
    assert err.value.details["field"] == "retry.on"


def test_a_run_lost_while_the_dispatcher_is_down_is_retried(dstack: Stack) -> None:
    run_id = submit(dstack, "test-sleep", params={"seconds": 30},
                    retry={"max_attempts": 2, "on": ["lost"], "from_scratch": True})
    first = running_attempt(dstack, run_id, 1)
    dstack.dispatcher.kill9()
    os.kill(int(first["worker"]["shim_pid"]), signal.SIGKILL)  # the whole run dies
    os.killpg(int(first["worker"]["pgid"]), signal.SIGKILL)
    dstack.start_dispatcher()
    second = running_attempt(dstack, run_id, 2)
    assert second["last_attempt_cause"] == "lost"
    dstack.client().call("request_cancel", {"run_id": run_id, "reason": "enough"})
    run = wait_status(dstack, run_id, TERMINAL)
    assert (run["status"], run["attempt"]) == ("CANCELLED", 2), run
    assert_nothing_left(dstack)


def test_attempt_1s_records_left_by_a_dispatcher_killed_before_it_started_attempt_2_are_not_its(
        dstack: Stack) -> None:
    """The crash window between the claim of attempt 2 and its start: attempt 1's end
    and attempt 2's claim are committed, attempt 1's worker and exit records are still
    in the folder (the launcher sets them aside as it starts attempt 2). The restarted
    dispatcher starts attempt 2 instead of ending it with attempt 1's end."""
    run_id = submit(dstack, "test-sleep", params={"seconds": 30},
                    retry={"max_attempts": 2, "on": ["signal"], "from_scratch": True})
    first = running_attempt(dstack, run_id, 1)
    assert first["worker"]["attempt"] == 1
    dstack.dispatcher.kill9()
    os.killpg(int(first["worker"]["pgid"]), signal.SIGKILL)   # its shim records the end
    folder = run_dir(dstack, run_id)
    ended = wait_until(lambda: read_json(os.path.join(folder, EXIT_FILE)), 20,
                       message="attempt 1's exit record")
    assert (ended["attempt"], ended["signal"]) == (1, 9), ended
    # What the killed dispatcher had committed: attempt 1's end, then attempt 2's claim.
    registry = RegistryClient(dstack.client())
    registry.call(FinishRun(run_id, "failed", "signal", signal=9, message="killed by SIGKILL",
                            attempt=1))
    registry.call(ClaimGpus(run_id, (), "dispatcher"))
    claimed = run_of(dstack, run_id)
    assert (claimed["status"], claimed["attempt"]) == ("DISPATCHING", 2), claimed
    dstack.start_dispatcher()
    now = wait_status(dstack, run_id, {"RUNNING"} | TERMINAL)
    assert (now["status"], now["attempt"]) == ("RUNNING", 2), now   # not attempt 1's end
    second = running_attempt(dstack, run_id, 2)
    assert second["worker"]["attempt"] == 2 and second["pid"] != first["pid"]
    aside = read_json(os.path.join(folder, "attempt-1", EXIT_FILE))
    assert aside == ended   # set aside as it started attempt 2, not taken as its end
    dstack.client().call("request_cancel", {"run_id": run_id, "reason": "enough"})
    run = wait_status(dstack, run_id, TERMINAL)
    assert (run["status"], run["attempt"]) == ("CANCELLED", 2), run   # attempt 2's own end
    assert read_json(os.path.join(folder, EXIT_FILE))["attempt"] == 2  # type: ignore[index]
    mine = events_of(dstack, run_id)
    ended_events = [e for e in mine if e.TYPE == "AttemptEnded"]
    assert [(e.attempt, e.signal) for e in ended_events] == [(1, 9)]  # type: ignore[attr-defined]
    assert [e.attempt for e in mine if e.TYPE == "RunStarted"] == [1, 2]  # type: ignore[attr-defined]
    assert_nothing_left(dstack)


def test_a_rerun_gives_an_ended_run_a_new_attempt_and_a_completed_one_needs_force(
        dstack: Stack) -> None:
    client = dstack.client()
    run_id = submit(dstack, "test-sleep", params={"seconds": 1})
    with pytest.raises(IllegalTransition):  # not ended yet
        client.call("rerun", {"run_id": run_id, "requested_by": "alice"})
    run = wait_status(dstack, run_id, TERMINAL)
    assert (run["status"], run["attempt"]) == ("COMPLETED", 1), run
    with pytest.raises(IllegalTransition) as err:
        client.call("rerun", {"run_id": run_id, "requested_by": "alice"})
    assert "force" in err.value.message
    client.call("rerun", {"run_id": run_id, "requested_by": "alice", "reason": "new seed",
                          "force": True})
    run = wait_status(dstack, run_id, TERMINAL)
    assert (run["status"], run["attempt"], run["last_attempt_cause"]) == \
        ("COMPLETED", 2, "completed"), run
    asked = [e for e in events_of(dstack, run_id) if e.TYPE == "RerunRequested"]
    assert [(e.attempt, e.requested_by, e.reason) for e in asked] == \
        [(2, "alice", "new seed")]  # type: ignore[attr-defined]
    assert_nothing_left(dstack)


CARTPOLE = {"env": "CartPole-v1", "seed": 4, "steps": 60_000, "checkpoint_every": 1,
            "hyperparameters": {"population": 16, "eval_episodes": 5,
                                "final_eval_episodes": 10}}
TIMING = {"wall_s", "steps_per_s"}


def submit_cartpole(stack: Stack, **extra: Any) -> str:
    body = {"worker": "cartpole", "heartbeat_interval_s": 0.2, "heartbeat_timeout_s": 10.0,
            **CARTPOLE, **extra}
    return stack.client().call("submit", {"config": body})["run"]["run_id"]


def test_a_run_killed_mid_training_is_retried_from_its_checkpoint_and_ends_as_if_whole(
        dstack: Stack) -> None:
    retried = submit_cartpole(dstack, retry={"max_attempts": 2, "on": ["signal"]})
    first = running_attempt(dstack, retried, 1)
    checkpointed = wait_until(lambda: (r := run_of(dstack, retried))["latest_checkpoint"]
                              and r, 60, message="its first checkpoint artifact")
    assert checkpointed["status"] == "RUNNING", "it ended before it could be killed"
    os.killpg(first["worker"]["pgid"], signal.SIGKILL)   # mid-training: no stop, no result
    second = running_attempt(dstack, retried, 2)
    assert second["resume_from"] and second["resume_from"].startswith("checkpoints/")
    whole = submit_cartpole(dstack)                      # the same training, never killed
    done = wait_status(dstack, retried, TERMINAL, timeout=120)
    expected = wait_status(dstack, whole, TERMINAL, timeout=120)
    assert (done["status"], done["attempt"]) == ("COMPLETED", 2), done
    assert (expected["status"], expected["attempt"]) == ("COMPLETED", 1), expected
    same = {k: v for k, v in expected["result"].items() if k not in TIMING}
    assert {k: v for k, v in done["result"].items() if k not in TIMING} == same
    seen = read_json(os.path.join(run_dir(dstack, retried), "result.json"))
    assert seen is not None and seen["attempt"] == 2
    assert_nothing_left(dstack)


def test_a_worker_that_ignores_its_checkpoint_fails_with_that_cause(dstack: Stack) -> None:
    source = submit_cartpole(dstack, steps=2_000, seed=9)
    done = wait_status(dstack, source, TERMINAL, timeout=60)
    assert done["status"] == "COMPLETED" and done["latest_checkpoint"], done
    run_id = submit(dstack, "test-ignore-checkpoint",
                    resume_from=f"{source}/{done['latest_checkpoint']}")
    run = wait_status(dstack, run_id, TERMINAL)
    assert (run["status"], run["cause"], run["exit_code"]) == \
        ("FAILED", "checkpoint_ignored", 3), run
    assert done["latest_checkpoint"] in run["message"]
