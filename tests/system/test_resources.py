"""A run's resources on the real stack (docs/WORKERS.md, "Resources"): its thread
variables and its cores are its CPU slots, concurrent runs get cores of their own, and
a run over its memory limit ends FAILED with the cause memory_limit."""

from __future__ import annotations

import json
import os

import pytest

from services.dispatcher import limits
from services.dispatcher.spawner import read_json
from tests.helpers import wait_until
from tests.system.dispatch_helpers import TERMINAL, run_dir, submit, wait_status
from tests.system.stack import Stack

CORES = sorted(os.sched_getaffinity(0))
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def resources_seen(stack: Stack, run_id: str) -> dict:
    path = os.path.join(run_dir(stack, run_id), "resources.json")
    return wait_until(lambda: read_json(path), 30, message=f"{run_id}'s resources.json")


def test_a_runs_thread_variables_and_cores_are_its_slots(pstack: Stack) -> None:
    slots = min(2, len(CORES))
    run_id = submit(pstack, "test-resources", resources={"cpu_slots": slots},
                    params={"threads": 3})
    run = wait_status(pstack, run_id, TERMINAL)
    assert run["status"] == "COMPLETED", run
    seen = resources_seen(pstack, run_id)
    assert seen["env"] == dict.fromkeys(THREAD_VARS, str(slots))
    pinned = read_json(os.path.join(run_dir(pstack, run_id), "worker.json"))["cores"]
    assert len(seen["affinity"]) == slots and seen["affinity"] == pinned == CORES[:slots]
    # every thread and the child process inherit the worker's cores
    assert seen["threads"] == [seen["affinity"]] * 3 and seen["child"] == seen["affinity"]


def test_concurrent_runs_are_pinned_to_cores_of_their_own(pstack: Stack) -> None:
    if len(CORES) < 2:
        pytest.skip(f"needs 2 CPUs for two pinned runs; this machine lets us use {CORES}")
    runs = [submit(pstack, "test-resources", seed=i, resources={"cpu_slots": 1},
                   params={"seconds": 60, "threads": 1}) for i in range(2)]
    first, second = (resources_seen(pstack, r)["affinity"] for r in runs)
    assert len(first) == len(second) == 1 and set(first).isdisjoint(second), (first, second)
    assert set(first) | set(second) <= set(CORES)
    for run_id in runs:
        pstack.client().call("request_cancel", {"run_id": run_id, "reason": "seen"})
    for run_id in runs:
        assert wait_status(pstack, run_id, TERMINAL)["status"] == "CANCELLED"


def expected_enforcement() -> str:
    """How this machine enforces a memory limit: a cgroup of the run's own where the
    shim's cgroup (ours: the stack runs in it) hands out the memory controller."""
    return limits.CGROUP if limits.cgroup_parent("")[0] else limits.SAMPLED


def test_a_run_over_its_memory_limit_fails_memory_limit_one_under_it_completes(
        pstack: Stack) -> None:
    """Both at once (a slot each): 200 MiB touched page by page under a 64 MiB limit,
    and 20 MiB under 512 MiB; each record says how the limit was enforced."""
    over = submit(pstack, "test-memory", resources={"cpu_slots": 1, "memory_limit_mb": 64},
                  params={"mb": 200, "hold_s": 30})
    under = submit(pstack, "test-memory", seed=1,
                   resources={"cpu_slots": 1, "memory_limit_mb": 512},
                   params={"mb": 20, "hold_s": 0.6})
    run = wait_status(pstack, over, TERMINAL, timeout=40)
    assert (run["status"], run["cause"]) == ("FAILED", "memory_limit"), run
    assert "over its memory limit of 64 MiB" in run["message"], run["message"]
    record = read_json(os.path.join(run_dir(pstack, over), "exit.json"))
    assert record is not None and record["memory_exceeded"] is True, record
    assert record["memory_enforced_by"] == expected_enforcement(), record
    assert record["memory_peak_mb"] > 64 or record["memory_enforced_by"] == limits.CGROUP

    run = wait_status(pstack, under, TERMINAL, timeout=40)
    assert run["status"] == "COMPLETED", run
    folder = run_dir(pstack, under)
    worker = read_json(os.path.join(folder, "worker.json"))
    record = read_json(os.path.join(folder, "exit.json"))
    assert worker["memory_limit_mb"] == record["memory_limit_mb"] == 512, (worker, record)
    assert worker["memory_enforced_by"] == record["memory_enforced_by"] == \
        expected_enforcement()
    assert record["memory_exceeded"] is False
    with open(os.path.join(folder, "memory.json"), encoding="utf-8") as fh:
        assert json.load(fh)["allocated"] == 20 * 1024 * 1024
    if record["memory_enforced_by"] == limits.SAMPLED:  # seen by at least one sample
        assert 20 <= record["memory_peak_mb"] < 512, record
