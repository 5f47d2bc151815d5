"""The GUI against a real stack through the public gRPC API: the table from a snapshot
and live events, signals delivered on the GUI thread, no freeze while the gateway is
stopped, submit and cancel through the dialog, reconnection after a gateway restart,
a failed run's log on stderr, a screenshot of two finished cartpole runs compared
(every metric offered, the newest video loaded into the player), and one of a run the
dispatcher flagged as stalled (the flag in the table and the details, its video)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
from PySide6.QtCore import QObject, Qt, QThread, QTimer, QUrl, Slot
from PySide6.QtWidgets import QApplication

from tests.system.gui.guisystem import System
from tests.helpers import REPO
from trainer.gui.runs_model import COLUMNS

pytestmark = pytest.mark.timeout(60)
T = 15000  # ms: the longest any wait here may take


def sleeper(seed: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"worker": "test-sleep", "env": "CartPole-v1", "seed": seed,
            "hyperparameters": {"seconds": seconds}, "heartbeat_interval_s": 0.1,
            "heartbeat_timeout_s": 5.0, **extra}


class ThreadProbe(QObject):
    """Records on which thread its slot runs (connected like the GUI's own slots)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[bool] = []

    @Slot(list)
    def seen(self, _: list) -> None:
        self.threads.append(QThread.currentThread() is QApplication.instance().thread())


def status(w: Any, run_id: str) -> str:
    run = w.model.run(run_id)
    return run["status"] if run else ""


def test_table_fills_from_snapshot_and_follows_live(system: System, qtbot: Any) -> None:
    c = system.client()
    before = c.submit(sleeper(100, 0.3)).run.run_id
    from trainer.gui.app import MainWindow
    threads_before = {t.name for t in threading.enumerate()}
    w = MainWindow(system.addr, system.gateway.token if system.gateway else None,
                   refresh_ms=300)
    qtbot.addWidget(w)
    probe = ThreadProbe()
    w.bridge.events.connect(probe.seen)
    w.bridge.snapshot_page.connect(probe.seen)
    w.show()
    qtbot.waitUntil(lambda: w.model.run(before) is not None, timeout=T)
    live = c.submit(sleeper(101, 0.5, resources={"gpus": 1})).run.run_id
    qtbot.waitUntil(lambda: status(w, live) == "running", timeout=T)
    qtbot.waitUntil(lambda: status(w, live) == "completed"
                    and status(w, before) == "completed", timeout=T)
    assert w.model.run(live)["gpus_wanted"] == 1 and len(w.model.run(live)["gpus"]) == 1
    assert probe.threads and all(probe.threads)
    assert w.model.duplicates == 0 and w.model.applied == sorted(set(w.model.applied))
    row = [w.proxy.index(r, 0).data() for r in range(w.proxy.rowCount())]
    assert row.index(live) < row.index(before)        # newest first
    w.filter.setText(live[-6:])
    assert [w.proxy.index(r, 0).data() for r in range(w.proxy.rowCount())] == [live]
    w.filter.setText("")
    # the health strip refreshes on its own timer: the GPU the run held shows free
    # again at the first refresh after the release
    qtbot.waitUntil(lambda: w.health.health is not None
                    and len(w.health.health["gpus"]) == 2
                    and all(s["alive"] for s in w.health.health["services"])
                    and "2 free / 2" in w.health.gpus.text(), timeout=T)
    assert "bus up" in w.health.services.text()
    w.close()
    assert w.bridge.isFinished() and w.calls.pool.activeThreadCount() == 0
    # Python threads (gRPC's included); QThreads show up as never-removed Dummy-N entries
    left = lambda: [t.name for t in threading.enumerate()  # noqa: E731
                    if t.name not in threads_before and not t.name.startswith("Dummy-")]
    try:
        qtbot.waitUntil(lambda: not left(), timeout=3000)
    except Exception:
        raise AssertionError(left())


def test_a_stopped_gateway_never_freezes_the_gui(system: System, window: Any,
                                                 qtbot: Any) -> None:
    run_id = system.client().submit(sleeper(102, 0.2)).run.run_id
    qtbot.waitUntil(lambda: window.select_run(run_id), timeout=T)
    ticks: list[float] = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    pid = system.gateway.proc.pid if system.gateway else 0
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        window.health.poll()
        window.details.poll()
        dialog = window.open_submit()
        dialog.set_values(worker="test-sleep", seed=103, hyperparameters={"seconds": 0.1})
        dialog.submit()                               # hangs off the GUI thread
        qtbot.waitUntil(lambda: time.monotonic() - start > 1.5, timeout=5000)
    finally:
        os.kill(pid, signal.SIGCONT)
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 50 and max(gaps) < 0.2, max(gaps)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=T)  # the submit got through


def test_submit_and_cancel_through_the_dialog(system: System, window: Any,
                                              qtbot: Any) -> None:
    dialog = window.open_submit()
    dialog.set_values(worker="test-sleep", env="NoSuchEnv-v0", seed=104)
    dialog.submit()
    err = dialog.errors["env"]
    qtbot.waitUntil(lambda: err.isVisible() and err.text() != "", timeout=T)
    assert not dialog.errors["seed"].isVisible() and dialog.isVisible()
    dialog.set_values(env="CartPole-v1", hyperparameters={"seconds": 30}, priority=5)
    with qtbot.waitSignal(dialog.submitted, timeout=T) as got:
        dialog.submit()
    run_id = got.args[0]["run_id"]
    assert not err.isVisible() and not dialog.isVisible()
    qtbot.waitUntil(lambda: window.details.run_id == run_id, timeout=T)
    qtbot.waitUntil(lambda: status(window, run_id) == "running", timeout=T)
    qtbot.waitUntil(lambda: window.model.run(run_id)["heartbeat"] is not None,
                    timeout=T)   # the worker is up (its SIGTERM handler too)
    window.details.reason.setText("enough of that")
    window.details.cancel_button.click()
    qtbot.waitUntil(lambda: status(window, run_id) == "cancelled", timeout=T)
    qtbot.waitUntil(lambda: "cancelled: enough of that" in window.details.header.text(),
                    timeout=T)
    assert not window.details.cancel_button.isEnabled()
    # the cancel's own answer (the run still RUNNING) may come after the event: ignored
    header = window.details.header.text()
    stale = {**window.model.run(run_id), "status": "running", "cause": "", "last_seq": 1}
    window.details.update_header(stale)
    assert window.details.header.text() == header
    assert not window.details.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: window.details.log_pane.text.toPlainText() == "stopping\n",
                    timeout=T)
    assert window.details.log_pane.stream_name() == "stdout"   # not failed: stdout


def test_a_failed_run_opens_its_log_on_stderr(system: System, window: Any,
                                               qtbot: Any) -> None:
    cfg = {"worker": "test-exit", "env": "CartPole-v1", "seed": 107,
           "hyperparameters": {"message": "boom on stderr", "code": 3}}
    run_id = system.client().submit(cfg).run.run_id
    qtbot.waitUntil(lambda: status(window, run_id) == "failed", timeout=T)
    qtbot.waitUntil(lambda: window.select_run(run_id), timeout=T)
    log = window.details.log_pane
    assert log.stream_name() == "stderr" and not log.chosen_by_user
    qtbot.waitUntil(lambda: "boom on stderr" in log.text.toPlainText(), timeout=T)
    qtbot.waitUntil(lambda: log.ended, timeout=T)
    assert f"Log</b> of {run_id} — stderr, complete" in log.title.text()
    log.stream.setCurrentText("stdout")               # the user's choice is followed
    assert log.chosen_by_user and "stdout" in log.title.text()
    qtbot.waitUntil(lambda: log.ended, timeout=T)
    assert log.text.toPlainText() == ""


def test_reconnects_after_a_gateway_restart(system: System, window: Any, qtbot: Any) -> None:
    first = system.client().submit(sleeper(106, 0.1)).run.run_id
    qtbot.waitUntil(lambda: status(window, first) == "completed", timeout=T)
    assert system.gateway is not None
    system.gateway.proc.kill9()
    qtbot.waitUntil(lambda: window.health.connected is False, timeout=T)
    assert "disconnected" in window.health.connection.text()
    shown = window.model.rowCount()
    registry = system.stack.client()
    missed = registry.call("submit", {"config": sleeper(105, 0.1)})["run"]["run_id"]
    assert window.model.rowCount() == shown             # kept what it showed
    system.restart_gateway()
    qtbot.waitUntil(lambda: window.health.connected is True, timeout=T)
    assert "connected" in window.health.connection.text()
    qtbot.waitUntil(lambda: status(window, missed) == "completed", timeout=T)
    assert window.model.duplicates == 0
    assert window.model.applied == sorted(set(window.model.applied))


def test_screenshot_of_cartpole_runs_compared_with_a_video(system: System, window: Any,
                                                          qtbot: Any) -> None:
    c = system.client()
    cfg = {"worker": "cartpole", "env": "CartPole-v1", "seed": 7, "steps": 5000,
           "video_every": 2, "name": "cartpole-demo", "tags": ["gui"]}
    run_id = c.submit(cfg).run.run_id
    other = c.submit({**cfg, "seed": 8, "video_every": 0, "name": "cartpole-b"}).run.run_id
    qtbot.waitUntil(lambda: window.model.run(other) is not None
                    and window.select_run(run_id), timeout=T)
    assert window.compare_runs([other]) == 1
    d = window.details
    assert d.run_id == run_id and [r["run_id"] for r in d.compared] == [other]
    qtbot.waitUntil(lambda: status(window, run_id) == "completed"
                    and status(window, other) == "completed", timeout=30000)
    plot = d.plot
    qtbot.waitUntil(lambda: not d.timer.isActive() and not plot.timer.isActive(),
                    timeout=T)
    # every metric the runs report is offered; the evaluation's return is chosen
    assert {"return_mean", "eval_return_mean", "elite_mean"} <= set(plot.picker.metrics())
    assert plot.metric() == "eval_return_mean"
    assert plot.point_count(run_id) >= 3 and plot.point_count(other) >= 3
    assert plot.legend_labels() == ["%s cartpole-demo seed 7" % run_id,
                                    "%s cartpole-b seed 8" % other]
    drawn = lambda: list(plot.items[run_id].yData)  # noqa: E731 - the run's line
    assert drawn() == plot.runs[run_id].series.curve("eval_return_mean")[1]
    assert plot.picker.choose("return_mean") and plot.metric() == "return_mean"
    assert drawn() == plot.runs[run_id].series.curve("return_mean")[1] != []
    assert plot.picker.choose("eval_return_mean")
    for r in (run_id, other):         # the table's return: each run's last evaluation
        assert window.model.run(r)["metric_return"] == \
            plot.runs[r].series.last("eval_return_mean")
    # the videos, each with its evaluation step; the newest is loaded into the player
    v = d.videos
    qtbot.waitUntil(lambda: len(v.videos) >= 2, timeout=T)
    assert all(v.list.item(i).text().startswith("step ") for i in range(v.list.count()))
    newest = os.path.join(system.home, "runs", run_id, v.videos[-1]["path"])
    assert v.loaded == v.videos[-1] and os.path.exists(newest)
    assert plot.marker is not None and plot.marker.value() == v.loaded["meta"]["step"]
    if v.player is None:        # QtMultimedia not loadable here: the pane says why
        assert v.error.startswith("inline video is off") and v.error in v.screen.text()
    else:
        assert v.source() == newest
        qtbot.waitUntil(lambda: v.frames > 0 or v.error != "", timeout=T)
        assert v.error == "" and v.media_status() in (
            "LoadedMedia", "BufferingMedia", "BufferedMedia", "EndOfMedia"), v.error
        qtbot.waitUntil(lambda: v.media_status() == "EndOfMedia", timeout=T)
    opened: list[QUrl] = []
    d.opener = opened.append
    d.open_artifact(d.artifacts.item(0))
    assert opened and os.path.exists(opened[0].toLocalFile())
    out = os.path.join(REPO, "test-output")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "gui-compare.png")
    window.resize(1600, 960)
    qtbot.waitUntil(lambda: window.width() == 1600, timeout=T)
    assert window.grab().save(path)
    assert os.path.getsize(path) > 10_000  # a real picture; docs/gui-screenshot.png is
    # a copy of one such file, made by hand: a test never writes into the source tree


def test_screenshot_of_a_stalled_run_with_its_flag_and_video(system: System, window: Any,
                                                             qtbot: Any) -> None:
    cfg = {"worker": "test-video-stall", "env": "CartPole-v1", "seed": 11,
           "name": "stalls-after-a-video", "steps": 1000, "heartbeat_interval_s": 0.1,
           "heartbeat_timeout_s": 10.0,
           "liveness": {"stalled": {"window_s": 1.0, "warmup_s": 0.0}}}
    run_id = system.client().submit(cfg).run.run_id
    qtbot.waitUntil(lambda: window.select_run(run_id), timeout=T)
    col = COLUMNS.index("flags")

    def cell(role: Any = Qt.ItemDataRole.DisplayRole) -> Any:
        row = window.model.rows[run_id]
        return window.model.data(window.model.index(row, col), role)
    # the dispatcher's stalled rule flags it: the table's badge, from the watch
    try:
        qtbot.waitUntil(lambda: cell() == "⚑ stalled", timeout=30000)
    except Exception:
        raise AssertionError((window.model.run(run_id), system.client().get(run_id).flags))
    assert status(window, run_id) == "running"
    tip = cell(Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("stalled (warn) since ") and "step=400" in tip, tip
    d = window.details
    qtbot.waitUntil(lambda: d.flags_box.isVisible() and d.flags.rows() != [], timeout=T)
    (rule, action, _, cleared, evidence), = d.flags.rows()
    assert (rule, action, cleared) == ("⚑ stalled", "warn", "standing")
    assert "step=400" in evidence and "window_s=1" in evidence
    assert "1 standing, 0 cleared" in d.flags_title.text()
    # its one video, at the step it stalled on, loaded into the player
    v = d.videos
    qtbot.waitUntil(lambda: len(v.videos) == 1 and v.loaded is not None, timeout=T)
    assert v.list.item(0).text().startswith("step 400 · evaluation 4 · return ")
    if v.player is not None:
        qtbot.waitUntil(lambda: v.frames > 0 or v.error != "", timeout=T)
        assert v.error == "" and v.source().endswith("videos/eval-00004.mp4")
        qtbot.waitUntil(lambda: v.media_status() == "EndOfMedia", timeout=T)
    assert d.plot.point_count(run_id) == 4 and "step 400" in d.header.text()
    assert d.plot.metric() == "eval_return_mean"
    log = d.log_pane                 # running: stdout first; stderr has its last words
    assert log.stream_name() == "stdout"
    log.stream.setCurrentText("stderr")
    qtbot.waitUntil(lambda: "stalling at step 400" in log.text.toPlainText(), timeout=T)
    assert "stderr, following" in log.title.text()
    out = os.path.join(REPO, "test-output")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "gui-flagged.png")
    window.resize(1600, 960)
    qtbot.waitUntil(lambda: window.width() == 1600, timeout=T)
    window.runs_view.setSizes([700, 900])   # the table's every column
    assert window.grab().save(path) and os.path.getsize(path) > 10_000
    d.reason.setText("stalled")
    d.cancel_button.click()
    qtbot.waitUntil(lambda: status(window, run_id) == "cancelled", timeout=T)
    assert cell() == "⚑ stalled"   # a flag is not cleared by the run's end


def test_a_workers_own_tensorboard_return_is_plotted(system: System, window: Any,
                                                     qtbot: Any) -> None:
    """test-tensorboard writes rollout/ep_rew_mean itself (as SB3 does): the run's plot
    offers and draws it from GetMetrics' TensorBoard points (the return chosen by its
    SB3 name), and the table's return is its last value."""
    cfg = {"worker": "test-tensorboard", "seed": 0, "steps": 500,
           "hyperparameters": {"level": 2.0, "points": 5}}
    run_id = system.client().submit(cfg).run.run_id
    qtbot.waitUntil(lambda: window.select_run(run_id), timeout=T)
    d = window.details
    qtbot.waitUntil(lambda: status(window, run_id) == "completed", timeout=30000)
    qtbot.waitUntil(lambda: not d.timer.isActive() and not d.plot.timer.isActive(),
                    timeout=T)
    tracked = d.plot.runs[run_id]
    steps, _ = tracked.series.curve("rollout/ep_rew_mean")
    assert steps == [100, 200, 300, 400, 500]
    assert d.plot.metric() == "rollout/ep_rew_mean"
    assert window.model.run(run_id)["metric_return"] == pytest.approx(20.0)
    assert tracked.cursor   # read on with the cursor, not from the start each poll
