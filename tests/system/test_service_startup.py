"""Refusing to start, from the outside (the process itself): a dependency older than
its minimum (exit 3, the reason, nothing started) and a second instance on the same
$TRAINER_HOME (exit 4, naming the holder's pid; the running one keeps serving).
(Split from test_faults.py, whose numbered sections these were.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.system.stack import Stack
from tests.helpers import REPO

CONFIG = {"env": "CartPole-v1", "seed": 7, "worker": "cartpole"}


# --- 8. one instance per TRAINER_HOME ------------------------------------------------

_OLD_PYZMQ = ("import importlib.metadata as m, runpy, sys; real = m.version; "
              "m.version = lambda d: '20.0' if d == 'pyzmq' else real(d); "
              "sys.argv = [sys.argv[1]]; runpy.run_module(sys.argv[0], run_name='__main__')")


@pytest.mark.parametrize("module", ["services.registry", "bus"])
def test_a_service_refuses_to_start_on_a_too_old_dependency(tmp_path, module: str) -> None:
    """The process itself, with pyzmq reported as 20.0: exit 3 and the reason, and
    nothing started (no lock taken, no socket bound)."""
    env = {**os.environ, "TRAINER_HOME": str(tmp_path)}
    env = {k: v for k, v in env.items() if not k.startswith("TRAINER_") or k == "TRAINER_HOME"}
    done = subprocess.run([sys.executable, "-c", _OLD_PYZMQ, module], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "refusing to start: pyzmq 20.0 is older than the minimum 25.1" in done.stderr
    assert not os.path.exists(tmp_path / "locks") and not os.path.exists(tmp_path / "sock")


@pytest.mark.parametrize("module,name,attr", [("services.registry", "registry", "registry"),
                                              ("bus", "bus", "bus")])
def test_a_second_instance_on_the_same_home_refuses_to_start(stack: Stack, module: str,
                                                             name: str, attr: str) -> None:
    running = getattr(stack, attr)
    second = subprocess.run([sys.executable, "-m", module], env=stack.env, cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 4, second.stderr
    assert f"pid {running.pid}" in second.stderr, second.stderr
    assert "already running" in second.stderr
    assert running.alive()
    c = stack.client()
    assert c.call("submit", {"config": CONFIG})["created"] is True
    sub = stack.subscriber("status.bus")  # the broker still serves (and wasn't replaced)
    assert sub is not None and stack.bus.alive()
    assert c.call("ping")["pid"] == stack.registry.pid
    assert os.path.exists(os.path.join(stack.settings.home, "locks", f"{name}.lock"))
