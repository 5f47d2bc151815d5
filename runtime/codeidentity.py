"""Which code a worker name runs: the code identity (core.codeid) read from the
installed packages, and the uncommitted diff of an editable install's git checkout.

Standard library only (``importlib.metadata``, ``git`` as a subprocess), so that it
runs in the orchestrator (the gateway, at submit) and in a worker's own environment
(the runner, at each attempt's start). ``path``: the ``sys.path`` of the environment
whose packages are read (None: this interpreter's).

The diff covers the checkout's tracked changes against HEAD and its untracked, not
ignored files (as new files): ``git diff HEAD --binary``, with the untracked files added
"intent to add" to a copy of the index. ``git apply`` on the commit gives the code back.
The user's index and work tree are never written.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import tempfile
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote, urlparse

from runtime import checkoutwatch

# Besides the worker distribution's own requirements: what RL workers import.
WATCHED = ("gymnasium", "numpy", "torch", "jax", "trainer-orchestrator", "trainer-sdk")
GIT_TIMEOUT_S = 20.0
MAX_UNTRACKED = 1000                  # untracked files diffed (the rest: listed only)
MAX_DIFF_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class Identity:
    """The identity map (core.codeid) and the diff it hashes (b"" when clean)."""

    code: dict[str, Any]
    diff: bytes


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entry_point(worker: str, groups: Iterable[str],
                 dists: list[metadata.Distribution]) -> Optional[metadata.Distribution]:
    """The distribution declaring the worker; of several (an editable checkout's
    ``*.egg-info`` build folder in the working directory as well as the installed
    record), the installed one, which has a direct_url.json or a RECORD."""
    for group in groups:
        found = [d for d in dists
                 if any(ep.group == group and ep.name == worker for ep in d.entry_points)]
        for dist in found:
            if dist.read_text("direct_url.json") or dist.read_text("RECORD"):
                return dist
        if found:
            return found[0]
    return None


def _editable_dir(dist: metadata.Distribution) -> Optional[str]:
    """The project folder of an editable install (PEP 610's direct_url.json)."""
    try:
        text = dist.read_text("direct_url.json")
    except OSError:
        return None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not (data.get("dir_info") or {}).get("editable"):
        return None
    url = urlparse(str(data.get("url", "")))
    return unquote(url.path) if url.scheme == "file" else None


def _git(root: str, *args: str, ok: tuple[int, ...] = (0,),
         env: Optional[dict[str, str]] = None) -> bytes:
    proc = subprocess.run(["git", "-C", root, *args], capture_output=True,
                          timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL,
                          env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C",
                               **(env or {})})
    if proc.returncode not in ok:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"git {args[0]} exited {proc.returncode}")
    return proc.stdout


def git_state(folder: str) -> tuple[dict[str, Any], bytes]:
    """(the ``git`` part of an identity, the diff) of the checkout holding ``folder``:
    one ``git status`` for a clean checkout, a diff more for a dirty one."""
    state, diff, _ = read_git(folder)
    return state, diff


def read_git(folder: str) -> tuple[dict[str, Any], bytes, list[str]]:
    """``git_state``, and the untracked files it found (relative to the top)."""
    out = _git(folder, "status", "--porcelain=v2", "--branch", "-z",
               "--untracked-files=all").decode("utf-8", "surrogateescape").split("\0")
    commit, changed, names = "", False, []
    for line in out:
        if line.startswith("# branch.oid "):
            commit = line.split(" ", 2)[2]
        elif line.startswith("? "):
            names.append(line[2:])
        elif line[:2] in ("1 ", "2 ", "u "):
            changed = True
    if commit in ("", "(initial)"):
        raise RuntimeError("the checkout has no commit yet")
    state: dict[str, Any] = {"commit": commit, "diff_sha256": "", "diff_bytes": 0,
                             "untracked": len(names), "root": folder}
    if not changed and not names:
        return state, b"", names
    if not names:
        diff = _git(folder, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff")
    else:
        state["root"], diff = _diff_with_untracked(folder, names)
    if len(names) > MAX_UNTRACKED or len(diff) > MAX_DIFF_BYTES:
        state["diff_truncated"] = True
    state.update(diff_sha256=hashlib.sha256(diff).hexdigest(), diff_bytes=len(diff))
    return state, diff, names


def _names(out: bytes) -> list[str]:
    return [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]


def checkout_folders(folder: str) -> tuple[str, set[str]]:
    """(the top of the checkout holding ``folder``, the folders a watch must cover:
    runtime/checkoutwatch.py)."""
    top, git_dir, common = _git(folder, "rev-parse", "--show-toplevel",
                                "--path-format=absolute", "--git-dir",
                                "--git-common-dir").decode().strip().split("\n")[:3]
    folders = checkoutwatch.with_parents(top, _names(_git(top, "ls-files", "-z")))
    limit = checkoutwatch.MAX_WATCHES
    for name in _names(_git(top, "ls-files", "-z", "--others", "--exclude-standard",
                           "--directory")):
        if name.endswith("/"):
            folders |= checkoutwatch.below(os.path.join(top, name.rstrip("/")), limit)
        else:
            folders |= checkoutwatch.with_parents(top, [name])
        if len(folders) > limit:
            break
    folders |= {git_dir, common} | checkoutwatch.below(os.path.join(common, "refs"), limit)
    return top, folders


def _diff_with_untracked(folder: str, names: list[str]) -> tuple[str, bytes]:
    """``git diff HEAD`` with the untracked files as new files: they are added
    "intent to add" to a copy of the index, so the user's own index is not touched."""
    top, index = _git(folder, "rev-parse", "--show-toplevel", "--path-format=absolute",
                      "--git-path", "index").decode().strip().split("\n")
    with tempfile.TemporaryDirectory(prefix="trainer-code-") as tmp:
        copy = os.path.join(tmp, "index")
        if os.path.exists(index):
            shutil.copyfile(index, copy)
        env = {"GIT_INDEX_FILE": copy}
        for start in range(0, min(len(names), MAX_UNTRACKED), 100):
            _git(top, "add", "--intent-to-add", "--", *names[start:start + 100], env=env)
        return top, _git(folder, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff",
                         env=env)


def _version(name: str, path: Optional[list[str]]) -> Optional[str]:
    """The installed version of ``name`` (found by its dist-info folder's name: no
    other package's metadata is parsed)."""
    found = metadata.distributions(name=name, path=path) if path is not None \
        else metadata.distributions(name=name)
    for dist in found:
        return dist.version
    return None


@dataclass(frozen=True)
class Installed:
    """What the package metadata says of a worker: its distribution, version,
    packages, and the project folder of an editable install (None otherwise)."""

    distribution: str
    version: str
    packages: dict[str, str]
    editable: Optional[str]


def installed(worker: str, groups: Iterable[str],
              path: Optional[list[str]] = None) -> Optional[Installed]:
    """The worker ``worker`` (an entry point in one of ``groups``) as installed on
    ``path``; None where no such worker is installed."""
    found = list(metadata.distributions(path=path) if path is not None
                 else metadata.distributions())
    dist = _entry_point(worker, list(groups), found)
    if dist is None:
        return None
    wanted = set(WATCHED)
    for req in dist.requires or ():
        if ";" in req and "extra ==" in req.split(";", 1)[1]:
            continue  # an optional extra's requirement
        m = _NAME.match(req)
        if m:
            wanted.add(m.group(1))
    packages = {}
    for name in sorted(wanted, key=_normal):
        version = _version(name, path)
        if version is not None:
            packages[_normal(name)] = version
        if len(packages) >= 64:
            break
    return Installed(dist.metadata["Name"] or "", dist.version or "", packages,
                     _editable_dir(dist))


def _path_stamp(path: Optional[list[str]]) -> tuple[tuple[str, int], ...]:
    """The folders of ``path`` with their modification times: installing, upgrading or
    removing a package adds or removes a ``*.dist-info`` folder in one of them."""
    out = []
    for entry in path if path is not None else sys.path:
        try:
            out.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            out.append((entry, -1))
    return tuple(out)


class IdentityReader:
    """``code_identity`` with the package metadata read again only when a folder of the
    path changed (a scan of every installed package costs milliseconds), and a git
    checkout read again only once something in it changed since the last reading
    began (an inotify watch, runtime/checkoutwatch.py; without one, every time)."""

    def __init__(self, groups: Iterable[str], path: Optional[list[str]] = None,
                 python: Optional[str] = None) -> None:
        self.groups = list(groups)
        self.path = path
        self.python = python
        self._cache: dict[str, tuple[tuple[tuple[str, int], ...], Optional[Installed]]] = {}
        self._checkouts: dict[str, tuple[Optional[checkoutwatch.CheckoutWatch],
                                         dict[str, Any], bytes]] = {}
        self._git_lock = threading.Lock()
        self.git_readings = 0

    def _git(self, folder: str) -> tuple[dict[str, Any], bytes]:
        """The checkout's git state: the last reading while its watch saw no change
        since that reading began; else a new one, under a new watch set up first."""
        with self._git_lock:
            cached = self._checkouts.pop(folder, None)
            if cached is not None:
                if cached[0] is not None and not cached[0].changed():
                    self._checkouts[folder] = cached
                    return dict(cached[1]), cached[2]
                if cached[0] is not None:
                    cached[0].close()
            watch: Optional[checkoutwatch.CheckoutWatch] = None
            try:
                top, folders = checkout_folders(folder)
                watch = checkoutwatch.watch(folders)
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError):
                top = folder
            try:
                state, diff, untracked = read_git(folder)
            except BaseException:
                if watch is not None:
                    watch.close()
                raise
            self.git_readings += 1
            # A folder made between the listing and the watch is not watched: such a
            # reading is not kept.
            if watch is not None and not checkoutwatch.with_parents(top, untracked) <= \
                    watch.folders:
                watch.close()
                watch = None
            self._checkouts[folder] = (watch, state, diff)
            return state, diff

    def cached(self, worker: str) -> Optional[Identity]:
        """The identity without reading anything but stamps: where the metadata of the
        path and the worker's checkout (watched) are as they were at the last reading
        (a few microseconds: the gateway asks on its event loop); None otherwise."""
        cached = self._cache.get(worker)
        if cached is None or cached[1] is None or cached[0] != _path_stamp(self.path):
            return None
        folder = cached[1].editable
        if folder is not None:
            with self._git_lock:
                git = self._checkouts.get(folder)
                if git is None or git[0] is None or git[0].changed():
                    return None
        return identity_of(worker, cached[1], self.python,
                           lambda f: (dict(git[1]), git[2]) if git is not None else ({}, b""))

    def __call__(self, worker: str) -> Optional[Identity]:
        stamp = _path_stamp(self.path)
        cached = self._cache.get(worker)
        if cached is None or cached[0] != stamp:
            cached = (stamp, installed(worker, self.groups, self.path))
            self._cache[worker] = cached
        return identity_of(worker, cached[1], self.python, self._git)


GitReader = Callable[[str], tuple[dict[str, Any], bytes]]


def identity_of(worker: str, found: Optional[Installed], python: Optional[str] = None,
                git: GitReader = git_state) -> Optional[Identity]:
    if found is None:
        return None
    code: dict[str, Any] = {"worker": worker, "distribution": found.distribution,
                            "version": found.version,
                            "python": python or platform.python_version(),
                            "packages": dict(found.packages)}
    diff = b""
    if found.editable is not None:
        try:
            code["git"], diff = git(found.editable)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            code["git_error"] = str(exc)[:300] or type(exc).__name__
    return Identity(code, diff)


def code_identity(worker: str, groups: Iterable[str], path: Optional[list[str]] = None,
                  python: Optional[str] = None) -> Optional[Identity]:
    """The identity of the worker ``worker`` (an entry point in one of ``groups``) as
    installed on ``path`` (None: this interpreter's); None where it is not installed."""
    return identity_of(worker, installed(worker, groups, path), python)


CODE_DIR = "code"


def save_diff(run_dir: str, stem: str, diff: bytes, store: Optional[str] = None) -> str:
    """``code/<stem>.diff`` in the run folder; its path relative to it. With ``store``
    (a folder), the diff is kept there once by its SHA-256 and the run's file is a
    hard link to it: many runs submitted from one dirty checkout share one copy."""
    folder = os.path.join(run_dir, CODE_DIR)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    rel = os.path.join(CODE_DIR, f"{stem}.diff")
    target = os.path.join(run_dir, rel)
    if store is not None:
        os.makedirs(store, mode=0o700, exist_ok=True)
        kept = os.path.join(store, hashlib.sha256(diff).hexdigest() + ".diff")
        if not os.path.exists(kept):
            tmp = f"{kept}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(diff)
            os.replace(tmp, kept)
        try:
            os.link(kept, target)
            return rel
        except FileExistsError:
            return rel
        except OSError:
            pass   # another file system: a copy
    with open(target, "wb") as fh:
        fh.write(diff)
    return rel


def save(run_dir: str, stem: str, identity: Identity) -> str:
    """``code/<stem>.json`` (the identity) and, when there is one, ``code/<stem>.diff``
    written in the run folder; returns the JSON file's path relative to it."""
    folder = os.path.join(run_dir, CODE_DIR)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if identity.diff:
        save_diff(run_dir, stem, identity.diff)
    rel = os.path.join(CODE_DIR, f"{stem}.json")
    tmp = os.path.join(run_dir, rel + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(identity.code, fh, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(run_dir, rel))
    return rel
