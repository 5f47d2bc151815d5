"""runtime.atomicfile: readers see a whole file or the previous one, and a write that
fails leaves no temporary behind (the disk-full audit found zero-byte
exit.json.tmp.*, result.json.tmp and events.anchor.tmp files after ENOSPC)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from runtime.atomicfile import atomic_file


def test_a_write_replaces_the_file_whole(tmp_path: Any) -> None:
    path = str(tmp_path / "exit.json")
    with atomic_file(path) as fh:
        json.dump({"exit_code": 0}, fh)
        assert not os.path.exists(path)            # not visible before the rename
    with atomic_file(path, durable=False) as fh:
        json.dump({"exit_code": 3}, fh)
    with open(path, encoding="utf-8") as fh:
        assert json.load(fh) == {"exit_code": 3}
    with atomic_file(str(tmp_path / "ckpt.npz"), "wb") as fh:
        fh.write(b"\x00\x01")
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz", "exit.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Any) -> None:
    path = str(tmp_path / "result.json")
    with atomic_file(path) as fh:
        fh.write("{}")
    with pytest.raises(OSError):
        with atomic_file(path) as fh:
            fh.write("{\"torn\": ")
            raise OSError(28, "No space left on device")
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == "{}"
    assert os.listdir(tmp_path) == ["result.json"]
    os.mkdir(str(tmp_path / "anchor"))             # the rename itself fails
    with pytest.raises(OSError):
        with atomic_file(str(tmp_path / "anchor")) as fh:
            fh.write("x")
    assert sorted(os.listdir(tmp_path)) == ["anchor", "result.json"]
