"""The registry as ``python -m services.registry`` builds it refuses, at submission, a
config naming a worker that no entry point of ``trainer.workers`` provides (the run
would only fail later, at start, as ``spawn_error``)."""

from __future__ import annotations

from typing import Any

import zmq

from bus.logs import ServiceLogger
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


def test_an_unknown_worker_is_refused_at_submission(tmp_path: Any, ctx: zmq.Context) -> None:
    settings = Settings.from_env({"TRAINER_HOME": str(tmp_path)})
    svc = build(settings, ctx, ServiceLogger("registry-test"))
    try:
        refused = _submit(svc, "req-1", "no-such-worker")
        assert not refused["ok"], refused
        assert refused["error"]["code"] == "invalid_argument"
        assert refused["error"]["details"]["field"] == "worker"
        accepted = _submit(svc, "req-2", "test-sleep")  # tests/workers registers it
        assert accepted["ok"] and accepted["result"]["run"]["status"] == "PENDING", accepted
    finally:
        svc.close()


def test_an_unknown_name_rescans_the_installed_workers_at_most_every_few_seconds() -> None:
    from core.workers import WorkerCatalog
    now = [100.0]
    catalog = WorkerCatalog(reload_s=5.0, clock=lambda: now[0])
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


def test_a_module_env_id_is_checked_without_importing_its_module() -> None:
    """``module:Env-v0``: the form and an installed top-level package, nothing run
    (importing it is the worker's job); plain ids against gymnasium's registry."""
    import sys
    from services.registry.catalog import EnvCatalog
    catalog = EnvCatalog()
    assert catalog("CartPole-v1") and not catalog("NoSuchEnv-v9")
    assert catalog("trainer_test_workers.envs:Walk-v0")
    assert "trainer_test_workers.envs" not in sys.modules
    assert not catalog("no_such_package_xyz:Walk-v0")
    assert not catalog("bad module:Walk-v0") and not catalog("pkg:")
