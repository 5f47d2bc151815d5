"""Registered Python environments, the pure parts: the env stream's state machine, the
AddEnv/RemoveEnv decisions, the projection of their events, the run config's
python_env and env_vars, the topic of a non-run stream, and the worker catalog read
over another interpreter's sys.path."""

from __future__ import annotations

import pytest

from bus.topics import stream_event_topic
from core import events as ev
from core.digest import config_digest
from core.envcommands import AddEnv, RemoveEnv, decide_add_env, decide_remove_env
from core.envstate import ENV_TRANSITIONS, apply_env
from core.errors import Conflict, IllegalTransition, NotFound, ResourceBusy, ValidationError
from core.streams import env_stream, stream_kind
from core.projection import changes, env_from_row, key_of, own_row, state_key
from core.runconfig import RunConfig
from runtime.workers import WorkerCatalog

PY = "/opt/envs/gpu/bin/python"
PATH = ("/usr/lib/python3.11", "/opt/envs/gpu/lib/python3.11/site-packages")
ENV_SAMPLES: dict[str, ev.DomainEvent] = {
    "EnvAdded": ev.EnvAdded("gpu", PY, "3.11.7", PATH, "/opt/envs/gpu", "0.1.0", "me"),
    "EnvRemoved": ev.EnvRemoved("gpu", "me", "old"),
}


def add(**kw: object) -> AddEnv:
    fields = dict(name="gpu", python=PY, python_version="3.11.7", sys_path=PATH,
                  prefix="/opt/envs/gpu", sdk_version="0.1.0", added_by="me")
    fields.update(kw)
    return AddEnv(**fields)  # type: ignore[arg-type]


def test_every_env_event_has_a_sample_and_belongs_to_the_env_stream() -> None:
    assert set(ENV_SAMPLES) == ev.TYPES_OF_KIND["env"]
    for event in ENV_SAMPLES.values():
        assert event.stream == "env-gpu" == env_stream("gpu")
        assert key_of(event) == ("env", "gpu")
    assert ev.RunWaiting("r1", "x").stream == "run-r1"
    assert stream_kind("env-gpu") == ("env", "gpu")
    assert stream_kind("run-r0123456789ab") == ("run", "r0123456789ab")
    assert stream_kind("job-x") == ("", "job-x")


def test_the_env_state_machine() -> None:
    added = apply_env(None, ENV_SAMPLES["EnvAdded"], 5, 50.0)
    assert (added.status, added.version, added.added_seq, added.last_seq) == ("PRESENT", 1, 5, 5)
    assert added.sys_path == PATH and added.python == PY
    removed = apply_env(added, ENV_SAMPLES["EnvRemoved"], 9, 90.0)
    assert (removed.status, removed.version, removed.removed_at, removed.remove_reason) == \
        ("REMOVED", 2, 90.0, "old")
    assert added.status == "PRESENT"  # left as it was
    again = apply_env(removed, ENV_SAMPLES["EnvAdded"], 12, 120.0)
    assert (again.status, again.version, again.removed) == ("PRESENT", 3, False)
    with pytest.raises(IllegalTransition, match="environment gpu is REMOVED"):
        apply_env(removed, ENV_SAMPLES["EnvRemoved"], 13, 1.0)
    with pytest.raises(IllegalTransition, match="environment gpu is NEW"):
        apply_env(None, ENV_SAMPLES["EnvRemoved"], 13, 1.0)
    assert len(ENV_TRANSITIONS) == 4


def test_the_projection_of_env_events_round_trips_its_row() -> None:
    state, extra = changes(None, ENV_SAMPLES["EnvAdded"], 3, 30.0)
    assert extra == [] and state_key(state) == ("env", "gpu")
    table, row = own_row(state)
    assert table == "envs" and env_from_row(row) == state


def test_add_env_refuses_naming_the_field() -> None:
    for cmd, field in ((add(name="no.dots"), "name"), (add(name=""), "name"),
                       (add(python="bin/python"), "python"), (add(python=""), "python"),
                       (add(python_version=""), "python"),
                       (add(sys_path=("bad\x07",)), "sys_path")):
        with pytest.raises(ValidationError) as info:
            decide_add_env(None, cmd)
        assert info.value.field == field, cmd
    with pytest.raises(ValidationError) as info:
        decide_add_env(None, add(sdk_version=""))
    assert info.value.field == "python"
    assert "SDK is not installed" in info.value.message and "pip install" in info.value.message


def test_add_env_again_is_harmless_and_another_interpreter_is_refused() -> None:
    [added] = decide_add_env(None, add())
    assert isinstance(added, ev.EnvAdded) and added.added_by == "me"
    state = apply_env(None, added, 1, 1.0)
    assert decide_add_env(state, add()) == []                      # the same again
    [refresh] = decide_add_env(state, add(sdk_version="0.2.0"))   # it says more now
    assert isinstance(refresh, ev.EnvAdded) and refresh.sdk_version == "0.2.0"
    with pytest.raises(Conflict, match="already registered with /opt/envs/gpu/bin/python"):
        decide_add_env(state, add(python="/other/bin/python"))
    removed = apply_env(state, ev.EnvRemoved("gpu", "me", ""), 2, 2.0)
    assert len(decide_add_env(removed, add(python="/other/bin/python"))) == 1


def test_remove_env_refused_while_a_run_not_ended_names_it() -> None:
    state = apply_env(None, ENV_SAMPLES["EnvAdded"], 1, 1.0)
    with pytest.raises(ResourceBusy, match="r1, r2") as info:
        decide_remove_env(state, RemoveEnv("gpu", "me"), ["r1", "r2"])
    assert info.value.details["runs"] == ["r1", "r2"]
    [removed] = decide_remove_env(state, RemoveEnv("gpu", "me", "done"))
    assert isinstance(removed, ev.EnvRemoved) and removed.reason == "done"
    with pytest.raises(NotFound):
        decide_remove_env(None, RemoveEnv("gpu"))
    with pytest.raises(NotFound):
        decide_remove_env(apply_env(state, removed, 2, 2.0), RemoveEnv("gpu"))


def test_a_config_without_python_env_or_env_vars_keeps_its_canonical_form() -> None:
    plain = RunConfig.from_map({"seed": 3})
    assert "python_env" not in plain.to_map() and "env_vars" not in plain.to_map()
    same = RunConfig.from_map({"seed": 3, "python_env": "", "env_vars": {}})
    assert config_digest(same.to_map()) == config_digest(plain.to_map())
    named = RunConfig.from_map({"seed": 3, "python_env": "gpu", "env_vars": {"A_1": "x"}})
    assert named.to_map()["python_env"] == "gpu" and named.to_map()["env_vars"] == {"A_1": "x"}
    assert config_digest(named.to_map()) != config_digest(plain.to_map())
    assert RunConfig.from_map(named.to_map()) == named


@pytest.mark.parametrize("data,field", [
    ({"python_env": "a b"}, "python_env"),
    ({"python_env": 3}, "python_env"),
    ({"env_vars": []}, "env_vars"),
    ({"env_vars": {"1A": "x"}}, "env_vars"),
    ({"env_vars": {"A-B": "x"}}, "env_vars"),
    ({"env_vars": {"TRAINER_HOME": "/x"}}, "env_vars.TRAINER_HOME"),
    ({"env_vars": {"CUDA_VISIBLE_DEVICES": "0"}}, "env_vars.CUDA_VISIBLE_DEVICES"),
    ({"env_vars": {"PYTHONUNBUFFERED": "0"}}, "env_vars.PYTHONUNBUFFERED"),
    ({"env_vars": {"A": 1}}, "env_vars.A"),
    ({"env_vars": {"A": "a\0b"}}, "env_vars.A"),
])
def test_bad_python_env_and_env_vars_are_refused_naming_the_field(data: dict,
                                                                  field: str) -> None:
    with pytest.raises(ValidationError) as info:
        RunConfig.from_map(data)
    assert info.value.field == field


def test_the_worker_is_checked_in_the_named_environment() -> None:
    def envs(name: str):
        return ((lambda w: w == "only-there"), (lambda w: False)) if name == "gpu" else None
    here = lambda w: w == "cartpole"  # noqa: E731 - this interpreter's workers
    cfg = RunConfig.from_map({"python_env": "gpu", "worker": "only-there"},
                             known_worker=here, python_envs=envs)
    assert cfg.worker == "only-there"
    with pytest.raises(ValidationError) as info:
        RunConfig.from_map({"python_env": "gpu", "worker": "cartpole"}, known_worker=here,
                           python_envs=envs)
    assert info.value.field == "worker"
    with pytest.raises(ValidationError) as info:
        RunConfig.from_map({"python_env": "cpu"}, known_worker=here, python_envs=envs)
    assert info.value.field == "python_env" and "'cpu'" in info.value.message
    with pytest.raises(ValidationError) as info:  # the env's resumes group, not ours
        RunConfig.from_map({"python_env": "gpu", "worker": "only-there",
                            "retry": {"max_attempts": 2}}, python_envs=envs)
    assert info.value.field == "retry.from_scratch"


def test_a_non_run_stream_names_itself_in_its_topic() -> None:
    assert stream_event_topic("run-r0123456789ab", "RunStarted") == "event.r0123456789ab.RunStarted"
    assert stream_event_topic("env-gpu", "EnvAdded") == "event.env-gpu.EnvAdded"


def test_the_worker_catalog_reads_another_sys_path(tmp_path) -> None:
    site = tmp_path / "site-packages"
    for dist, text in (("their_workers-1.0", "[trainer.workers]\nppo = their:ppo\n\n"
                        "[trainer.resumes]\nppo = their:ppo\n"),
                       ("tests_too-1.0", "[trainer.test_workers]\nprobe = t:probe\n")):
        info = site / f"{dist}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.split('-')[0]}\n"
                                       "Version: 1.0\n")
        (info / "entry_points.txt").write_text(text)
    catalog = WorkerCatalog(path=[str(site)], where="of the environment 'gpu'")
    assert catalog.names() == ["ppo"] and catalog("ppo") and catalog.resumes("ppo")
    assert not catalog("cartpole")   # this interpreter's workers are not there
    assert "of the environment 'gpu'" in catalog.refusal("cartpole")
    assert WorkerCatalog(path=[str(site)], test_workers=True).names() == ["ppo", "probe"]
