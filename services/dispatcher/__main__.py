"""``python -m services.dispatcher``: schedule, start and supervise workers.

The decisions are services/dispatcher/decide (pure); this builds the shell around
them (services/dispatcher/shell): its sockets, the registry client, the launchers
(each run's: routedlauncher.py)."""

from __future__ import annotations

import os
import resource
import sys

import zmq

from bus import curvekeys
from bus.badframes import BadFrameLog
from bus.catchup import EventFollower, registry_fetch
from bus.pubsub import Publisher, Subscriber
from bus.registry import RegistryClient
from bus.rpc import RpcClient
from core.clock import SystemClock
from core.settings import Settings
from runtime.bootstrap import run_service
from runtime.logs import ServiceLogger
from services.dispatcher.decide.state import SOURCE
from services.dispatcher.shell.forklauncher import ForkLauncher
from services.dispatcher.shell.routedlauncher import RoutedLauncher
from services.dispatcher.shell.slurmlauncher import SlurmLauncher
from services.dispatcher.shell.gpuread import GpuReader, read_inventory
from services.dispatcher.shell.loop import DispatcherLoop, own_cores


def raise_fd_limit(log: ServiceLogger) -> int:
    """Each running shim costs the dispatcher a file descriptor (its pidfd), and each
    followed log file one more: the soft limit (often 1024) goes up to the hard one.
    Returns the soft limit as it was (the fork server puts it back for the workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.warning("fd_limit.unchanged", soft=soft, hard=hard, reason=str(exc))
    return soft


def build(settings: Settings, ctx: zmq.Context, log: ServiceLogger) -> DispatcherLoop:
    clock = SystemClock()
    fd_soft_limit = raise_fd_limit(log)
    inventory = read_inventory(settings.fake_gpus)
    if inventory.gpus:
        log.info("gpus.found", source=inventory.source.value, count=len(inventory.gpus),
                 gpus=[g.to_map() for g in inventory.gpus])
    else:
        log.info("gpus.none", reason=inventory.error or "no GPU found")
    bad = BadFrameLog(log)
    keys = curvekeys.service_keys(settings.home, settings.bus_curve)
    events_sock = ctx.socket(zmq.SUB)
    events_sock.setsockopt(zmq.LINGER, 0)
    curvekeys.connect(events_sock, settings.bus_sub, keys)
    telemetry_sock = ctx.socket(zmq.SUB)
    telemetry_sock.setsockopt(zmq.LINGER, 0)
    telemetry_sock.setsockopt(zmq.RCVHWM, 100_000)
    curvekeys.connect(telemetry_sock, settings.bus_sub, keys)
    pub = ctx.socket(zmq.PUB)
    curvekeys.connect(pub, settings.bus_pub, keys)
    # A call holds the loop: at most 2 x 2 s, then the registry counts as away (the
    # loop goes on, pinging it every second, and re-reads its state once it is back).
    rpc = RpcClient(ctx, settings.registry, SOURCE, timeout_s=2.0, retries=1)
    registry = RegistryClient(rpc)
    follower = EventFollower(Subscriber(events_sock, bad), registry_fetch(rpc))
    gpus = GpuReader(None if settings.fake_gpus > 0 else
                     (lambda ours: read_inventory(0, ours)))
    cpu_slots = settings.cpu_slots or len(own_cores()) or os.cpu_count() or 1
    launcher = RoutedLauncher(ForkLauncher(settings, fd_soft_limit),
                              lambda: SlurmLauncher(settings, log=log), settings.runs_dir,
                              settings.launcher)
    loop = DispatcherLoop(settings, registry, follower, Subscriber(telemetry_sock, bad),
                          Publisher(pub, SOURCE, clock), launcher,
                          inventory, cpu_slots, clock, log, gpus, os.uname().nodename)
    rpc.on_wait = loop.send_status
    return loop


def main() -> int:
    return run_service("dispatcher", build)


if __name__ == "__main__":
    sys.exit(main())
