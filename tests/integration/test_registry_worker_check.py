"""The registry as ``python -m services.registry`` builds it refuses, at submission, a
config naming a worker that no entry point of ``trainer.workers`` provides (the run
would only fail later, at start, as ``spawn_error``)."""

from __future__ import annotations

from typing import Any

import zmq

from runtime.logs import ServiceLogger
from core.settings import Settings
from services.registry.__main__ import build


def _submit(svc: Any, request_id: str, worker: str) -> dict[str, Any]:
    conn = svc.registry.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        config = {"worker": worker, "env": "CartPole-v1", "seed": 1}
        return svc.registry.handle("submit", {"config": config}, request_id, "test").reply
    finally:
        conn.execute("COMMIT")


def _build(tmp_path: Any, ctx: zmq.Context, **env: str) -> Any:
    settings = Settings.from_env({"TRAINER_HOME": str(tmp_path), **env})
    return build(settings, ctx, ServiceLogger("registry-test"))


def test_an_unknown_worker_is_refused_at_submission(tmp_path: Any, ctx: zmq.Context) -> None:
    svc = _build(tmp_path, ctx, TRAINER_TEST_WORKERS="1")
    try:
        refused = _submit(svc, "req-1", "no-such-worker")
        assert not refused["ok"], refused
        assert refused["error"]["code"] == "invalid_argument"
        assert refused["error"]["details"]["field"] == "worker"
        # The message lists what is installed.
        assert "cartpole" in refused["error"]["message"], refused
        assert "test-sleep" in refused["error"]["message"], refused
        accepted = _submit(svc, "req-2", "test-sleep")  # tests/workers registers it
        assert accepted["ok"] and accepted["result"]["run"]["status"] == "PENDING", accepted
    finally:
        svc.close()


def test_a_production_registry_refuses_the_test_workers(tmp_path: Any,
                                                        ctx: zmq.Context) -> None:
    """Without TRAINER_TEST_WORKERS=1 (make install, make demo), tests/workers' entry
    points (group trainer.test_workers) are unknown workers, installed or not."""
    svc = _build(tmp_path, ctx)
    try:
        for i, worker in enumerate(("test-mark", "test-sleep", "test-flood")):
            refused = _submit(svc, f"req-{i}", worker)
            assert not refused["ok"], refused
            assert refused["error"]["code"] == "invalid_argument"
            assert refused["error"]["details"]["field"] == "worker"
            assert "test-" not in refused["error"]["message"].split("installed workers:")[1]
        assert _submit(svc, "req-c", "cartpole")["ok"]
    finally:
        svc.close()


def test_the_dispatcher_and_the_launcher_run_test_workers_only_with_the_setting(
        tmp_path: Any) -> None:
    import pytest

    from runtime.workers import find
    from services.dispatcher import launch
    run = {"run_id": "r1", "config": {"worker": "test-mark"}}
    plain = Settings.from_env({"TRAINER_HOME": str(tmp_path)})
    with pytest.raises(launch.UnknownWorker):
        launch.prepare(plain, run, [])
    testing = Settings.from_env({"TRAINER_HOME": str(tmp_path), "TRAINER_TEST_WORKERS": "1"})
    _, argv, env = launch.prepare(testing, run, [])
    assert env["TRAINER_TEST_WORKERS"] == "1" and "test-mark" in argv
    assert find("test-mark", test_workers=False) is None
    found = find("test-mark", test_workers=True)
    assert found is not None and found.group == "trainer.test_workers"


def test_an_unknown_name_rescans_the_installed_workers_at_most_every_few_seconds() -> None:
    from runtime.workers import WorkerCatalog
    now = [100.0]
    catalog = WorkerCatalog(reload_s=5.0, clock=lambda: now[0], test_workers=True)
    assert catalog("test-sleep") and catalog.loads == 1
    now[0] += 6.0
    for _ in range(50):  # a client hammering with a bad name
        assert not catalog("no-such-worker")
    assert catalog.loads == 2  # one rescan for the first miss, none for the next 49
    now[0] += 5.0
    assert not catalog("no-such-worker") and catalog.loads == 3
    assert catalog("test-sleep") and catalog.loads == 3  # a fresh read: no rescan
    now[0] += 5.0  # a known name asked after reload_s: read again (uninstalled?)
    assert catalog("test-sleep") and catalog.loads == 4


def test_only_env_ids_gymnasium_registers_are_accepted() -> None:
    """A ``module:Env-v0`` id is refused without importing its module (gymnasium would
    run its top-level code); a plugin env (entry point ``gymnasium.envs``) is accepted."""
    import sys
    from services.registry.catalog import EnvCatalog
    catalog = EnvCatalog()
    assert catalog("CartPole-v1") and not catalog("NoSuchEnv-v9")
    assert catalog("TrainerTest/Walk-v0")  # tests/workers' gymnasium.envs plugin
    sys.modules.pop("trainer_test_workers.envs", None)
    for env_id in ("trainer_test_workers.envs:TrainerTest/Walk-v0",
                   "trainer_test_workers.envs:Walk-v0", "no_such_package_xyz:Walk-v0",
                   "gymnasium.envs.classic_control:CartPole-v1", "pkg:", "this:Zen-v0"):
        assert not catalog(env_id), env_id
        assert "module:Env" in catalog.refusal(env_id)
    assert "trainer_test_workers.envs" not in sys.modules and "this" not in sys.modules
    assert "gymnasium.envs" in catalog.refusal("NoSuchEnv-v9")


def test_a_refused_env_names_the_field_and_how_to_register_one() -> None:
    import pytest

    from core.errors import ValidationError
    from core.runconfig import RunConfig
    from services.registry.catalog import EnvCatalog
    with pytest.raises(ValidationError) as refused:
        RunConfig.from_map({"env": "os:Anything-v0"}, known_env=EnvCatalog())
    assert refused.value.field == "env"
    assert "entry point" in str(refused.value) and "gymnasium.envs" in str(refused.value)


def test_a_run_of_another_environment_is_prepared_with_its_interpreter_and_env_vars(
        tmp_path: Any, monkeypatch: Any) -> None:
    """launch.prepare: the environment's interpreter runs worker.runner (its worker is
    not looked up here: the registry checked it there at submit); the config's env_vars
    are set, the dispatcher's own variables win, and the dispatcher's PYTHONPATH,
    PYTHONHOME and VIRTUAL_ENV are not passed to another interpreter; one that is no
    executable file any more is refused with a message naming it."""
    import os
    import sys

    import pytest

    from services.dispatcher import launch
    monkeypatch.setenv("PYTHONPATH", "/the/orchestrators/checkout")
    monkeypatch.setenv("VIRTUAL_ENV", "/the/orchestrators/.venv")
    settings = Settings.from_env({"TRAINER_HOME": str(tmp_path)})
    config = {"worker": "only-there", "python_env": "gpu",
              "env_vars": {"OMP_NUM_THREADS": "3", "PYTHONPATH": "/theirs"}}
    run = {"run_id": "r1", "config": config}
    _, argv, env = launch.prepare(settings, run, ["GPU-1"], python=sys.executable)
    assert argv[:4] == [sys.executable, "-m", "worker.runner", "only-there"]
    assert env["OMP_NUM_THREADS"] == "3" and env["PYTHONPATH"] == "/theirs"
    assert "VIRTUAL_ENV" not in env and env["CUDA_VISIBLE_DEVICES"] == "GPU-1"
    _, argv, env = launch.prepare(settings, {"run_id": "r2", "config": {"worker": "cartpole"}},
                                  [])
    assert env["PYTHONPATH"] == "/the/orchestrators/checkout"   # ours: unchanged
    gone = tmp_path / "deleted-venv" / "bin" / "python"
    with pytest.raises(launch.UnknownWorker, match="deleted-venv.*python_env 'gpu'"):
        launch.prepare(settings, run, [], python=str(gone))
    assert os.path.exists(os.path.join(settings.runs_dir, "r1", "config.json"))
