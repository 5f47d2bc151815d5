"""Storage failures, told apart from bugs: a full disk (SQLite's SQLITE_FULL, "database
or disk is full") is the user's to fix and every command can be retried once space
is freed, so it gets its own error code, ``resource_exhausted``, with a message that
says so; anything else that fails a batch is ``internal``. Either way nothing of the
failed requests was stored."""

from __future__ import annotations

import errno
import os
import sqlite3
from typing import Any

from core.errors import Internal, StorageFull

FULL = StorageFull.code


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database or disk is full" (or ENOSPC)."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    if not isinstance(exc, sqlite3.Error):
        return False
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or \
        "database or disk is full" in str(exc)


def full_error(db_path: str) -> dict[str, Any]:
    where = os.path.dirname(os.path.abspath(db_path)) if db_path else "TRAINER_HOME"
    return StorageFull(f"the registry's disk is full (no space left for the event log in "
                       f"{where}): nothing of this request was stored; free space there, "
                       f"then retry", path=db_path).to_dict()


def internal_error(method: str, exc: BaseException) -> dict[str, Any]:
    return Internal(f"{method} failed: {type(exc).__name__}: {str(exc)[:300]}").to_dict()


def failure(method: str, exc: BaseException, db_path: str) -> dict[str, Any]:
    """The error reply for a request that raised ``exc`` (nothing of it was stored)."""
    return full_error(db_path) if is_full(exc) else internal_error(method, exc)
