"""The training loops import no bus (worker/loopevents.py: they run, and are tested, without
it), checked in a fresh interpreter, where nothing else has imported zmq first."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_training_modules_import_no_bus() -> None:
    code = ("import sys, worker.cartpole, worker.qlearning, worker.cem;"
            "bad = [m for m in ('zmq', 'bus', 'worker.sdk') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30,
                   cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
