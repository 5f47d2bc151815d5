"""Names that do not collide: a module name means one thing across the package. Two
modules may share a name only where they are the same kind of thing in two places
(each service's loop is its ``service.py``, each layer's error classes its
``errors.py``). Before, ``recovery.py``, ``logs.py``, ``launch.py``, ``events.py``
and ``calls.py`` each meant two different things."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "bus", "runtime", "eventstore", "services", "worker", "trainer")
SAME_MEANING = {
    "__init__.py", "__main__.py",
    "service.py",   # a service's loop: services/registry, services/dispatcher
    "errors.py",    # a layer's errors: core (the tree), the gateway (-> gRPC), the CLI
    "workers.py",   # the installed workers: runtime's scan, the `trainer workers` command
    "pyenvs.py",    # the registered Python environments: the registry's worker check,
                    # the gateway's RPCs, the `trainer env` command
}


def test_no_two_modules_share_a_name_with_different_meanings() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            where[path.name].append(path.relative_to(ROOT).as_posix())
    assert len(where) > 50, "the package's modules were not found"
    shared = {name: paths for name, paths in where.items()
              if len(paths) > 1 and name not in SAME_MEANING}
    assert not shared, f"module names with two meanings: {shared}"
