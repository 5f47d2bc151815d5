"""Fixtures for the decision core's tests: a booted Driver (see driver.py)."""

from __future__ import annotations

import pytest

from tests.unit.dispatcher.driver import Driver


@pytest.fixture
def d() -> Driver:
    """A dispatcher with 4 CPU slots and no GPU, booted on an empty registry."""
    driver = Driver()
    driver.boot()
    return driver


@pytest.fixture
def d2() -> Driver:
    """... with 2 GPUs."""
    driver = Driver(gpu_count=2)
    driver.boot()
    return driver
