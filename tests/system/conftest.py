"""Fixtures of the system tests, which start the programs as users do (``python -m
...``): ``stack`` (bus broker + registry processes), ``dstack`` (and a dispatcher with
2 fake GPUs), ``gateway`` (a gateway process in front of ``stack``), ``system`` (the
whole system under supervisord, driven through the `trainer` command),
``slurm_cluster`` / ``slurm`` (a single-node SLURM cluster), ``sstack`` (bus + registry +
dispatcher whose runs go to that cluster), ``slurm_accounting`` / ``astack`` (the same
with a cluster that keeps accounting: sacct answers), ``pstack`` (a dispatcher with as many CPU slots as this machine lets it use, so
that runs are pinned), ``launcher_harness`` and ``launcher`` (each launcher implementation in turn, for the
launcher contract suite). The classes they build are helpers, imported by name:
tests/system/stack.py, gateway.py, supervised.py, launchers.py."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest
import zmq

from core.settings import Settings
from tests.helpers import free_port, wait_until
from tests.system.dispatch_helpers import running_stack
from services.dispatcher.shell.launcher import Launcher
from tests.system.gateway import Gateway
from tests.system import slurmcluster, slurmdb
from tests.system.launchers import HARNESSES, LauncherHarness
from tests.system.slurmcluster import SlurmCluster
from tests.system.stack import Stack
from tests.system.supervised import System


@pytest.fixture
def pstack(service_env: dict[str, str], ctx: zmq.Context) -> Iterator[Stack]:
    """bus + registry + dispatcher with one CPU slot per CPU of its affinity mask (runs
    are pinned: docs/WORKERS.md, Resources) and no GPU."""
    slots = str(len(os.sched_getaffinity(0)))
    env = {**service_env, "TRAINER_CPU_SLOTS": slots, "TRAINER_STATUS_INTERVAL": "0.5"}
    with running_stack(env, ctx) as s:
        yield s


@pytest.fixture
def dstack(service_env: dict[str, str], ctx: zmq.Context) -> Iterator[Stack]:
    """bus + registry + dispatcher with 2 fake GPUs and 4 CPU slots."""
    env = {**service_env, "TRAINER_FAKE_GPUS": "2", "TRAINER_CPU_SLOTS": "4",
           "TRAINER_STATUS_INTERVAL": "0.5"}
    with running_stack(env, ctx) as s:
        yield s


@pytest.fixture
def stack(service_env: dict[str, str], settings: Settings, ctx: zmq.Context) -> Iterator[Stack]:
    s = Stack(service_env, settings, ctx)
    try:
        s.start_bus()
        s.start_registry()
        yield s
    finally:
        s.close()


@pytest.fixture
def gateway(stack: Stack) -> Iterator[Gateway]:
    gw = Gateway(stack)
    try:
        yield gw.start()
    finally:
        gw.close()


@pytest.fixture
def system(trainer_home: str) -> Iterator[System]:
    s = System(trainer_home)
    try:
        s.ok("up", timeout=90)
        yield s
    finally:
        s.trainer("down", timeout=90)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node SLURM cluster in a temporary folder (tests/system/slurmcluster.py),
    one per test process; skipped, in one line saying how to install it, where SLURM
    is not installed or we are not root."""
    why = slurmcluster.missing()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster, for one test: after it, every job cancelled, squeue without a job
    running or pending, and no slurmstepd left."""
    yield slurm_cluster
    slurm_cluster.clean()


@pytest.fixture(scope="session")
def slurm_accounting_cluster() -> Iterator[SlurmCluster]:
    """A second single-node cluster, keeping accounting in a MariaDB + slurmdbd of its
    own (tests/system/slurmdb.py: sacct answers; MinJobAge 2 s); skipped, in one line
    saying how to install them, where they are not installed."""
    why = slurmcluster.missing() or slurmdb.missing()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(accounting=True).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm_accounting(slurm_accounting_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    yield slurm_accounting_cluster
    slurm_accounting_cluster.clean()


def _slurm_stack(service_env: dict[str, str], ctx: zmq.Context,
                 cluster: SlurmCluster) -> Any:
    """bus + registry + dispatcher whose runs go to ``cluster`` by default; the bus on
    tcp with CURVE, as for compute nodes on other hosts (docs/SLURM.md): each worker
    reports with the client key its run folder carries."""
    env = {**service_env, "SLURM_CONF": cluster.conf, "TRAINER_LAUNCHER": "slurm",
           "TRAINER_CPU_SLOTS": "1", "TRAINER_STATUS_INTERVAL": "0.5",
           "TRAINER_BUS_PUB": f"tcp://127.0.0.1:{free_port()}",
           "TRAINER_BUS_SUB": f"tcp://127.0.0.1:{free_port()}", "TRAINER_BUS_CURVE": "1"}
    return running_stack(env, ctx, lambda _: wait_until(
        lambda: not cluster.jobs(), 30,
        message="no job of the test left running or pending in squeue"))


@pytest.fixture
def sstack(service_env: dict[str, str], ctx: zmq.Context,
           slurm: SlurmCluster) -> Iterator[Stack]:
    """A stack on the SLURM test cluster (``_slurm_stack``)."""
    with _slurm_stack(service_env, ctx, slurm) as s:
        yield s


@pytest.fixture
def astack(service_env: dict[str, str], ctx: zmq.Context,
           slurm_accounting: SlurmCluster) -> Iterator[Stack]:
    """A stack on the SLURM test cluster with accounting."""
    with _slurm_stack(service_env, ctx, slurm_accounting) as s:
        yield s


@pytest.fixture(params=sorted(HARNESSES))
def launcher_harness(request: pytest.FixtureRequest, settings: Settings) -> Iterator[LauncherHarness]:
    """Each launcher implementation in turn (a temporary TRAINER_HOME, test workers
    allowed); after the test, every instance is closed and every process of every run
    it started is killed, whatever the test did. A harness that needs fixtures (the
    SLURM one: its cluster) names them in ``fixtures``."""
    factory = HARNESSES[request.param]
    harness = factory(settings, *[request.getfixturevalue(name)
                                  for name in getattr(factory, "fixtures", ())])
    try:
        yield harness
    finally:
        harness.teardown()


@pytest.fixture
def launcher(launcher_harness: LauncherHarness) -> Launcher:
    """The launcher under test (the harness closes it)."""
    return launcher_harness.new()


@pytest.fixture(scope="session")
def second_env(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The interpreter of a second venv holding only the SDK (sdk/), pyzmq, msgpack and
    the test worker env-probe (tests/envworker): tests/system/secondenv.py. Skipped
    where the dependencies' wheels cannot be had (offline, nothing cached)."""
    from tests.system import secondenv
    try:
        return str(secondenv.build(tmp_path_factory.mktemp("second-env")))
    except secondenv.Unavailable as exc:
        pytest.skip(str(exc))
