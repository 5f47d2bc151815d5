"""Checkpoints: a training state as one ``.npz`` file (arrays, plus a JSON ``meta``
entry with counters, the RNG state and what wrote it), written atomically so a
stop or a crash mid-write never leaves a torn file; and where ``resume_from`` points.

``resume_from`` is an absolute path, or ``<run_id>/<path>`` relative to
``$TRAINER_HOME/runs`` (the path a ``checkpoint`` artifact has in the registry).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from runtime.atomicfile import atomic_file
from core.errors import ValidationError

FORMAT = 1
META_KEY = "__meta__"


def save(path: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> int:
    """Write the checkpoint; returns its size in bytes."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[META_KEY] = np.array(json.dumps({"format": FORMAT, **meta}, sort_keys=True))
    with atomic_file(path, "wb") as fh:   # a file object: numpy adds no ".npz" suffix
        np.savez(fh, **payload)
    return os.path.getsize(path)


def load(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of a checkpoint. Raises ValueError if it is not one of ours."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz checkpoint: {exc}") from exc
    if META_KEY not in arrays:
        raise ValueError(f"{path} has no {META_KEY} entry: not a trainer checkpoint")
    meta = json.loads(str(arrays.pop(META_KEY)))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return arrays, meta


def runs_dir(run_dir: str, environ: Mapping[str, str] = os.environ) -> str:
    """$TRAINER_HOME/runs; without TRAINER_HOME the folder that holds this run's."""
    home = environ.get("TRAINER_HOME")
    return os.path.join(home, "runs") if home else os.path.dirname(os.path.abspath(run_dir))


def resolve(resume_from: str, runs: str) -> str:
    """The checkpoint file ``resume_from`` names; ValidationError (field
    ``resume_from``) when it escapes the runs folder or does not exist."""
    if os.path.isabs(resume_from):
        path = resume_from
    else:
        root = os.path.realpath(runs)
        path = os.path.realpath(os.path.join(root, resume_from))
        if os.path.commonpath([path, root]) != root or "/" not in resume_from.strip("/"):
            raise ValidationError("resume_from", "must be an absolute path or "
                                  "<run_id>/<path> under $TRAINER_HOME/runs")
    if not os.path.isfile(path):
        raise ValidationError("resume_from", f"no checkpoint file at {path}")
    return path


def load_resume(resume_from: str, run_dir: str, algorithm: str,
                environ: Mapping[str, str] = os.environ) -> tuple[dict[str, np.ndarray],
                                                                  dict[str, Any]]:
    """Resolve and load ``resume_from``, checking it was written by ``algorithm``."""
    return load_checked(resolve(resume_from, runs_dir(run_dir, environ)), algorithm)


def load_checked(path: str, algorithm: str, field: str = "resume_from") -> tuple[
        dict[str, np.ndarray], dict[str, Any]]:
    """Load the checkpoint at ``path``, checking it was written by ``algorithm``;
    ValidationError naming ``field`` (what named the file: ``resume_from`` or
    ``TRAINER_RESUME_CHECKPOINT``) otherwise."""
    try:
        arrays, meta = load(path)
    except ValueError as exc:
        raise ValidationError(field, str(exc)) from exc
    if meta.get("algorithm") != algorithm:
        raise ValidationError(field, f"{path} holds a {meta.get('algorithm')!r} "
                              f"state, this worker resumes {algorithm!r}")
    return arrays, meta


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def restore_rng(state: Mapping[str, Any]) -> np.random.Generator:
    bitgen = getattr(np.random, str(state["bit_generator"]))()
    bitgen.state = dict(state)
    return np.random.Generator(bitgen)
