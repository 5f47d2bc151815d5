"""The registry's answers to the dispatcher's calls, as decisions (ported from
tests/unit/test_dispatcher_replies.py, which drove the old service's handlers): an
end not applied stays to be sent again and is counted only once applied; an end
refused for good is done with, once; a claim of ours we never heard answered is
started only while the registry still shows it DISPATCHING and we do not supervise
it; the seq of the run read then is the one later events are judged by."""

from __future__ import annotations

from core import events as ev
from core.commands import FinishRun
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import (CommittedEvent, ExitRecord, Replied, ReplyKind,
                                               RunView, ShimEnded)
from services.dispatcher.decide.phases import Phase
from tests.unit.dispatcher.driver import Driver, commands, folder, logged, of


def ended(d: Driver, run_id: str) -> list:
    """A started run's worker exited 0: the effects of its folder read (its FinishRun)."""
    d.feed(ShimEnded(run_id, 0))
    return d.feed(folder(run_id, exit=ExitRecord(0, None)))


def test_a_finish_not_applied_is_not_counted_and_is_counted_once_applied(d: Driver) -> None:
    d.start("r1")
    effects = ended(d, "r1")
    after = d.answer(effects, ReplyKind.NOT_APPLIED, code="internal", message="disk I/O error")
    assert d.phase("r1") is Phase.ENDING and d.state.stats.finished == 0
    assert not of(after, fx.ForgetRun) and d.state.retry_due
    effects = d.tick(0.3)  # the sweep sends it again
    assert [f.run_id for f in commands(effects, FinishRun)] == ["r1"]
    after = d.answer(effects)
    assert d.phase("r1") is None and d.state.stats.finished == 1
    assert of(after, fx.ForgetRun) == [fx.ForgetRun("r1")]


def test_a_finish_refused_for_good_is_done_with_and_counted_once(d: Driver) -> None:
    d.start("r1")
    (call,) = [c for c in fx.calls(ended(d, "r1")) if isinstance(c.command, FinishRun)]
    refused = Replied(call.tag, ReplyKind.REFUSED, "failed_precondition",
                      "run r1 is COMPLETED: RunCompleted is not allowed")
    d.feed(refused)
    assert d.feed(refused) == []  # the same answer again: nothing left to settle
    assert d.phase("r1") is None and d.state.stats.finished == 1


def test_a_found_claim_is_not_started_once_the_registry_shows_it_no_longer_dispatching(
        d: Driver) -> None:
    (query,) = fx.calls(d.event(ev.GpusClaimed("r4", (), "dispatcher")))
    effects = d.feed(Replied(query.tag, ReplyKind.APPLIED,
                             run=RunView("r4", "CANCELLED", {}, 9, submitted_seq=1)))
    assert not of(effects, fx.StartWorker) and d.phase("r4") is None
    assert d.state.stats.started == 0


def test_a_claim_of_ours_for_a_run_we_supervise_asks_nothing_and_starts_nothing(
        d: Driver) -> None:
    d.start("r4")
    started = d.state.stats.started
    effects = d.event(ev.GpusClaimed("r4", (), "dispatcher"))
    assert not fx.calls(effects) and not of(effects, fx.StartWorker)
    assert d.phase("r4") is Phase.RUNNING and d.state.stats.started == started


def test_a_found_claim_notes_the_runs_seq_and_older_events_are_ignored(d: Driver) -> None:
    (query,) = fx.calls(d.event(ev.GpusClaimed("r4", ("GPU-a",), "dispatcher")))
    effects = d.feed(Replied(query.tag, ReplyKind.APPLIED,
                             run=RunView("r4", "DISPATCHING", {}, 9, submitted_seq=1,
                                         gpus=("GPU-a",))))
    assert [(s.run_id, s.gpus) for s in of(effects, fx.StartWorker)] == [("r4", ("GPU-a",))]
    assert d.state.known_seq["r4"] == 9
    cancel = ev.CancelRequested("r4", "u", "stop")
    d.feed(CommittedEvent(9, d.state.wall, cancel))
    assert d.state.runs["r4"].cancel is None  # reflected in the run read already
    d.feed(CommittedEvent(10, d.state.wall, cancel))
    assert d.state.runs["r4"].cancel is not None


def test_an_answer_not_applied_is_logged_as_retried_and_a_refusal_as_not(d: Driver) -> None:
    """(The shell's LogWriter throttles the retried ones: test_ported_refusal_log.py.)"""
    d.start("r1")
    effects = ended(d, "r1")
    (line,) = logged(d.answer(effects, ReplyKind.NOT_APPLIED, code="resource_exhausted"),
                     "registry.refused")
    assert (line.get("method"), line.get("run_id"), line.get("code"), line.get("retried")) == \
        ("finish", "r1", "resource_exhausted", True)
    (line,) = logged(d.answer(d.tick(0.3), ReplyKind.REFUSED, code="failed_precondition"),
                     "registry.refused")
    assert (line.get("method"), line.get("code"), line.get("retried")) == \
        ("finish", "failed_precondition", False)
