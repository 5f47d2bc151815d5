"""The registry's ``snapshot`` lists the experiments the dispatcher schedules by: every
ACTIVE one that sets a limit or a priority, as of the page's as_of_seq; a page may be
newest first (the dispatcher's paging by before_seq)."""

from __future__ import annotations

from tests.unit.test_registry_experiments import SPEC, call, submit
from tests.unit.workload import open_registry


def test_the_snapshot_lists_the_active_experiments_that_set_a_limit_or_a_priority(
        tmp_path) -> None:
    _, registry, _ = open_registry(str(tmp_path / "events.db"))
    assert call(registry, "snapshot", {}, "s0")["experiments"] == []
    submit(registry, "x1", {**SPEC, "name": "capped", "max_concurrent": 2})
    submit(registry, "x2", {**SPEC, "name": "ranked", "priority": 7,
                            "template": {"worker": "cartpole", "steps": 999}})
    submit(registry, "x3", {**SPEC, "name": "plain", "template": {"worker": "cartpole",
                                                                  "steps": 998}})
    page = call(registry, "snapshot", {"status": "PENDING", "limit": 1}, "s1")
    assert page["experiments"] == [
        {"name": "capped", "max_concurrent": 2, "priority": None},
        {"name": "ranked", "max_concurrent": 0, "priority": 7}]
    assert len(page["runs"]) == 1 and page["more"] and page["runs"][0]["experiment"]
    submit(registry, "x4", {**SPEC, "name": "capped", "max_concurrent": 3})  # a revision
    call(registry, "cancel_experiment", {"name": "ranked", "requested_by": "me"}, "c1")
    assert call(registry, "snapshot", {}, "s2")["experiments"] == [
        {"name": "capped", "max_concurrent": 3, "priority": None}]


def test_a_snapshot_page_may_be_newest_first(tmp_path) -> None:
    _, registry, _ = open_registry(str(tmp_path / "events.db"))
    submit(registry, "x1")
    oldest = call(registry, "snapshot", {"limit": 2}, "s1")["runs"]
    newest = call(registry, "snapshot", {"limit": 2, "newest_first": True}, "s2")["runs"]
    assert oldest[0]["submitted_seq"] < oldest[1]["submitted_seq"]
    assert newest[0]["submitted_seq"] > newest[1]["submitted_seq"]
    before = call(registry, "snapshot", {"limit": 10, "newest_first": True,
                                         "before_seq": newest[1]["submitted_seq"]}, "s3")
    assert all(r["submitted_seq"] < newest[1]["submitted_seq"] for r in before["runs"])
    assert len(before["runs"]) == 4
