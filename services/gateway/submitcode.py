"""The code identity of a submitted run (core.codeid), computed by the gateway before
it asks the registry, off the event loop (``git`` runs as a subprocess; ~5 ms for a
clean checkout; a checkout unchanged since the last reading is not read again), and
for a dirty checkout the diff saved in the run folder once the run exists
(``code/submit.diff``; the identity itself is in the log).

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
        # the diffs of dirty checkouts, once each (runs/<id>/code/submit.diff links here)
        self.diffs_dir = os.path.join(os.path.dirname(runs_dir), "code-diffs")
        self.groups = groups(test_workers)
        self.read = identity.IdentityReader(self.groups)
        # a registered environment's (docs/WORKERS.md): by (sys.path, Python version)
        self._env_readers: dict[tuple[tuple[str, ...], str], identity.IdentityReader] = {}
        self.log = log
        self._locks: dict[str, asyncio.Lock] = {}
        self._begun: dict[str, int] = {}      # readings begun, per worker
        self._last: dict[str, tuple[int, Optional[identity.Identity]]] = {}
        self.readings = 0
        self._saving: set[asyncio.Task[None]] = set()

    def reader(self, env: Optional[dict[str, Any]]) -> identity.IdentityReader:
        """This interpreter's reader, or that of a registered environment (its view:
        the recorded ``sys_path`` and ``python_version``)."""
        if env is None:
            return self.read
        key = (tuple(env.get("sys_path") or ()), str(env.get("python_version") or ""))
        found = self._env_readers.get(key)
        if found is None:
            found = self._env_readers[key] = identity.IdentityReader(
                self.groups, list(key[0]), key[1] or None)
        return found

    async def of(self, config: dict[str, Any],
                 env: Optional[dict[str, Any]] = None) -> Optional[identity.Identity]:
        """The identity of the config's worker as installed here (or in ``env``, the
        view of the registered environment the config names); None where it names no
        installed worker (the registry refuses it, naming the field)."""
        worker = config.get("worker", DEFAULT_WORKER)
        if not isinstance(worker, str):
            return None
        read = self.reader(env)
        unchanged = read.cached(worker)  # nothing changed since the last reading began
        if unchanged is not None:
            return unchanged
        key = f"{env.get('name') if env else ''}/{worker}"
        arrived = self._begun.get(key, 0)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            last = self._last.get(key)
            if last is not None and last[0] > arrived:  # begun after this submit came
                return last[1]
            number = self._begun[key] = self._begun.get(key, 0) + 1
            found = await asyncio.to_thread(read, worker)
            self.readings += 1
            self._last[key] = (number, found)
            return found

    def save_soon(self, run_id: str, found: identity.Identity) -> None:
        """``save`` in the background (the reply does not wait for the file), for a
        dirty checkout only: the identity itself is in the log (RunSubmitted.code)."""
        if not found.diff:
            return
        task = asyncio.get_running_loop().create_task(self.save(run_id, found))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def save(self, run_id: str, found: identity.Identity) -> None:
        """Written for a new run; a failure is logged (the log has the identity)."""
        try:
            await asyncio.to_thread(identity.save_diff, os.path.join(self.runs_dir, run_id),
                                    "submit", found.diff, self.diffs_dir)
        except OSError as exc:
            self.log.warning("code.save_failed", run_id=run_id, error=str(exc))
