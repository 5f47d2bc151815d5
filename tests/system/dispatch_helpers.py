"""Helpers for dispatcher tests: submit test workers, wait for outcomes, check that
nothing of a run is left alive."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Callable, Iterator, Optional

import zmq

from core.settings import Settings

from services.dispatcher.spawner import read_json
from services.dispatcher.procs import group_alive, process_start_time
from tests.system.stack import Stack
from tests.helpers import wait_until

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def submit(stack: Stack, worker: str, seed: int = 0, gpus: int = 0, **config: Any) -> str:
    params = config.pop("params", {})
    body = {"worker": worker, "env": "CartPole-v1", "seed": seed, "hyperparameters": params,
            "resources": {"gpus": gpus, "cpu_slots": 1}, "heartbeat_interval_s": 0.2,
            "heartbeat_timeout_s": 5.0, **config}
    return stack.client().call("submit", {"config": body})["run"]["run_id"]


def run_of(stack: Stack, run_id: str) -> dict[str, Any]:
    return stack.client().call("get_run", {"run_id": run_id})["run"]


def wait_status(stack: Stack, run_id: str, statuses: set[str], timeout: float = 30) -> dict:
    client = stack.client()
    def reached() -> dict | None:
        run = client.call("get_run", {"run_id": run_id})["run"]
        return run if run["status"] in statuses else None
    return wait_until(reached, timeout, message=f"run {run_id} to reach {statuses}")


def run_dir(stack: Stack, run_id: str) -> str:
    return os.path.join(stack.settings.runs_dir, run_id)


def seen(stack: Stack, run_id: str) -> dict[str, Any]:
    with open(os.path.join(run_dir(stack, run_id), "seen.json"), encoding="utf-8") as fh:
        return json.load(fh)


def read_text(path: str) -> str | None:
    """A small file's text, stripped; None while it is missing or empty."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip() or None
    except FileNotFoundError:
        return None


def assert_nothing_left(stack: Stack) -> None:
    """No process of any run alive (its worker's group and its shim), every GPU slot
    free. (The dstack fixture also checks this after every test.)"""
    for run_id in os.listdir(stack.settings.runs_dir) if os.path.isdir(
            stack.settings.runs_dir) else []:
        worker = read_json(os.path.join(run_dir(stack, run_id), "worker.json"))
        if worker is not None:
            wait_until(lambda: not group_alive(int(worker["pgid"])), 10,
                       message=f"run {run_id}'s processes to be gone")
            shim = int(worker.get("shim_pid") or 0)  # (a zombie counts as gone)
            wait_until(lambda: process_start_time(shim) is None, 10,
                       message=f"run {run_id}'s shim to end")
    # A release follows its run's end in the log, so it may trail the processes a little.
    wait_until(lambda: stack.client().call("gpu_slots")["slots"] == [], 10,
               message="every GPU slot to be free")


@contextlib.contextmanager
def running_stack(env: dict[str, str], ctx: zmq.Context,
                  before_check: Optional[Callable[[Stack], None]] = None) -> Iterator[Stack]:
    """bus + registry + dispatcher started with ``env``; after the test, when the
    registry is still up, ``before_check`` (e.g. waiting for a back end to be empty) and
    assert_nothing_left; then every process stopped."""
    s = Stack(env, Settings.from_env(env), ctx)
    try:
        s.start_bus()
        s.start_registry()
        s.start_dispatcher()
        yield s
        if s.registry.alive():
            if before_check is not None:
                before_check(s)
            assert_nothing_left(s)
    finally:
        s.close()
