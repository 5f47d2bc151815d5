"""The run config a worker process was started with: ``--config PATH`` (the file the
dispatcher writes into the run folder), validated by core.runconfig."""

from __future__ import annotations

import json
import sys
from typing import Optional

from core.runconfig import RunConfig


def load_config(argv: Optional[list[str]] = None) -> RunConfig:
    """The run config named by ``--config PATH`` in ``argv`` (default sys.argv),
    validated; the defaults when there is no ``--config`` (a script run by hand).
    Raises core.errors.ValidationError naming the bad field."""
    args = sys.argv[1:] if argv is None else argv
    if "--config" not in args:
        return RunConfig.from_map({})
    i = args.index("--config")
    if i + 1 >= len(args):
        raise ValueError("--config needs a path")
    with open(args[i + 1], encoding="utf-8") as fh:
        return RunConfig.from_map(json.load(fh))
