"""The dispatcher's log of registry refusals: each refusal is one line, except those
the dispatcher retries (NotApplied: a failed batch, a full disk), which repeat every
scheduling pass while the cause lasts: those are logged at most every REFUSED_LOG_S
per method and code, with the count of the ones not logged."""

from __future__ import annotations

from typing import Any

from runtime.logs import ServiceLogger
from runtime.throttle import LogThrottle
from core.clock import Clock
from core.errors import NotApplied, OrchestratorError

REFUSED_LOG_S = 10.0


class RefusalLog:
    def __init__(self, log: ServiceLogger, clock: Clock) -> None:
        self.log = log
        self.clock = clock
        self._retried = LogThrottle(REFUSED_LOG_S, clock)  # per (method, code)

    def __call__(self, method: str, args: dict[str, Any], exc: OrchestratorError) -> None:
        fields: dict[str, Any] = {}
        if isinstance(exc, NotApplied):  # a failed batch, a full disk: retried
            held = self._retried.admit((method, exc.code))
            if held is None:
                return
            fields["not_logged_since"] = held
        self.log.warning("registry.refused", method=method, run_id=args.get("run_id"),
                         code=exc.code, reason=exc.message, **fields)
