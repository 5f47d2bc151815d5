"""The worker SDK without a bus: artifacts stay inside the run directory, the exit
record is written whatever the exit path, SIGTERM before the Run exists is kept,
GPU memory never breaks a heartbeat, configs are refused with the field named."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, Iterator

import numpy as np
import pytest

from core.errors import ValidationError
from core.runconfig import RunConfig, field_names
from worker import cartpole, hparams, qlearning, sdk
from worker.gpu import GpuProbe

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def sigterm() -> Iterator[None]:
    """Tests that install SIGTERM handlers give the process its own one back."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGTERM, before[0])
    signal.signal(signal.SIGUSR2, before[1])
    sdk._EARLY_STOP.clear()


@pytest.fixture
def run(tmp_path: Any, sigterm: None) -> Iterator[sdk.Run]:
    r = sdk.Run("r-test", str(tmp_path), "", heartbeat_interval=60.0,
                gpu=GpuProbe(""))
    yield r
    r.finish("completed")


def _result(path: Any) -> dict:
    with open(os.path.join(path, sdk.RESULT_FILE), encoding="utf-8") as fh:
        return json.load(fh)


def test_artifacts_outside_the_run_dir_are_refused(run: sdk.Run, tmp_path: Any) -> None:
    outside = tmp_path.parent / "outside.bin"
    outside.write_bytes(b"x")
    (tmp_path / "link").symlink_to(outside)
    for path in ("../outside.bin", str(outside), "link", ".", ""):
        with pytest.raises(ValueError, match="outside the run directory"):
            run.register_artifact(path, "checkpoint")
    (tmp_path / "ok.bin").write_bytes(b"12345")
    record = run.register_artifact(str(tmp_path / "ok.bin"), "checkpoint", step=np.int64(3))
    assert record["path"] == "ok.bin" and record["size"] == 5 and record["meta"] == {"step": 3}
    with open(tmp_path / sdk.MANIFEST_FILE) as fh:
        assert [json.loads(line)["path"] for line in fh] == ["ok.bin"]


def test_numpy_values_are_written_as_plain_numbers(run: sdk.Run, tmp_path: Any) -> None:
    run.progress(step=np.int64(5), last_return=np.float32(1.5))
    run.heartbeat()
    run.log_metrics(np.int64(2), loss=np.float64(0.25))
    run.finish("completed", metrics={"ret": np.float64(500.0), "hist": np.arange(2)})
    with open(tmp_path / sdk.METRICS_FILE) as fh:
        assert json.loads(fh.readline())["values"] == {"loss": 0.25}
    assert _result(tmp_path)["metrics"] == {"ret": 500.0, "hist": [0, 1]}


def test_the_exit_record_is_written_on_an_exception(tmp_path: Any, sigterm: None) -> None:
    with pytest.raises(RuntimeError):
        with sdk.Run("r-x", str(tmp_path), "", 60.0, gpu=GpuProbe("")):
            raise RuntimeError("diverged")
    assert _result(tmp_path)["status"] == "failed"
    assert _result(tmp_path)["reason"] == "RuntimeError: diverged"


def test_sigterm_before_the_run_exists_is_honoured(tmp_path: Any, sigterm: None) -> None:
    assert sdk.catch_sigterm()
    os.kill(os.getpid(), signal.SIGTERM)          # e.g. during gymnasium's import
    with sdk.Run("r-early", str(tmp_path), "", 60.0, gpu=GpuProbe("")) as run:
        assert run.stop_requested
    assert _result(tmp_path)["status"] == "stopped"
    with sdk.Run("r-next", str(tmp_path), "", 60.0, gpu=GpuProbe("")) as run:
        assert not run.stop_requested             # the early flag was taken over once
        os.kill(os.getpid(), signal.SIGTERM)
        assert run.stop_requested


def test_a_worker_stopped_before_its_loop_checkpoints_and_stops(
        tmp_path: Any, sigterm: None, monkeypatch: Any) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"worker": "cartpole", "seed": 1, "steps": 10**9}))
    monkeypatch.setenv("TRAINER_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("TRAINER_BUS_PUB", "")
    monkeypatch.setattr("sys.argv", ["cartpole", "--run-id", "r1", "--config", str(config)])
    sdk.catch_sigterm()
    os.kill(os.getpid(), signal.SIGTERM)
    assert cartpole.main() == 0
    result = _result(tmp_path)
    assert result["status"] == "stopped" and result["metrics"]["iterations"] == 0
    assert os.path.isfile(tmp_path / "checkpoints" / "iter-000000.npz")


def test_gpu_memory_is_none_without_a_gpu_and_never_raises() -> None:
    assert GpuProbe("").memory_used() is None            # no GPU given to the run
    assert GpuProbe("GPU-fake-0000").memory_used() is None
    probe = GpuProbe(None)                                # all devices, if there are any
    used = probe.memory_used()
    assert used is None or (isinstance(used, int) and used >= 0)
    probe.close()


def test_a_bad_config_is_refused_with_the_field_named(tmp_path: Any) -> None:
    cases = [({"seed": -1}, "seed"), ({"steps": "many"}, "steps"),
             ({"resources": {"gpus": 1.5}}, "resources.gpus"), ({"sed": 1}, "sed"),
             ({"heartbeat_interval_s": 5, "heartbeat_timeout_s": 2}, "heartbeat_timeout_s")]
    for data, field in cases:
        with pytest.raises(ValidationError) as info:
            RunConfig.from_map(data)
        assert info.value.field == field
        path = tmp_path / "c.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ValidationError, match=f"^{field}: "):
            sdk.load_config(["--config", str(path)])
    assert sdk.load_config([]) == RunConfig.from_map({})
    assert {"resources.gpus", "video_every", "resume_from"} <= set(field_names())


def test_bad_hyperparameters_are_refused_with_the_field_named() -> None:
    cases = [({"populaton": 5}, "hyperparameters.populaton"),
             ({"population": 2}, "hyperparameters.population"),
             ({"elite_frac": "0.2"}, "hyperparameters.elite_frac"),
             ({"eval_every": 1.5}, "hyperparameters.eval_every"),
             ({"env_kwargs": [1]}, "hyperparameters.env_kwargs")]
    for raw, field in cases:
        with pytest.raises(ValidationError) as info:
            hparams.parse(cartpole.PARAMS, raw, "cartpole")
        assert info.value.field == field
    hp = hparams.parse(qlearning.PARAMS, {"alpha": 1, "eval_every": 2.0}, "qlearning")
    assert hp["alpha"] == 1.0 and hp["eval_every"] == 2 and hp["gamma"] == 0.99


class _FakeNvml:
    """Stands in for pynvml: two devices, by index and by UUID."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.used = {"GPU-a": 1000, "GPU-b": 20}
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return ["GPU-a", "GPU-b"][i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid not in self.used:
            raise self.NVMLError("Not Found")
        return uuid

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        if handle == "GPU-gone":
            raise self.NVMLError("GPU is lost")
        return type("Mem", (), {"used": self.used[handle]})()


def test_gpu_memory_sums_the_visible_devices(monkeypatch: Any) -> None:
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert GpuProbe(None).memory_used() == 1020                 # every device
    assert GpuProbe("GPU-b").memory_used() == 20                 # what the dispatcher sets
    assert GpuProbe("1,GPU-a").memory_used() == 1020
    assert GpuProbe("GPU-fake-0000").memory_used() is None       # unknown: no device
    probe = GpuProbe("GPU-a")
    assert probe.memory_used() == 1000
    fake.used["GPU-a"] = 5000
    assert probe.memory_used() == 5000                           # read on every beat
    probe._handles = ["GPU-gone"]
    assert probe.memory_used() is None                           # NVML error: None
    probe.close()
    assert fake.shutdowns >= 2
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(fail_init=True))
    assert GpuProbe(None).memory_used() is None                  # no driver: None


def test_wait_for_stop_returns_at_once_when_a_stop_is_requested(tmp_path) -> None:
    import threading
    import time

    from worker.sdk import Run
    run = Run("r1", str(tmp_path), "", 5.0)
    try:
        assert run.wait_for_stop(0.01) is False
        threading.Timer(0.05, run.request_stop).start()
        t0 = time.monotonic()
        assert run.wait_for_stop(10.0) is True
        assert time.monotonic() - t0 < 5.0
    finally:
        run.finish("stopped")


def test_a_worker_launched_by_hand_takes_its_run_id_from_the_command_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m worker.runner NAME --run-id try --config cfg.json` outside the
    orchestrator (docs/WORKERS.md): the SDK's run id is "try", not "local"; under the
    dispatcher, the environment's TRAINER_RUN_ID stays as it is."""
    from worker import runner
    monkeypatch.delenv("TRAINER_RUN_ID", raising=False)
    assert runner.main(["no-such-worker", "--run-id", "try", "--config", "c.json"]) == 2
    assert os.environ["TRAINER_RUN_ID"] == "try"  # what Run.from_env() reads
    monkeypatch.setenv("TRAINER_RUN_ID", "r0123456789ab")
    runner.main(["no-such-worker", "--run-id", "other", "--config", "c.json"])
    assert os.environ["TRAINER_RUN_ID"] == "r0123456789ab"


def test_artifact_paths_that_are_too_long_or_hold_control_characters_are_refused(
        run: sdk.Run, tmp_path: Any) -> None:
    (tmp_path / "bell\x07.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="control character"):
        run.register_artifact("bell\x07.bin", "checkpoint")
    (tmp_path / "ok.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="control character"):
        run.register_artifact("ok.bin", "check\npoint")
    deep = tmp_path
    for _ in range(6):  # 6 x 200 characters: a path longer than 1,024
        deep = deep / ("d" * 199)
        deep.mkdir()
    (deep / "f").write_bytes(b"x")
    with pytest.raises(ValueError, match="longer than 1024"):
        run.register_artifact(str(deep / "f"), "checkpoint")


def test_steps_per_s_counts_only_the_steps_of_this_process(
        run: sdk.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run resumed at step 38,000 that did 2,450 steps in its first second shows
    2,450 steps/s, not 40,450 (the checkpoint's steps were done by another process)."""
    clock = [1000.0]
    monkeypatch.setattr(sdk.time, "monotonic", lambda: clock[0])
    sent: list[dict] = []
    monkeypatch.setattr(run, "_send", lambda topic, mtype, payload: sent.append(payload))
    run.heartbeat()
    assert sent[-1]["steps_per_s"] == 0.0          # no step reported yet
    run.progress(step=np.int64(38_000), episode=100)  # the checkpoint's step
    clock[0] += 1.0
    run.progress(step=40_450)
    run.heartbeat()
    assert sent[-1]["step"] == 40_450
    assert sent[-1]["steps_per_s"] == pytest.approx(2_450.0)
    clock[0] += 1.0
    run.progress(step=42_900)
    run.heartbeat()
    assert sent[-1]["steps_per_s"] == pytest.approx(2_450.0)


def test_heartbeats_carry_what_the_liveness_rules_read(
        run: sdk.Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics_finite and the first non-finite metric since the beat before (then
    reset), the phase of a declared evaluation (a beat at each end of it), updates, and
    the latest return logged when progress() gave none (docs/SUPERVISION.md)."""
    sent: list[dict] = []
    monkeypatch.setattr(run, "_send", lambda topic, mtype, payload: sent.append(payload))
    run.progress(step=10)
    run.heartbeat()
    assert (sent[-1]["metrics_finite"], sent[-1]["nonfinite_metric"]) == (None, "")
    assert sent[-1]["phase"] == "" and sent[-1]["updates"] == 0
    assert sent[-1]["last_return"] is None
    run.log_metrics(10, loss=0.5, return_mean=np.float64(21.5))
    run.heartbeat()
    assert sent[-1]["metrics_finite"] is True and sent[-1]["last_return"] == 21.5
    run.log_metrics(11, loss=float("nan"), grad=float("inf"))
    run.log_metrics(12, loss=0.4)
    run.progress(updates=3)
    run.heartbeat()
    assert (sent[-1]["metrics_finite"], sent[-1]["nonfinite_metric"]) == (False, "loss")
    assert sent[-1]["updates"] == 3
    run.heartbeat()
    assert sent[-1]["metrics_finite"] is None       # nothing logged since
    beats = len(sent)
    with run.evaluating():
        assert sent[-1]["phase"] == "evaluating" and len(sent) == beats + 1
    assert sent[-1]["phase"] == "" and len(sent) == beats + 2
    run.progress(last_return=3.0)
    run.heartbeat()
    assert sent[-1]["last_return"] == 3.0           # progress() wins over the metrics


def test_sigusr2_asks_for_a_checkpoint_until_it_is_done(run: sdk.Run) -> None:
    assert not run.checkpoint_requested
    os.kill(os.getpid(), signal.SIGUSR2)
    assert run.checkpoint_requested and not run.stop_requested
    run.checkpoint_done()
    assert not run.checkpoint_requested
