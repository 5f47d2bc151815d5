"""What every service's ``__main__`` does: settings, logs, version check, the
singleton lock, a zmq.Context, then ``step()`` until SIGTERM or SIGINT.

An idle service sleeps until its next due work (each ``step`` chooses how long, up to
STEP_MAX_S): the signal that stops it wakes it through ``signal.set_wakeup_fd``, whose
read end each service polls beside its sockets (``wake_on``)."""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Callable, Protocol

import zmq

from runtime import logs
from runtime.singleton import AlreadyRunning, SingletonLock
from runtime.versions import version_problems
from core.errors import ValidationError
from core.settings import Settings

EXIT_BAD_SETTINGS = 2
EXIT_TOO_OLD = 3
EXIT_ALREADY_RUNNING = 4
STEP_MAX_S = 5.0   # the longest one step may wait when nothing is due


class Service(Protocol):
    def wake_on(self, fd: int) -> None: ...   # poll fd too: readable when a signal came
    def step(self, timeout_s: float) -> None: ...
    def close(self) -> None: ...


class SignalWake:
    """A pipe that the interpreter writes a byte to when a signal arrives, so that a
    blocking poll of its read end returns at once (the handlers only take note)."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

    def drain(self) -> None:
        try:
            while os.read(self.fd, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self.fd)
        os.close(self._w)


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

    wake = SignalWake()
    ctx = zmq.Context()
    try:
        service = build(settings, ctx, log)
    except ValidationError as exc:   # a key file of TRAINER_HOME/keys, not private...
        print(f"{name}: refusing to start: {exc.message}", file=sys.stderr)
        log.error("service.refused", reasons=[exc.message])
        wake.close()
        ctx.destroy(linger=0)
        lock.release()
        return EXIT_BAD_SETTINGS
    service.wake_on(wake.fd)
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's full passes, which would otherwise rescan it over and over.
    gc.freeze()
    log.info("service.started", pid=os.getpid(), home=settings.home)
    try:
        while not stopping:
            service.step(STEP_MAX_S)
            wake.drain()
    finally:
        service.close()
        wake.close()
        ctx.destroy(linger=0)
        log.info("service.stopped", signal=stopping[0] if stopping else None)
        lock.release()
    return 0
