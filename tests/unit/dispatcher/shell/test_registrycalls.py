"""registrycalls.replied and view_of: a registry answer (a result map or the typed
error core.errors gives it) as the Replied the decision core reads."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import (Conflict, Expired, IllegalTransition, Internal, NotFound,
                         OrchestratorError, ResourceBusy, StorageFull, ValidationError)
from services.dispatcher.decide.inputs import Replied, ReplyKind, RunView
from services.dispatcher.decide.scheduling import ExperimentLimits
from services.dispatcher.shell.registrycalls import replied, view_of

RUN: dict[str, Any] = {
    "run_id": "r1", "status": "RUNNING", "config": {"name": "t", "steps": 10},
    "last_seq": 17, "priority": 3, "submitted_seq": 4, "gpus": ["GPU-0", "GPU-1"],
    "cancel_requested_by": "me", "cancel_reason": "enough", "cancel_requested_at": 1234.5,
    "host": "host-1", "gpus_held": True,   # a run_view's other fields, not read
}


def test_a_run_map_is_read_as_a_run_view() -> None:
    assert view_of(RUN) == RunView("r1", "RUNNING", {"name": "t", "steps": 10}, 17, 3, 4,
                                   ("GPU-0", "GPU-1"), "me", "enough", 1234.5)


def test_a_run_map_without_its_optional_fields_gets_their_defaults() -> None:
    assert view_of({"run_id": "r1"}) == RunView("r1", "", {}, 0, 0, 0, (), "", "", None)
    assert view_of({"run_id": "r1", "status": None, "config": None, "last_seq": None,
                    "gpus": None, "cancel_requested_at": None}) == \
        RunView("r1", "", {}, 0, 0, 0, (), "", "", None)


def test_a_cancel_time_is_read_from_an_int_and_nothing_else() -> None:
    assert view_of({"run_id": "r1", "cancel_requested_at": 7}).cancel_requested_at == 7.0
    assert view_of({"run_id": "r1", "cancel_requested_at": "7"}).cancel_requested_at is None


def test_a_config_that_is_no_map_is_read_as_empty() -> None:
    assert view_of({"run_id": "r1", "config": ["steps", 10]}).config == {}


@pytest.mark.parametrize("run", [None, "r1", ["r1"], {}, {"run_id": ""},
                                 {"run_id": None, "status": "RUNNING"}, {"status": "RUNNING"}])
def test_what_names_no_run_is_no_run_view(run: Any) -> None:
    assert view_of(run) is None


# --- applied -----------------------------------------------------------------------------
def test_an_applied_answer_with_no_map_is_applied() -> None:
    for result in (None, 42, [1, 2], "pong"):
        assert replied(5, result) == Replied(5, ReplyKind.APPLIED)


def test_an_applied_map_carries_its_run() -> None:
    reply = replied(5, {"run": RUN, "seq": 18})
    assert reply.kind is ReplyKind.APPLIED and reply.tag == 5
    assert reply.run == view_of(RUN)
    assert (reply.runs, reply.head_seq, reply.more, reply.code) == ((), 0, False, "")


def test_a_snapshot_page_carries_its_runs_in_order_its_head_and_whether_more_follow() -> None:
    other = dict(RUN, run_id="r2", status="PENDING", gpus=[])
    reply = replied(6, {"runs": [RUN, other], "head_seq": 99, "more": True})
    assert [r.run_id for r in reply.runs] == ["r1", "r2"]
    assert reply.runs[1] == view_of(other)
    assert (reply.head_seq, reply.more, reply.run) == (99, True, None)


def test_malformed_runs_of_a_page_are_skipped() -> None:
    reply = replied(6, {"runs": [RUN, None, "r9", {"status": "RUNNING"}, {"run_id": ""},
                                 dict(RUN, run_id="r2")], "head_seq": 3})
    assert [r.run_id for r in reply.runs] == ["r1", "r2"]
    assert reply.head_seq == 3


@pytest.mark.parametrize("runs", [None, {"r1": RUN}, "r1", 3])
def test_runs_that_are_no_list_are_none(runs: Any) -> None:
    assert replied(6, {"runs": runs}).runs == ()


def test_a_run_that_is_no_run_map_is_none() -> None:
    assert replied(6, {"run": "r1"}).run is None
    assert replied(6, {"run": {"status": "RUNNING"}}).run is None


@pytest.mark.parametrize("bad", [{"last_seq": "seventeen"}, {"priority": "high"},
                                 {"submitted_seq": {"seq": 4}}, {"gpus": 2}])
def test_a_run_map_with_a_mistyped_field_is_skipped_not_crashed_on(bad: dict[str, Any]) -> None:
    reply = replied(6, {"runs": [RUN, dict(RUN, run_id="r2", **bad)]})
    assert [r.run_id for r in reply.runs] == ["r1"]


def test_a_run_map_whose_gpus_are_no_list_is_skipped() -> None:
    reply = replied(6, {"runs": [RUN, dict(RUN, run_id="r2", gpus="GPU-0")]})
    assert [r.run_id for r in reply.runs] == ["r1"]


def test_a_mistyped_head_seq_is_no_crash() -> None:
    assert replied(6, {"runs": [], "head_seq": "ninety-nine"}).kind is ReplyKind.APPLIED


# --- refusals ------------------------------------------------------------------------------
def test_a_busy_gpu_names_the_gpu_and_the_run_holding_it() -> None:
    busy = ResourceBusy("GPU-1 is held by r9", gpu_uuid="GPU-1", holder="r9")
    assert replied(7, busy) == Replied(7, ReplyKind.BUSY, "resource_busy",
                                       "GPU-1 is held by r9", gpu_uuid="GPU-1", holder="r9")


def test_a_busy_gpu_without_details_names_none() -> None:
    reply = replied(7, ResourceBusy("held"))
    assert (reply.kind, reply.gpu_uuid, reply.holder) == (ReplyKind.BUSY, "", "")
    wire = OrchestratorError.from_dict({"code": "resource_busy", "message": "held",
                                        "details": {"gpu_uuid": None, "holder": "r9"}})
    assert (replied(7, wire).kind, replied(7, wire).gpu_uuid, replied(7, wire).holder) == \
        (ReplyKind.BUSY, "", "r9")


@pytest.mark.parametrize("error", [Internal("its batch failed"), StorageFull("disk full"),
                                   Expired("read after its deadline")])
def test_what_was_not_applied_is_not_applied(error: OrchestratorError) -> None:
    assert replied(8, error) == Replied(8, ReplyKind.NOT_APPLIED, error.code, error.message)


def test_a_wire_internal_error_is_not_applied() -> None:
    error = OrchestratorError.from_dict({"code": "internal", "message": "disk I/O error"})
    assert replied(8, error) == Replied(8, ReplyKind.NOT_APPLIED, "internal", "disk I/O error")


@pytest.mark.parametrize("error", [
    IllegalTransition("r1", "SUCCEEDED", "RunFailed"), NotFound("no run r1"),
    ValidationError("path", "must be relative"), Conflict("the stream moved on"),
    OrchestratorError.from_dict({"code": "from_a_newer_registry", "message": "?"})])
def test_any_other_error_is_refused_with_its_code_and_message(
        error: OrchestratorError) -> None:
    assert replied(9, error) == Replied(9, ReplyKind.REFUSED, error.code, error.message)
    assert error.code and error.message


def test_a_snapshot_page_gives_its_as_of_seq_its_runs_experiment_and_the_limits() -> None:
    reply = replied(6, {"runs": [dict(RUN, experiment="noise")], "as_of_seq": 41,
                        "more": False, "total": 1,
                        "experiments": [{"name": "noise", "max_concurrent": 2,
                                         "priority": None},
                                        {"name": "first", "max_concurrent": 0, "priority": 9},
                                        {"name": "bad", "max_concurrent": "2"},
                                        {"name": "worse", "max_concurrent": 1,
                                         "priority": True}, "nonsense"]})
    assert reply.head_seq == 41 and reply.runs[0].experiment == "noise"
    assert reply.experiments == (ExperimentLimits("noise", 2, None),
                                 ExperimentLimits("first", 0, 9))


def test_an_experiments_answer_gives_its_limits() -> None:
    reply = replied(7, {"experiment": {"name": "noise", "max_concurrent": 3, "priority": 1,
                                       "cells": []}, "runs": {"PENDING": 2}})
    assert reply.experiments == (ExperimentLimits("noise", 3, 1),) and reply.runs == ()
