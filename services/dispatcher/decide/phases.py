"""The lifecycle of one run inside the dispatcher: the only place its phase changes.

    QUEUED --claim_sent--> CLAIMING --claimed--> STARTING --worker_seen--> RUNNING
      |  ^                  |  |                    |                        |
      |  +----returned------+  +--refused/forgotten-+--> (dropped)           |
      +--judged_never--> JUDGING --finished/refused/forgotten--> (dropped)   |
      |                     +--returned--> QUEUED                            |
      +--dequeued--> (dropped)                          kill_begun           v
                                                 RUNNING -----------> KILLING --escalated--+
    STARTING | RUNNING | KILLING --leftovers--> REAPING --leftovers--+    ^      |          |
    STARTING | RUNNING | KILLING | REAPING --ended--> ENDING          +----+      +----------+
    STARTING --spawn_failed--> ENDING --finished/refused--> (dropped)
                                ENDING --returned--> ENDING (sent again)
                                ENDING --retried--> QUEUED (the registry began the next attempt)
    RECOVERING --adopted--> RUNNING | --adopted_killing--> KILLING | --restarted--> STARTING
    RECOVERING --awaited/leftovers--> RECOVERING | --ended--> ENDING (also: lost)

QUEUED: PENDING in the registry, in our queue. CLAIMING: ClaimGpus sent, no answer
yet. JUDGING: an unschedulable verdict (FinishRun) sent from the queue. STARTING: the
claim is applied and the worker requested; no worker record read yet. RUNNING: its
worker record is read; watched (heartbeats, time limit). KILLING: a kill plan is under
way (cancel, time limit, silence): SIGTERM sent, SIGKILL after the grace. REAPING: the
shim is gone (or its exit record is written) but processes of the run are left; they
are killed until none is. ENDING: the process group is empty; its FinishRun waits to be
sent or applied. RECOVERING: a DISPATCHING or RUNNING run from the start-up snapshot
whose folder is being judged (adopt, await its shim, end it, start it again).

MOVES maps (phase, move) to the phase after, None meaning the run is dropped from the
dispatcher's state. A pair not in the table is a bug: ``next_phase`` raises
IllegalMove naming the run, its phase and the move. Self-loops are listed too.
"""

from __future__ import annotations

import enum
from typing import Optional


class Phase(str, enum.Enum):
    QUEUED = "queued"
    CLAIMING = "claiming"
    JUDGING = "judging"
    STARTING = "starting"
    RUNNING = "running"
    KILLING = "killing"
    REAPING = "reaping"
    ENDING = "ending"
    RECOVERING = "recovering"


class Move(str, enum.Enum):
    CLAIM_SENT = "claim_sent"          # the scheduling pass chose GPUs for it
    JUDGED_NEVER = "judged_never"      # it can never fit: FinishRun(unschedulable) sent
    DEQUEUED = "dequeued"              # cancelled, failed or claimed elsewhere (an event)
    CLAIMED = "claimed"                # the claim was applied: its worker is requested
    RETURNED = "returned"              # a command not applied (or a GPU busy): again later
    REFUSED = "refused"                # a command refused for good
    FORGOTTEN = "forgotten"            # the registry went away mid-call: the snapshot decides
    FINISHED = "finished"              # the registry applied its end
    CANCEL_NOTED = "cancel_noted"      # a cancel heard before its worker can be signalled
    WORKER_SEEN = "worker_seen"        # its worker record was read (RecordStarted sent)
    SPAWN_FAILED = "spawn_failed"      # its worker could not be started
    KILL_BEGUN = "kill_begun"          # SIGTERM sent (cancel, time limit, silence)
    ESCALATED = "escalated"            # SIGKILL sent after the grace
    LEFTOVERS = "leftovers"            # processes of the run left: killed
    ENDED = "ended"                    # its end is known (exit record, lost, spawn error)
    ADOPTED = "adopted"                # recovery: its worker lives; we watch it
    ADOPTED_KILLING = "adopted_killing"  # ... and a kill begun before the restart goes on
    AWAITED = "awaited"                # recovery: a shim holds it; read again later
    RESTARTED = "restarted"            # recovery: no worker, no shim: started again
    RETRIED = "retried"                # its end was an attempt's: queued for the next one


Q, C, J, S = Phase.QUEUED, Phase.CLAIMING, Phase.JUDGING, Phase.STARTING
R, K, P, E, V = Phase.RUNNING, Phase.KILLING, Phase.REAPING, Phase.ENDING, Phase.RECOVERING
DROPPED = None

# (phase before, move) -> phase after (None: dropped)
MOVES: dict[tuple[Phase, Move], Optional[Phase]] = {
    (Q, Move.CLAIM_SENT): C,
    (Q, Move.JUDGED_NEVER): J,
    (Q, Move.DEQUEUED): DROPPED,
    (C, Move.CLAIMED): S,
    (C, Move.RETURNED): Q,
    (C, Move.REFUSED): DROPPED,
    (C, Move.FORGOTTEN): DROPPED,
    (C, Move.CANCEL_NOTED): C,
    (J, Move.FINISHED): DROPPED,
    (J, Move.RETURNED): Q,
    (J, Move.REFUSED): DROPPED,
    (J, Move.FORGOTTEN): DROPPED,
    (S, Move.WORKER_SEEN): R,
    (S, Move.SPAWN_FAILED): E,
    (S, Move.LEFTOVERS): P,
    (S, Move.ENDED): E,
    (S, Move.CANCEL_NOTED): S,
    (R, Move.KILL_BEGUN): K,
    (R, Move.LEFTOVERS): P,
    (R, Move.ENDED): E,
    (K, Move.ESCALATED): K,
    (K, Move.LEFTOVERS): P,
    (K, Move.ENDED): E,
    (P, Move.LEFTOVERS): P,
    (P, Move.ENDED): E,
    (E, Move.RETURNED): E,
    (E, Move.FINISHED): DROPPED,
    (E, Move.REFUSED): DROPPED,
    (E, Move.RETRIED): Q,
    (V, Move.ADOPTED): R,
    (V, Move.ADOPTED_KILLING): K,
    (V, Move.AWAITED): V,
    (V, Move.LEFTOVERS): V,
    (V, Move.ENDED): E,
    (V, Move.RESTARTED): S,
    (V, Move.CANCEL_NOTED): V,
}

# Phases whose runs hold GPUs and CPU slots (a claim in flight holds what it asked for;
# an ENDING run's end goes to the registry before the claims of the same pass).
HOLDING = frozenset({C, S, R, K, P, V})
# Phases whose runs count against their experiment's max_concurrent: claimed and not
# ended (an ENDING run's end is not applied yet).
UNDER_WAY = HOLDING | {E}
# Phases whose runs have a worker (or may have one) whose folder is read.
OBSERVED = frozenset({S, R, K, P, V})


class IllegalMove(RuntimeError):
    """A bug: the dispatcher tried a move its phase table does not allow."""

    def __init__(self, run_id: str, phase: Phase, move: Move) -> None:
        super().__init__(f"run {run_id} is {phase.value}: {move.value} is not allowed "
                         f"from {phase.value}")
        self.run_id, self.phase, self.move = run_id, phase, move


def next_phase(run_id: str, phase: Phase, move: Move) -> Optional[Phase]:
    try:
        return MOVES[(phase, move)]
    except KeyError:
        raise IllegalMove(run_id, phase, move) from None


def allows(phase: Phase, move: Move) -> bool:
    return (phase, move) in MOVES
