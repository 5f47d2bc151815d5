"""``python -m bus``: run the broker on TRAINER_BUS_PUB (XSUB) and TRAINER_BUS_SUB (XPUB)."""

from __future__ import annotations

import sys

import zmq

from bus import endpoints
from bus.bootstrap import run_service
from bus.broker import Broker
from bus.logs import ServiceLogger
from core.settings import Settings


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
    return Broker(ctx, xsub, xpub, status_pub, settings.status_interval)


def main() -> int:
    return run_service("bus", build)


if __name__ == "__main__":
    sys.exit(main())
