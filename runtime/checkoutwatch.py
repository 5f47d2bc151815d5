"""Whether a git checkout has changed since a moment, told by the kernel (Linux
inotify, through ctypes): so that a submit whose worker's checkout has not changed
since the last reading reuses it instead of running ``git status`` again (~5 ms, more
under load). Like git's own fsmonitor, but kept by the reader, not by git.

A watch covers the checkout's folders: the top, each folder holding a tracked file
and its parents, each untracked (not ignored) folder and what is below it, and the git
folders (HEAD, the index, refs). Any change in one of them (a file written, created,
deleted, renamed, its mode changed) marks the watch changed, for good; so does an
event queue overflow or a folder gone. A change to an ignored file in a watched folder
counts too: that costs a reading, never a stale answer.

Where inotify cannot be had or cannot be trusted (not Linux, no free instance or
watch, more folders than ``MAX_WATCHES``, a checkout on a file system other machines
write to: NFS, CIFS, FUSE, Lustre... inotify sees only this machine's changes),
``watch`` returns None and the caller reads every time. A watch is also trusted for
``MAX_AGE_S`` at most, then a new reading is made anyway.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Iterable, Optional

MAX_WATCHES = 4096
MAX_AGE_S = 60.0
# File systems whose changes all come through this machine's kernel.
LOCAL_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "zfs", "f2fs",
                      "overlay", "bcachefs", "jfs", "reiserfs"})
# IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE |
# IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
MASK = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
IN_ONLYDIR = 0x01000000

_libc: Optional[ctypes.CDLL] = None


def _lib() -> Optional[ctypes.CDLL]:
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(None, use_errno=True)   # this process's own: libc's symbols
        except OSError:
            return None
        if not hasattr(lib, "inotify_init1"):
            return None
        _libc = lib
    return _libc


class CheckoutWatch:
    """One inotify instance watching ``folders``; ``changed()`` says whether anything
    happened in them since it was made."""

    def __init__(self, fd: int, folders: frozenset[str]) -> None:
        self._fd = fd
        self.folders = folders
        self._changed = False
        self.made_at = time.monotonic()

    def changed(self) -> bool:
        if not self._changed and time.monotonic() - self.made_at > MAX_AGE_S:
            self._changed = True
        if not self._changed:
            try:
                self._changed = bool(os.read(self._fd, 65536))
            except BlockingIOError:
                pass                      # nothing happened
            except OSError:
                self._changed = True      # cannot tell: read again
        return self._changed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def watch(folders: Iterable[str]) -> Optional[CheckoutWatch]:
    """A watch on every one of ``folders`` (absolute paths), or None where one cannot
    be had."""
    wanted = frozenset(folders)
    lib = _lib()
    if lib is None or not wanted or len(wanted) > MAX_WATCHES or not local(wanted):
        return None
    fd = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        return None
    for folder in wanted:
        if lib.inotify_add_watch(fd, os.fsencode(folder), MASK | IN_ONLYDIR) < 0:
            os.close(fd)     # gone meanwhile, or no watch left: no watch at all
            return None
    return CheckoutWatch(fd, wanted)


def _mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) of each mount of this process."""
    out = []
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) >= 3:
                out.append((fields[1].replace("\\040", " "), fields[2]))
    return out


def fs_type(path: str, mounts: Optional[list[tuple[str, str]]] = None) -> str:
    """The type of the file system holding ``path`` (the longest mount point above
    it); "" where it cannot be told."""
    best, kind = "", ""
    real = os.path.realpath(path)
    try:
        for point, fs in mounts if mounts is not None else _mounts():
            if (real == point or real.startswith(point.rstrip("/") + "/")) and \
                    len(point) >= len(best):
                best, kind = point, fs
    except OSError:
        return ""
    return kind


def local(folders: Iterable[str]) -> bool:
    """Whether every one of ``folders`` is on a local file system: the one holding
    their common folder, and every one mounted below it."""
    try:
        mounts = _mounts()
    except OSError:
        return False
    top = os.path.realpath(os.path.commonpath(list(folders)))
    inside = [fs for point, fs in mounts if point.startswith(top.rstrip("/") + "/")]
    return fs_type(top, mounts) in LOCAL_FS and all(fs in LOCAL_FS for fs in inside)


def with_parents(top: str, relative: Iterable[str]) -> set[str]:
    """The absolute folders of ``relative`` paths' folders in ``top``, with every
    folder between them and ``top``."""
    out = {top}
    for rel in relative:
        folder = os.path.dirname(rel.rstrip("/"))
        while folder:
            full = os.path.join(top, folder)
            if full in out:
                break
            out.add(full)
            folder = os.path.dirname(folder)
    return out


def below(folder: str, limit: int) -> set[str]:
    """``folder`` and the folders below it, at most ``limit`` of them (then one more,
    so that the caller sees the limit passed)."""
    out: set[str] = set()
    for root, dirs, _ in os.walk(folder):
        out.add(root)
        if len(out) > limit:
            break
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return out
