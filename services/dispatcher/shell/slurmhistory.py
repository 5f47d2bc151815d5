"""How the SLURM launcher (slurmlauncher.py) learns the end of a job that squeue no
longer lists: SLURM forgets a finished job MinJobAge (300 s by default) after it ends,
so a dispatcher that was down longer, or a poll that missed the end, finds it gone.

    scontrol   ``scontrol show job -o ID``: while slurmctld still holds the job (asked
               only for a job this launcher saw listed before)
    sacct      on a cluster with accounting (``scontrol show config``'s
               AccountingStorageType names a store: asked once), one ``sacct`` for all
               the jobs scontrol does not know, with ``--starttime`` (the earliest
               submission among them) and the job's name checked (job ids start again
               at 1 when slurmctld loses its state)

A job every source is silent about is ``silent``: the launcher then tells its end
from the run folder alone (its exit record, or none: ``lost``). A sacct that fails
(slurmdbd away) is not silence: those jobs are asked again at the next poll, for up to
``patience_s``, then counted silent (a ``slurm.sacct_failed`` line says why).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from services.dispatcher.shell import slurmcli
from services.dispatcher.shell.slurmcli import JobState
from services.dispatcher.shell.slurmtools import SlurmError, run_tool

PATIENCE_S = 60.0


@dataclass
class Lookup:
    found: dict[str, JobState] = field(default_factory=dict)   # job id -> its end
    later: set[str] = field(default_factory=set)    # ask again at the next poll
    silent: set[str] = field(default_factory=set)   # no source knows it


class JobHistory:
    def __init__(self, env: dict[str, str], timeout_s: float, log: Any = None,
                 patience_s: float = PATIENCE_S) -> None:
        self.env = env
        self.timeout_s = timeout_s
        self.log = log
        self.patience_s = patience_s
        self._accounting: Optional[bool] = None    # None: not known yet
        self._failing_since: dict[str, float] = {}  # job id -> first sacct failure
        self.last_error = ""
        self.sacct_calls = 0

    def problem(self) -> str:
        """While sacct fails for jobs whose end it is asked: what and since when (the
        dispatcher's ``launcher_problem``, shown by ``trainer health``); "" otherwise."""
        if not self._failing_since:
            return ""
        since = min(self._failing_since.values())
        return (f"SLURM: sacct failing for {time.monotonic() - since:.0f}s "
                f"({len(self._failing_since)} job(s) to end): {self.last_error}")

    def accounting(self) -> bool:
        """Does the cluster keep accounting (sacct answers)? Asked once; a failing
        scontrol is asked again next time."""
        if self._accounting is None:
            try:
                text = run_tool(slurmcli.config_argv(), self.env, self.timeout_s)
            except SlurmError as exc:
                self._log("warning", "slurm.config_unread", reason=str(exc))
                return False
            self._accounting = slurmcli.accounting_on(text)
            self._log("info", "slurm.accounting", on=self._accounting)
        return self._accounting

    def final_states(self, jobs: list[JobState], since: float,
                     held: frozenset[str] | set[str] = frozenset()) -> Lookup:
        """The end of each of ``jobs`` (none listed by squeue any more), submitted at
        or after ``since`` (epoch seconds); scontrol is asked for the ``held`` ones
        (seen in squeue before: slurmctld may hold them still)."""
        out = Lookup()
        rest: list[JobState] = []
        for job in jobs:
            final = self._scontrol(job) if job.job_id in held else None
            if final is not None:
                out.found[job.job_id] = final
            else:
                rest.append(job)
        if not rest:
            return out
        if not self.accounting():
            out.silent = {j.job_id for j in rest}
            return out
        by_id = {j.job_id: j for j in rest}
        self.sacct_calls += 1
        try:
            text = run_tool(slurmcli.sacct_argv(sorted(by_id, key=int), since - 60.0),
                            self.env, self.timeout_s)
        except SlurmError as exc:
            now = time.monotonic()
            self.last_error = str(exc)
            for job_id in by_id:
                first = self._failing_since.setdefault(job_id, now)
                if now - first >= self.patience_s:
                    out.silent.add(job_id)
                    del self._failing_since[job_id]   # given up: no problem any more
                else:
                    out.later.add(job_id)
            self._log("warning", "slurm.sacct_failed", jobs=len(by_id), reason=str(exc),
                      given_up=len(out.silent))
            return out
        found = slurmcli.parse_sacct(text, by_id)
        out.found.update(found)
        out.silent = set(by_id) - set(found)
        for job_id in by_id:
            self._failing_since.pop(job_id, None)
        return out

    def _scontrol(self, job: JobState) -> Optional[JobState]:
        """The job as ``scontrol show job -o`` shows it (None when slurmctld no longer
        holds it, or does not answer)."""
        try:
            line = run_tool(slurmcli.scontrol_argv(job.job_id), self.env, self.timeout_s)
        except SlurmError:
            return None
        fields = slurmcli.parse_scontrol(line)
        state = fields.get("JobState", "")
        if not state or fields.get("JobId") != job.job_id:
            return None
        return replace(job, state=state, reason=fields.get("Reason", ""))

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if self.log is not None:
            getattr(self.log, level)(event, **fields)
