"""Evaluation videos: real MP4 files that decode, complete when registered; a
failed encode loses one video, never the run."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Iterator

import gymnasium as gym
import imageio_ffmpeg
import pytest

from core.runconfig import RunConfig
from worker import cartpole
from worker.loopevents import Evaluation, Video
from worker.hparams import parse
from worker.video import EpisodeRecorder

pytestmark = pytest.mark.timeout(60)


def decode(path: str) -> tuple[int, tuple[int, int, int]]:
    """(frame count, frame shape) from decoding every frame of the file to RGB24 with
    the ffmpeg that imageio-ffmpeg bundles."""
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "info", "-i", path,
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, timeout=30, check=True)
    m = re.search(rb"Video: h264.*?, (\d+)x(\d+)", out.stderr)
    assert m, out.stderr[-2000:]
    width, height = int(m.group(1)), int(m.group(2))
    frames, rest = divmod(len(out.stdout), width * height * 3)
    assert rest == 0 and frames > 0
    assert imageio_ffmpeg.count_frames_and_secs(path)[0] == frames
    return frames, (height, width, 3)


def test_a_recorded_episode_is_a_complete_mp4(tmp_path: Any) -> None:
    rec = EpisodeRecorder(lambda: gym.make("CartPole-v1", render_mode="rgb_array"),
                          str(tmp_path / "videos"))
    try:
        ret, steps, _, clip = rec.record(lambda obs: 0, seed=1, name="eval-00001")
        assert clip is not None and clip.path == str(tmp_path / "videos" / "eval-00001.mp4")
        assert clip.frames == steps + 1 == ret + 1      # reset frame + one per step
        assert clip.duration_s == pytest.approx(clip.frames / 50)      # 50 fps
        # complete as soon as record() returns: before any reset() or close()
        frames, shape = decode(clip.path)
        assert frames == clip.frames and shape == (400, 600, 3)
        ret2, _, _, clip2 = rec.record(lambda obs: 1, seed=2, name="eval-00002")
        assert clip2 is not None and decode(clip2.path)[0] == ret2 + 1
    finally:
        rec.close()
    assert sorted(os.listdir(tmp_path / "videos")) == ["eval-00001.mp4", "eval-00002.mp4"]


@pytest.fixture
def rec(tmp_path: Any) -> Iterator[EpisodeRecorder]:
    recorder = EpisodeRecorder(lambda: gym.make("CartPole-v1", render_mode="rgb_array"),
                               str(tmp_path / "videos"))
    yield recorder
    recorder.close()


def test_a_failed_encode_drops_the_video_only(tmp_path: Any, monkeypatch: Any,
                                              rec: EpisodeRecorder) -> None:
    env = rec._wrapped()

    def broken() -> None:
        with open(os.path.join(rec.folder, "rec-episode-0.mp4"), "wb") as fh:
            fh.write(b"torn")
        raise BrokenPipeError("ffmpeg was killed")
    monkeypatch.setattr(env, "stop_recording", broken)
    ret, steps, _, clip = rec.record(lambda obs: 0, seed=1, name="eval-00001")
    assert clip is None and ret == steps > 0
    monkeypatch.undo()
    _, _, _, clip = rec.record(lambda obs: 0, seed=1, name="eval-00002")
    assert clip is not None
    assert os.listdir(tmp_path / "videos") == ["eval-00002.mp4"]


def test_a_file_that_does_not_decode_is_dropped(tmp_path: Any, monkeypatch: Any,
                                                rec: EpisodeRecorder) -> None:
    """An encode that "succeeds" into a torn file (ffmpeg's writes failing on a full
    disk) is not a video: dropped, never registered with made-up frame counts."""
    env = rec._wrapped()

    def torn() -> None:
        with open(os.path.join(rec.folder, "rec-episode-0.mp4"), "wb") as fh:
            fh.write(b"\0\0\0\x20ftypisom" + b"\0" * 4080)  # no moov atom
        rec._discard()
    monkeypatch.setattr(env, "stop_recording", torn)
    _, _, _, clip = rec.record(lambda obs: 0, seed=1, name="eval-00001")
    assert clip is None
    assert os.listdir(tmp_path / "videos") == []


def test_training_records_every_nth_evaluation_and_the_final_one(tmp_path: Any) -> None:
    cfg = RunConfig.from_map({"seed": 1, "steps": 1_500, "video_every": 2,
                              "hyperparameters": {"population": 8, "eval_episodes": 2,
                                                  "final_eval_episodes": 2}})
    t = cartpole.build(cfg, parse(cartpole.PARAMS, cfg.hyperparameters, "cartpole"),
                       str(tmp_path), None)
    try:
        events = list(t.train()) + list(t.final())
    finally:
        t.close()
    evals = [e for e in events if isinstance(e, Evaluation)]
    videos = [e for e in events if isinstance(e, Video)]
    expected = [e.index for e in evals if e.final or e.index % 2 == 0]
    assert [v.evaluation for v in videos] == expected and len(expected) >= 3
    for v in videos:
        assert os.path.dirname(v.path) == str(tmp_path / "videos")
        assert decode(v.path)[0] == v.frames
        # the recorded episode is the evaluation's first one: same seed, same return
        ev = next(e for e in evals if e.index == v.evaluation)
        assert v.episode_return == ev.returns[0]
