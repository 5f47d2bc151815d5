"""The second launcher: a SLURM batch job per run attempt (docs/SLURM.md). SLURM is
driven through its command-line tools (slurmcli.py builds their argv and parses their
output); every call has a timeout, and a missing or failing tool is a StartError (the
run fails ``spawn_error`` with its message), never a hang.

    start    the worker prepared as for the local launcher (launch.prepare), its step
             spec written to the run folder (slurmstep.py runs it: the shim, on the
             compute node), the tag's token recorded (slurm.json), then
             ``sbatch --parsable``; the job id recorded beside it
    watch    a thread: one ``squeue`` of all the user's jobs per poll interval,
             whatever their number; our jobs are told by their comment. A job that
             finished is a ShimEnded, its status 0 only if COMPLETED; one gone from
             squeue is looked up in scontrol and sacct (slurmhistory.py); one whose
             state or waiting reason changed is ``moved`` (read it now)
    observe  the run folder, as locally (the folder is shared with the nodes; the
             shim's lock and its records say), plus what SLURM says: a job pending
             or running counts as its shim at work (its exit record held back until
             SLURM says the job ended: a poll at once), and a job cancelled from
             outside or past its time limit is the read's ``ended_by``
    signal   ``scancel --batch --signal=...``: the batch step relays it to the worker
             (SIGINT stands for SIGKILL: slurmcli.FORWARD)
    kill     the run's processes here, then ``scancel`` of its job

A restarted dispatcher's launcher finds its jobs in its first squeue (their comment
carries the run id, the attempt and the installation's digest), the others by each
run folder's slurm.json (slurmsubmit.py) in sacct.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Optional

from core.runconfig import RunConfig
from core.settings import Settings
from services.dispatcher import launch, procs, slurmstep
from services.dispatcher.spawner import read_json
from services.dispatcher.decide.inputs import FolderRead, KillRecord, ShimEnded
from services.dispatcher.decide.supervise import Sig
from services.dispatcher.shell import slurmcli, slurmsubmit
from services.dispatcher.shell.folders import has_exit_record, read_folder, write_kill_record
from services.dispatcher.shell.launcher import LauncherGone, StartError
from services.dispatcher.shell.slurmcli import JobState, JobTag
from services.dispatcher.shell.slurmhistory import JobHistory
from services.dispatcher.shell.slurmrecall import Recalls
from services.dispatcher.shell.slurmtools import CALL_TIMEOUT_S, SlurmError, run_tool

GONE = "slurm.gone"
POLL_S = 1.0
QUERY_TIMEOUT_S = 5.0          # one squeue (against a dead slurmctld it retries ~9 s)
GONE_AFTER_S = 60.0            # squeue failing this long (after it worked): LauncherGone


class SlurmLauncher:
    def __init__(self, settings: Settings, env: Optional[dict[str, str]] = None,
                 poll_s: float = POLL_S, log: Any = None,
                 query_timeout_s: float = QUERY_TIMEOUT_S,
                 gone_after_s: float = GONE_AFTER_S) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.home = slurmcli.home_digest(settings.home)
        self.poll_s = poll_s
        self.query_timeout_s = query_timeout_s
        self.gone_after_s = gone_after_s
        self._failing_since: Optional[float] = None
        self.log = log
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.wake_fd = self._read_fd
        self._lock = threading.Lock()
        self._jobs: dict[str, JobState] = {}     # run id -> its latest job seen
        self._told: set[str] = set()             # job ids whose end was told
        self._ended: list[ShimEnded] = []
        self._moved: set[str] = set()            # runs whose job's state or reason changed
        self._where: dict[tuple[str, str], dict[str, Any]] = {}  # (run, job) -> where
        self._held: list[ShimEnded] = []         # statuses held back (hold_status)
        self.hold_status = False                 # tests: tell ends before statuses
        self._worked = False
        self._failures = 0
        self.last_error = ""
        self._gone = False
        self.polls = 0
        self._stop = threading.Event()
        self._poll_now = threading.Event()
        self.history = JobHistory(self.env, query_timeout_s, log)
        self.recalls = Recalls(self.home)
        self.poll()   # the jobs of a restarted dispatcher known before its first observe
        self._thread = threading.Thread(target=self._watch, name="slurm-watch", daemon=True)
        self._thread.start()

    def run_dir(self, run_id: str) -> str:
        return launch.run_dir(self.settings, run_id)

    # --- start ----------------------------------------------------------------------
    def start(self, run_id: str, config: RunConfig, gpus: tuple[str, ...],
              attempt: int = 1, resume_from: str = "", cores: tuple[int, ...] = (),
              python: str = "") -> None:
        if self._gone:
            raise LauncherGone(self.last_error, GONE)
        why = slurmcli.check_run_id(run_id)
        if why:
            raise StartError(why)
        try:
            if attempt > 1:
                launch.set_aside(self.run_dir(run_id), attempt - 1)
            path, argv, env = launch.prepare(
                self.settings, {"run_id": run_id, "config": config.to_map()}, [],
                attempt, resume_from, python)
            tag = JobTag(self.home, run_id, attempt, secrets.token_hex(8))
            slurmsubmit.write_step(path, argv, env, config.resources.gpus)
            slurmsubmit.write_submission(path, tag.token, attempt)
        except (launch.UnknownWorker, OSError) as exc:
            raise StartError(str(exc)) from exc
        self.forget(run_id)
        self._log("info", "slurm.submitting", run_id=run_id, attempt=attempt,
                  token=tag.token)
        try:
            out = run_tool(slurmcli.sbatch_argv(tag, path, config), self.env,
                           stdin=slurmcli.batch_script(sys.executable, path))
            job_id = slurmcli.parse_job_id(out)
        except (SlurmError, ValueError) as exc:
            raise StartError(f"SLURM did not take the job: {exc}") from exc
        try:
            slurmsubmit.write_submission(path, tag.token, attempt, job_id)
        except OSError as exc:   # it is tagged: found again by its comment
            self._log("warning", "slurm.job_unrecorded", run_id=run_id, job_id=job_id,
                      reason=str(exc))
        with self._lock:
            self._jobs[run_id] = JobState(job_id, "PENDING", "", tag)
        self._log("info", "slurm.submitted", run_id=run_id, attempt=attempt, job_id=job_id)

    def job_id(self, run_id: str) -> str:
        """The run's latest job: as last seen, else as its folder records it."""
        with self._lock:
            job = self._jobs.get(run_id)
        if job is not None:
            return job.job_id
        sub = slurmsubmit.read_submission(self.run_dir(run_id))
        return sub.job_id if sub is not None else ""

    # --- signals ----------------------------------------------------------------------
    def signal(self, run_id: str, pgid: int, sig: Sig) -> None:
        job_id = self.job_id(run_id)
        if not job_id:
            return
        try:
            run_tool(slurmcli.scancel_signal_argv(job_id, slurmcli.FORWARD[sig.name]),
                     self.env)
        except SlurmError as exc:   # its job finished already, or SLURM is away
            self._log("info", "slurm.signal_not_sent", run_id=run_id, job_id=job_id,
                      signal=sig.name, reason=str(exc))

    def kill(self, run_id: str, pids: frozenset[int]) -> None:
        procs.kill_processes(set(pids))
        job_id = self.job_id(run_id)
        if job_id:
            try:
                run_tool(slurmcli.scancel_argv(job_id), self.env)
            except SlurmError as exc:
                self._log("warning", "slurm.scancel_failed", run_id=run_id, job_id=job_id,
                          reason=str(exc))

    # --- reads ------------------------------------------------------------------------
    def observe(self, run_id: str) -> FolderRead:
        with self._lock:
            job = self._jobs.get(run_id)
        if job is not None and job.state == "PENDING" and job.reason not in ("", "None"):
            # waiting in SLURM: nothing of its own in its folder yet, nothing read (a
            # job started since SLURM's last answer has its worker read after the next)
            return FolderRead(run_id, shim_alive=True, waiting=f"SLURM: {job.reason}")
        read = read_folder(run_id, self.run_dir(run_id), held=job is not None and job.active)
        if job is None:
            if not self._worked and read.exit is None and not read.shim_alive and \
                    slurmsubmit.submitted(self.run_dir(run_id)):
                # submitted, and SLURM never answered us yet: its job may be queued
                # there (starting the run again could run it twice)
                return replace(read, shim_alive=True)
            if self._worked and self.recalls.must_recall(run_id, self.run_dir(run_id)):
                # its job is not in squeue (a dispatcher down past MinJobAge): its end
                # is asked of sacct at the next poll, the folder held back till then
                self._poll_now.set()
                return replace(read, exit=None, shim_alive=True, group_alive=False,
                               processes=frozenset())
            return read
        if job.active:
            # Queued or starting in SLURM (its shim on its way), or ending: its exit
            # record is held back until SLURM says how the job ended (a worker that
            # exits 0 on the TERM of a time limit or an scancel did not complete), and
            # SLURM is asked at once.
            if read.exit is not None:
                self._poll_now.set()
            waiting = f"SLURM: {job.reason}" if job.state == "PENDING" and \
                job.reason not in ("", "None") else ""
            return replace(read, exit=None, shim_alive=True, waiting=waiting,
                           group_alive=False, processes=frozenset(),
                           **(self._placed(run_id, job) if read.worker else {}))
        if read.worker is not None:
            read = replace(read, **self._placed(run_id, job))
        cause = slurmcli.CAUSES.get(job.state)
        if cause is not None and not job.active:
            return replace(read, ended_by=cause[0].value,
                           ended_message=f"{cause[1]} (job {job.job_id}, {job.state})")
        return read

    def _placed(self, run_id: str, job: JobState) -> dict[str, Any]:
        """Where SLURM placed the job, as its batch step recorded it: the read's host
        (the node), job_id and job_gpus (SLURM_JOB_GPUS: "0,1" -> ("0", "1")); {} until
        it did. Read once per job."""
        key = (run_id, job.job_id)
        if key not in self._where:
            data = read_json(os.path.join(self.run_dir(run_id), slurmstep.JOB_FILE)) or {}
            if data.get("job_id") != job.job_id:
                return {}
            self._where = {k: v for k, v in self._where.items() if k[0] != run_id}
            self._where[key] = slurmstep.placement(data)
        return self._where[key]

    def exited(self, run_id: str) -> bool:
        return has_exit_record(self.run_dir(run_id))

    def record_kill(self, run_id: str, record: KillRecord) -> str:
        return write_kill_record(self.run_dir(run_id), record)

    def ended(self) -> list[ShimEnded]:
        if self._gone:
            raise LauncherGone(self.last_error, GONE)
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            out, self._ended = self._ended, []
            if not self.hold_status and self._held:
                out += self._held
                self._held = []
        return out

    def moved(self) -> list[str]:
        with self._lock:
            out, self._moved = sorted(self._moved), set()
        return out

    def processes_of(self, pgids: frozenset[int]) -> frozenset[int]:
        return frozenset(procs.group_members(set(pgids)))

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._jobs.pop(run_id, None)
            self._where = {k: v for k, v in self._where.items() if k[0] != run_id}
            self._ended = [e for e in self._ended if e.run_id != run_id]
            self._moved.discard(run_id)
            self._held = [e for e in self._held if e.run_id != run_id]
        self.recalls.forget(run_id)

    def knows(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._jobs or any(e.run_id == run_id
                                               for e in self._ended + self._held)

    def check(self) -> None:
        if self._gone:
            raise LauncherGone(self.last_error, GONE)
        since = self._failing_since
        if self._worked and since is not None and self._failures >= 2 and \
                time.monotonic() - since >= self.gone_after_s:
            self._gone = True
            raise LauncherGone(f"squeue failed {self._failures} times in a row: "
                               f"{self.last_error}", GONE)

    def problem(self) -> str:
        since = self._failing_since
        squeue = "" if since is None else (
            f"SLURM: squeue failing for {time.monotonic() - since:.0f}s "
            f"({self._failures} times): {self.last_error}")
        return "; ".join(p for p in (squeue, self.history.problem()) if p)

    def close(self) -> None:
        self._stop.set()
        self._poll_now.set()
        if self._thread.is_alive():
            self._thread.join(CALL_TIMEOUT_S + 5)
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    # --- the watch --------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.is_set():
            self._poll_now.wait(self.poll_s)
            self._poll_now.clear()
            if not self._stop.is_set():
                self.poll()

    def poll(self) -> None:
        """One squeue for every job; the ends it shows told (wake_fd made readable)."""
        self.polls += 1
        with self._lock:   # a job submitted while squeue runs may be missing from it
            asked = {j.job_id for j in self._jobs.values()}
        try:
            out = run_tool(slurmcli.squeue_argv(), self.env, self.query_timeout_s)
        except SlurmError as exc:
            self._failures += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            if self.last_error != str(exc):
                self._log("warning", "slurm.squeue_failed", reason=str(exc))
            self.last_error = str(exc)
            return
        self._worked, self._failures, self._failing_since = True, 0, None
        listed = slurmcli.parse_squeue(out, self.home)
        later = self._look_up_gone(listed, asked)
        news = False
        with self._lock:
            latest = slurmcli.latest_by_run(listed)
            for run_id, job in list(self._jobs.items()):
                if job.job_id in asked and job.job_id not in listed and \
                        job.job_id not in self._told and job.job_id not in later:
                    # gone from squeue (MinJobAge) before we saw it end, and every
                    # source silent about it: its folder alone tells its end
                    self._told.add(job.job_id)
                    self._jobs[run_id] = replace(job, state="", reason="")
                    status = 0 if self.exited(run_id) else 1
                    news |= self._tell(ShimEnded(run_id, status))
            for run_id, job in latest.items():
                known = self._jobs.get(run_id)
                if known is not None and known.tag.attempt > job.tag.attempt:
                    continue   # an earlier attempt's job, still listed
                if known is None and job.job_id in self._told:
                    continue   # told and forgotten: listed until MinJobAge is past
                self._jobs[run_id] = job
                if known is None or known.state != job.state:
                    self._log("info", "slurm.job_state", run_id=run_id, job_id=job.job_id,
                              attempt=job.tag.attempt, state=job.state,
                              reason=job.reason or None)
                if job.active and (known is None or (known.state, known.reason) !=
                                   (job.state, job.reason)):
                    self._moved.add(run_id)   # what observe says of it changed: read it
                    news = True
                if not job.active and job.job_id not in self._told:
                    self._told.add(job.job_id)
                    news |= self._tell(ShimEnded(run_id, slurmcli.end_status(job.state)))
            self._told &= set(listed) | {j.job_id for j in self._jobs.values()}
        if news:
            try:
                os.write(self._write_fd, b"x")
            except (BlockingIOError, OSError):
                pass   # full (news is waiting already) or closed

    def _look_up_gone(self, listed: dict[str, JobState], asked: set[str]) -> set[str]:
        """The jobs squeue no longer lists (seen before, or a restarted dispatcher's
        recalled ones) looked up (slurmhistory.py): those found added to ``listed``;
        the ids to ask again at the next poll returned."""
        with self._lock:
            vanished = [j for j in self._jobs.values() if j.job_id in asked
                        and j.job_id not in listed and j.job_id not in self._told]
        recall = self.recalls.due(listed)
        if not vanished and not recall:
            return set()
        # sacct's --starttime: the earliest submission among them (0: one not recorded)
        since = min([submitted for _, submitted in recall.values()] + [
            sub.submitted_at if (sub := slurmsubmit.read_submission(
                self.run_dir(j.tag.run_id))) is not None else 0.0 for j in vanished])
        lookup = self.history.final_states(vanished + [job for job, _ in recall.values()],
                                           since, {j.job_id for j in vanished})
        listed.update(lookup.found)
        for run, (job, _) in recall.items():
            if job.job_id not in lookup.later:
                self.recalls.looked_up(run)
                self._log("info", "slurm.job_recalled", run_id=run, job_id=job.job_id,
                          state=lookup.found[job.job_id].state
                          if job.job_id in lookup.found else None)
        return lookup.later

    def _tell(self, ended: ShimEnded) -> bool:
        if self.hold_status:
            self._ended.append(ShimEnded(ended.run_id, None))
            self._held.append(ended)
        else:
            self._ended.append(ended)
        return True

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if self.log is not None:
            getattr(self.log, level)(event, **fields)

