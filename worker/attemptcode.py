"""The code an attempt runs, recorded as it starts: the worker runner computes the code
identity (runtime.codeidentity) in this interpreter, beside the worker's own start-up
(a thread: ~5 ms of ``git`` for a clean checkout, more for a dirty one), and saves
``code/attempt-<n>.json`` (and ``.diff``) in the run folder. The file is an artifact of
kind ``code`` whose meta is the identity: listed in the run's manifest (registered when
the run ends, whatever the worker does) and announced on the bus by the SDK's Run as
soon as both exist (registered at once: ``trainer show`` compares it with the
identity recorded at submit).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Callable, Iterable, Optional

Announce = Callable[[dict[str, Any]], None]

_lock = threading.Lock()
_record: Optional[dict[str, Any]] = None    # the manifest entry, once written
_announce: Optional[Announce] = None        # the SDK Run's, once one runs
_thread: Optional[threading.Thread] = None


def _record_now(run_id: str, run_dir: str, attempt_text: Optional[str], worker: str,
                groups: Iterable[str]) -> None:
    global _record
    # Imported here, in the thread, not before the worker's own start (~30 ms).
    from core.rundir import CODE_ARTIFACT, MANIFEST_FILE
    from runtime import codeidentity
    from worker.resume import parse_attempt
    try:
        attempt = parse_attempt(attempt_text)
    except ValueError:
        return  # the SDK says what is wrong with TRAINER_ATTEMPT
    try:
        found = codeidentity.code_identity(worker, groups)
        if found is None:
            return
        rel = codeidentity.save(run_dir, f"attempt-{attempt}", found)
        entry = {"run_id": run_id, "kind": CODE_ARTIFACT, "path": rel,
                 "size": os.path.getsize(os.path.join(run_dir, rel)),
                 "meta": {**found.code, "attempt": attempt}}
        with open(os.path.join(run_dir, MANIFEST_FILE), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
    except (OSError, ValueError) as exc:
        print(f"worker.runner: the code identity was not recorded: {exc}", file=sys.stderr,
              flush=True)
        return
    with _lock:
        _record = entry
        target = _announce
    if target is not None:
        target(entry)


def start(run_id: str, run_dir: str, attempt: Optional[str], worker: str,
          groups: Iterable[str]) -> None:
    """Record the code of the attempt (``attempt``: TRAINER_ATTEMPT as given) in the
    background (the runner, before the worker)."""
    global _thread
    _thread = threading.Thread(target=_record_now, name="code-identity", daemon=True,
                               args=(run_id, run_dir, attempt, worker, list(groups)))
    _thread.start()


def announce_to(announce: Optional[Announce]) -> None:
    """The SDK's Run: send the record now if it is written, else when it is (None: the
    Run has closed its socket)."""
    global _announce
    with _lock:
        _announce = announce
        ready = _record
    if announce is not None and ready is not None:
        announce(ready)


def wait(timeout_s: float = 30.0) -> None:
    """Before the runner exits: the record is finished (a short worker ends first)."""
    if _thread is not None:
        _thread.join(timeout_s)
