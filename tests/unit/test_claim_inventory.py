"""A claim naming a GPU that does not exist is refused. (A GPU that vanished between
the claim and the worker's start fails the run, naming it: tests/unit/dispatcher/
test_ported_gpus.py and test_supervising.py.)"""

from __future__ import annotations

from typing import Optional

import pytest

from core import commands as c
from core import events as ev
from core.errors import ValidationError
from core.runstate import apply
from tests.unit.workload import open_registry

G0, G1 = "GPU-fake-0000", "GPU-fake-0001"


def pending():
    return apply(None, ev.RunSubmitted("r1", "d", {"a": 1}, 0, "me"), 1, 1.0)


@pytest.mark.parametrize("gpus, inventory, refused", [
    ((G0,), (G0, G1), None),
    ((G0, G1), (G0, G1), None),
    ((), (), None),                         # a CPU-only run on a machine without GPUs
    (("GPU-bogus",), None, None),           # no inventory known: not checked
    (("GPU-bogus",), (G0, G1), "GPU 'GPU-bogus' is not in the GPU inventory (2 GPU(s): "),
    ((G0, "GPU-x"), (G0,), "GPU 'GPU-x' is not in the GPU inventory"),
    ((G0,), (), "GPU 'GPU-fake-0000' is not in the GPU inventory (0 GPU(s))"),
])
def test_a_claim_is_checked_against_the_inventory(
        gpus: tuple[str, ...], inventory: Optional[tuple[str, ...]], refused: Optional[str]) -> None:
    cmd = c.ClaimGpus("r1", gpus, "dispatcher")
    if refused is None:
        assert [e.TYPE for e in c.decide_claim(pending(), cmd, {}, inventory)] == ["GpusClaimed"]
        return
    with pytest.raises(ValidationError) as err:
        c.decide_claim(pending(), cmd, {}, inventory)
    assert err.value.code == "invalid_argument" and err.value.field == "gpu_uuids"
    assert refused in err.value.message


def test_the_registry_refuses_a_gpu_outside_the_inventory_the_dispatcher_sent(tmp_path) -> None:
    """The dispatcher's claims carry its inventory; a later claim that names another
    GPU (a tool's, without an inventory of its own) is refused, naming it."""
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    ids = [registry.handle("submit", {"config": {"seed": i, "resources": {"gpus": 1}}},
                           f"s{i}", "test").reply["result"]["run"]["run_id"] for i in range(3)]
    ok = registry.handle("claim_gpus", {"run_id": ids[0], "gpu_uuids": [G0],
                                        "claimed_by": "dispatcher", "inventory": [G0, G1]},
                         "c0", "dispatcher").reply
    assert ok["ok"], ok
    bad = registry.handle("claim_gpus", {"run_id": ids[1], "gpu_uuids": ["GPU-bogus"],
                                         "claimed_by": "tool"}, "c1", "tool").reply
    assert not bad["ok"] and bad["error"]["code"] == "invalid_argument", bad
    assert "GPU 'GPU-bogus' is not in the GPU inventory" in bad["error"]["message"]
    assert registry.handle("claim_gpus", {"run_id": ids[2], "gpu_uuids": [G1],
                                          "claimed_by": "tool"}, "c2", "tool").reply["ok"]
    conn.close()


def test_a_restarted_registry_keeps_the_inventory_until_the_next_claim_lists_one(
        tmp_path) -> None:
    """The inventory is stored with the claim that lists it: a registry opened again on
    the same file refuses an unknown GPU before any new claim has listed one. A claim
    refused for another reason stores nothing; an empty inventory (no GPU) is kept."""
    path = str(tmp_path / "events.db")
    conn, registry, _ = open_registry(path)
    ids = [registry.handle("submit", {"config": {"seed": i, "resources": {"gpus": 1}}},
                           f"s{i}", "test").reply["result"]["run"]["run_id"] for i in range(4)]
    assert registry.handle("claim_gpus", {"run_id": ids[0], "gpu_uuids": [G0],
                                          "claimed_by": "dispatcher", "inventory": [G0, G1]},
                           "c0", "dispatcher").reply["ok"]
    refused = registry.handle("claim_gpus", {"run_id": ids[1], "gpu_uuids": [G0],  # held
                                             "claimed_by": "dispatcher", "inventory": [G0]},
                              "c1", "dispatcher").reply
    assert not refused["ok"], refused
    conn.close()
    conn, registry, _ = open_registry(path)
    bad = registry.handle("claim_gpus", {"run_id": ids[1], "gpu_uuids": ["GPU-bogus"],
                                         "claimed_by": "tool"}, "c2", "tool").reply
    assert "GPU 'GPU-bogus' is not in the GPU inventory (2 GPU(s): " + G0 in \
        bad["error"]["message"], bad
    assert registry.handle("claim_gpus", {"run_id": ids[1], "gpu_uuids": [G1],
                                          "claimed_by": "tool"}, "c3", "tool").reply["ok"]
    assert registry.handle("claim_gpus", {"run_id": ids[2], "gpu_uuids": [],
                                          "claimed_by": "dispatcher", "inventory": []},
                           "c4", "dispatcher").reply["ok"]
    conn.close()
    conn, registry, _ = open_registry(path)
    none = registry.handle("claim_gpus", {"run_id": ids[3], "gpu_uuids": [G1],
                                          "claimed_by": "tool"}, "c5", "tool").reply
    assert "is not in the GPU inventory (0 GPU(s))" in none["error"]["message"], none
    conn.close()
