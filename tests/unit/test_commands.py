"""Decisions of the registry's commands (pure)."""

from __future__ import annotations

import hashlib

import pytest

from core import commands as c
from core import events as ev
from core.digest import canonical_json, legacy_digest
from core.errors import IllegalTransition, NotFound, ResourceBusy, ValidationError
from core.runstate import apply


def pending():
    return apply(None, ev.RunSubmitted("r1", "d", {"a": 1}, 0, "me"), 1, 1.0)


def test_cancel_of_a_pending_run_is_immediate() -> None:
    out = c.decide_cancel(pending(), c.RequestCancel("r1", "me", "no"))
    assert [e.TYPE for e in out] == ["CancelRequested", "RunCancelled"]


def test_cancel_of_a_terminal_run_is_refused() -> None:
    s = apply(pending(), ev.RunCancelled("r1", "me", "x", None, None), 2, 2.0)
    with pytest.raises(IllegalTransition):
        c.decide_cancel(s, c.RequestCancel("r1"))


def test_claim_refuses_held_and_duplicate_gpus() -> None:
    with pytest.raises(ResourceBusy) as err:
        c.decide_claim(pending(), c.ClaimGpus("r1", ("G0",), "d"), {"G0": "r9"})
    assert err.value.details["holder"] == "r9"
    with pytest.raises(ValidationError):
        c.decide_claim(pending(), c.ClaimGpus("r1", ("G0", "G0"), "d"), {})
    with pytest.raises(NotFound):
        c.decide_claim(None, c.ClaimGpus("r1", ("G0",), "d"), {})


def test_finish_releases_gpus_with_the_terminal_event() -> None:
    s = apply(pending(), ev.GpusClaimed("r1", ("G0",), "d"), 2, 2.0)
    out = c.decide_finish(s, c.FinishRun("r1", "failed", cause="spawn_error", message="x"))
    assert [e.TYPE for e in out] == ["RunFailed", "GpusReleased"]
    with pytest.raises(ValidationError) as err:
        c.decide_finish(s, c.FinishRun("r1", "failed", cause="bored"))
    assert err.value.field == "cause"
    with pytest.raises(ValidationError):
        c.decide_finish(s, c.FinishRun("r1", "exploded"))


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../b", "", "a\\b"])
def test_artifact_paths_must_stay_inside_the_run_directory(path: str) -> None:
    with pytest.raises(ValidationError) as err:
        c.decide_artifact(pending(), c.RegisterArtifact("r1", "video", path, 1))
    assert err.value.field == "path"


def test_artifact_meta_is_at_most_16_kib() -> None:
    """(A list of a run's artifacts must fit a reply: meta is bounded.)"""
    s = pending()  # (the decision checks the fields; the state machine, the status)
    ok = c.decide_artifact(s, c.RegisterArtifact("r1", "video", "a.mp4", 1,
                                                 meta={"x": "y" * 16_000}))
    assert ok and ok[0].meta["x"] == "y" * 16_000
    with pytest.raises(ValidationError) as err:
        c.decide_artifact(s, c.RegisterArtifact("r1", "video", "a.mp4", 1,
                                                meta={"x": "y" * 17_000}))
    assert err.value.field == "meta" and "16384 bytes" in str(err.value)


def test_config_must_be_json_compatible_and_small() -> None:
    with pytest.raises(ValidationError):
        c.validate_config(c.SubmitRun(config={"name": b"bytes"}))
    with pytest.raises(ValidationError):
        c.validate_config(c.SubmitRun(config={"name": "y" * 70_000}))
    with pytest.raises(ValidationError) as err:
        c.validate_config(c.SubmitRun(config={"priority": 5000}))
    assert err.value.field == "priority"


def test_whole_floats_in_hyperparameters_do_not_change_the_digest() -> None:
    """A Struct cannot tell 1.0 from 1: JSON text with 1.0 and a Struct with 1 are one
    config. Configs without such numbers keep the digest they always had."""
    def digest(config: dict) -> str:
        return c.decide_submit(c.SubmitRun({}), c.validate_config(c.SubmitRun(config=config)),
                               "r1")[0].digest
    as_json = {"seed": 3, "hyperparameters": {"gamma": 1.0, "arch": [64.0, 64], "lr": 0.5}}
    as_struct = {"seed": 3, "hyperparameters": {"gamma": 1, "arch": [64, 64], "lr": 0.5}}
    assert digest(as_json) == digest(as_struct)
    assert digest(as_json) != digest({**as_struct, "hyperparameters": {"gamma": 1.5}})
    plain = c.validate_config(c.SubmitRun(config={"seed": 3, "hyperparameters": {"lr": 0.5}}))
    old = hashlib.sha256(canonical_json(plain.canonical_map()).encode()).hexdigest()
    assert digest({"seed": 3, "hyperparameters": {"lr": 0.5}}) == old
    assert legacy_digest(plain.canonical_map()) is None
    whole = c.validate_config(c.SubmitRun(config=as_json)).canonical_map()
    assert legacy_digest(whole) == hashlib.sha256(canonical_json(whole).encode()).hexdigest()


def test_defaults_are_applied_before_the_digest() -> None:
    explicit = {"env": "CartPole-v1", "seed": 0, "worker": "cartpole", "tags": ["b", "a"],
                "resources": {"gpus": 0, "cpu_slots": 1}}
    a = c.decide_submit(c.SubmitRun({}), c.validate_config(c.SubmitRun(config=explicit)), "r1")
    b = c.decide_submit(c.SubmitRun({}), c.validate_config(
        c.SubmitRun(config={"tags": ["a", "b"]})), "r1")
    assert a[0].digest == b[0].digest and a[0].config == b[0].config


def test_artifact_paths_are_at_most_1024_characters_without_control_characters() -> None:
    ok = c.decide_artifact(pending(), c.RegisterArtifact("r1", "video", "a/" + "x" * 1022, 1))
    assert len(ok) == 1
    for kind, path, field in (("video", "a/" + "x" * 1023, "path"),
                              ("video", "x" * 5000, "path"),
                              ("video", "v\x07.mp4", "path"), ("video", "v\x00.mp4", "path"),
                              ("video", "fake\nrow.mp4", "path"), ("vid\x1b[2J", "a.mp4", "kind")):
        with pytest.raises(ValidationError) as err:
            c.decide_artifact(pending(), c.RegisterArtifact("r1", kind, path, 1))
        assert err.value.field == field, (kind, path)
