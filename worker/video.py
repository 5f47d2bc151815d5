"""Recording evaluation episodes to MP4 with gymnasium's RecordVideo, headless
(``render_mode="rgb_array"``, encoded by moviepy's bundled ffmpeg).

RecordVideo writes a file only at the next ``reset()`` or at ``close()``; the
recorder instead stops the recording as soon as its episode ends, so each MP4 is
complete when ``record`` returns and can be registered at once. A failed encode (for
instance ffmpeg killed by the SIGTERM sent to the worker's process group) loses that
one video, never the run: the partial file is removed and ``record`` returns no clip.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

# Headless: no pygame banner on stdout, and no SDL audio or video device to look for
# (pygame.init() otherwise complains on stderr when XDG_RUNTIME_DIR is unset).
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

PREFIX = "rec"


@dataclass(frozen=True)
class Clip:
    path: str            # absolute
    frames: int
    duration_s: float


def _measure(path: str, expected: int, fps: float) -> Optional[tuple[int, float]]:
    """(frames, seconds) as ffmpeg decodes the file (~0.1 s for 500 frames), so the
    artifact's metadata is what a player sees; the expected figures without the
    decoder; None when the file does not decode (an encode that failed without
    saying so: the disk filled up while it was written, for one)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return expected, round(expected / fps, 3)
    try:
        frames, seconds = imageio_ffmpeg.count_frames_and_secs(path)
    except Exception:  # noqa: BLE001 - ffmpeg could not read it: not a video
        return None
    if not frames:
        return None
    return int(frames), round(float(seconds), 3)


class EpisodeRecorder:
    def __init__(self, make_env: Callable[[], Any], folder: str) -> None:
        """``make_env()`` returns a fresh env with ``render_mode="rgb_array"``."""
        self.make_env = make_env
        self.folder = os.path.abspath(folder)
        self._env: Any = None

    def _wrapped(self) -> Any:
        if self._env is None:
            from gymnasium.wrappers import RecordVideo
            with warnings.catch_warnings():  # the folder may exist (a resumed recorder)
                warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
                self._env = RecordVideo(self.make_env(), self.folder, name_prefix=PREFIX,
                                        episode_trigger=lambda _episode: True,
                                        disable_logger=True)
        return self._env

    def record(self, policy: Callable[[Any], int], seed: int,
               name: str) -> tuple[float, int, bool, Optional[Clip]]:
        """Play one episode from ``reset(seed=seed)`` and save it as ``<name>.mp4``:
        (return, steps, success, clip or None if the encode failed)."""
        env = self._wrapped()
        obs, _ = env.reset(seed=int(seed))        # starts the recording
        total, steps = 0.0, 0
        while True:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        success = bool(terminated and reward > 0)
        # moviepy 2 writes int(sum(1/fps per frame) * fps) frames, which float error
        # rounds down by one: repeat the last frame so the final state is in the file.
        if env.recorded_frames:
            env.recorded_frames.append(env.recorded_frames[-1])
        written = os.path.join(self.folder, f"{PREFIX}-episode-{env.episode_id}.mp4")
        final = os.path.join(self.folder, f"{name}.mp4")
        try:
            env.stop_recording()                  # encodes and closes the file now
            os.replace(written, final)
            measured = _measure(final, steps + 1,  # reset frame + one per step
                                float(env.frames_per_sec))
            if measured is None:
                raise ValueError("the encoded file does not decode (was the disk full?)")
        except Exception as exc:  # noqa: BLE001 - a lost video must not end the run
            self._discard()
            for path in (written, final):
                if os.path.exists(path):
                    os.unlink(path)
            print(f"video {name}: not saved: {exc!r}", file=sys.stderr, flush=True)
            return total, steps, success, None
        return total, steps, success, Clip(final, *measured)

    def _discard(self) -> None:
        if self._env is not None:
            self._env.recorded_frames = []
            self._env.recording = False

    def close(self) -> None:
        """Close the env; an unfinished recording (a stop mid-episode) is dropped
        rather than encoded, so a stopping worker leaves quickly."""
        if self._env is not None:
            self._discard()
            self._env.close()
            self._env = None


def env_and_recorder(env_id: str, env_kwargs: dict[str, Any], video_every: int,
                     run_dir: str) -> tuple[Callable[..., Any], Optional["EpisodeRecorder"]]:
    """A factory of the run's gymnasium env, and a recorder of evaluation videos into
    ``run_dir/videos`` when ``video_every`` asks for them (headless rgb_array)."""
    import gymnasium as gym

    def make_env(**extra: Any) -> Any:
        return gym.make(env_id, **env_kwargs, **extra)

    recorder = None
    if video_every > 0:
        recorder = EpisodeRecorder(lambda: make_env(render_mode="rgb_array"),
                                   os.path.join(run_dir, "videos"))
    return make_env, recorder
