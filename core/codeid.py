"""A run's code identity, as plain data: what makes two runs' code the same, and what
changed between two. Computed from the installed packages by ``worker.identity`` (at
submit by the gateway, at each attempt's start by the worker runner); checked here at
the registry's edge. Pure.

An identity is a map::

    {"worker": "cartpole", "distribution": "trainer-orchestrator", "version": "0.1.0",
     "python": "3.11.7", "packages": {"gymnasium": "1.0.0", "numpy": "2.1.3", ...},
     "git": {"commit": "<40 hex>", "diff_sha256": "<64 hex>" or "", "diff_bytes": 0,
             "untracked": 0, "root": "/home/me/src/agent", "diff_truncated": false},
     "git_error": "..."}

``git`` is there only where the worker's distribution is an editable install inside a
git checkout; ``git_error`` says why a checkout could not be read. The code digest is
over what decides the code's behaviour: the worker, its distribution and version, the
commit and the uncommitted diff, the Python version and the package versions (not the
checkout's place on disk, nor the sizes).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from core.digest import canonical_json
from core.errors import ValidationError

MAX_PACKAGES = 64
_TEXT_FIELDS = ("worker", "distribution", "version", "python", "git_error")
_GIT_TEXT = ("commit", "diff_sha256", "root")
_GIT_INTS = ("diff_bytes", "untracked")
MAX_TEXT = 4096


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if len(value) > MAX_TEXT:
        raise ValidationError(field, f"is longer than {MAX_TEXT} characters")
    return value


def check_code(code: Any) -> dict[str, Any]:
    """The identity map of a submit, checked field by field ({} where none was
    computed: a client that talks to the registry directly)."""
    if code is None:
        return {}
    if not isinstance(code, Mapping):
        raise ValidationError("code", "must be a map")
    known = {*_TEXT_FIELDS, "packages", "git"}
    unknown = sorted(str(k) for k in code if k not in known)
    if unknown:
        raise ValidationError(f"code.{unknown[0]}", "is not a code identity field")
    out: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        if name in code:
            out[name] = _text(code[name], f"code.{name}")
    packages = code.get("packages", {})
    if not isinstance(packages, Mapping):
        raise ValidationError("code.packages", "must be a map of name to version")
    if len(packages) > MAX_PACKAGES:
        raise ValidationError("code.packages", f"has more than {MAX_PACKAGES} packages")
    if packages:
        out["packages"] = {_text(k, "code.packages"): _text(v, f"code.packages.{k}")
                           for k, v in packages.items()}
    git = code.get("git")
    if git is not None:
        if not isinstance(git, Mapping):
            raise ValidationError("code.git", "must be a map")
        checked: dict[str, Any] = {}
        for name in _GIT_TEXT:
            if name in git:
                checked[name] = _text(git[name], f"code.git.{name}")
        for name in _GIT_INTS:
            if name in git:
                value = git[name]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValidationError(f"code.git.{name}", "must be a non-negative integer")
                checked[name] = value
        if "diff_truncated" in git:
            if not isinstance(git["diff_truncated"], bool):
                raise ValidationError("code.git.diff_truncated", "must be true or false")
            checked["diff_truncated"] = git["diff_truncated"]
        out["git"] = checked
    return out


def comparable(code: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an identity that decide what runs."""
    out = {k: code[k] for k in ("worker", "distribution", "version", "python", "packages")
           if k in code}
    git = code.get("git")
    if isinstance(git, Mapping):
        out["git"] = {k: git.get(k, "") for k in ("commit", "diff_sha256")}
    return out


def code_digest(code: Mapping[str, Any]) -> str:
    """SHA-256 of the identity's comparable parts; "" for no identity (which equals
    only another run without one)."""
    if not code:
        return ""
    return hashlib.sha256(canonical_json(comparable(code)).encode("utf-8")).hexdigest()


def _short(commit: str) -> str:
    return commit[:12] if commit else "none"


def code_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What changed from ``before`` to ``after``, one phrase each, e.g.
    ``commit 1a2b3c4d5e6f -> 7a8b9c0d1e2f``, ``diff changed``, ``numpy 1.26.4 -> 2.1.3``."""
    if not before or not after:
        return ["code identity not recorded" + (" before" if not before else " now")]
    out: list[str] = []
    for name in ("worker", "distribution", "version", "python"):
        if before.get(name, "") != after.get(name, ""):
            out.append(f"{name} {before.get(name) or 'none'} -> {after.get(name) or 'none'}")
    git_a, git_b = before.get("git") or {}, after.get("git") or {}
    if git_a.get("commit", "") != git_b.get("commit", ""):
        out.append(f"commit {_short(git_a.get('commit', ''))} -> "
                   f"{_short(git_b.get('commit', ''))}")
    if git_a.get("diff_sha256", "") != git_b.get("diff_sha256", ""):
        if not git_b.get("diff_sha256"):
            out.append("uncommitted diff gone")
        elif not git_a.get("diff_sha256"):
            out.append("uncommitted diff added")
        else:
            out.append("uncommitted diff changed")
    pk_a, pk_b = before.get("packages") or {}, after.get("packages") or {}
    for name in sorted(set(pk_a) | set(pk_b)):
        if pk_a.get(name) != pk_b.get(name):
            out.append(f"{name} {pk_a.get(name) or 'absent'} -> {pk_b.get(name) or 'absent'}")
    return out


def describe(code: Mapping[str, Any]) -> str:
    """One line: ``trainer-orchestrator 0.1.0, git 1a2b3c4d5e6f + diff 9f8e7d6c, python 3.11.7``."""
    if not code:
        return "not recorded"
    parts = [f"{code.get('distribution') or '?'} {code.get('version') or '?'}"]
    git = code.get("git")
    if isinstance(git, Mapping):
        text = f"git {_short(git.get('commit', ''))}"
        if git.get("diff_sha256"):
            text += f" + uncommitted diff {git['diff_sha256'][:8]}"
        parts.append(text)
    elif code.get("git_error"):
        parts.append(f"git unreadable ({code['git_error']})")
    parts.append(f"python {code.get('python') or '?'}")
    return ", ".join(parts)
