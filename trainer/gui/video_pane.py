"""The run details' videos: the run's ``video`` artifacts (docs/WORKERS.md: meta
``step``, ``evaluation``, ``episode``, ``episode_return``, ``duration_s``), each listed
with its evaluation step, and a player (QtMultimedia's QMediaPlayer) that plays the
chosen one inline; the newest is loaded and played once when the run is shown. The
frames reach a QVideoSink and are drawn as a picture (so the last frame stays shown
at the end, and the window's screenshot has it: a QVideoWidget draws through the
platform's video path, blank on the offscreen platform). When playback cannot start
(QtMultimedia not loadable, e.g. ``libpulse.so.0`` missing; no backend; a bad file),
the pane says why and the video can still be opened with the system's player."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QSizePolicy, QVBoxLayout, QWidget)

try:
    from PySide6.QtMultimedia import QMediaPlayer, QVideoFrame, QVideoSink
    MULTIMEDIA_ERROR = ""
except ImportError as exc:      # the Addons wheel absent, or a system library missing
    MULTIMEDIA_ERROR = str(exc)


def unavailable_text(error: str) -> str:
    """Why playback is off, and what to install."""
    hint = "; install it with `sudo apt-get install libpulse0`" if "libpulse" in error \
        else "; QtMultimedia is in the PySide6-Addons wheel (the gui extra)"
    return f"inline video is off: QtMultimedia could not be loaded ({error}){hint}"


def _int(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) else str(v)


def video_caption(a: dict[str, Any]) -> str:
    """``step 1,766 · evaluation 2 · return 40 · 0.84 s`` from a video artifact's meta
    (``final`` for the final evaluation's video); the path when there is no meta."""
    m = a.get("meta") or {}
    bits = []
    if "step" in m:
        bits.append(f"step {_int(m['step'])}")
    if "final" in os.path.basename(a["path"]):
        bits.append("final")
    elif "evaluation" in m:
        bits.append(f"evaluation {_int(m['evaluation'])}")
    if "episode_return" in m:
        bits.append(f"return {m['episode_return']:g}")
    if "duration_s" in m:
        bits.append(f"{m['duration_s']:g} s")
    return " · ".join(bits) or a["path"]


class VideoPane(QWidget):
    shown = Signal(object)     # the loaded video's artifact dict, or None

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.run_dir = ""
        self.videos: list[dict[str, Any]] = []
        self.loaded: Optional[dict[str, Any]] = None
        self.user_picked = False
        self.frames = 0              # frames drawn since the last load
        self.error = ""
        self.image: Optional[QImage] = None
        self.opener: Callable[[QUrl], Any] = QDesktopServices.openUrl
        self.list = QListWidget()
        self.list.setMaximumHeight(84)
        self.list.itemActivated.connect(self._picked)
        self.list.itemClicked.connect(self._picked)
        self.screen = QLabel("no video")
        self.screen.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.screen.setMinimumSize(QSize(180, 120))
        self.screen.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.screen.setStyleSheet("background: #fafafa; border: 1px solid #ddd;")
        self.caption = QLabel("")
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self.toggle)
        self.open_button = QPushButton("Open externally")
        self.open_button.clicked.connect(self.open_external)
        controls = QHBoxLayout()
        controls.addWidget(self.caption, 1)
        controls.addWidget(self.play_button)
        controls.addWidget(self.open_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.screen, 1)
        lay.addLayout(controls)
        lay.addWidget(self.list)
        self.player: Any = None
        if MULTIMEDIA_ERROR:
            self._show_error(unavailable_text(MULTIMEDIA_ERROR))
        else:
            self.player = QMediaPlayer(self)
            self.sink = QVideoSink(self)
            self.player.setVideoOutput(self.sink)
            self.sink.videoFrameChanged.connect(self._frame)
            self.player.errorOccurred.connect(self._player_error)
            self.player.mediaStatusChanged.connect(self._status)
            self.player.playbackStateChanged.connect(self._state)
        self._enable()

    # --- the list ----------------------------------------------------------------------
    def set_videos(self, run_dir: str, arts: list[dict[str, Any]]) -> None:
        """The run's video artifacts; the newest is loaded unless one was picked."""
        videos = [a for a in arts if a["kind"] == "video"]
        if run_dir == self.run_dir and videos == self.videos:
            return
        if run_dir != self.run_dir:
            self.clear()
            self.run_dir = run_dir
        self.videos = videos
        self.list.clear()
        for a in videos:
            item = QListWidgetItem(video_caption(a))
            item.setToolTip(a["path"])
            item.setData(Qt.ItemDataRole.UserRole, a)
            self.list.addItem(item)
        self.list.setVisible(bool(videos))
        if videos and not self.user_picked and videos[-1] != self.loaded:
            self.load(videos[-1])
        self._enable()

    def _picked(self, item: QListWidgetItem) -> None:
        a = item.data(Qt.ItemDataRole.UserRole)
        self.user_picked = True
        if a != self.loaded:
            self.load(a)
        elif self.player is not None:
            self.player.setPosition(0)
            self.player.play()

    def path(self, a: dict[str, Any]) -> str:
        return a["path"] if os.path.isabs(a["path"]) else os.path.join(self.run_dir, a["path"])

    # --- the player --------------------------------------------------------------------
    def load(self, a: dict[str, Any], play: bool = True) -> None:
        self.loaded, self.frames, self.image = a, 0, None
        self.shown.emit(a)
        self.caption.setText(f"<b>{os.path.basename(a['path'])}</b>: {video_caption(a)}")
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == a:
                self.list.setCurrentRow(i)
        self._enable()
        if self.player is None:
            return
        self.error = ""
        path = self.path(a)
        if not os.path.exists(path):
            self._show_error(f"{path}: no such file here (the GUI plays videos from the "
                             "gateway's disk: $TRAINER_HOME/runs)")
            return
        self.screen.setText("loading…")
        self.player.setSource(QUrl.fromLocalFile(path))
        if play:
            self.player.play()

    def source(self) -> str:
        """The local path the player has loaded (``""`` when none)."""
        return self.player.source().toLocalFile() if self.player is not None else ""

    def media_status(self) -> str:
        return self.player.mediaStatus().name if self.player is not None else "NoMedia"

    def toggle(self) -> None:
        if self.player is None or self.loaded is None:
            return
        if self.player.playbackState() == QMediaPlayer.PlaybackState.PlayingState:
            self.player.pause()
        else:
            if self.player.mediaStatus() == QMediaPlayer.MediaStatus.EndOfMedia:
                self.player.setPosition(0)
            self.player.play()

    def open_external(self) -> None:
        if self.loaded is not None:
            self.opener(QUrl.fromLocalFile(self.path(self.loaded)))

    def _frame(self, frame: "QVideoFrame") -> None:
        if not frame.isValid():
            return           # the end of the media: the last picture stays shown
        self.image = frame.toImage()
        self.frames += 1
        self._draw()

    def _draw(self) -> None:
        if self.image is not None and not self.image.isNull():
            self.screen.setPixmap(QPixmap.fromImage(self.image).scaled(
                self.screen.size(), Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._draw()

    def _player_error(self, _: Any, text: str) -> None:
        self._show_error(f"cannot play {os.path.basename(self.source())}: "
                         f"{text or 'unknown error'}")

    def _status(self, status: Any) -> None:
        if status == QMediaPlayer.MediaStatus.InvalidMedia and not self.error:
            self._show_error(f"cannot play {os.path.basename(self.source())}: "
                             "not a playable video (no decoder or a broken file)")

    def _state(self, state: Any) -> None:
        playing = state == QMediaPlayer.PlaybackState.PlayingState
        self.play_button.setText("Pause" if playing else "Play")

    def _show_error(self, text: str) -> None:
        self.error = text
        self.screen.setPixmap(QPixmap())
        self.screen.setWordWrap(True)
        self.screen.setText(text)

    def _enable(self) -> None:
        self.play_button.setEnabled(self.player is not None and self.loaded is not None)
        self.open_button.setEnabled(self.loaded is not None)

    def clear(self) -> None:
        if self.player is not None:
            self.player.stop()
            self.player.setSource(QUrl())
        if self.loaded is not None:
            self.shown.emit(None)
        self.run_dir, self.videos, self.loaded, self.user_picked = "", [], None, False
        self.frames, self.image = 0, None
        self.list.clear()
        self.caption.clear()
        self.screen.setPixmap(QPixmap())
        self.screen.setText("no video" if not MULTIMEDIA_ERROR else self.error)
        self._enable()

    def shutdown(self) -> None:
        if self.player is not None:
            self.player.stop()
