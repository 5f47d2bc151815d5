"""Structured logs: one JSON object per line, with the service name and run id.

    log = service_logger("registry")
    log.info("run.submitted", run_id="r0123456789ab", seq=42)

prints ``{"ts": "...", "level": "INFO", "service": "registry", "event": "run.submitted",
"run_id": "r0123456789ab", "seq": 42}`` on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": getattr(record, "service", record.name),
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class ServiceLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._log = logging.getLogger(f"trainer.{service}")

    def _emit(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, event, exc_info=exc_info,
                          extra={"service": self.service, "fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, True, fields)


def service_logger(service: str) -> ServiceLogger:
    return ServiceLogger(service)


def configure(level: str = "INFO", stream: Any = None) -> None:
    """Send every trainer.* logger to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("trainer")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
