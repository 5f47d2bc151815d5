"""env-probe: records the interpreter it runs in (sys.executable, sys.prefix, whether
the orchestrator's own packages can be imported) and the variables its config's
``hyperparameters.vars`` names, in ``env_seen.json`` in its run folder and as its
result's metrics, heartbeating through the SDK; waits ``hyperparameters.seconds``
(default 0) or until asked to stop, then completes."""

from __future__ import annotations

import importlib.util
import json
import os
import sys


def probe() -> int:
    from worker.sdk import Run, load_config
    config = load_config()
    with Run.from_env() as run:
        names = config.hyperparameters.get("vars", [])
        seen = {"executable": sys.executable, "prefix": sys.prefix,
                "vars": {n: os.environ.get(n) for n in names},
                "grpc": importlib.util.find_spec("grpc") is not None,
                "services": importlib.util.find_spec("services") is not None}
        with open(os.path.join(run.run_dir, "env_seen.json"), "w", encoding="utf-8") as fh:
            json.dump(seen, fh)
        run.progress(step=1)
        run.heartbeat()
        run.log_metrics(1, in_env=1.0)
        run.wait_for_stop(float(config.hyperparameters.get("seconds", 0)))
    return 0
