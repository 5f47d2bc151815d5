"""Test workers. Parameters come from the run config's ``hyperparameters``:

- test-sleep: heartbeats, records CUDA_VISIBLE_DEVICES, its start, its attempt and
  the checkpoint it takes (``run.take_checkpoint()``: a stateless worker resumes
  trivially, so a retried attempt of it completes) in ``seen.json``, sleeps
  ``seconds`` (default 0.2; a later attempt ``retry_seconds``, when given) in small
  steps checking the stop flag, writes and registers its checkpoint ``ckpt.bin`` (not
  with ``stop_checkpoint: false``, when stopped), exits 0; a checkpoint asked for
  (``run.checkpoint_requested``: SIGUSR2) is written at once as ``ckpt-asked-<attempt>.bin``
  and registered; with
  ``child``, first starts a child in its process group that waits for a signal
  (its pid in ``child.pid``); with ``result_return``, its result.json's metrics are
  its steps, that return and a text; with ``escape``, one in a session of its own that
  starts a grandchild in another (their pids in ``escaped.pid``, ``escaped2.pid``).
- test-exit: exits with ``code`` after writing ``message`` to stderr.
- test-ignore-checkpoint: uses the SDK, records ``run.attempt`` and
  ``run.resume_checkpoint`` (reading it is not taking it) in ``seen.json``, never calls
  ``take_checkpoint`` and finishes ``completed``: given a checkpoint
  (TRAINER_RESUME_CHECKPOINT or ``resume_from``) its result.json is ``failed`` with
  cause ``checkpoint_ignored`` and it exits 3; without one it completes, exit 0.
- test-ignore-term: heartbeats but ignores SIGTERM (only SIGKILL stops it).
- test-silent: never heartbeats, sleeps ``seconds``.
- test-flood: writes ``mb`` MiB interleaved on stdout and stderr, with one line of
  ``long_line`` bytes, then exits 0.
- test-mark: its first line records time.time(); writes it to ``$TRAINER_RUN_DIR/mark``
  (or the config's ``hyperparameters.mark`` path) and exits 0 (bench/dispatcher.py).
  With ``exit_first`` (an exit code), its first attempt (TRAINER_ATTEMPT 1) instead
  writes time.time() to ``exit-mark`` beside it and ends at once with that code
  (``os._exit``: no interpreter shutdown after the mark; bench/dispatcher_retry.py).
- test-gpu-hold (``gpu_hold.py``): records CUDA_VISIBLE_DEVICES, ``nvidia-smi -L`` and
  what torch and the CUDA driver see in ``gpu_seen.json``, allocates ``gib`` GiB of
  device memory (default 2; torch, else cuMemAlloc through libcuda) and holds it,
  heartbeating, until stopped; exits 3 with a clear message when no GPU is visible
  (scripts/gpu_check.py, the GPU check).
- test-resources, test-memory (``resources.py``): what a run's resources do to it (its
  thread variables and CPU affinity; an allocation past its memory limit).
- test-curves (``curves.py``): known learning curves (``score`` and
  ``rollout/ep_rew_mean``) for the experiments' statistics; fails a seed's first
  attempt on request.
- test-tensorboard (``tbworker.py``): writes its own TensorBoard logs with a
  tensorboardX ``SummaryWriter`` in ``tensorboard/PPO_1`` of its run folder, as SB3
  does (known ``rollout/ep_rew_mean`` and ``train/loss``), beside an SDK metric.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time


def _config() -> dict:
    path = sys.argv[sys.argv.index("--config") + 1]
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _params() -> dict:
    return _config().get("hyperparameters", {})


def _record_start(**more: object) -> None:
    with open(os.path.join(os.environ["TRAINER_RUN_DIR"], "seen.json"), "w") as fh:
        json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time(),
                   "pid": os.getpid(), **more}, fh)


def _checkpoint(run: object, name: str) -> None:
    with open(os.path.join(run.run_dir, name), "wb") as fh:  # type: ignore[attr-defined]
        fh.write(b"x" * 10)
    run.register_artifact(name, "checkpoint")  # type: ignore[attr-defined]


def sleep() -> int:
    from core.errors import ValidationError
    from worker.sdk import Run
    p = _params()
    with Run.from_env() as run:
        try:
            resume = run.take_checkpoint()
        except (ValidationError, ValueError, OSError) as exc:  # not there, a bad config:
            resume = f"not taken: {exc}"      # not taken (a completed end then exits 3)
        # after the SDK is up: SIGTERM now sets the stop flag
        _record_start(attempt=run.attempt, resume=resume)
        if p.get("child"):  # a child in the worker's process group, waiting for a signal
            import subprocess
            child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
            with open(os.path.join(run.run_dir, "child.pid"), "w") as fh:
                fh.write(str(child.pid))
        if p.get("escape"):  # a child in a session of its own (out of the worker's
            import subprocess  # process group), which starts a grandchild the same way
            pause = "import signal; signal.pause()"
            child = subprocess.Popen(
                [sys.executable, "-c", "import subprocess, sys; g = subprocess.Popen("
                 f"[sys.executable, '-c', {pause!r}], start_new_session=True); "
                 "open('escaped2.pid', 'w').write(str(g.pid)); " + pause],
                cwd=run.run_dir, start_new_session=True)
            with open(os.path.join(run.run_dir, "escaped.pid"), "w") as fh:
                fh.write(str(child.pid))
            grandchild = os.path.join(run.run_dir, "escaped2.pid")
            deadline = time.monotonic() + 20  # both started before the worker goes on
            while not os.path.exists(grandchild) and time.monotonic() < deadline and \
                    not run.wait_for_stop(0.01):
                pass
        if p.get("manifest_only"):  # an artifact whose bus message was "lost": only the
            with open(os.path.join(run.run_dir, "left.bin"), "wb") as fh:  # manifest has it
                fh.write(b"left")
            with open(os.path.join(run.run_dir, "artifacts.jsonl"), "a") as fh:
                fh.write(json.dumps({"run_id": run.run_id, "kind": "file", "path": "left.bin",
                                     "size": 4, "meta": {}}) + "\n")
        if p.get("artifact_early"):
            with open(os.path.join(run.run_dir, "early.txt"), "w") as fh:
                fh.write("early")
            run.register_artifact("early.txt", "note")
        seconds = p["retry_seconds"] if run.attempt > 1 and "retry_seconds" in p else \
            p.get("seconds", 0.2)
        end = time.monotonic() + float(seconds)
        step = 0
        # each "step" of simulated work ends early when a stop is requested (SIGTERM)
        while time.monotonic() < end and not run.wait_for_stop(min(0.02, max(
                0.0, end - time.monotonic()))):
            step += 1
            run.progress(step=step)
            if run.checkpoint_requested:   # SIGUSR2: a liveness rule, SLURM's time limit
                run.checkpoint_done()
                _checkpoint(run, f"ckpt-asked-{run.attempt}.bin")
        if not run.stop_requested or p.get("stop_checkpoint", True):
            _checkpoint(run, "ckpt.bin")
        print("stopping" if run.stop_requested else "done", flush=True)
        if "result_return" in p:  # result.json's metrics: its steps and this return
            run.finish("completed", metrics={"steps": step, "return": p["result_return"],
                                             "note": "not a number"})
    return 0


def exit_with_code() -> int:
    p = _params()
    print(p.get("message", "failing on purpose"), file=sys.stderr, flush=True)
    return int(p.get("code", 3))


def ignore_checkpoint() -> int:
    from worker.sdk import Run
    with Run.from_env() as run:
        _record_start(attempt=run.attempt, resume=run.resume_checkpoint)  # not a take
        run.progress(step=1)
        run.finish("completed", metrics={"steps": 1})
    return 0


def ignore_sigterm() -> int:
    from worker.sdk import Run
    run = Run.from_env()  # noqa: F841 - a worker that holds its Run and never reports
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _record_start()
    threading.Event().wait()  # works for ever, deaf to SIGTERM: only SIGKILL ends it
    return 0


def silent() -> int:
    """Never heartbeats; with ``beat_for`` (s), heartbeats for that long first, then
    stops (a hung worker), writing the time of its last heartbeat to ``silent.json``.
    It ignores SIGTERM (the SDK only sets a flag), so it ends by SIGKILL."""
    p = _params()
    beat_for = float(p.get("beat_for", 0))
    if beat_for > 0:
        from worker.sdk import Run
        run = Run.from_env()
        _record_start()
        run.wait_for_stop(beat_for)  # the SDK's thread heartbeats meanwhile
        run.close()  # heartbeats stop; the worker hangs (SIGTERM only sets the SDK's flag)
        with open(os.path.join(run.run_dir, "silent.json"), "w") as fh:
            json.dump({"last_beat": run.last_heartbeat_at}, fh)
    else:
        _record_start()
    threading.Event().wait(float(p.get("seconds", 60)))  # works without a heartbeat
    return 0


def flood() -> int:
    p = _params()
    total = int(float(p.get("mb", 1)) * 1024 * 1024)
    line = "o" * 99 + "\n"
    long_line = "L" * int(p.get("long_line", 0))
    written = 0
    if long_line:
        sys.stdout.write(long_line + "\n")
    while written < total:
        sys.stdout.write(line)
        sys.stderr.write(line.replace("o", "e"))
        written += 2 * len(line)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def mark() -> int:
    now = time.time()  # first: the benchmarks measure up to the start of the worker's main
    path = os.path.join(os.environ.get("TRAINER_RUN_DIR", "."), "mark")
    params = _params() if "--config" in sys.argv else {}
    path = params.get("mark", path)
    code = int(params.get("exit_first", 0))
    if code and os.environ.get("TRAINER_ATTEMPT", "1") == "1":
        with open(os.path.join(os.path.dirname(path), "exit-mark"), "w",
                  encoding="ascii") as fh:  # created first: the time is the end's
            fh.write(repr(time.time()))
        os._exit(code)  # the process ends here (the mark is its end, not its shutdown's)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(repr(now))
    os.replace(tmp, path)
    return 0
