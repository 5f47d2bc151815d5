"""Where an artifact may be: a file inside its run directory (symlinks resolved), its
path at most MAX_ARTIFACT_PATH characters, no control character in its path or kind.
The SDK judges a path here before it registers the file (docs/WORKERS.md)."""

from __future__ import annotations

import os

from core.commands import MAX_ARTIFACT_PATH
from core.runconfig import control_character


def artifact_path(run_dir: str, path: str, kind: str) -> tuple[str, str]:
    """(the path relative to ``run_dir``, the resolved full path) of an artifact, or
    ValueError saying why it may not be one."""
    full = os.path.realpath(os.path.join(run_dir, path))
    root = os.path.realpath(run_dir)
    if os.path.commonpath([full, root]) != root or full == root:
        raise ValueError(f"artifact {path!r} is outside the run directory {root}")
    rel = os.path.relpath(full, root)
    if len(rel) > MAX_ARTIFACT_PATH:
        raise ValueError(f"artifact path {rel[:40]!r}... is longer than "
                         f"{MAX_ARTIFACT_PATH} characters")
    for what, text in (("path", rel), ("kind", kind)):
        if control_character(text) is not None:
            raise ValueError(f"artifact {what} {text!r} contains a control character "
                             f"({control_character(text)})")
    return rel, full
