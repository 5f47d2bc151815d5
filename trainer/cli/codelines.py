"""`trainer show`'s and `trainer submit`'s lines about a run's code identity
(docs/CONFIG.md, "The same run"): what it was submitted with, what its latest attempt
started with, and what differs between the two."""

from __future__ import annotations

import json
from typing import Any

from core.codeid import code_changes, describe
from trainer_api.v1 import trainer_pb2 as pb


def _map(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def code_lines(run: pb.RunRecord) -> list[tuple[str, str]]:
    """("code at submit", ...), ("code at start", ...) and, when they differ, what."""
    submitted, started = _map(run.code_json), _map(run.attempt_code_json)
    lines = [("code at submit", describe(submitted))]
    if started:
        attempt = started.get("attempt", run.attempt or 1)
        lines.append((f"at attempt {attempt}", describe(started)))
        if submitted and run.code_digest:
            changes = code_changes(submitted, started)
            lines.append(("code differs", "; ".join(changes) if changes else
                          "no (the same code as at submit)"))
    git = submitted.get("git") or started.get("git") or {}
    if isinstance(git, dict) and git.get("diff_sha256"):
        lines.append(("diff saved", "code/submit.diff, code/attempt-<n>.diff in the run folder"))
    return lines


def submit_note(reply: pb.SubmitRunResponse) -> str:
    """For a new run of a config that an earlier run has: which run, and what changed."""
    if not reply.created or not reply.same_config_run_id:
        return ""
    changed = ", ".join(reply.code_changes) or "the code identity"
    return (f"  (a new run: {reply.same_config_run_id} has the same config, "
            f"with other code: {changed})")
