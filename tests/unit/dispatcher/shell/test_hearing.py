"""hearing.reported: an artifact a worker reports, as the decision core reads it: its
path judged against the run folder (every symlink resolved), its fields of the wrong
type read as "none" (a kind "", a path "", a size -1, no meta). hearing.committed: the
committed events as observations (runs' events, experiments' specs and reruns)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bus.codec import event_envelope
from core import events as ev
from runtime.logs import ServiceLogger
from services.dispatcher.decide.inputs import (ArtifactReported, CommittedEvent,
                                               ExperimentResumed, ExperimentRevised)
from services.dispatcher.decide.scheduling import ExperimentLimits
from services.dispatcher.shell import hearing
from services.dispatcher.shell.hearing import committed, reported

OUTSIDE = "must lie inside the run directory (symlinks resolved)"
NO_PATH = "must be a non-empty path"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """<tmp>/runs/r1 with a file, a folder, a link inside and links out of it."""
    root = tmp_path / "runs" / "r1"
    (root / "ckpt").mkdir(parents=True)
    (root / "ckpt" / "model.pt").write_bytes(b"weights")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret").write_text("x")
    (tmp_path / "runs" / "r1x").mkdir()          # a sibling sharing the folder's prefix
    (root / "latest").symlink_to(root / "ckpt")
    (root / "etclink").symlink_to(tmp_path / "elsewhere")
    (root / "up").symlink_to("..")
    (root / "abs").symlink_to(tmp_path / "elsewhere" / "secret")
    return root


def _report(run_dir: Path, path: Any, **payload: Any) -> ArtifactReported:
    return reported("r1", {"path": path, "kind": "checkpoint", "size": 7, **payload},
                    str(run_dir))


def test_an_artifact_in_the_run_folder_may_be_registered(run_dir: Path) -> None:
    assert _report(run_dir, "ckpt/model.pt", meta={"step": 3}) == \
        ArtifactReported("r1", "checkpoint", "ckpt/model.pt", 7, {"step": 3}, "")


def test_a_link_that_stays_in_the_run_folder_may_be_registered(run_dir: Path) -> None:
    assert _report(run_dir, "latest/model.pt").outside == ""


def test_a_run_folder_reached_by_a_link_is_judged_by_where_it_is(
        run_dir: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(run_dir)
    assert reported("r1", {"path": "ckpt/model.pt"}, str(alias)).outside == ""
    assert reported("r1", {"path": "etclink/secret"}, str(alias)).outside == OUTSIDE


@pytest.mark.parametrize("path", ["etclink/secret", "abs", "up/r1x", "../r1x",
                                  "../../elsewhere/secret", "ckpt/../../r1x"])
def test_a_path_that_leads_out_of_the_run_folder_is_outside(run_dir: Path, path: str) -> None:
    report = _report(run_dir, path)
    assert report.outside == OUTSIDE
    assert report.path == path                   # as reported: the decision core says why


def test_an_absolute_path_is_outside(run_dir: Path, tmp_path: Path) -> None:
    assert _report(run_dir, str(tmp_path / "elsewhere" / "secret")).outside == OUTSIDE
    assert _report(run_dir, str(run_dir / "ckpt" / "model.pt")).outside == ""


@pytest.mark.parametrize("path", [".", "ckpt/..", "up/r1", "latest/.."])
def test_the_run_folder_itself_is_no_artifact(run_dir: Path, path: str) -> None:
    assert _report(run_dir, path).outside == OUTSIDE


def test_a_path_not_there_yet_is_judged_by_its_name(run_dir: Path) -> None:
    assert _report(run_dir, "videos/eval-1.mp4").outside == ""
    assert not os.path.exists(run_dir / "videos")


@pytest.mark.parametrize("path", ["", None, 42, ["ckpt/model.pt"], b"ckpt/model.pt"])
def test_a_path_that_is_no_string_is_empty_and_no_path(run_dir: Path, path: Any) -> None:
    report = _report(run_dir, path)
    assert (report.path, report.outside) == ("", NO_PATH)


def test_a_nul_in_the_path_is_no_path(run_dir: Path) -> None:
    report = _report(run_dir, "ckpt/model.pt\0.txt")
    assert (report.path, report.outside) == ("ckpt/model.pt\0.txt", NO_PATH)


@pytest.mark.parametrize("size, read", [(0, 0), (7, 7), (True, -1), (False, -1), (7.0, -1),
                                        ("7", -1), (None, -1)])
def test_a_size_is_an_int_or_minus_one(run_dir: Path, size: Any, read: int) -> None:
    assert _report(run_dir, "ckpt/model.pt", size=size).size == read


@pytest.mark.parametrize("kind, read", [("video", "video"), (None, ""), (3, ""),
                                        (["video"], "")])
def test_a_kind_is_a_string_or_empty(run_dir: Path, kind: Any, read: str) -> None:
    assert _report(run_dir, "ckpt/model.pt", kind=kind).kind == read


@pytest.mark.parametrize("meta, read", [({"step": 1}, {"step": 1}), (None, {}),
                                        ([("step", 1)], {}), ("step=1", {})])
def test_meta_is_a_map_or_empty(run_dir: Path, meta: Any, read: dict[str, Any]) -> None:
    assert _report(run_dir, "ckpt/model.pt", meta=meta).meta == read


def test_an_empty_payload_is_a_report_of_nothing(run_dir: Path) -> None:
    assert reported("r1", {}, str(run_dir)) == ArtifactReported("r1", "", "", -1, {}, NO_PATH)


class _Follower:
    """What hearing.committed uses of bus.catchup.EventFollower: poll(0)."""

    def __init__(self, *events: Any) -> None:
        self.envelopes = [event_envelope(e, seq=i + 1, stream=f"{e.STREAM}-{e.stream_key}",
                                         stream_version=1, source="registry", ts=5.0)
                          for i, e in enumerate(events)]

    def poll(self, timeout: float) -> list[Any]:
        out, self.envelopes = self.envelopes, []
        return out


def test_an_experiments_spec_and_rerun_are_heard_and_an_environments_event_is_not() -> None:
    spec = ev.ExperimentSubmitted(name="noise", spec={}, spec_digest="d" * 64, points=[],
                                  cells=[], max_concurrent=2, priority=7, submitted_by="me")
    run = ev.RunSubmitted("r1", "d", {}, 0, "me", experiment="noise")
    gone = ev.EnvRemoved(name="py", removed_by="me", reason="old")
    heard = committed(_Follower(spec, run, gone, ev.ExperimentRerun("noise", "me", ("r1",))),
                      ServiceLogger("dispatcher"))
    assert heard[0] == ExperimentRevised(1, ExperimentLimits("noise", 2, 7))
    assert isinstance(heard[1], CommittedEvent) and heard[1].event == run
    assert heard[-1] == ExperimentResumed(4, "noise") and len(heard) == 3


def test_a_heartbeats_liveness_fields_are_taken_only_when_of_their_type() -> None:
    """What the rules read of a beat (docs/SUPERVISION.md); a worker's wrong-typed value
    is not judged on (None / "": as if the beat had not said it)."""
    beat = hearing.heartbeat("r1", {"step": 40, "metrics_finite": False,
                                    "nonfinite_metric": "loss", "phase": "evaluating"},
                             123.5, 7.0)
    assert (beat.step, beat.sent, beat.finite, beat.nonfinite, beat.phase, beat.at) == \
        (40, 123.5, False, "loss", "evaluating", 7.0)
    bad = hearing.heartbeat("r1", {"step": True, "metrics_finite": "no", "nonfinite_metric": 3,
                                   "phase": ["x"]}, "soon", 7.0)
    assert (bad.step, bad.sent, bad.finite, bad.nonfinite, bad.phase) == (None, None, None, "",
                                                                          "")
