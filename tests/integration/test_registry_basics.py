"""The registry process through its ROUTER socket, as every service talks to it."""

from __future__ import annotations

import pytest

from bus.codec import event_from_envelope
from core.errors import IllegalTransition, NotFound, ValidationError
from tests.conftest import Stack

CONFIG = {"env": "CartPole-v1", "seed": 7, "worker": "cartpole"}


def test_submit_is_idempotent_by_digest(stack: Stack) -> None:
    c = stack.client()
    first = c.call("submit", {"config": CONFIG})
    again = c.call("submit", {"config": dict(reversed(list(CONFIG.items())))})
    assert first["created"] is True and again["created"] is False
    assert again["run"]["run_id"] == first["run"]["run_id"]
    assert c.call("ping")["head_seq"] == 1


def test_lifecycle_releases_gpus_in_the_terminal_transaction(stack: Stack) -> None:
    c = stack.client()
    sub = stack.subscriber("event.")
    run_id = c.call("submit", {"config": CONFIG})["run"]["run_id"]
    c.call("claim_gpus", {"run_id": run_id, "gpu_uuids": ["GPU-0", "GPU-1"], "claimed_by": "t"})
    other = c.call("submit", {"config": {**CONFIG, "seed": 8}})["run"]["run_id"]
    with pytest.raises(Exception) as busy:
        c.call("claim_gpus", {"run_id": other, "gpu_uuids": ["GPU-1"], "claimed_by": "t"})
    assert busy.value.code == "resource_busy"
    c.call("record_started", {"run_id": run_id, "pid": 4242, "pid_start_time": 1.5})
    done = c.call("finish", {"run_id": run_id, "outcome": "completed", "exit_code": 0})
    assert done["run"]["status"] == "COMPLETED" and done["run"]["gpus_held"] is False
    assert c.call("gpu_slots")["slots"] == []
    c.call("claim_gpus", {"run_id": other, "gpu_uuids": ["GPU-1"], "claimed_by": "t"})
    with pytest.raises(IllegalTransition) as illegal:
        c.call("request_cancel", {"run_id": run_id, "reason": "too late"})
    assert run_id in illegal.value.message and "COMPLETED" in illegal.value.message
    seen = [(e.seq, event_from_envelope(e).TYPE) for e in stack.events(sub, 7)]
    assert [s for s, _ in seen] == list(range(1, 8))
    assert [t for _, t in seen] == ["RunSubmitted", "GpusClaimed", "RunSubmitted", "RunStarted",
                                    "RunCompleted", "GpusReleased", "GpusClaimed"]


def test_typed_errors_name_the_field(stack: Stack) -> None:
    c = stack.client()
    with pytest.raises(ValidationError) as bad:
        c.call("submit", {"config": {**CONFIG, "priority": "high"}})
    assert bad.value.field == "priority"
    with pytest.raises(NotFound):
        c.call("get_run", {"run_id": "r000000000000"})
    with pytest.raises(ValidationError) as unknown:
        c.call("launch_missiles", {})
    assert unknown.value.field == "method"
    assert c.call("ping")["head_seq"] == 0


def test_config_is_validated_at_submit(stack: Stack) -> None:
    c = stack.client()
    for config, field in [({**CONFIG, "env": "NoSuchEnv-v9"}, "env"),
                          ({**CONFIG, "learning_rate": 0.1}, "learning_rate"),
                          ({**CONFIG, "resources": {"gpus": -1}}, "resources.gpus"),
                          ({**CONFIG, "seed": "7"}, "seed")]:
        with pytest.raises(ValidationError) as bad:
            c.call("submit", {"config": config})
        assert bad.value.field == field, bad.value.message
    assert c.call("ping")["head_seq"] == 0
    run = c.call("submit", {"config": {"env": "CartPole-v1"}})["run"]
    assert run["config"]["steps"] == 100_000 and run["config"]["resources"]["cpu_slots"] == 1
