"""``trainer up | down | health``: run the services under supervisord."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Optional

import click

from core.settings import Settings
from trainer.cli import errors
from trainer.cli import format as fmt
from trainer.client import TrainerError
from trainer_api.v1 import trainer_pb2 as pb

SERVICES = ("bus", "registry", "dispatcher", "gateway")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONF = os.path.join(REPO, "supervisor.conf")


def settings() -> Settings:
    """The shared settings; a bad one: its message and exit 2 (as the services)."""
    return errors.load_settings()


def supervisor(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINER_HOME": settings().home}
    return subprocess.run([sys.executable, "-m", f"supervisor.{program}", "-c", CONF, *args],
                          env=env, capture_output=True, text=True, check=False)


def supervisord_pid(home: str) -> Optional[int]:
    try:
        with open(os.path.join(home, "supervisord.pid"), encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


LAST_PROBE_ERROR: list[TrainerError] = []  # why the last health_once got no answer


def health_once() -> Optional[pb.GetHealthResponse]:
    """GetHealth, as every command talks to the gateway (its address, token and TLS:
    TRAINER_GATEWAY_TLS_CA, else the gateway's own TRAINER_GATEWAY_TLS_CERT)."""
    LAST_PROBE_ERROR.clear()
    try:
        with errors.open_client(timeout=2.0) as c:  # new: the token may just have been made
            return c.health()
    except TrainerError as err:
        LAST_PROBE_ERROR.append(err)
        return None


def probe_failure() -> str:
    """Why the last probe failed, if the gateway answered it (a refused token, ...)."""
    if not LAST_PROBE_ERROR or errors.unreachable(LAST_PROBE_ERROR[0]):
        return ""
    err = LAST_PROBE_ERROR[0]
    return f" (it answered {err.code.name.lower()}: {fmt.clean(err.message)})"


def not_alive(health: Optional[pb.GetHealthResponse]) -> list[str]:
    if health is None:
        return ["gateway"]
    alive = {s.name for s in health.services if s.alive}
    return [name for name in SERVICES if name not in alive]


def print_health(health: pb.GetHealthResponse) -> None:
    rows = [(s.name, "up" if s.alive else "DOWN", s.pid or "-", f"{s.age_s:.1f}s",
             s.version or "-", s.error or "") for s in health.services]
    click.echo(fmt.table(("SERVICE", "STATE", "PID", "LAST SEEN", "VERSION", "NOTE"), rows))
    gpus = [(g.index, g.uuid, g.name, f"{g.memory_free // 2**20:,}/{g.memory_total // 2**20:,}"
             " MiB free", g.run_id or "free") for g in health.gpus]
    click.echo(f"\nGPUs ({health.gpu_source or 'none'}): {len(gpus) or 'none found'}")
    if gpus:
        click.echo(fmt.table(("#", "UUID", "NAME", "MEMORY", "HELD BY"), gpus))
    click.echo(f"\nevent log: {health.db_bytes / 2**20:.1f} MiB, last seq {health.last_seq}; "
               f"{health.watchers} watcher(s)")


@click.command("up")
@click.option("--timeout", default=60.0, show_default=True,
              help="Seconds to wait for every service to report healthy.")
def up(timeout: float) -> None:
    """Start every service under supervisord (in the background) and wait until
    GetHealth says each one is up."""
    home = settings().home
    os.makedirs(home, mode=0o700, exist_ok=True)  # (makedirs' mode is the last folder's)
    os.makedirs(os.path.join(home, "logs"), mode=0o700, exist_ok=True)
    if supervisord_pid(home) is None:
        started = supervisor("supervisord")
        if started.returncode != 0:
            raise click.ClickException(f"supervisord did not start: {started.stderr.strip()}")
        click.echo(f"supervisord started (TRAINER_HOME={home})")
    else:
        click.echo(f"supervisord already running (TRAINER_HOME={home})")
    deadline = time.monotonic() + timeout
    health = health_once()
    while not_alive(health) and time.monotonic() < deadline:
        time.sleep(0.3)  # poll interval while the services start
        health = health_once()
    missing = not_alive(health)
    if missing:
        for name in missing:
            why = probe_failure() if name == "gateway" else ""
            click.echo(f"{name} is not up{why}; its log: "
                       f"{os.path.join(home, 'logs', name + '.log')}", err=True)
        click.echo(supervisor("supervisorctl", "status").stdout, err=True)
        sys.exit(1)
    assert health is not None
    print_health(health)


@click.command("down")
def down() -> None:
    """Stop every service and supervisord. Running workers keep running under their
    shims (cancel them first to stop them); the next `up` adopts them."""
    home = settings().home
    pid = supervisord_pid(home)
    if pid is None:
        click.echo("not running")
        return
    # All at once first: `shutdown` alone stops them one after another, and supervisord
    # notices each exit only on its 1 s tick (~3 s for the four, ~1.3 s this way).
    supervisor("supervisorctl", "stop", "all")
    supervisor("supervisorctl", "shutdown")
    deadline = time.monotonic() + 60
    while supervisord_pid(home) is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # poll until supervisord has stopped its programs and exited
    click.echo("stopped" if supervisord_pid(home) is None else "supervisord is still running")


@click.command("health")
def health() -> None:
    """Print each service's state, the GPU inventory and the event log's size."""
    result = health_once()
    if result is None:
        err = LAST_PROBE_ERROR[0] if LAST_PROBE_ERROR else None
        if err is not None and not errors.unreachable(err):
            raise errors.fail(err, errors.gateway_address())
        raise errors.CliError(errors.not_reachable(errors.gateway_address()))
    print_health(result)
    if not_alive(result):
        sys.exit(1)
