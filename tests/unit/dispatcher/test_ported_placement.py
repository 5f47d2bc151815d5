"""Placement as decisions of one scheduling pass (ported from
tests/unit/test_allocator_reservation.py and the scheduling part of
tests/unit/test_supervision.py, which called the old allocator's ``plan``): the head
of the queue (the first run that cannot start now) keeps the CPU slots and GPUs it
needs, later smaller runs start only in what is left besides them; nothing is kept
for a run that waits on a process we did not start; a run that can never fit fails
unschedulable; a waiting reason does not change with the number of free GPUs.

Each pass is the one the start-up snapshot gives: every queued run is PENDING in it
(so one pass decides them all), and what is busy is held by a RUNNING run of ours in
it (recovering, it holds its CPU slots and GPUs)."""

from __future__ import annotations

import dataclasses

import pytest

from core.commands import ClaimGpus, FinishRun, RecordWaiting
from services.dispatcher.decide.gpus import GpuSource, Inventory
from services.dispatcher.decide.inputs import ExitRecord, GpusRead, RunView
from tests.unit.dispatcher.driver import Driver, commands, folder

# (id, priority, gpus, cpu_slots); submitted in list order
Queue = list[tuple[str, int, int, int]]
MIB = 1024


def booted(queue: Queue, cpu_total: int, cpu_busy: int = 0, gpus: int = 0, gpus_busy: int = 0,
           foreign: tuple[int, ...] = (), max_runs: int = 0,
           gpu_memory_mb: tuple[int, ...] = ()) -> tuple[Driver, list]:
    """A dispatcher with ``cpu_total`` CPU slots and ``gpus`` GPUs (those at the indexes
    ``foreign`` used by a process we did not start), a RUNNING run of ours holding
    ``cpu_busy`` slots and the first ``gpus_busy`` GPUs (a run holds at least one slot:
    the machine gets one more for it when ``cpu_busy`` is 0), and ``queue`` PENDING:
    the dispatcher and the effects of its first pass."""
    extra = 1 if gpus_busy and not cpu_busy else 0
    d = Driver(cpu_slots=cpu_total + extra, gpu_count=gpus, max_runs=max_runs)
    inv = [dataclasses.replace(g, foreign_pids=(4242,)) if g.index in foreign else g
           for g in d.state.inventory.gpus]
    if gpu_memory_mb:
        inv = [dataclasses.replace(g, memory_total=mb * MIB**2, memory_free=mb * MIB**2)
               for g, mb in zip(inv, gpu_memory_mb)]
    if tuple(inv) != d.state.inventory.gpus:
        d.feed(GpusRead(Inventory(tuple(inv), GpuSource.FAKE)))
    views = []
    if cpu_busy or gpus_busy:
        views.append(RunView("busy", "RUNNING", {"resources": {
            "cpu_slots": max(cpu_busy, 1), "gpus": gpus_busy}}, 1, submitted_seq=1,
            gpus=d.state.inventory.uuids[:gpus_busy]))
    for seq, (rid, prio, g, cpu) in enumerate(queue, start=2):
        views.append(RunView(rid, "PENDING", {"resources": {"gpus": g, "cpu_slots": cpu}},
                             seq, priority=prio, submitted_seq=seq))
    return d, d.boot(*views)


def decisions(effects: list) -> list[tuple[str, str, str]]:
    """(run, start | wait | never, reason) of one pass, in the order sent."""
    out = []
    for command in (c.command for c in effects if hasattr(c, "command")):
        if isinstance(command, ClaimGpus):
            out.append((command.run_id, "start", ""))
        elif isinstance(command, RecordWaiting):
            out.append((command.run_id, "wait", command.reason))
        elif isinstance(command, FinishRun) and command.cause == "unschedulable":
            out.append((command.run_id, "never", command.message))
    return out


def one_pass(queue: Queue, cpu_total: int, cpu_busy: int = 0, **kw) -> list[tuple[str, str, str]]:
    return decisions(booted(queue, cpu_total, cpu_busy, **kw)[1])


def assert_decided(got: list[tuple[str, str, str]], expected: list[tuple[str, str, str]]) -> None:
    assert [(rid, action) for rid, action, _ in got] == [(r, a) for r, a, _ in expected]
    for (rid, _, reason), (_, _, want) in zip(got, expected):
        assert want in reason, (rid, reason)


STREAM = [(f"s{i}", -5, 0, 1) for i in range(8)]


@pytest.mark.parametrize("queue, cpu_total, cpu_busy, gpus, gpus_busy, foreign, expected", [
    # 2 slots, one busy; a priority-10 run asks both, eight priority -5 runs ask one
    # each: the free slot is kept for the big run, not taken by the stream.
    ([("big", 10, 0, 2), *STREAM], 2, 1, 0, 0, (),
     [("big", "wait", "needs 2 CPU slot(s), more than are free")]
     + [(f"s{i}", "wait", "needs 1 CPU slot(s): free ones are kept for big") for i in range(8)]),
    # Once the busy slot is free, the big run starts; the stream waits behind it.
    ([("big", 10, 0, 2), *STREAM[:2]], 2, 0, 0, 0, (),
     [("big", "start", ""), ("s0", "wait", "more than are free"),
      ("s1", "wait", "more than are free")]),
    # Backfill: the head waits for a GPU; a CPU-only run fits besides the head's 2
    # slots and starts, the next one would take them and waits.
    ([("head", 5, 2, 2), ("fits", 0, 0, 1), ("toobig", 0, 0, 2)], 4, 0, 2, 1, (),
     [("head", "wait", "needs 2 GPU(s), more than are free"), ("fits", "start", ""),
      ("toobig", "wait", "needs 2 CPU slot(s): free ones are kept for head")]),
    # The head's free GPU is kept too: a 1-GPU run behind it waits.
    ([("head", 5, 2, 1), ("one", 0, 1, 1)], 4, 0, 2, 1, (),
     [("head", "wait", "more than are free"),
      ("one", "wait", "GPU(s): free ones are kept for head")]),
    # More slots than the machine has: never, and nothing is kept for it.
    ([("never", 10, 0, 3), ("s0", 0, 0, 1), ("s1", 0, 0, 1)], 2, 0, 0, 0, (),
     [("never", "never", "asks for 3 CPU slots but there are 2"), ("s0", "start", ""),
      ("s1", "start", "")]),
    # A head waiting for a GPU that someone else's process holds keeps nothing; the next
    # run that waits (on CPU) becomes the head and keeps its slots.
    ([("foreign", 9, 2, 2), ("s0", 0, 0, 1), ("two", 0, 0, 2), ("s1", 0, 0, 1)], 2, 0, 2, 0, (1,),
     [("foreign", "wait", "no foreign process"), ("s0", "start", ""),
      ("two", "wait", "needs 2 CPU slot(s), more than are free"),
      ("s1", "wait", "needs 1 CPU slot(s): free ones are kept for two")]),
    # A higher-priority small run still goes first: the order is the queue's.
    ([("big", 5, 0, 2), ("urgent", 9, 0, 1)], 2, 1, 0, 0, (),
     [("urgent", "start", ""), ("big", "wait", "more than are free")]),
])
def test_the_head_keeps_what_it_needs_and_backfill_cannot_delay_it(
        queue: Queue, cpu_total: int, cpu_busy: int, gpus: int, gpus_busy: int,
        foreign: tuple[int, ...], expected: list[tuple[str, str, str]]) -> None:
    assert_decided(one_pass(queue, cpu_total, cpu_busy, gpus=gpus, gpus_busy=gpus_busy,
                            foreign=foreign), expected)


def test_the_pass_orders_by_priority_backfills_and_gives_reasons() -> None:
    queue = [("big", 0, 2, 1), ("small", 0, 1, 1), ("hi", 5, 1, 1), ("huge", 9, 3, 1)]
    assert_decided(one_pass(queue, 4, gpus=2), [
        ("huge", "never", "asks for 3 GPU(s) but this machine has 2"), ("hi", "start", ""),
        ("big", "wait", "needs 2 GPU(s), more than are free"),
        ("small", "wait", "GPU(s): free ones are kept for big")])
    # a CPU-only run behind them needs no GPU: it starts
    got = one_pass([*queue, ("cpu", 0, 0, 1)], 4, gpus=2)
    assert [a for r, a, _ in got if r == "cpu"] == ["start"]
    assert_decided(one_pass([("big", 0, 2, 1)], 4, 1, gpus=2, max_runs=1),
                   [("big", "wait", "the concurrent-run cap (1) is reached")])
    assert_decided(one_pass([("c", 0, 0, 3)], 4, 2, gpus=2),
                   [("c", "wait", "needs 3 CPU slot(s), more than are free")])


def test_a_run_waiting_for_gpus_is_not_starved_by_smaller_runs_behind_it() -> None:
    """Two GPUs, one busy; a 2-GPU run waits ahead of a stream of 1-GPU runs: none of
    them takes the free GPU, and once the busy one is released the big run starts."""
    queue = [("big", 0, 2, 1), *((f"s{i}", 0, 1, 1) for i in range(5))]
    d, effects = booted(queue, 8, 1, gpus=2, gpus_busy=1)
    assert [a for _, a, _ in decisions(effects)] == ["wait"] * 6
    d.answer(effects, only=RecordWaiting)
    effects = d.feed(folder("busy", exit=ExitRecord(0, None)))  # the busy run's end, read
    assert [type(c.command) for c in effects if hasattr(c, "command")][:2] == \
        [FinishRun, ClaimGpus]  # its end first, in the same batch
    (claim,) = commands(effects, ClaimGpus)
    assert claim.run_id == "big" and set(claim.gpu_uuids) == {"GPU-0", "GPU-1"}
    # A higher-priority 1-GPU run still goes first: the order is the queue's.
    assert_decided(one_pass([("big", 0, 2, 1), ("urgent", 9, 1, 1)], 8, 1, gpus=2,
                            gpus_busy=1),
                   [("urgent", "start", ""), ("big", "wait", "more than are free")])


def test_a_run_asking_more_gpu_memory_than_any_gpu_has_is_unschedulable() -> None:
    d = Driver(gpu_count=2)  # 16 GiB each
    d.boot()
    (finish,) = commands(d.submit("fat", resources={"gpus": 1, "min_gpu_memory_mb": 17 * MIB}),
                         FinishRun)
    assert finish.cause == "unschedulable" and "16384" not in finish.message
    assert "only 0 here have that much memory" in finish.message
    (claim,) = commands(d.submit("ok", resources={"gpus": 2, "min_gpu_memory_mb": 16 * MIB}),
                        ClaimGpus)
    assert claim.run_id == "ok"


def test_a_waiting_reason_does_not_change_with_the_number_of_free_gpus() -> None:
    """It is recorded as an event each time it changes: a long queue must not add one
    event per waiting run every time a GPU is taken or freed."""
    queue = [("big", 0, 8, 1), *((f"w{i}", 0, 7, 1) for i in range(3))]
    reasons = [{r: why for r, _, why in one_pass(queue, 8, gpus=8, gpus_busy=n)}
               for n in (2, 3, 4)]
    assert reasons[0] == reasons[1] == reasons[2], reasons
    assert set(reasons[0]) == {"big", "w0", "w1", "w2"}
    assert all("more than are free" in r for r in reasons[0].values())


def test_gpus_are_not_kept_for_a_run_that_waits_on_a_process_we_did_not_start() -> None:
    """GPU-1 is used by someone's notebook: a 2-GPU run may wait for ever, and must not
    idle GPU-0 for the 1-GPU runs behind it."""
    d, effects = booted([("both", 0, 2, 1), ("one", 0, 1, 1)], 8, gpus=2, foreign=(1,))
    assert [(r, a) for r, a, _ in decisions(effects)] == [("both", "wait"), ("one", "start")]
    assert commands(effects, ClaimGpus)[0].gpu_uuids == ("GPU-0",)
