"""The layers of the event store (ARCHITECTURE.md, dependency rule): core (pure) <-
eventstore (the reading side of events.db) <- services/registry and trainer/cli.
`trainer/` reads the log through `eventstore` and never imports a service; the
event store imports no service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(folder: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def _offending(folder: str, *forbidden: str) -> list[str]:
    return [f"{path}: {name}" for path, names in _imports(folder).items()
            for name in sorted(names) if name.split(".")[0] in forbidden]


def test_the_cli_reads_the_log_through_eventstore_not_the_registry() -> None:
    assert _imports("trainer")["trainer/cli/replay.py"] >= {"eventstore.audit",
                                                           "eventstore.reader"}
    assert _offending("trainer", "services") == []


def test_eventstore_imports_no_service_nor_the_cli() -> None:
    assert _imports("eventstore"), "no eventstore package"
    assert _offending("eventstore", "services", "trainer", "worker") == []


def test_no_service_depends_on_the_client_package() -> None:
    """The generated gRPC code lives in trainer_api, which the gateway and the client
    both import; no service imports the client package `trainer`."""
    assert _imports("services")["services/gateway/servicer.py"] >= {"trainer_api.v1"}
    assert _offending("services", "trainer") == []
    assert _offending("trainer_api", "trainer", "services") == []
