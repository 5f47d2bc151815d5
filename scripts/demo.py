"""``make demo``: what a user does on day one, end to end.

Starts every service under supervisord (`trainer up`), submits the CartPole run with
videos and follows its progress bar to completion (`trainer submit --wait`), shows
the run (`trainer show`), prints where its videos, checkpoint and logs are, then runs
the small sweep of examples/sweep-cartpole.json (2 values x 3 seeds: `trainer sweep
submit --wait`), prints its comparison table (`trainer sweep show`) and writes its
curves (`trainer sweep plot`), audits the event log (`trainer replay --verify`) and
stops everything (`trainer down`).

TRAINER_HOME defaults to a fresh folder under /tmp (set it to keep the demo's runs);
the gateway listens on a free local port unless TRAINER_GATEWAY_ADDR is set.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import tempfile

from core.rundir import RESULT_FILE, STDERR_FILE, STDOUT_FILE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "examples", "cartpole.json")
SWEEP = os.path.join(REPO, "examples", "sweep-cartpole.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trainer(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    print(f"\n$ trainer {' '.join(args)}", flush=True)
    result = subprocess.run([sys.executable, "-m", "trainer.cli.main", *args], text=True,
                            capture_output=capture, check=False)
    if capture:
        print(result.stdout, end="", flush=True)
        print(result.stderr, end="", file=sys.stderr, flush=True)
    return result


def main() -> int:
    os.environ.setdefault("TRAINER_HOME", tempfile.mkdtemp(prefix="trainer-demo-", dir="/tmp"))
    os.environ.setdefault("TRAINER_GATEWAY_ADDR", f"127.0.0.1:{free_port()}")
    home = os.environ["TRAINER_HOME"]
    print(f"TRAINER_HOME={home}")
    if trainer("up").returncode != 0:
        return 1
    try:
        steps = os.environ.get("TRAINER_DEMO_STEPS")  # a smaller budget (the test of it)
        submitted = trainer("submit", CONFIG, "--wait", *(["--steps", steps] if steps else []),
                            capture=True)
        run_id = submitted.stdout.split()[0] if submitted.stdout else ""
        if not run_id:
            return 1
        trainer("show", run_id)
        run_dir = os.path.join(home, "runs", run_id)
        videos = sorted(glob.glob(os.path.join(run_dir, "videos", "*.mp4")))
        checkpoints = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "*")))
        result = os.path.join(run_dir, RESULT_FILE)
        print("\nwhere things are:")
        print(f"  run directory  {run_dir}")
        for path in videos:
            print(f"  video          {path}")
        for path in checkpoints:
            print(f"  checkpoint     {path}")
        print(f"  stdout/stderr  {run_dir}/{STDOUT_FILE}, {run_dir}/{STDERR_FILE}")
        print(f"  metrics        {run_dir}/metrics.jsonl")
        for path in sorted(glob.glob(os.path.join(run_dir, "tensorboard", "*"))):
            print(f"  tensorboard    {path}  (tensorboard --logdir {home}/runs)")
        print(f"  service logs   {home}/logs/")
        if os.path.exists(result):
            with open(result, encoding="utf-8") as fh:
                print(f"  result         {json.dumps(json.load(fh).get('metrics', {}))}")
        swept = sweep(home, steps)
        audit = trainer("replay", "--verify")
        status = submitted.returncode or swept or audit.returncode
    finally:
        trainer("down")
    return status


def sweep(home: str, steps: str | None) -> int:
    """The sweep: created in one call, followed to its end, compared, plotted."""
    spec = SWEEP
    if steps:  # the test of the demo: the same sweep with a quarter of its budget
        with open(SWEEP, encoding="utf-8") as fh:
            data = json.load(fh)
        data["template"]["steps"] = max(1, int(steps) // 4)
        spec = os.path.join(home, "sweep-cartpole.json")
        with open(spec, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
    submitted = trainer("sweep", "submit", spec, "--wait")
    trainer("sweep", "show", "sweep-cartpole")
    png = os.path.join(home, "sweep-cartpole.png")
    plotted = trainer("sweep", "plot", "sweep-cartpole", "-o", png, "--profile")
    if plotted.returncode == 0:
        print(f"\n  sweep curves   {png}")
    return submitted.returncode or plotted.returncode


if __name__ == "__main__":
    sys.exit(main())
