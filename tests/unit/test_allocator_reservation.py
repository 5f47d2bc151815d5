"""The head of the queue (the first run that cannot start now) keeps the CPU slots
and GPUs it needs: later, smaller runs start only in what is left besides them."""

from __future__ import annotations

import dataclasses

import pytest

from services.dispatcher.allocator import Capacity, Pending, plan
from services.dispatcher.inventory import fake_inventory

# (id, priority, gpus, cpu_slots); submitted in list order
Queue = list[tuple[str, int, int, int]]


def decide(queue: Queue, cpu_total: int, cpu_busy: int, gpus: int = 0, gpus_busy: int = 0,
           foreign: tuple[int, ...] = ()) -> list[tuple[str, str, str]]:
    inv = fake_inventory(gpus).gpus
    inv = [dataclasses.replace(g, foreign_pids=(4242,)) if g.index in foreign else g
           for g in inv]
    pending = [Pending(rid, prio, seq, g, 0, cpu) for seq, (rid, prio, g, cpu)
               in enumerate(queue, start=1)]
    cap = Capacity(inv, {g.uuid for g in inv[:gpus_busy]}, cpu_total, cpu_busy, 0,
                   1 if cpu_busy or gpus_busy else 0)
    return [(d.run_id, d.action, d.reason) for d in plan(pending, cap)]


STREAM = [(f"s{i}", -5, 0, 1) for i in range(8)]


@pytest.mark.parametrize("queue, cpu_total, cpu_busy, gpus, gpus_busy, foreign, expected", [
    # The report: 2 slots, one busy; a priority-10 run asks both, eight priority -5 runs
    # ask one each: the free slot is kept for the big run, not taken by the stream.
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
     [("head", "wait", "more than are free"), ("one", "wait", "GPU(s): free ones are kept for head")]),
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
    got = decide(queue, cpu_total, cpu_busy, gpus, gpus_busy, foreign)
    assert [(rid, action) for rid, action, _ in got] == [(r, a) for r, a, _ in expected]
    for (rid, _, reason), (_, _, want) in zip(got, expected):
        assert want in reason, (rid, reason)

