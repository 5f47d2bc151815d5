"""The standalone bus subscriber in examples/ against a live system."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.system.stack import Stack
from tests.helpers import REPO, wait_until


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def test_example_subscriber_prints_live_run_events(stack: Stack) -> None:
    out_path = os.path.join(stack.settings.home, "example.out")
    with open(out_path, "w") as out:
        proc = subprocess.Popen([sys.executable, os.path.join(REPO, "examples",
                                                              "subscribe_events.py"), "3"],
                                env=stack.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "listening" in _read(out_path), 10, message="the example")
        client = stack.client()
        # The example may still be joining: submit until its first event shows up.
        def first_event() -> bool:
            client.call("submit", {"config": {"env": "CartPole-v1",
                                              "seed": len(_read(out_path))}})
            return "RunSubmitted" in _read(out_path)
        wait_until(first_event, 15, interval=0.2, message="a RunSubmitted line")
        for seed in (10_001, 10_002):
            client.call("submit", {"config": {"env": "CartPole-v1", "seed": seed}})
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [l for l in _read(out_path).splitlines() if l.startswith("seq=")]
    assert len(lines) == 3 and all("RunSubmitted" in l for l in lines), lines
