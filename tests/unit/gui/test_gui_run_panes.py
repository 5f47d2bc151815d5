"""The run details' pieces on hand-made data, without a network: RunRecord protos with
liveness flags through convert (standing and cleared, the evidence, the heartbeat's
new fields), the flags' badge, tooltip and history, the runs table's flags column and
its RunFlagged/RunFlagCleared events, the run plot (every metric offered, one line per
run, the chosen metric drawn, a run done once ended and read), the log's default
stream, the videos' captions and the player's refusal of a missing file."""

from __future__ import annotations

from typing import Any, Callable

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from PySide6.QtCore import Qt

from trainer.gui import convert, flags_view
from trainer.gui.log_pane import LogPane, default_stream
from trainer.gui.run_plot import RunPlot, RunSeries
from trainer.gui.runs_model import COLUMNS, RunsModel
from trainer.gui.video_pane import VideoPane, unavailable_text, video_caption
from trainer_api.v1 import trainer_pb2 as pb

T0 = 1_800_000_000


def ts(seconds: float) -> Timestamp:
    t = Timestamp()
    t.FromSeconds(int(seconds))
    return t


def struct(**values: Any) -> Struct:
    s = Struct()
    s.update(values)
    return s


def record_with_flags() -> pb.RunRecord:
    r = pb.RunRecord(run_id="r1", status=pb.RUN_STATUS_RUNNING, last_seq=9,
                     config_json='{"worker": "test-stall", "env": "CartPole-v1", "seed": 1}',
                     submitted_at=ts(T0))
    r.flags.add(rule="slowed", action="warn", flagged_at=ts(T0 + 5), cleared_at=ts(T0 + 9),
                evidence=struct(steps_per_s=12.5, baseline=100.0),
                cleared_evidence=struct(steps_per_s=98.0), seq=5, attempt=1)
    r.flags.add(rule="stalled", action="warn", flagged_at=ts(T0 + 20),
                evidence=struct(step=120, window_s=5.0), seq=8, attempt=1)
    r.last_heartbeat.CopyFrom(pb.Heartbeat(beat=3, step=120, updates=7, phase="evaluating",
                                           metrics_finite=False))
    return r


def test_flags_convert_from_the_run_record() -> None:
    run = convert.run(record_with_flags())
    slowed, stalled = run["flags"]
    assert slowed == {"rule": "slowed", "action": "warn", "flagged_at": T0 + 5.0,
                      "cleared_at": T0 + 9.0, "standing": False,
                      "evidence": {"steps_per_s": 12.5, "baseline": 100.0},
                      "cleared_evidence": {"steps_per_s": 98.0}, "seq": 5, "attempt": 1}
    assert stalled["standing"] and stalled["cleared_at"] is None
    assert stalled["evidence"] == {"step": 120.0, "window_s": 5.0}
    hb = run["heartbeat"]
    assert (hb["updates"], hb["phase"], hb["metrics_finite"]) == (7, "evaluating", False)
    plain = convert.run(pb.RunRecord(run_id="r2", last_heartbeat=pb.Heartbeat(beat=1)))
    assert plain["flags"] == [] and plain["heartbeat"]["metrics_finite"] is None


def test_the_badge_and_tooltip_name_only_the_standing_flags() -> None:
    run = convert.run(record_with_flags())
    assert flags_view.badge(run) == "⚑ stalled"
    tip = flags_view.tooltip(run)
    assert tip is not None and tip.startswith("stalled (warn) since ")
    assert tip.endswith(": step=120, window_s=5") and "slowed" not in tip
    assert flags_view.badge({"flags": []}) == "" and flags_view.tooltip({"flags": []}) is None
    both = {"flags": run["flags"] + [{**run["flags"][1], "rule": "diverged"},
                                     {**run["flags"][1]}]}
    assert flags_view.badge(both) == "⚑ stalled, diverged"


def test_the_flags_history_lists_every_flag(qtbot: Any) -> None:
    view = flags_view.FlagsView()
    qtbot.addWidget(view)
    view.set_flags(convert.run(record_with_flags())["flags"])
    rows = view.rows()
    assert [r[0] for r in rows] == ["⚑ slowed", "⚑ stalled"]
    assert rows[0][3] != "standing" and rows[1][3] == "standing"
    assert rows[0][4] == "baseline=100, steps_per_s=12.5; cleared: steps_per_s=98"
    red = view.topLevelItem(1).foreground(0).color().name()
    assert red == flags_view.STANDING_COLOUR and \
        view.topLevelItem(0).foreground(0).color().name() == flags_view.CLEARED_COLOUR


def event(seq: int, kind: str, **payload: Any) -> dict[str, Any]:
    return {"seq": seq, "run_id": "r1", "type": kind, "status": "", "payload": payload,
            "recorded_at": float(T0 + seq)}


def test_the_runs_table_shows_flags_and_follows_their_events(qtbot: Any) -> None:
    m = RunsModel()
    m.upsert([convert.run(record_with_flags())])
    col = COLUMNS.index("flags")
    cell = m.index(0, col)
    assert m.data(cell) == "⚑ stalled"
    assert "step=120" in m.data(cell, Qt.ItemDataRole.ToolTipRole)
    m.apply_events([event(10, "RunFlagCleared", rule="stalled", evidence={"step": 400})])
    assert m.data(cell) == "" and m.data(cell, Qt.ItemDataRole.ToolTipRole) is None
    cleared = m.run("r1")["flags"][1]
    assert cleared["cleared_at"] == T0 + 10.0 and cleared["cleared_evidence"] == {"step": 400}
    m.apply_events([event(11, "RunFlagged", rule="diverged", action="stop",
                          evidence={"metric": "loss"}, attempt=1)])
    assert m.data(cell) == "⚑ diverged" and len(m.run("r1")["flags"]) == 3
    assert m.run("r1")["flags"][2]["seq"] == 11


class Pool:
    """Stands for the Calls pool: keeps each job instead of running it."""

    def __init__(self) -> None:
        self.jobs: list[Callable] = []

    def start(self, fn: Callable, on_done: Any = None, on_error: Any = None) -> int:
        self.jobs.append(fn)
        return len(self.jobs)


def points(*rows: tuple[int, dict[str, float]]) -> list[dict[str, Any]]:
    return [{"step": s, "values": v} for s, v in rows]


def test_run_series_merges_by_step() -> None:
    s = RunSeries()
    assert s.add(points((0, {"a": 1.0}), (10, {"a": 2.0, "b": 5.0}))) == 2
    s.add(points((10, {"a": 3.0}), (5, {"a": 1.5})))   # a step read again: one value
    assert s.curve("a") == ([0.0, 5.0, 10.0], [1.0, 1.5, 3.0])
    assert s.names() == ["a", "b"] and s.last("a") == 3.0 and s.last("zzz") is None


def test_the_run_plot_offers_every_metric_and_draws_one_line_per_run(qtbot: Any) -> None:
    pool = Pool()
    plot = RunPlot(pool)
    qtbot.addWidget(plot)
    plot.set_runs([("r1", "r1 seed 1"), ("r2", "r2 seed 2")])
    assert len(pool.jobs) == 1 and plot.polling and plot.timer.isActive()
    plot.polled({"r1": {"offset": 0, "terminal": False, "next_offset": 100,
                        "points": points((0, {"return_mean": 1.0}),
                                         (0, {"eval_return_mean": 2.0}),
                                         (50, {"return_mean": 3.0, "loss": 0.5}))},
                 "r2": {"offset": 0, "terminal": True, "next_offset": 40,
                        "points": points((0, {"eval_return_mean": 4.0}))}})
    assert plot.picker.metrics() == ["eval_return_mean", "loss", "return_mean"]
    assert plot.metric() == "eval_return_mean"
    assert plot.legend_labels() == ["r1 seed 1", "r2 seed 2"]
    assert list(plot.items["r1"].yData) == [2.0] and list(plot.items["r2"].yData) == [4.0]
    assert plot.picker.choose("return_mean")
    assert list(plot.items["r1"].yData) == [1.0, 3.0] and plot.point_count("r2") == 0
    assert plot.runs["r1"].offset == 100 and not plot.runs["r2"].done
    # an answer for an offset already read past changes nothing
    plot.polled({"r1": {"offset": 0, "terminal": False, "next_offset": 999,
                        "points": points((70, {"return_mean": 9.0}))}})
    assert plot.runs["r1"].offset == 100 and plot.point_count("r1") == 2
    # ended with nothing new: done, and no longer read
    plot.polled({"r2": {"offset": 40, "terminal": True, "next_offset": 40, "points": []}})
    assert plot.runs["r2"].done and not plot.runs["r1"].done
    plot.set_runs([("r2", "r2 seed 2")])        # r1 dropped: its line and legend entry
    assert plot.legend_labels() == ["r2 seed 2"] and list(plot.items) == ["r2"]
    assert plot.runs["r2"].done and not plot.timer.isActive()  # nothing left to read


def test_a_failed_run_opens_on_stderr(qtbot: Any) -> None:
    assert default_stream("failed") == "stderr"
    assert [default_stream(s) for s in ("running", "completed", "cancelled", "")] == \
        ["stdout"] * 4
    pane = LogPane("127.0.0.1:1", None)     # no run: nothing is followed, no thread
    qtbot.addWidget(pane)
    pane.update_status("running")
    assert pane.stream_name() == "stdout"
    pane.update_status("failed")            # seen failing: stderr comes up
    assert pane.stream_name() == "stderr" and not pane.chosen_by_user
    pane.stream.setCurrentText("stdout")    # the user's choice then stands
    pane.update_status("failed")
    assert pane.stream_name() == "stdout" and pane.chosen_by_user
    assert pane.thread is None and pane.title.text() == "<b>Log</b>"


def test_a_video_is_captioned_with_its_evaluation_step() -> None:
    meta = {"episode": 64.0, "evaluation": 2.0, "iteration": 2.0, "step": 1766.0,
            "frames": 42.0, "duration_s": 0.84, "episode_return": 40.0}
    assert video_caption({"path": "videos/eval-00002.mp4", "meta": meta}) == \
        "step 1,766 · evaluation 2 · return 40 · 0.84 s"
    assert video_caption({"path": "videos/eval-final.mp4", "meta": meta}).startswith(
        "step 1,766 · final ·")
    assert video_caption({"path": "videos/x.mp4", "meta": {}}) == "videos/x.mp4"
    assert "apt-get install libpulse0" in unavailable_text("libpulse.so.0: cannot open")
    assert "PySide6-Addons" in unavailable_text("No module named 'PySide6.QtMultimedia'")


def test_a_video_missing_from_this_disk_is_said_so(qtbot: Any, tmp_path: Any) -> None:
    pane = VideoPane()
    qtbot.addWidget(pane)
    video = {"kind": "video", "path": "videos/eval-final.mp4", "size": 10,
             "meta": {"step": 500.0}}
    pane.set_videos(str(tmp_path), [{"kind": "checkpoint", "path": "c.npz", "size": 1,
                                     "meta": {}}, video])
    assert pane.list.count() == 1 and pane.loaded == video
    assert pane.error != "" and pane.error in pane.screen.text()
    if pane.player is not None:
        assert "no such file here" in pane.error and pane.source() == ""
    pane.shutdown()


def test_without_qtmultimedia_the_pane_says_why(qtbot: Any, tmp_path: Any,
                                                monkeypatch: Any) -> None:
    from trainer.gui import video_pane
    monkeypatch.setattr(video_pane, "MULTIMEDIA_ERROR",
                        "libpulse.so.0: cannot open shared object file")
    pane = VideoPane()
    qtbot.addWidget(pane)
    assert pane.player is None and "apt-get install libpulse0" in pane.screen.text()
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "eval-final.mp4").write_bytes(b"not played here")
    video = {"kind": "video", "path": "videos/eval-final.mp4", "size": 15,
             "meta": {"step": 500.0, "episode_return": 500.0}}
    pane.set_videos(str(tmp_path), [video])
    assert pane.loaded == video and pane.source() == "" and pane.media_status() == "NoMedia"
    assert "inline video is off" in pane.screen.text()
    assert not pane.play_button.isEnabled() and pane.open_button.isEnabled()
    opened: list[Any] = []
    pane.opener = opened.append
    pane.open_external()               # the system's player can still have it
    assert [u.toLocalFile() for u in opened] == [str(tmp_path / "videos/eval-final.mp4")]


def test_the_preferred_metric_takes_over_from_the_pickers_own_pick(qtbot: Any) -> None:
    from trainer.gui.metric_picker import MetricPicker
    p = MetricPicker("eval_return_mean", also=("return_mean",))
    qtbot.addWidget(p)
    p.set_metrics(["loss"])                       # nothing liked yet: the first
    assert p.selected_metric() == "loss" and p.user_choice == ""
    p.set_metrics(["loss", "return_mean"])        # a liked name arrives: it takes over
    assert p.selected_metric() == "return_mean"
    p.set_metrics(["eval_return_mean", "loss", "return_mean"])   # the preferred one
    assert p.selected_metric() == "eval_return_mean"
    assert p.choose("loss") and p.user_choice == "loss"
    p.set_metrics(["eval_return_mean", "loss", "return_mean", "x"])
    assert p.selected_metric() == "loss"          # the user's choice stays


def test_a_slurm_run_shows_its_job_node_and_gpus_and_a_local_run_nothing() -> None:
    on_slurm = convert.run(pb.RunRecord(run_id="r3", host="node7", launcher="slurm",
                                        job_id="12", job_gpus=["0", "1"]))
    assert (on_slurm["launcher"], on_slurm["job_id"], on_slurm["job_gpus"]) == \
        ("slurm", "12", ["0", "1"])
    assert convert.placement(on_slurm) == "SLURM job 12 on node7, GPUs 0,1"
    local = convert.run(pb.RunRecord(run_id="r4", host="ws", launcher="local"))
    assert convert.placement(local) == ""
    no_gpu = {**on_slurm, "job_gpus": []}
    assert convert.placement(no_gpu) == "SLURM job 12 on node7, GPUs none"


def test_the_runs_table_takes_the_slurm_job_from_run_started(qtbot: Any) -> None:
    m = RunsModel()
    m.upsert([convert.run(pb.RunRecord(run_id="r1"))])
    m.apply_events([event(3, "RunStarted", pid=5, host="node7", launcher="slurm",
                          job_id="12", job_gpus=["1"], attempt=1)])
    assert convert.placement(m.run("r1")) == "SLURM job 12 on node7, GPUs 1"
