"""The code identity of a submitted run (core.codeid), computed by the gateway before
it asks the registry, off the event loop (``git`` runs as a subprocess; ~5 ms for a
clean checkout), and saved in the run folder once the run exists
(``code/submit.json``, and ``code/submit.diff`` for a dirty checkout).

Submits that arrive together share one reading: a submit waits for a reading that
began after it arrived (never one begun before, which may predate an edit it must see).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Optional

from core.runconfig import DEFAULT_WORKER
from runtime import codeidentity as identity
from runtime.logs import ServiceLogger
from runtime.workers import groups


class SubmitIdentity:
    def __init__(self, runs_dir: str, test_workers: bool, log: ServiceLogger) -> None:
        self.runs_dir = runs_dir
        self.read = identity.IdentityReader(groups(test_workers))
        self.log = log
        self._locks: dict[str, asyncio.Lock] = {}
        self._begun: dict[str, int] = {}      # readings begun, per worker
        self._last: dict[str, tuple[int, Optional[identity.Identity]]] = {}
        self.readings = 0

    async def of(self, config: dict[str, Any]) -> Optional[identity.Identity]:
        """The identity of the config's worker as installed here; None where the config
        names no installed worker (the registry refuses it, naming the field)."""
        worker = config.get("worker", DEFAULT_WORKER)
        if not isinstance(worker, str):
            return None
        arrived = self._begun.get(worker, 0)
        lock = self._locks.setdefault(worker, asyncio.Lock())
        async with lock:
            last = self._last.get(worker)
            if last is not None and last[0] > arrived:  # begun after this submit came
                return last[1]
            number = self._begun[worker] = self._begun.get(worker, 0) + 1
            found = await asyncio.to_thread(self.read, worker)
            self.readings += 1
            self._last[worker] = (number, found)
            return found

    async def save(self, run_id: str, found: identity.Identity) -> None:
        """Written for a new run; a failure is logged (the log has the identity)."""
        try:
            await asyncio.to_thread(identity.save, os.path.join(self.runs_dir, run_id),
                                    "submit", found)
        except OSError as exc:
            self.log.warning("code.save_failed", run_id=run_id, error=str(exc))
