"""Supervision and scheduling decisions with a fake clock."""

from __future__ import annotations

import dataclasses

from services.dispatcher.allocator import Capacity, Pending, plan
from services.dispatcher.inventory import fake_inventory
from services.dispatcher.supervision import BusHealth, Watch, check


def watch(**kw) -> Watch:
    args = dict(run_id="r1", started=0.0, heartbeat_timeout_s=5.0, startup_grace_s=10.0,
                time_limit_s=0.0, cancel_grace_s=2.0)
    args.update(kw)
    return Watch(**args)


def test_silence_is_acted_on_only_with_evidence_the_bus_works() -> None:
    w = watch()
    w.beat(1.0)
    assert check(w, 5.9, bus_seen_at=5.8) is None           # not overdue yet
    assert check(w, 7.0, bus_seen_at=5.9) is None           # overdue, but bus unproven since
    assert check(w, 7.0, bus_seen_at=None) is None
    action = check(w, 7.0, bus_seen_at=6.5)
    assert action is not None and action.signal == "TERM"
    assert action.plan.cause == "heartbeat_timeout"
    assert check(w, 8.0, bus_seen_at=8.0) is None            # within the grace
    kill = check(w, 9.1, bus_seen_at=9.0)
    assert kill is not None and kill.signal == "KILL"
    assert check(w, 20.0, bus_seen_at=20.0) is None          # SIGKILL is sent once


def test_start_up_gets_a_longer_grace() -> None:
    w = watch()
    assert check(w, 14.0, bus_seen_at=14.0) is None          # 5 + 10 s allowed before a beat
    assert check(w, 15.5, bus_seen_at=15.2) is not None


def test_time_limit_applies_even_without_bus() -> None:
    w = watch(time_limit_s=3.0)
    w.beat(2.9)
    action = check(w, 3.0, bus_seen_at=None)
    assert action is not None and action.plan.cause == "time_limit"


def test_bus_health_reports_outage_and_recovery_once() -> None:
    h = BusHealth(1.5, 0.0)
    h.seen(0.1)
    assert h.recovered(0.2) and not h.recovered(0.3)
    assert not h.recovered(5.0) and h.lost
    h.seen(6.0)
    assert h.recovered(6.1)


def test_plan_orders_by_priority_backfills_and_reports_reasons() -> None:
    inv = fake_inventory(2)
    pending = [Pending("big", 0, 1, 2, 0, 1), Pending("hi", 5, 3, 1, 0, 1),
               Pending("small", 0, 2, 1, 0, 1), Pending("huge", 9, 4, 3, 0, 1)]
    cap = Capacity(inv.gpus, set(), 4, 0, 0, 0)
    decisions = {d.run_id: d for d in plan(pending, cap)}
    assert decisions["huge"].action == "never" and "has 2" in decisions["huge"].reason
    assert decisions["hi"].action == "start" and decisions["small"].action == "wait"
    assert decisions["big"].action == "wait" and "more than are free" in decisions["big"].reason
    # "big" waits for GPUs and is ahead of "small": the free GPU is kept for it.
    assert "kept for big" in decisions["small"].reason
    cpu_only = plan([*pending, Pending("cpu", 0, 5, 0, 0, 1)], cap)
    assert [d.action for d in cpu_only if d.run_id == "cpu"] == ["start"]  # needs no GPU
    capped = plan(pending[:1], Capacity(inv.gpus, set(), 4, 0, 1, 1))
    assert capped[0].action == "wait" and "cap" in capped[0].reason
    cpu = plan([Pending("c", 0, 1, 0, 0, 3)], Capacity(inv.gpus, set(), 4, 2, 0, 1))
    assert cpu[0].action == "wait" and "CPU" in cpu[0].reason


def test_a_run_waiting_for_gpus_is_not_starved_by_smaller_runs_behind_it() -> None:
    """Two GPUs, one busy; a 2-GPU run waits ahead of a stream of 1-GPU runs: none of
    them takes the free GPU, and once the busy one is released the big run starts."""
    inv = fake_inventory(2)
    big = Pending("big", 0, 1, 2, 0, 1)
    stream = [Pending(f"s{i}", 0, 10 + i, 1, 0, 1) for i in range(5)]
    busy = {inv.gpus[0].uuid}
    waiting = plan([big, *stream], Capacity(inv.gpus, busy, 8, 1, 0, 1))
    assert [d.action for d in waiting] == ["wait"] * 6
    freed = plan([big, *stream], Capacity(inv.gpus, set(), 8, 0, 0, 0))
    assert freed[0].action == "start" and set(freed[0].gpus) == set(inv.uuids)
    # A higher-priority 1-GPU run still goes first: the order is the queue's.
    urgent = plan([big, Pending("urgent", 9, 20, 1, 0, 1)], Capacity(inv.gpus, busy, 8, 1, 0, 1))
    assert [(d.run_id, d.action) for d in urgent] == [("urgent", "start"), ("big", "wait")]


def test_a_run_asking_more_gpu_memory_than_any_gpu_has_is_unschedulable() -> None:
    inv = fake_inventory(2)  # 16 GiB each
    decisions = plan([Pending("fat", 0, 1, 1, 17 * 1024, 1), Pending("ok", 0, 2, 2, 16 * 1024, 1)],
                     Capacity(inv.gpus, set(), 8, 0, 0, 0))
    assert decisions[0].action == "never" and "16384" not in decisions[0].reason
    assert "only 0 here have that much memory" in decisions[0].reason
    assert decisions[1].action == "start"


def test_a_waiting_reason_does_not_change_with_the_number_of_free_gpus() -> None:
    """It is recorded as an event each time it changes: a long queue must not add one
    event per waiting run every time a GPU is taken or freed."""
    inv = fake_inventory(8)
    queue = [Pending("big", 0, 1, 8, 0, 1), *(Pending(f"w{i}", 0, 2 + i, 7, 0, 1) for i in range(3))]
    reasons = [{d.run_id: d.reason for d in plan(queue, Capacity(inv.gpus, busy, 8, 0, 0, 0))}
               for busy in ({g.uuid for g in inv.gpus[:n]} for n in (2, 3, 4))]
    assert reasons[0] == reasons[1] == reasons[2], reasons
    assert all("more than are free" in r for r in reasons[0].values())


def test_gpus_are_not_kept_for_a_run_that_waits_on_a_process_we_did_not_start() -> None:
    """g1 is used by someone's notebook: a 2-GPU run may wait for ever, and must not
    idle g0 for the 1-GPU runs behind it."""
    inv = fake_inventory(2)
    gpus = [inv.gpus[0], dataclasses.replace(inv.gpus[1], foreign_pids=(4242,))]
    decisions = plan([Pending("both", 0, 1, 2, 0, 1), Pending("one", 0, 2, 1, 0, 1)],
                     Capacity(gpus, set(), 8, 0, 0, 0))
    assert [(d.run_id, d.action) for d in decisions] == [("both", "wait"), ("one", "start")]
    assert decisions[1].gpus == (gpus[0].uuid,)
