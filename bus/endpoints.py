"""Endpoint helpers: ipc socket folders that only the owner can enter."""

from __future__ import annotations

import os

IPC_PREFIX = "ipc://"


def ipc_path(endpoint: str) -> str | None:
    return endpoint[len(IPC_PREFIX):] if endpoint.startswith(IPC_PREFIX) else None


def prepare(endpoint: str) -> None:
    """Create the folder of an ipc endpoint with mode 0700 (and tighten it if it exists)."""
    path = ipc_path(endpoint)
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
