"""A worker's own TensorBoard scalars as the run's metrics: in the experiment results
(runtime/tbruns.py through runtime/experimentresults.py: final values, curves, names;
metrics.jsonl first; the SDK's copies never counted; a file that grew read on) and in
GetMetrics' TensorBoard points (services/gateway/tbpoints.py: grouping by step, paging
with the cursor, keys, a bad cursor named)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary

from core.rundir import TB_DIR
from runtime import tbruns
from runtime.experimentresults import CellRef, FileCache, experiment_results
from services.gateway import tbpoints
from services.gateway.errors import CallError
from worker.tbwriter import TbWriter

RUN = "r0123456789ab"
TAG = "rollout/ep_rew_mean"


class Sb3Log:
    """A file as SB3 (torch's SummaryWriter) writes it: one event per scalar."""

    def __init__(self, run_dir: Path, sub: str = "PPO_1") -> None:
        folder = run_dir / TB_DIR / sub
        folder.mkdir(parents=True, exist_ok=True)
        self.w = EventsWriter(str(folder / "events"), "")
        self.path = self.w._file_name

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.w.write_event(Event(step=step, wall_time=1_700_000_000.0 + step, summary=Summary(
            value=[Summary.Value(tag=tag, simple_value=value)])))
        self.w.flush()

    def close(self) -> None:
        self.w.close()


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    tbruns.FILES.clear()
    tbruns.FOLDERS.clear()


def _jsonl(run_dir: Path, records: list[tuple[int, dict]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
        for step, values in records:
            fh.write(json.dumps({"step": step, "ts": 1.0, "values": values}) + "\n")


def test_results_take_a_tag_from_the_workers_own_files(tmp_path: Path) -> None:
    cells = []
    for seed in range(3):
        run_id = f"r00000000000{seed}"
        _jsonl(tmp_path / run_id, [(100, {"score": seed})])
        sdk = TbWriter(str(tmp_path / run_id), run_id, env={})
        sdk.write(100, 1.0, {TAG: 999.0})          # the SDK's copy: never counted
        sdk.close()
        log = Sb3Log(tmp_path / run_id)
        for k in range(1, 5):
            log.scalar(TAG, 10.0 * k + seed, k * 100)
            log.scalar("train/loss", 1.0 / k, k * 100)
        log.close()
        cells.append(CellRef(0, seed, run_id, "COMPLETED"))
    got = experiment_results(str(tmp_path), [{}], cells, TAG, curves=True,
                             cache=FileCache())
    point = got["points"][0]
    assert [f["value"] for f in point["finals"]] == [40.0, 41.0, 42.0]
    assert [f["step"] for f in point["finals"]] == [400, 400, 400]
    assert point["n"] == 3 and point["mean"] == pytest.approx(41.0)
    assert got["metrics"] == ["rollout/ep_rew_mean", "score", "train/loss"]
    curve = got["curves"][0]
    assert curve["steps"][0] == 100 and curve["steps"][-1] == 400
    assert curve["mean"][0] == pytest.approx(11.0) and curve["mean"][-1] == pytest.approx(41)
    assert got["unreadable"] == []


def test_metrics_jsonl_comes_first_and_a_growing_file_is_read_on(tmp_path: Path) -> None:
    run = tmp_path / RUN
    _jsonl(run, [(5, {TAG: 1.5})])
    log = Sb3Log(run)
    log.scalar(TAG, 7.0, 10)
    cell = [CellRef(0, 0, RUN, "RUNNING")]
    got = experiment_results(str(tmp_path), [{}], cell, TAG, cache=FileCache())
    assert got["points"][0]["finals"][0]["value"] == 1.5      # jsonl holds it
    assert tbruns.run_tags(str(run)).points == {TAG: [(10, 7.0)]}
    log.scalar(TAG, 8.0, 20)
    log.scalar(TAG, float("nan"), 30)                           # a diverged final
    entry = tbruns.FILES.get((log.path,))
    assert isinstance(entry, tbruns.FileTags)
    offset = entry.offset
    assert tbruns.run_tags(str(run)).points == {TAG: [(10, 7.0), (20, 8.0),
                                                      (30, pytest.approx(float("nan"),
                                                                         nan_ok=True))]}
    entry = tbruns.FILES.get((log.path,))
    assert isinstance(entry, tbruns.FileTags) and entry.offset > offset
    (run / "metrics.jsonl").unlink()
    got = experiment_results(str(tmp_path), [{}], cell, TAG, cache=FileCache())
    assert got["points"][0]["finals"][0] == {"seed": 0, "run_id": RUN, "status": "RUNNING",
                                             "value": None, "step": 30}
    log.close()


def test_a_corrupt_file_is_reported_not_hidden(tmp_path: Path) -> None:
    run = tmp_path / RUN
    log = Sb3Log(run)
    for k in range(3):
        log.scalar(TAG, float(k), k)
    log.close()
    data = bytearray(Path(log.path).read_bytes())
    data[-3] ^= 0xFF
    Path(log.path).write_bytes(bytes(data))
    got = experiment_results(str(tmp_path), [{}], [CellRef(0, 0, RUN, "COMPLETED")], TAG,
                             cache=FileCache())
    assert got["points"][0]["finals"][0]["value"] == 1.0        # what came before
    assert len(got["unreadable"]) == 1 and "checksum" in got["unreadable"][0]["error"]


def _page(run: Path, limit: int, keys: frozenset[str] = frozenset()) -> list:
    """Page with the cursor until it stops moving (as a client does)."""
    out, cursor = [], ""
    for _ in range(100):
        got, offsets = tbpoints.points(str(run), tbpoints.decode_cursor(cursor), limit, keys)
        assert len(got) <= limit
        out += [(p.source.split("/")[1], p.step, dict(p.values)) for p in got]
        nxt = tbpoints.encode_cursor(offsets)
        if nxt == cursor and not got:
            return out
        cursor = nxt
    raise AssertionError("the cursor kept moving")  # pragma: no cover


def test_getmetrics_points_group_a_step_and_page_with_the_cursor(tmp_path: Path) -> None:
    run = tmp_path / RUN
    first, second = Sb3Log(run, "PPO_1"), Sb3Log(run, "PPO_2")
    for k in range(1, 8):
        first.scalar(TAG, float(k), k)
        first.scalar("train/loss", -k, k)
        second.scalar(TAG, 100.0 + k, 100 + k)
    sdk = TbWriter(str(run), RUN, env={})
    sdk.write(1, 1.0, {"sdk": 1.0})
    sdk.close()
    whole = [("PPO_1", k, {TAG: float(k), "train/loss": -k}) for k in range(1, 8)] + \
            [("PPO_2", 100 + k, {TAG: 100.0 + k}) for k in range(1, 8)]
    for limit in (1, 2, 3, 1000):
        got = _page(run, limit)
        # a page may cut a step's scalars in two points: merged, they are the whole
        merged: dict[tuple, dict] = {}
        for source, step, values in got:
            merged.setdefault((source, step), {}).update(values)
        assert [(s, k, v) for (s, k), v in merged.items()] == whole, limit
    assert _page(run, 1000) == whole                    # a page that fits: one point a step
    assert _page(run, 5, frozenset({"train/loss"})) == \
        [("PPO_1", k, {"train/loss": -k}) for k in range(1, 8)]
    first.close()
    second.close()


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24=", "eyJhIjogMX0=",   # {"a": 1}
                                    "W1siYSIsIC0xXV0=",                     # [["a", -1]]
                                    "x" * 70_000])
def test_a_bad_cursor_is_named(cursor: str) -> None:
    with pytest.raises(CallError) as err:
        tbpoints.decode_cursor(cursor)
    assert "tensorboard_cursor" in str(err.value)


def test_the_cursor_round_trips() -> None:
    offsets = {"tensorboard/PPO_1/events.out.tfevents.1.h": 1234, "runs/x/e.tfevents": 0}
    assert tbpoints.decode_cursor(tbpoints.encode_cursor(offsets)) == offsets
    assert tbpoints.decode_cursor("") == {}
