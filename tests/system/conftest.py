"""Fixtures of the system tests, which start the programs as users do (``python -m
...``): ``stack`` (bus broker + registry processes), ``dstack`` (and a dispatcher with
2 fake GPUs), ``gateway`` (a gateway process in front of ``stack``), ``system`` (the
whole system under supervisord, driven through the `trainer` command). The classes
they build are helpers, imported by name: tests/system/stack.py, gateway.py,
supervised.py."""

from __future__ import annotations

from typing import Iterator

import pytest
import zmq

from core.settings import Settings
from tests.system.dispatch_helpers import assert_nothing_left
from tests.system.gateway import Gateway
from tests.system.stack import Stack
from tests.system.supervised import System


@pytest.fixture
def dstack(service_env: dict[str, str], ctx: zmq.Context) -> Iterator[Stack]:
    """bus + registry + dispatcher with 2 fake GPUs and 4 CPU slots."""
    env = {**service_env, "TRAINER_FAKE_GPUS": "2", "TRAINER_CPU_SLOTS": "4",
           "TRAINER_STATUS_INTERVAL": "0.5"}
    s = Stack(env, Settings.from_env(env), ctx)
    try:
        s.start_bus()
        s.start_registry()
        s.start_dispatcher()
        yield s
        if s.registry.alive():  # after every test: no run's process left, no GPU booked
            assert_nothing_left(s)
    finally:
        s.close()


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
