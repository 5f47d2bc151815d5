"""Service settings: one documented table, read once from the environment in each
``__main__`` (the mapping is passed in; nothing here reads os.environ).

Every entry of SETTINGS is documented in docs/SETTINGS.md (a test checks it).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Callable, Mapping

from core import exposure
from core.errors import ValidationError


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str          # may name {home}
    parse: Callable[[str], object]
    help: str


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _abs_path_or_empty(text: str) -> str:
    if text and not posixpath.isabs(text):
        raise ValueError("must be an absolute path (or empty)")
    return text


def _launcher(text: str) -> str:
    if text not in ("local", "slurm"):
        raise ValueError("must be local or slurm")
    return text


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return text == "1"


SETTINGS: tuple[Setting, ...] = (
    Setting("home", "TRAINER_HOME", "{user_home}/.local/share/trainer", str,
            "Folder holding events.db, the socket folder, logs and runs/."),
    Setting("bus_pub", "TRAINER_BUS_PUB", "ipc://{home}/sock/bus-in", str,
            "Broker endpoint that publishers connect to (its XSUB side)."),
    Setting("bus_sub", "TRAINER_BUS_SUB", "ipc://{home}/sock/bus-out", str,
            "Broker endpoint that subscribers connect to (its XPUB side)."),
    Setting("registry", "TRAINER_REGISTRY", "ipc://{home}/sock/registry", str,
            "Registry ROUTER endpoint for commands and queries."),
    Setting("bus_curve", "TRAINER_BUS_CURVE", "0", _flag,
            "1: the bus's tcp endpoints (TRAINER_BUS_PUB, TRAINER_BUS_SUB) are CURVE "
            "servers (ZeroMQ's encryption and key authentication): only clients with a key "
            "in TRAINER_HOME/keys/authorized/ get in (`trainer keys`; docs/BUS.md, tcp "
            "endpoints and CURVE). Required when one of them is tcp on another address than "
            "loopback; ipc endpoints are never CURVE (their folder's mode protects them)."),
    Setting("checkpoint_interval", "TRAINER_CHECKPOINT_INTERVAL", "60", _positive_float,
            "Seconds between PRAGMA wal_checkpoint(TRUNCATE) runs of the registry."),
    Setting("checkpoint_busy_warn", "TRAINER_CHECKPOINT_BUSY_WARN", "3", _positive_int,
            "Warn when this many checkpoints in a row report busy > 0."),
    Setting("max_batch", "TRAINER_REGISTRY_MAX_BATCH", "512", _positive_int,
            "Most requests the registry commits in one transaction (group commit)."),
    Setting("registry_spin_us", "TRAINER_REGISTRY_SPIN_US", "500", _nonneg_int,
            "After answering, the registry polls without sleeping for this many "
            "microseconds before it blocks, when the last two requests each came within "
            "that long of the answer before: a busy client's next request is then taken on "
            "a running CPU (about a third more commands/s from one client). 0 turns it "
            "off; an idle registry, or one asked now and then, never spins."),
    Setting("status_interval", "TRAINER_STATUS_INTERVAL", "2", _positive_float,
            "Seconds between each service's status message on the bus."),
    Setting("log_level", "TRAINER_LOG_LEVEL", "INFO", _log_level,
            "Logging level of the services (DEBUG, INFO, WARNING, ERROR)."),
    Setting("fake_gpus", "TRAINER_FAKE_GPUS", "0", _nonneg_int,
            "For tests and development only: declare this many fake GPUs instead of "
            "asking NVML."),
    Setting("max_runs", "TRAINER_MAX_RUNS", "0", _nonneg_int,
            "Most runs the dispatcher runs at once (0: no cap besides resources)."),
    Setting("cpu_slots", "TRAINER_CPU_SLOTS", "0", _nonneg_int,
            "CPU slots the dispatcher hands out (0: the number of CPUs it may run on, "
            "its affinity mask)."),
    Setting("cgroup", "TRAINER_CGROUP", "", _abs_path_or_empty,
            "cgroup v2 folder in which each run with a memory limit gets its own cgroup "
            "(it must hand the memory controller to its children and be writable); empty: "
            "the shim's own cgroup, where it does. Where neither does, the limit is "
            "enforced by sampling (docs/WORKERS.md, Resources)."),
    Setting("log_rate", "TRAINER_LOG_RATE", "1048576", _positive_int,
            "Bytes per second per run of stdout/stderr the dispatcher publishes on the bus."),
    Setting("tick", "TRAINER_DISPATCHER_TICK", "0.05", _positive_float,
            "Seconds between the dispatcher's checks of exits, timeouts and logs."),
    Setting("test_workers", "TRAINER_TEST_WORKERS", "0", _flag,
            "For the test suite only: 1 makes the workers of the entry-point group "
            "trainer.test_workers (tests/workers) runnable besides trainer.workers."),
    Setting("launcher", "TRAINER_LAUNCHER", "local", _launcher,
            "The launcher of a run whose config names none (its \"launcher\" left out): "
            "local (a shim on the dispatcher's host) or slurm (a batch job; docs/SLURM.md)."),
)


@dataclass(frozen=True)
class Settings:
    home: str
    bus_pub: str
    bus_sub: str
    registry: str
    bus_curve: bool
    checkpoint_interval: float
    checkpoint_busy_warn: int
    max_batch: int
    registry_spin_us: int
    status_interval: float
    log_level: str
    fake_gpus: int
    max_runs: int
    cpu_slots: int
    cgroup: str
    log_rate: int
    tick: float
    test_workers: bool
    launcher: str = "local"

    @property
    def db_path(self) -> str:
        return posixpath.join(self.home, "events.db")

    @property
    def sock_dir(self) -> str:
        return posixpath.join(self.home, "sock")

    @property
    def runs_dir(self) -> str:
        return posixpath.join(self.home, "runs")

    @property
    def logs_dir(self) -> str:
        return posixpath.join(self.home, "logs")

    @staticmethod
    def from_env(env: Mapping[str, str]) -> "Settings":
        values: dict[str, object] = {}
        user_home = env.get("HOME", "/tmp")
        home = env.get("TRAINER_HOME") or f"{user_home}/.local/share/trainer"
        for s in SETTINGS:
            raw = env.get(s.env) or s.default.format(home=home, user_home=user_home)
            try:
                values[s.name] = s.parse(raw)
            except ValueError as exc:
                raise ValidationError(s.env, f"{raw!r} is not valid: {exc}") from None
        settings = Settings(**values)  # type: ignore[arg-type]
        settings.check_exposure()
        return settings

    def check_exposure(self) -> None:
        """Refuse an endpoint that listens beyond this host without CURVE (the bus's)
        or at all (the registry's), naming the setting."""
        for env, problem in (
                ("TRAINER_BUS_PUB", exposure.bus_problem(self.bus_pub, self.bus_curve)),
                ("TRAINER_BUS_SUB", exposure.bus_problem(self.bus_sub, self.bus_curve)),
                ("TRAINER_REGISTRY", exposure.registry_problem(self.registry))):
            if problem:
                raise ValidationError(env, problem)
