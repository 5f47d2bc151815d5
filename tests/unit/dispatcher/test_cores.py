"""Pinning as decisions: which cores a starting run gets (decide/cores.py), handed to
StartWorker and kept in its record while it holds its slots."""

from __future__ import annotations

from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.cores import choose
from services.dispatcher.decide.inputs import ExitRecord, RunView, WorkerRecord
from tests.unit.dispatcher.driver import Driver, folder, logged, of, worker


def booted(cpu_slots: int, cores: tuple[int, ...]) -> Driver:
    d = Driver(cpu_slots=cpu_slots, cores=cores)
    d.boot()
    return d


def started(d: Driver, run_id: str, slots: int) -> fx.StartWorker:
    effects = d.settle(d.submit(run_id, resources={"cpu_slots": slots}))
    (start,) = [s for s in of(effects, fx.StartWorker) if s.run_id == run_id]
    return start


def test_choose_takes_the_lowest_free_cores_and_says_why_it_does_not_pin() -> None:
    assert choose((0, 1, 2, 3), 4, {0, 2}, 2) == ((1, 3), "")
    assert choose((4, 5, 6, 7), 4, (), 1) == ((4,), "")       # the dispatcher's own mask
    cores, why = choose((0, 1), 4, (), 1)
    assert cores == () and "TRAINER_CPU_SLOTS (4) exceeds the 2 CPU(s)" in why
    cores, why = choose((0, 1), 2, (), 1, unread=1)
    assert cores == () and "1 run(s) adopted after the restart are still being read" in why
    cores, why = choose((0, 1, 2), 3, {0, 1}, 2)
    assert cores == () and "1 of the dispatcher's CPUs are free" in why
    assert choose((), 1, (), 1)[0] == ()


def test_concurrent_runs_get_distinct_cores_and_an_ended_run_gives_its_back() -> None:
    d = booted(4, (0, 1, 2, 3))
    assert started(d, "a", 2).cores == (0, 1)
    assert started(d, "b", 1).cores == (2,)
    assert d.state.runs["a"].cores == (0, 1)
    d.settle(d.feed(folder("a", worker=worker(100))))
    d.settle(d.feed(folder("a", worker=worker(100), exit=ExitRecord(0, None))))
    assert "a" not in d.state.runs           # its end recorded: its cores are free again
    assert started(d, "c", 2).cores == (0, 1)
    assert started(d, "d", 1).cores == (3,)


def test_more_slots_than_cores_pins_no_run() -> None:
    d = booted(8, (0, 1))
    start = started(d, "a", 1)
    assert start.cores == () and d.state.runs["a"].cores == ()


def test_an_adopted_run_keeps_the_cores_its_worker_record_names() -> None:
    adopted = RunView("old", "RUNNING", {"resources": {"cpu_slots": 1}}, 1, submitted_seq=1)
    d = Driver(cpu_slots=2, cores=(0, 1))
    d.boot(adopted)
    record = WorkerRecord(50, 50, 12345.0, None, (0,))   # worker.json: "cores": [0]
    d.settle(d.feed(folder("old", worker=record, worker_alive=True, shim_alive=True)))
    assert d.state.runs["old"].cores == (0,)
    (start,) = of(d.settle(d.submit("new", resources={"cpu_slots": 1})), fx.StartWorker)
    assert start.cores == (1,)
    effects = d.settle(d.submit("third", resources={"cpu_slots": 1}))
    assert not of(effects, fx.StartWorker)                 # no slot left (2 of 2 held)
    assert not logged(effects, "run.not_pinned")


def test_a_run_started_while_adopted_runs_are_read_is_not_pinned() -> None:
    """After a restart the snapshot's pending run is claimed at once, before the folders
    of the running ones say which cores they hold: it is not pinned, rather than risk
    sharing theirs."""
    d = Driver(cpu_slots=2, cores=(0, 1))
    effects = d.boot(RunView("old", "RUNNING", {}, 1, submitted_seq=1),
                     RunView("new", "PENDING", {}, 2, submitted_seq=2))
    effects = d.answer(effects)
    (start,) = of(effects, fx.StartWorker)
    assert start.run_id == "new" and start.cores == ()
    (why,) = logged(effects, "run.not_pinned")
    assert "still being read" in why.get("reason")
