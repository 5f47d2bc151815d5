"""Pages of runs and events stay under the codec's frame limit however large the
configs: a page stops at the registry's reply budget (saying "more" for runs), and
paging on from its last item gets every run and event exactly once. Without the
budget, a page of large events could not be decoded by any client (FrameTooLarge),
and a catch-up or a watch starting before them never got past them."""

from __future__ import annotations

from typing import Any

import pytest

from bus.codec import MAX_FRAME_BYTES, pack
from services.registry import handlers
from tests.unit.workload import open_registry

pytestmark = pytest.mark.timeout(60)


def _ask(reg: Any, method: str, args: dict[str, Any]) -> Any:
    out = reg.handle(method, args, "q", "test").reply
    assert out["ok"], out
    assert len(pack(out)) < MAX_FRAME_BYTES
    return out["result"]


def test_pages_of_large_runs_and_events_stay_under_the_frame_limit(tmp_path: Any) -> None:
    conn, reg, _ = open_registry(str(tmp_path / "events.db"))
    blob = "x" * 60_000  # a config near its 64 KiB limit
    conn.execute("BEGIN IMMEDIATE")
    for n in range(200):  # ~12 MB of configs: more than one reply can carry
        got = reg.handle("submit", {"config": {"seed": n, "hyperparameters": {"blob": blob}}},
                         f"s{n}", "test").reply
        assert got["ok"], got
    conn.execute("COMMIT")

    events, after, pages = [], 0, 0
    while True:
        page = _ask(reg, "events_since", {"after_seq": after, "limit": 5000})
        if not page["events"]:
            break
        pages += 1
        events += [e["seq"] for e in page["events"]]
        after = events[-1]
    assert events == list(range(1, 201)) and pages >= 2

    seen, before, cut = [], 0, 0
    while True:
        page = _ask(reg, "list_runs", {"limit": 1000, "before_seq": before})
        seen += [r["submitted_seq"] for r in page["runs"]]
        cut += page["more"]
        if not page["more"]:
            break
        before = page["runs"][-1]["submitted_seq"]
    assert sorted(seen) == list(range(1, 201)) and len(seen) == 200 and cut >= 1
    conn.close()


def test_one_item_larger_than_the_budget_still_comes(tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    conn, reg, _ = open_registry(str(tmp_path / "events.db"))
    conn.execute("BEGIN IMMEDIATE")
    for n in range(3):
        reg.handle("submit", {"config": {"seed": n}}, f"s{n}", "test")
    conn.execute("COMMIT")
    monkeypatch.setattr(handlers, "REPLY_BUDGET", 1)
    page = _ask(reg, "events_since", {"after_seq": 0, "limit": 10})
    assert [e["seq"] for e in page["events"]] == [1]
    runs = _ask(reg, "snapshot", {"limit": 10})
    assert len(runs["runs"]) == 1 and runs["more"] is True
    conn.close()


def test_artifact_pages_stay_under_the_frame_limit_and_filter_by_kind(tmp_path: Any) -> None:
    """list_artifacts pages by after_seq (limit and byte budget, "more" when cut short)
    and filters by kind; before, one reply carried every artifact of the run, so a run
    with ~1,000 artifacts near the 16 KiB meta limit could not be listed at all."""
    conn, reg, _ = open_registry(str(tmp_path / "events.db"))
    conn.execute("BEGIN IMMEDIATE")
    run_id = reg.handle("submit", {"config": {"seed": 1}}, "s", "test").reply["result"]["run"][
        "run_id"]
    assert reg.handle("claim_gpus", {"run_id": run_id, "gpu_uuids": [], "claimed_by": "t"},
                      "c", "test").reply["ok"]
    blob = "m" * 16_000   # meta near its 16 KiB limit
    for n in range(1100):  # ~17.6 MB of meta: more than one reply can carry
        got = reg.handle("register_artifact", {
            "run_id": run_id, "kind": "video" if n % 3 == 0 else "checkpoint",
            "path": f"a/{n}.bin", "size": n, "meta": {"blob": blob, "n": n}}, f"a{n}", "test")
        assert got.reply["ok"], got.reply
    conn.execute("COMMIT")

    def pages(**args: Any) -> tuple[list[int], int]:
        got, after, cut = [], 0, 0
        while True:
            page = _ask(reg, "list_artifacts", {"run_id": run_id, "after_seq": after, **args})
            got += [a["meta"]["n"] for a in page["artifacts"]]
            if not page["more"]:
                return got, cut
            cut += 1
            after = page["artifacts"][-1]["seq"]

    every, cut = pages()
    assert every == list(range(1100)) and cut >= 2
    small, cut = pages(limit=7, kind="video")
    assert small == list(range(0, 1100, 3)) and cut == len(small) // 7
    assert _ask(reg, "list_artifacts", {"run_id": "r0000000000aa"}) == \
        {"artifacts": [], "more": False}
    bad = reg.handle("list_artifacts", {"run_id": run_id, "limit": 0}, "q", "test").reply
    assert not bad["ok"] and bad["error"]["details"]["field"] == "limit"
    conn.close()
