"""GetMetrics' file reading (services/gateway/runfiles.py LogFiles.metrics): paging by
next_offset always moves on, and only points with values come back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.gateway import runfiles
from services.gateway.runfiles import LogFiles

RUN = "r0123456789ab"


def _files(tmp_path: Path, lines: list[bytes]) -> LogFiles:
    folder = tmp_path / RUN
    folder.mkdir()
    (folder / "metrics.jsonl").write_bytes(b"".join(lines))
    return LogFiles(str(tmp_path), None, None, 0.1)  # type: ignore[arg-type]


def _line(step: int, **values: object) -> bytes:
    return json.dumps({"step": step, "ts": 1.0, "values": values}).encode() + b"\n"


def _page_all(files: LogFiles, limit: int, keys: frozenset[str] = frozenset()) -> list:
    """Page with next_offset until it stops moving (as a client does)."""
    out, offset = [], 0
    for _ in range(100):
        got = files.metrics(RUN, offset, limit, keys)
        out += [(p.step, dict(p.values)) for p in got.points]
        if got.next_offset == offset:
            return out
        offset = got.next_offset
    raise AssertionError("next_offset kept moving")  # pragma: no cover


def test_an_oversized_line_is_skipped_not_a_stall(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runfiles, "MAX_METRICS_READ", 64)
    big = _line(1, blob_len=1, pad="x" * 300)           # longer than one read
    files = _files(tmp_path, [_line(0, loss=0.5), big, big, _line(2, loss=0.25),
                              b'{"step": 3, "values": {"loss": 1, "pad": "' + b"y" * 200])
    assert _page_all(files, limit=1) == [(0, {"loss": 0.5}), (2, {"loss": 0.25})]
    first = files.metrics(RUN, 0, 10, frozenset())
    assert [p.step for p in first.points] == [0]      # the read stops at the long line
    skipped = files.metrics(RUN, first.next_offset, 10, frozenset())
    assert [p.step for p in skipped.points] == [2]    # both long lines skipped, one call
    end = len(_line(0, loss=0.5)) + 2 * len(big) + len(_line(2, loss=0.25))
    assert skipped.next_offset == end                 # the torn long last line waits
    assert files.metrics(RUN, end, 10, frozenset()).next_offset == end


def test_lines_without_the_keys_asked_for_give_no_points(tmp_path: Path) -> None:
    files = _files(tmp_path, [_line(0, loss=0.5, ret=1), _line(1, ret=2), _line(2, note="x"),
                              _line(3, loss=2 ** 1100), _line(4, loss=0.125)])
    assert _page_all(files, 2, frozenset({"loss"})) == [(0, {"loss": 0.5}), (4, {"loss": 0.125})]
    assert _page_all(files, 10) == [(0, {"loss": 0.5, "ret": 1.0}), (1, {"ret": 2.0}),
                                    (4, {"loss": 0.125})]
