"""One step's working copy: the state being built and the effects asked so far.

A Turn lives only inside one ``step`` call; the handlers write to it, and ``step``
returns its final state and effects. The state it starts from is never changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.phases import Move
from services.dispatcher.decide.state import CallFor, DispatcherState, InFlight, RunRecord


class Turn:
    def __init__(self, state: DispatcherState) -> None:
        self.state = state
        self.effects: list[Any] = []

    # --- the state --------------------------------------------------------------------
    def update(self, **changes: Any) -> None:
        self.state = dataclasses.replace(self.state, **changes)

    def run(self, run_id: str) -> Optional[RunRecord]:
        return self.state.runs.get(run_id)

    def put(self, record: RunRecord) -> RunRecord:
        self.state = self.state.with_run(record.run_id, record)
        return record

    def put_many(self, records: Iterable[RunRecord]) -> None:
        """Several records (no move), the runs mapping copied once."""
        self.state = self.state.with_runs(records)

    def move(self, run: RunRecord, move: Move, **changes: Any) -> Optional[RunRecord]:
        """The run after ``move`` (raises IllegalMove if the table has none); a dropped
        run leaves the state."""
        after = run.moved(move, **changes)
        self.state = self.state.with_run(run.run_id, after)
        return after

    def count(self, **increments: int) -> None:
        stats = self.state.stats
        self.update(stats=dataclasses.replace(stats, **{
            k: getattr(stats, k) + v for k, v in increments.items()}))

    def schedule_soon(self) -> None:
        if not self.state.dirty:
            self.update(dirty=True)

    def retry_at_sweep(self) -> None:
        if not self.state.retry_due:
            self.update(retry_due=True)

    def note_seq(self, run_id: str, seq: int) -> None:
        self.update(known_seq={**self.state.known_seq, run_id: seq})

    # --- effects ----------------------------------------------------------------------
    def do(self, effect: Any) -> None:
        self.effects.append(effect)

    def call(self, purpose: CallFor, command: Any, run_id: str = "",
             detail: Any = None) -> int:
        tag = self._tag(InFlight(purpose, run_id, detail))
        self.effects.append(fx.Call(tag, command))
        return tag

    def query(self, purpose: CallFor, question: Any, run_id: str = "",
              detail: Any = None) -> int:
        tag = self._tag(InFlight(purpose, run_id, detail))
        self.effects.append(fx.Query(tag, question))
        return tag

    def in_flight(self, purpose: CallFor, run_id: str) -> bool:
        return any(c.purpose is purpose and c.run_id == run_id
                   for c in self.state.calls.values())

    def log(self, level: str, event: str, **fields: Any) -> None:
        self.effects.append(fx.Log(level, event, fields))

    def _tag(self, what: InFlight) -> int:
        tag = self.state.next_tag
        self.update(next_tag=tag + 1, calls={**self.state.calls, tag: what})
        return tag

    def answered(self, tag: int) -> Optional[InFlight]:
        what = self.state.calls.get(tag)
        if what is not None:
            calls = dict(self.state.calls)
            del calls[tag]
            self.update(calls=calls)
        return what
