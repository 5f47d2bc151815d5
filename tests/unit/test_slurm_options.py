"""The run config's ``launcher`` and ``slurm`` section (core/slurmoptions.py)."""

from __future__ import annotations

import pytest

from core.digest import config_digest
from core.errors import ValidationError
from core.runconfig import RunConfig


def test_left_out_of_the_canonical_config_when_default() -> None:
    out = RunConfig.from_map({}).to_map()
    assert "launcher" not in out and "slurm" not in out
    cfg = RunConfig.from_map({"launcher": "slurm", "slurm": {"partition": "gpu",
                                                             "extra": {"mem": "4G"}}})
    out = cfg.to_map()
    assert out["launcher"] == "slurm"
    assert out["slurm"] == {"partition": "gpu", "extra": {"mem": "4G"}}
    assert RunConfig.from_map(out) == cfg


def test_a_field_at_its_default_is_left_out_so_older_sections_keep_their_digest() -> None:
    older = RunConfig.from_map({"slurm": {"partition": "gpu"}})
    assert older.to_map()["slurm"] == {"partition": "gpu"}
    explicit = RunConfig.from_map({"slurm": {"partition": "gpu", "checkpoint_before_s": 120}})
    assert config_digest(explicit.to_map()) == config_digest(older.to_map())
    sooner = RunConfig.from_map({"slurm": {"partition": "gpu", "checkpoint_before_s": 300}})
    assert sooner.to_map()["slurm"]["checkpoint_before_s"] == 300
    assert RunConfig.from_map(sooner.to_map()) == sooner


@pytest.mark.parametrize("data, field, words", [
    ({"launcher": "k8s"}, "launcher", "must be one of"),
    ({"slurm": []}, "slurm", "must be a map"),
    ({"slurm": {"nodes": 2}}, "slurm.nodes", "not a known config field"),
    ({"slurm": {"partition": "a b"}}, "slurm.partition", "command line"),
    ({"slurm": {"account": 3}}, "slurm.account", "must be a string"),
    ({"slurm": {"time_limit": "soon"}}, "slurm.time_limit", "SLURM time"),
    ({"slurm": {"extra": {"output": "/etc/x"}}}, "slurm.extra.output", "not an allowed"),
    ({"slurm": {"extra": {"signal": "B:USR1"}}}, "slurm.extra.signal", "not an allowed"),
    ({"slurm": {"checkpoint_before_s": -1}}, "slurm.checkpoint_before_s", "0-65535"),
    ({"slurm": {"checkpoint_before_s": "2m"}}, "slurm.checkpoint_before_s", "integer"),
    ({"slurm": {"checkpoint_before_s": True}}, "slurm.checkpoint_before_s", "integer"),
    ({"slurm": {"extra": {"mem": "1G; rm -rf /"}}}, "slurm.extra.mem", "command line"),
])
def test_bad_values_name_the_field_and_why(data: dict, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RunConfig.from_map(data)
    assert exc.value.field == field and words in str(exc.value)


@pytest.mark.parametrize("limit", ["90", "30:00", "2:00:00", "1-12", "1-02:00", "1-02:00:00"])
def test_slurm_time_formats(limit: str) -> None:
    assert RunConfig.from_map({"slurm": {"time_limit": limit}}).slurm.time_limit == limit
