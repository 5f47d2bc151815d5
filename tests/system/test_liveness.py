"""Alive but not learning (docs/SUPERVISION.md), end to end: real bus, registry,
dispatcher and workers (test-learning) that heartbeat while stuck, emit NaN, slow down
or pause for a declared evaluation. Each flag and clear is an event with its evidence;
the actions checkpoint (SIGUSR2), stop and kill do what they say and a stopped run ends
FAILED with cause not_learning; a healthy run, evaluations included, and a sweep of
healthy CartPole runs under tight windows get no flag at all. The gateway shows the
flags in GetRun and WatchRuns, `trainer ls` marks them and `trainer show` lists them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import zmq

from tests.helpers import REPO, wait_until
from tests.system.dispatch_helpers import TERMINAL, run_of, running_stack, submit, wait_status
from tests.system.gateway import Gateway
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(120)

INTERVAL = 0.2


def events_of(stack: Stack, run_id: str, *types: str) -> list[dict[str, Any]]:
    """The run's committed events of these types, in seq order (payload and seq)."""
    out, after = [], 0
    client = stack.client()
    while True:
        page = client.call("events_since", {"after_seq": after, "limit": 5000})
        for e in page["events"]:
            if e.get("stream") == f"run-{run_id}" and e["type"] in types:
                out.append({**e["payload"], "type": e["type"], "seq": e["seq"]})
        if not page["events"]:
            return out
        after = page["events"][-1]["seq"]


def liveness(**rules: dict[str, Any]) -> dict[str, Any]:
    """Tight rules for a test: no warm-up; the rules not named off."""
    out = {rule: {"enabled": False} for rule in ("stalled", "diverged", "slowed", "gpu_idle")}
    for rule, spec in rules.items():
        out[rule] = {"warmup_s": 0, **spec}
    return out


def learning(stack: Stack, params: dict[str, Any], rules: dict[str, Any],
             **config: Any) -> str:
    return submit(stack, "test-learning", params=params, liveness=rules,
                  heartbeat_interval_s=INTERVAL, cancel_grace_s=2.0, **config)


def flagged(stack: Stack, run_id: str, rule: str, timeout: float = 20) -> dict[str, Any]:
    return wait_until(lambda: next((e for e in events_of(stack, run_id, "RunFlagged")
                                    if e["rule"] == rule), None), timeout,
                      message=f"{run_id} to be flagged {rule}")


def test_a_stall_is_flagged_with_its_evidence_and_cleared_when_steps_advance(
        dstack: Stack) -> None:
    window = 1.0
    run_id = learning(dstack, {"mode": "stall", "stall_at_s": 1.0, "resume_after_s": 3.0,
                               "duration_s": 6.0},
                      liveness(stalled={"window_s": window}))
    flag = flagged(dstack, run_id, "stalled")
    assert flag["action"] == "warn" and flag["attempt"] == 1
    ev = flag["evidence"]
    # flagged within its window plus one heartbeat interval (and a drain's jitter)
    assert window <= ev["stalled_for_s"] < window + INTERVAL + 0.3, ev
    assert ev["window_s"] == window and ev["step"] > 0
    assert run_of(dstack, run_id)["status"] == "RUNNING"   # warn: the run goes on
    cleared = wait_until(lambda: events_of(dstack, run_id, "RunFlagCleared"), 20,
                         message="the stall's flag to clear")
    assert cleared[0]["rule"] == "stalled" and cleared[0]["evidence"]["step"] > ev["step"]
    run = wait_status(dstack, run_id, TERMINAL, timeout=30)
    assert run["status"] == "COMPLETED", run
    [entry] = run["flags"]
    assert entry["rule"] == "stalled" and entry["seq"] == flag["seq"]
    assert entry["cleared_at"] >= entry["flagged_at"] and entry["evidence"] == ev
    # one flag only: the rule does not flag again while it stands
    assert len(events_of(dstack, run_id, "RunFlagged")) == 1


def test_nan_is_flagged_diverged_naming_the_metric_and_cleared_once_finite_again(
        dstack: Stack) -> None:
    run_id = learning(dstack, {"mode": "nan", "nan_at_s": 1.0, "recover_after_s": 1.0,
                               "duration_s": 5.0},
                      liveness(diverged={"clear_after_s": 0.6}))
    flag = flagged(dstack, run_id, "diverged")
    assert flag["evidence"]["metric"] == "loss", flag
    cleared = wait_until(lambda: events_of(dstack, run_id, "RunFlagCleared"), 20,
                         message="the diverged flag to clear")
    assert cleared[0]["rule"] == "diverged" and cleared[0]["evidence"]["finite_for_s"] >= 0.6
    assert wait_status(dstack, run_id, TERMINAL)["status"] == "COMPLETED"


def test_slowed_with_action_stop_ends_the_run_not_learning(dstack: Stack) -> None:
    run_id = learning(dstack, {"mode": "slow", "rate": 2000, "slow_at_s": 2.5,
                               "slow_rate": 20, "duration_s": 30.0},
                      liveness(slowed={"window_s": 1.0, "action": "stop",
                                       "warmup_s": 0.5}))
    flag = flagged(dstack, run_id, "slowed")
    ev = flag["evidence"]
    assert flag["action"] == "stop"
    assert ev["steps_per_s"] < 0.1 * ev["median_steps_per_s"], ev
    run = wait_status(dstack, run_id, TERMINAL, timeout=20)
    assert run["status"] == "FAILED" and run["cause"] == "not_learning", run
    assert "not learning: slowed" in run["message"]
    assert run["signal"] is None and run["exit_code"] == 0   # it stopped on SIGTERM itself


def test_stalled_with_action_kill_and_checkpoint(dstack: Stack) -> None:
    """checkpoint: SIGUSR2, the worker saves one and the run goes on; kill: SIGKILL."""
    saved = learning(dstack, {"mode": "stall", "stall_at_s": 0.5, "duration_s": 4.0},
                     liveness(stalled={"window_s": 0.8, "action": "checkpoint"}))
    killed = learning(dstack, {"mode": "stall", "stall_at_s": 0.5, "duration_s": 30.0},
                      liveness(stalled={"window_s": 0.8, "action": "kill"}), seed=1)
    run = wait_status(dstack, killed, TERMINAL, timeout=20)
    assert run["status"] == "FAILED" and run["cause"] == "not_learning", run
    assert run["signal"] == 9
    run = wait_status(dstack, saved, TERMINAL, timeout=20)
    assert run["status"] == "COMPLETED", run
    arts = dstack.client().call("list_artifacts", {"run_id": saved})["artifacts"]
    assert [a["path"] for a in arts if a["kind"] == "checkpoint"] == \
        ["checkpoints/requested-1.json"], arts


def test_declared_evaluations_and_a_healthy_run_are_never_flagged(dstack: Stack) -> None:
    """Evaluations of 1.5 s (no step) under a 0.8 s stall window: no flag; a healthy
    run with every rule on and no warm-up: no flag."""
    rules = liveness(stalled={"window_s": 0.8}, diverged={}, slowed={"window_s": 1.0})
    evals = learning(dstack, {"mode": "eval", "eval_every_s": 1.0, "eval_s": 1.5,
                              "duration_s": 6.0}, rules)
    healthy = learning(dstack, {"mode": "nan", "nan_at_s": 1e9, "duration_s": 6.0}, rules,
                       seed=1)
    for run_id in (evals, healthy):
        assert wait_status(dstack, run_id, TERMINAL)["status"] == "COMPLETED"
        assert events_of(dstack, run_id, "RunFlagged", "RunFlagCleared") == []
        assert run_of(dstack, run_id)["flags"] == []


def test_a_sweep_of_healthy_cartpole_runs_gets_no_false_flag(dstack: Stack,
                                                             tmp_path: Path) -> None:
    """An experiment of the built-in CEM worker (its evaluations declared) under tight
    windows, 2 populations x 2 seeds: every run completes, no flag."""
    window = 0.6
    rules = liveness(stalled={"window_s": window}, diverged={},
                     slowed={"window_s": window, "warmup_s": 0.5})
    spec = {"name": "healthy", "seeds": [0, 1],
            "template": {"worker": "cartpole", "steps": 60_000, "liveness": rules,
                         "heartbeat_interval_s": INTERVAL,
                         "hyperparameters": {"eval_every": 2}},
            "axes": {"hyperparameters.population": [8, 16]}}
    path = tmp_path / "healthy.json"
    path.write_text(json.dumps(spec))
    gw = Gateway(dstack).start()
    try:
        out = cli(gw, "sweep", "submit", str(path))
        assert "4 new runs" in out.stdout, out.stdout + out.stderr
        waited = cli(gw, "sweep", "wait", "healthy", timeout=120)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        ids = [cell.run_id for cell in gw.client().experiment("healthy").cells]
    finally:
        gw.close()
    assert len(ids) == 4
    assert [e for r in ids for e in events_of(dstack, r, "RunFlagged")] == []
    walls = [run_of(dstack, r)["result"]["wall_s"] for r in ids]
    assert min(walls) > 3 * window, walls   # each ran for several windows


def cli(gw: Gateway, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.cli.main", *args], env=gw.env,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_the_gateway_and_the_cli_show_the_flags(dstack: Stack) -> None:
    gw = Gateway(dstack).start()
    try:
        c = gw.client()
        run_id = learning(dstack, {"mode": "stall", "stall_at_s": 0.5, "duration_s": 30.0},
                          liveness(stalled={"window_s": 0.8}))
        flagged(dstack, run_id, "stalled")
        run = c.get(run_id)
        [flag] = run.flags
        assert flag.rule == "stalled" and flag.action == "warn" and flag.attempt == 1
        assert not flag.HasField("cleared_at") and flag.evidence["window_s"] == 0.8
        watched = []
        for msg in c.watch([run_id], since_seq=0, resume=False):
            watched += [e.type for e in msg.events]
            if "RunFlagged" in watched:
                break
        assert "RunFlagged" in watched
        ls = cli(gw, "ls")
        assert "RUNNING ⚑stalled" in ls.stdout, ls.stdout + ls.stderr
        show = cli(gw, "show", run_id)
        assert "liveness flags (1" in show.stdout and "stands" in show.stdout, show.stdout
        assert '"window_s": 0.8' in show.stdout
        c.cancel(run_id, reason="seen")
        wait_until(lambda: c.get(run_id).status in {4, 5, 6}, 30, message="the cancel")
    finally:
        gw.close()


FAKE_CUDA = os.path.join(REPO, "tests", "fixtures", "fake_cuda")


@pytest.fixture
def nvml_stack(service_env: dict[str, str], ctx: zmq.Context,
               tmp_path: Path) -> Iterator[tuple[Stack, Path]]:
    """bus + registry + dispatcher reading its GPU through NVML: the emulated one of
    tests/fixtures/fake_cuda, whose utilisation is the number in a file the test writes
    (not TRAINER_FAKE_GPUS, whose fake GPUs gpu_idle never judges)."""
    busy = tmp_path / "utilization"
    busy.write_text("0")
    env = {**service_env, "TRAINER_CPU_SLOTS": "2", "TRAINER_STATUS_INTERVAL": "0.5",
           "FAKE_CUDA_DIR": str(tmp_path / "cuda"), "FAKE_CUDA_UTILIZATION": str(busy),
           "PYTHONPATH": os.pathsep.join(p for p in (FAKE_CUDA, service_env.get(
               "PYTHONPATH", "")) if p)}
    (tmp_path / "cuda").mkdir()
    with running_stack(env, ctx) as s:
        yield s, busy


def test_an_idle_gpu_is_flagged_and_cleared_once_busy_again(
        nvml_stack: tuple[Stack, Path]) -> None:
    stack, busy = nvml_stack
    run_id = learning(stack, {"mode": "healthy", "duration_s": 30.0},
                      liveness(gpu_idle={"window_s": 1.0}), gpus=1)
    flag = flagged(stack, run_id, "gpu_idle", timeout=30)
    ev = flag["evidence"]
    assert ev["utilization_pct"] == 0 and ev["threshold_pct"] == 5 and ev["for_s"] >= 1.0
    assert len(ev["gpus"]) == 1 and ev["gpus"][0].startswith("GPU-")
    busy.write_text("50")
    cleared = wait_until(lambda: events_of(stack, run_id, "RunFlagCleared"), 30,
                         message="the gpu_idle flag to clear")
    assert cleared[0]["rule"] == "gpu_idle" and cleared[0]["evidence"]["utilization_pct"] == 50
    stack.client().call("request_cancel", {"run_id": run_id, "reason": "done"})
    assert wait_status(stack, run_id, TERMINAL)["status"] == "CANCELLED"


def test_fake_gpus_are_never_judged_idle(dstack: Stack) -> None:
    """TRAINER_FAKE_GPUS: no utilisation to read, so no gpu_idle flag, however long."""
    run_id = learning(dstack, {"mode": "healthy", "duration_s": 5.0},
                      liveness(gpu_idle={"window_s": 0.5}), gpus=1)
    assert wait_status(dstack, run_id, TERMINAL)["status"] == "COMPLETED"
    assert events_of(dstack, run_id, "RunFlagged") == []


def test_a_dispatcher_killed_with_a_flag_standing_clears_it_after_adoption(
        dstack: Stack) -> None:
    """SIGKILL the dispatcher while a stall's flag stands; the restarted one adopts the
    run, learns the flag from the registry, does not raise it again while the stall
    goes on, and clears it once the steps advance: one RunFlagged, one RunFlagCleared."""
    run_id = learning(dstack, {"mode": "stall", "stall_at_s": 0.5, "resume_after_s": 8.0,
                               "duration_s": 14.0},
                      liveness(stalled={"window_s": 0.8}))
    flagged(dstack, run_id, "stalled")
    dstack.dispatcher.kill9()
    dstack.start_dispatcher()
    cleared = wait_until(lambda: events_of(dstack, run_id, "RunFlagCleared"), 30,
                         message="the stall's flag to clear after the restart")
    assert cleared[0]["rule"] == "stalled"
    assert wait_status(dstack, run_id, TERMINAL, timeout=30)["status"] == "COMPLETED"
    assert len(events_of(dstack, run_id, "RunFlagged")) == 1
    assert len(events_of(dstack, run_id, "RunAdopted")) == 1
