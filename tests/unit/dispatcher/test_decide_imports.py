"""The decision core imports only core, itself and I/O-free standard library modules."""

from __future__ import annotations

import ast
import pathlib

import pytest

import services.dispatcher.decide as decide

ALLOWED_STDLIB = {"__future__", "dataclasses", "enum", "typing", "functools", "math",
                  "itertools", "statistics"}
MODULES = sorted(pathlib.Path(decide.__file__).parent.glob("*.py"))


def imported(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_decide_module_imports_only_core_and_pure_stdlib(path: pathlib.Path) -> None:
    for name in imported(path):
        top = name.split(".")[0]
        assert top == "core" or top in ALLOWED_STDLIB or \
            name.startswith("services.dispatcher.decide"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_decide_module_stays_small(path: pathlib.Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 300
