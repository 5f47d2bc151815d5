"""An experiment's max_concurrent with the real processes: bus, registry, dispatcher
(4 CPU slots). Its 4 cells, submitted in one request with a limit of 2, never hold more
than 2 claims at once (read from the log), the others wait with the experiment's reason,
and all 4 complete."""

from __future__ import annotations

from bus.codec import envelope_from_map, event_from_envelope
from core import events as ev
from tests.system.dispatch_helpers import TERMINAL, wait_status
from tests.system.stack import Stack

ENDS = (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)


def test_an_experiment_never_has_more_than_its_limit_under_way(dstack: Stack) -> None:
    client = dstack.client()
    template = {"worker": "test-sleep", "env": "CartPole-v1", "heartbeat_interval_s": 0.2,
                "heartbeat_timeout_s": 5.0, "resources": {"gpus": 0, "cpu_slots": 1}}
    spec = {"name": "noise", "template": template,
            "axes": {"hyperparameters.seconds": [0.3, 0.5]}, "seeds": 2,
            "max_concurrent": 2}
    made = client.call("submit_experiment", {"spec": spec, "submitted_by": "test"})
    cells = [c["run_id"] for c in made["experiment"]["cells"]]
    assert made["created"] == 4 and len(set(cells)) == 4
    runs = {r: wait_status(dstack, r, TERMINAL, timeout=40) for r in cells}
    assert all(run["status"] == "COMPLETED" for run in runs.values()), runs
    envelopes = client.call("events_since", {"after_seq": 0, "limit": 5000})["events"]
    events = [event_from_envelope(envelope_from_map(e)) for e in envelopes]
    mine = [e for e in events if isinstance(e, ev.Event) and e.run_id in cells]
    claimed = running = most_claimed = most_running = 0
    for event in mine:  # in seq order: the claims (and the RUNNING ones) at each point
        if isinstance(event, ev.GpusClaimed):
            claimed += 1
        elif isinstance(event, ev.RunStarted):
            running += 1
        elif isinstance(event, ENDS):
            claimed, running = claimed - 1, running - 1
        most_claimed, most_running = max(most_claimed, claimed), max(most_running, running)
    assert most_running == most_claimed == 2, (most_claimed, most_running)
    assert sum(isinstance(e, ev.RunStarted) for e in mine) == 4
    reasons = {e.reason for e in mine if isinstance(e, ev.RunWaiting)}
    assert "experiment noise runs its limit of 2 at once" in reasons, reasons
