"""``python -m bus``: run the broker on TRAINER_BUS_PUB (XSUB) and TRAINER_BUS_SUB (XPUB).

The broker is a service like the others: this entry point is the one module of ``bus``
that imports ``runtime`` (start-up, logs, the status beacon); the layers contract in
pyproject.toml names it as the exception."""

from __future__ import annotations

import sys

import zmq

from bus import curvekeys, endpoints
from core.exposure import is_tcp
from runtime.bootstrap import run_service
from bus.broker import Broker
from runtime.logs import ServiceLogger
from core.clock import SystemClock
from core.settings import Settings
from runtime.status import StatusBeacon


def build(settings: Settings, ctx: zmq.Context, log: ServiceLogger) -> Broker:
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    xpub.setsockopt(zmq.SNDHWM, 10_000)
    xsub.setsockopt(zmq.RCVHWM, 10_000)
    sides = ((xsub, settings.bus_pub, "publishers"), (xpub, settings.bus_sub, "subscribers"))
    curve = [(side, endpoint) for _, endpoint, side in sides
             if settings.bus_curve and is_tcp(endpoint)]
    # The ZAP handler is up before the first bind: no connection gets in unchecked.
    guard = None
    if curve:   # imported only then: zmq.auth's thread pulls in asyncio (4 MB idle)
        from bus.curveauth import CurveGuard
        guard = CurveGuard(ctx, curvekeys.KeyStore(settings.home), log)
    monitors = []
    for sock, endpoint, side in sides:
        if guard is not None and (side, endpoint) in curve:
            monitors.append(guard.serve(sock, side))
        if not endpoints.bind(sock, endpoint, settings.home):
            log.warning("endpoint.not_private", endpoint=endpoint,
                        hint="its folder lets other users in; use one inside TRAINER_HOME")
    log.info("bus.listening", publishers=settings.bus_pub, subscribers=settings.bus_sub,
             curve=[side for side, _ in curve])
    status_pub = ctx.socket(zmq.PUB)
    curvekeys.connect(status_pub, settings.bus_pub,
                      curvekeys.service_keys(settings.home, settings.bus_curve))
    counters_of = guard.counters if guard is not None else dict
    broker = Broker(ctx, xsub, xpub, status_pub, lambda counters: StatusBeacon(
        "bus", settings.status_interval, SystemClock(),
        lambda: {**counters(), **counters_of()}))
    if guard is not None:
        for monitor in monitors:
            broker.watch(monitor, guard.on_monitor)
        broker.on_close(guard.close)
    return broker


def main() -> int:
    return run_service("bus", build)


if __name__ == "__main__":
    sys.exit(main())
