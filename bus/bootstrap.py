"""What every service's ``__main__`` does: settings, logs, version check, the
singleton lock, a zmq.Context, then ``step()`` until SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Callable, Protocol

import zmq

from bus import logs
from bus.singleton import AlreadyRunning, SingletonLock
from bus.versions import version_problems
from core.errors import ValidationError
from core.settings import Settings

EXIT_BAD_SETTINGS = 2
EXIT_TOO_OLD = 3
EXIT_ALREADY_RUNNING = 4


class Service(Protocol):
    def step(self, timeout_s: float) -> None: ...
    def close(self) -> None: ...


Builder = Callable[[Settings, zmq.Context, logs.ServiceLogger], Service]


def run_service(name: str, build: Builder, argv: list[str] | None = None) -> int:
    try:
        settings = Settings.from_env(os.environ)
    except ValidationError as exc:
        print(f"{name}: bad setting {exc.message}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    logs.configure(settings.log_level)
    log = logs.service_logger(name)
    problems = version_problems()
    if problems:
        for problem in problems:
            print(f"{name}: refusing to start: {problem}", file=sys.stderr)
        log.error("service.refused", reasons=problems)
        return EXIT_TOO_OLD
    os.makedirs(settings.home, mode=0o700, exist_ok=True)
    try:
        lock = SingletonLock(settings.home, name).acquire()
    except AlreadyRunning as exc:
        print(f"{name}: {exc.message}", file=sys.stderr)
        log.error("service.already_running", holder_pid=exc.details.get("pid"))
        return EXIT_ALREADY_RUNNING

    stopping = []
    def _stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    ctx = zmq.Context()
    service = build(settings, ctx, log)
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's full passes, which would otherwise rescan it over and over.
    gc.freeze()
    log.info("service.started", pid=os.getpid(), home=settings.home)
    try:
        while not stopping:
            service.step(0.2)
    finally:
        service.close()
        ctx.destroy(linger=0)
        log.info("service.stopped", signal=stopping[0] if stopping else None)
        lock.release()
    return 0
