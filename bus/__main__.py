"""``python -m bus``: run the broker on TRAINER_BUS_PUB (XSUB) and TRAINER_BUS_SUB (XPUB).

The broker is a service like the others: this entry point is the one module of ``bus``
that imports ``runtime`` (start-up, logs, the status beacon); the layers contract in
pyproject.toml names it as the exception."""

from __future__ import annotations

import sys

import zmq

from bus import endpoints
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
    for sock, endpoint in ((xsub, settings.bus_pub), (xpub, settings.bus_sub)):
        if not endpoints.bind(sock, endpoint, settings.home):
            log.warning("endpoint.not_private", endpoint=endpoint,
                        hint="its folder lets other users in; use one inside TRAINER_HOME")
    log.info("bus.listening", publishers=settings.bus_pub, subscribers=settings.bus_sub)
    status_pub = ctx.socket(zmq.PUB)
    status_pub.connect(settings.bus_pub)
    return Broker(ctx, xsub, xpub, status_pub, lambda counters: StatusBeacon(
        "bus", settings.status_interval, SystemClock(), counters))


def main() -> int:
    return run_service("bus", build)


if __name__ == "__main__":
    sys.exit(main())
