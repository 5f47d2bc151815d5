"""TensorBoard event files: what the SDK writes (worker/tbwriter.py) reads back with
runtime/tbevents.py and with TensorBoard's own EventAccumulator as the values given
(at float32, TensorBoard's precision); a file cut at any byte reads its whole records
and leaves the rest for later, never an error; a flipped byte is an error that keeps
what came before; tensors holding one number count as scalars; the SDK's files are
told apart from a worker's own."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.proto.tensor_pb2 import TensorProto

from core.rundir import TB_DIR, TB_SDK_SUFFIX
from tests.helpers import wait_until
from runtime import tbevents
from worker import tbwriter
from worker.tbwriter import TbWriter, run_label

RUN = "r0123456789ab"
VALUES = [{"return": 10.5 + k / 3, "episode": k, "loss": 1 / (k + 1), "done": True,
           "note": "text"} for k in range(40)]


def _f32(x: float) -> float:
    return float(np.float32(x))


def _sdk_file(tmp_path: Path, config: dict | None = None) -> str:
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    w = TbWriter(str(tmp_path), RUN, env={})
    for k, values in enumerate(VALUES):
        w.write(k * 10, 1_700_000_000.0 + k, values)
    w.close()
    assert w.path is not None and w.path.endswith(TB_SDK_SUFFIX)
    return w.path


def test_the_sdk_file_reads_back_as_written_by_both_readers(tmp_path: Path) -> None:
    path = _sdk_file(tmp_path, {"name": "lr 3e-4/fast", "worker": "cartpole"})
    assert os.path.dirname(path) == str(tmp_path / TB_DIR / "lr_3e-4_fast")
    got = tbevents.read_scalars(path)
    assert got.error is None and got.next_offset == os.path.getsize(path)
    want = [(tag, k * 10, 1_700_000_000.0 + k, _f32(v)) for k, values in enumerate(VALUES)
            for tag, v in values.items() if tag in ("return", "episode", "loss")]
    assert [(s.tag, s.step, s.wall_time, s.value) for s in got.scalars] == want
    acc = EventAccumulator(os.path.dirname(path))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["episode", "loss", "return"]
    for tag in ("return", "episode", "loss"):
        assert [(e.step, e.value) for e in acc.Scalars(tag)] == \
            [(k * 10, _f32(v[tag])) for k, v in enumerate(VALUES)]
    assert acc.Tags()["tensors"] == ["trainer/run/text_summary"]   # the run named


@pytest.mark.parametrize("config, label", [
    ({"name": "cem pop=32", "worker": "cem"}, "cem_pop=32"),
    ({"name": "", "worker": "cartpole"}, "cartpole"),
    ({"name": "../..", "worker": "qlearning"}, "_.."),
    ({"name": "...", "worker": ""}, "trainer"),
    ({}, "trainer"),
    ({"name": "x" * 300}, "x" * 100),
])
def test_the_label_is_a_safe_folder_name(config: dict, label: str) -> None:
    assert run_label(config) == label


def test_switched_off_or_without_a_folder_it_says_so_and_jsonl_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    off = TbWriter(str(tmp_path), RUN, env={tbwriter.SWITCH_ENV: "0"})
    off.write(1, 1.0, {"a": 1.0})
    off.close()
    assert not (tmp_path / TB_DIR).exists()
    (tmp_path / TB_DIR).write_text("a file where the folder should be")
    blocked = TbWriter(str(tmp_path), RUN, env={})
    blocked.write(1, 1.0, {"a": 1.0})
    blocked.write(2, 2.0, {"a": 2.0})
    blocked.close()
    err = capsys.readouterr().err
    assert err.count("cannot write TensorBoard files") == 1 and "metrics.jsonl only" in err


def test_a_file_cut_at_any_byte_reads_its_whole_records(tmp_path: Path) -> None:
    path = _sdk_file(tmp_path)
    data = Path(path).read_bytes()
    whole, used, error = tbevents.split_records(data)
    assert error is None and used == len(data)
    ends = [stop for _, stop in whole]
    for cut in range(len(data) + 1):
        records, used, error = tbevents.split_records(data[:cut])
        assert error is None, cut
        assert used == max([0] + [e for e in ends if e <= cut]), cut
        assert len(records) == sum(e <= cut for e in ends)
    cut_file = tmp_path / "cut.tfevents"
    for cut in range(0, len(data) + 1, 7):                 # the same through the file
        cut_file.write_bytes(data[:cut])
        got = tbevents.read_scalars(str(cut_file))
        assert got.error is None, cut
        assert got.next_offset == max([0] + [e for e in ends if e <= cut]), cut
        assert got.events == sum(e <= cut for e in ends)
    # read on from where the torn read stopped, once the rest is there: all of it
    cut_file.write_bytes(data[:ends[5] + 7])
    first = tbevents.read_scalars(str(cut_file))
    cut_file.write_bytes(data)
    rest = tbevents.read_scalars(str(cut_file), first.next_offset)
    assert first.scalars + rest.scalars == tbevents.read_scalars(path).scalars


@pytest.mark.parametrize("where", ["length", "data"])
def test_a_flipped_byte_ends_the_read_keeping_what_came_before(tmp_path: Path,
                                                               where: str) -> None:
    path = _sdk_file(tmp_path)
    data = bytearray(Path(path).read_bytes())
    whole, _, _ = tbevents.split_records(bytes(data))
    start = whole[9][1]                          # the 11th record's first byte
    data[start + (2 if where == "length" else 20)] ^= 0x40
    Path(path).write_bytes(bytes(data))
    got = tbevents.read_scalars(path)
    assert got.error is not None and "checksum" in got.error
    assert got.next_offset == start and got.events == 10


def _write(path: Path, events: list[Event]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = EventsWriter(str(path.parent / "events"), "")
    for e in events:
        w.write_event(e)
    w.close()
    os.rename(w._file_name, path)


def test_tensors_holding_one_number_are_scalars(tmp_path: Path) -> None:
    def tensor(**kw: object) -> Summary:
        return Summary(value=[Summary.Value(tag="t", tensor=TensorProto(**kw))])
    events = [Event(step=1, wall_time=1.0, summary=tensor(dtype=2, double_val=[0.1])),
              Event(step=2, wall_time=2.0, summary=tensor(
                  dtype=1, tensor_content=struct.pack("<f", 2.5))),
              Event(step=3, wall_time=3.0, summary=tensor(dtype=9, int64_val=[7])),
              Event(step=4, wall_time=4.0, summary=tensor(dtype=1, float_val=[1, 2])),
              Event(step=5, wall_time=5.0, summary=tensor(dtype=7, string_val=[b"x"])),
              Event(step=6, wall_time=6.0, summary=Summary(value=[Summary.Value(
                  tag="h", histo={"min": 0.0})]))]
    path = tmp_path / "events.out.tfevents.1.host"
    _write(path, events)
    got = tbevents.read_scalars(str(path))
    assert [(s.step, s.value) for s in got.scalars] == [(1, 0.1), (2, 2.5), (3, 7.0)]
    assert got.events == 7 and got.error is None       # the header event too


def test_the_sdk_files_are_told_from_the_workers_own(tmp_path: Path) -> None:
    _sdk_file(tmp_path)
    _write(tmp_path / TB_DIR / "PPO_2" / "events.out.tfevents.1700000200.h.2", [Event()])
    _write(tmp_path / TB_DIR / "PPO_1" / "events.out.tfevents.1700000100.h.1", [Event()])
    _write(tmp_path / "runs" / "cleanrl" / "events.out.tfevents.1700000300.h", [Event()])
    (tmp_path / "notes.txt").write_text("not an event file")
    assert tbevents.event_files(str(tmp_path)) == [
        "tensorboard/PPO_1/events.out.tfevents.1700000100.h.1",
        "tensorboard/PPO_2/events.out.tfevents.1700000200.h.2",
        "runs/cleanrl/events.out.tfevents.1700000300.h"]
    sdk = tbevents.event_files(str(tmp_path), sdk=True)
    assert len(sdk) == 1 and sdk[0].startswith("tensorboard/trainer/")


def test_without_tensorboardx_it_says_so_once_and_jsonl_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboardX.proto.event_pb2", None)  # ImportError
    w = TbWriter(str(tmp_path), RUN, env={})
    for step in range(3):
        w.write(step, 1.0, {"a": 1.0})
    w.close()
    assert not (tmp_path / TB_DIR).exists()
    err = capsys.readouterr().err
    assert err.count("no TensorBoard files") == 1 and "pip install tensorboardX" in err


def test_a_second_process_of_the_run_starts_its_own_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    first = _sdk_file(tmp_path)
    monkeypatch.setattr(os, "getpid", lambda: 1)      # another attempt, the same second
    second = _sdk_file(tmp_path)
    assert first != second and os.path.dirname(first) == os.path.dirname(second)
    acc = EventAccumulator(os.path.dirname(first))
    acc.Reload()
    assert len(acc.Scalars("return")) == 2 * len(VALUES)


def test_the_flush_thread_leaves_a_readable_file_without_close(tmp_path: Path) -> None:
    """A worker killed without finishing: what it wrote FLUSH_S seconds before is there."""
    w = TbWriter(str(tmp_path), RUN, env={})
    w.write(1, 1.0, {"a": 1.0})
    assert w.path is not None
    path = w.path
    for step in range(2, 6):
        w.write(step, float(step), {"a": float(step)})
    try:
        got = wait_until(lambda: [s.step for s in tbevents.read_scalars(path).scalars]
                         == [1, 2, 3, 4, 5], tbwriter.FLUSH_S + 8,
                         message="the flush thread to write the events out")
        assert got
    finally:
        w.close()
