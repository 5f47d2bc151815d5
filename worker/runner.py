"""``python -m worker.runner NAME --run-id ID --config PATH``: what the dispatcher runs.

Loads the entry point NAME of the group ``trainer.workers`` (or ``trainer.test_workers``
where TRAINER_TEST_WORKERS=1, as the dispatcher passes it on) and calls it. Only
registered entry points are ever executed. The target is a function called with no
arguments (sys.argv holds ``--run-id`` and ``--config``) whose return value, if an
int, is the exit code (``sys.exit(0)`` inside it counts as returning 0); the SDK reads
the rest from the environment.

Started by the dispatcher (TRAINER_RUN_DIR set), it records the attempt's code identity
as the worker starts (worker/attemptcode.py: ``code/attempt-<n>.json``).

A worker that returns 0 after the SDK recorded a checkpoint it ignored (a ``Run`` given
TRAINER_RESUME_CHECKPOINT or ``resume_from`` that finished ``completed`` without
``take_checkpoint()``) exits with ``worker.sdk.EXIT_CHECKPOINT_IGNORED`` (3) instead:
``worker.sdk.exit_status()``, asked only where the worker imported the SDK.
"""

from __future__ import annotations

import os
import sys

from runtime.workers import find, groups
from worker import attemptcode


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m worker.runner NAME --run-id ID --config PATH", file=sys.stderr)
        return 2
    name = args[0]
    if "--run-id" in args[1:-1] and "TRAINER_RUN_ID" not in os.environ:
        # Run by hand (docs/WORKERS.md): the SDK reads the run id from the environment.
        os.environ["TRAINER_RUN_ID"] = args[args.index("--run-id", 1) + 1]
    test_workers = os.environ.get("TRAINER_TEST_WORKERS") == "1"
    found = find(name, test_workers)
    if found is None:
        print(f"worker {name!r} is not a registered entry point in "
              f"{' or '.join(groups(test_workers))}", file=sys.stderr)
        return 2
    run_dir = os.environ.get("TRAINER_RUN_DIR")
    if run_dir and os.environ.get("TRAINER_RUN_ID"):  # started by the dispatcher
        attemptcode.start(os.environ["TRAINER_RUN_ID"], run_dir,
                          os.environ.get("TRAINER_ATTEMPT"), name, groups(test_workers))
    target = found.load()
    sys.argv = [name, *args[1:]]
    try:
        result = target()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
        result = 0
    finally:
        attemptcode.wait()
    code = result if isinstance(result, int) else 0
    sdk = sys.modules.get("worker.sdk")   # a worker without the SDK ignores nothing
    if code == 0 and sdk is not None:
        code = sdk.exit_status()
    return code


if __name__ == "__main__":
    sys.exit(main())
