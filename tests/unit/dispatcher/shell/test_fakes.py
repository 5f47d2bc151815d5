"""The fake launcher is the launcher seam: the same methods, with the same parameters,
and nothing public besides them (its scripting and records are plain attributes).
A method added to, renamed in or dropped from launcher.Launcher fails here until the
fake follows."""

from __future__ import annotations

import inspect
from typing import get_type_hints

from services.dispatcher.shell.launcher import Launcher
from tests.unit.dispatcher.shell.conftest import FakeLauncher


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(value) for name, value in vars(cls).items()
            if callable(value) and not name.startswith("_")}


def test_the_fake_launcher_has_exactly_the_protocols_methods() -> None:
    wanted = _methods(Launcher)
    assert {"start", "signal", "kill", "observe", "exited", "record_kill", "ended",
            "processes_of", "forget", "check", "close"} <= set(wanted)  # the read works
    assert set(_methods(FakeLauncher)) == set(wanted)


def test_the_fake_launchers_methods_take_the_protocols_parameters() -> None:
    fake = _methods(FakeLauncher)
    for name, signature in _methods(Launcher).items():
        assert list(fake[name].parameters) == list(signature.parameters), name


def test_the_fake_launcher_has_the_protocols_attributes(launcher: FakeLauncher) -> None:
    attributes = get_type_hints(Launcher)
    assert "wake_fd" in attributes
    for name, kind in attributes.items():
        assert isinstance(getattr(launcher, name), kind), name
