"""Refuse to start on dependencies older than we were built and tested against."""

from __future__ import annotations

from importlib import metadata

from packaging.version import InvalidVersion, Version

MINIMUMS: dict[str, str] = {
    "pyzmq": "25.1",
    "grpcio": "1.85.1",      # the generated trainer/v1 code checks this at import
    "protobuf": "7.35.1",
    "msgpack": "1.0.5",
}


def version_problems(minimums: dict[str, str] | None = None,
                     installed: dict[str, str] | None = None) -> list[str]:
    """One line per package that is missing or older than its minimum."""
    problems = []
    for dist, minimum in (minimums or MINIMUMS).items():
        try:
            found = installed[dist] if installed is not None else metadata.version(dist)
        except (KeyError, metadata.PackageNotFoundError):
            problems.append(f"{dist} is not installed (need >= {minimum})")
            continue
        try:
            too_old = Version(found) < Version(minimum)
        except InvalidVersion:
            problems.append(f"{dist} has an unreadable version {found!r} (need >= {minimum})")
            continue
        if too_old:
            problems.append(f"{dist} {found} is older than the minimum {minimum}")
    return problems


def installed_versions() -> dict[str, str]:
    out = {}
    for dist in MINIMUMS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out
