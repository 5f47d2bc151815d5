"""The package version has one copy, pyproject.toml; the services report the installed
distribution's."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from runtime.status import PACKAGE_VERSION, UNKNOWN_VERSION, package_version

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_pyprojects() -> None:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        assert PACKAGE_VERSION == tomllib.load(fh)["project"]["version"]


def test_the_version_is_read_from_the_installed_distribution() -> None:
    asked: list[str] = []

    def version_of(dist: str) -> str:
        asked.append(dist)
        return "9.8.7"

    assert package_version(version_of) == "9.8.7" and asked == ["trainer-orchestrator"]


def test_a_checkout_that_is_not_installed_says_so() -> None:
    def missing(dist: str) -> str:
        raise metadata.PackageNotFoundError(dist)

    assert package_version(missing) == UNKNOWN_VERSION
