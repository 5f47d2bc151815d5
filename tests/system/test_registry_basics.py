"""The registry process through its ROUTER socket, as every service talks to it."""

from __future__ import annotations

import pytest
import zmq

from bus.codec import Envelope, MessageType, decode, encode, event_from_envelope
from core.errors import IllegalTransition, NotFound, ValidationError
from tests.system.stack import Stack
from tests.helpers import wait_until

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


def test_concurrent_claimers_never_share_a_gpu(stack: Stack) -> None:
    """Eight clients, each on its own connection, claim overlapping GPUs for their own
    runs at the same moment, round after round: each GPU ends with one holder."""
    c = stack.client()
    socks = []
    for _ in range(8):
        d = stack.socket(zmq.DEALER)
        d.connect(stack.settings.registry)
        socks.append(d)
    for rnd in range(5):
        runs = [c.call("submit", {"config": {**CONFIG, "seed": 1000 + rnd * 10 + i}})["run"]
                ["run_id"] for i in range(len(socks))]
        gpus = [[f"GPU-{rnd}-a", f"GPU-{rnd}-b"][: 1 + i % 2] for i in range(len(socks))]
        for i, (d, run_id) in enumerate(zip(socks, runs)):  # all sent before any reply
            d.send(encode(Envelope(
                type=MessageType.REQUEST.value, source=f"claimer-{i}", ts=0.0,
                id=f"claim-{rnd}-{i}", payload={"method": "claim_gpus", "args": {
                    "run_id": run_id, "gpu_uuids": gpus[i], "claimed_by": f"c{i}"}})))
        replies = [wait_until(lambda d=d: d.poll(100) and decode(d.recv()).payload, 10,
                              message="a claim reply") for d in socks]
        won = [i for i, r in enumerate(replies) if r["ok"]]
        assert all(r["error"]["code"] == "resource_busy" for r in replies if not r["ok"])
        held = {s["gpu_uuid"]: s["run_id"] for s in c.call("gpu_slots")["slots"]
                if s["gpu_uuid"].startswith(f"GPU-{rnd}-")}
        # Every winner holds all it asked for; no GPU was given twice.
        claimed = [g for i in won for g in gpus[i]]
        assert len(claimed) == len(set(claimed)) == len(held) >= 1, (won, held)
        assert all(held[g] == runs[i] for i in won for g in gpus[i])


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


def test_a_request_its_caller_gave_up_on_is_never_applied(stack: Stack) -> None:
    """A request read after its expires_at (its caller gave up: the registry was hung,
    or far behind) is answered unavailable and not applied; the caller's retry then
    creates the run once. And the Python clients set expires_at to when they give up."""
    import time
    from bus.rpc import RpcClient
    config = {"env": "CartPole-v1", "seed": 4242, "worker": "cartpole"}
    sock = stack.ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(stack.settings.registry)
    try:
        sock.send(encode(Envelope(type=MessageType.REQUEST.value, source="test", ts=0.0,
                                  id="late-1", payload={"method": "submit",
                                                        "args": {"config": config},
                                                        "expires_at": time.time() - 1})))
        assert sock.poll(10_000)
        reply = decode(sock.recv()).payload
    finally:
        sock.close()
    assert reply["ok"] is False and reply["error"]["code"] == "unavailable", reply
    assert '"request.expired"' in stack.registry.log()
    assert stack.client().call("list_runs")["total"] == 0
    assert stack.client().call("submit", {"config": config})["created"] is True

    client = RpcClient(stack.ctx, stack.settings.registry, "test", timeout_s=2.0, retries=2)
    before = time.time()
    _, frame = client._request("ping", {}, None, client._expires_at(None, None))
    assert before + 5.8 <= decode(frame).payload["expires_at"] <= time.time() + 6.0
    client.close()
