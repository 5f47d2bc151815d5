"""A single-node SLURM cluster in a temporary folder, for the SLURM tests
(/work/shared/SLURM-CI.md has the measured recipe): munge with a fresh key, slurmctld
and slurmd on free ports, two fake GPU device nodes for GRES, nothing in /etc changed.
Clients reach it with ``SLURM_CONF`` (``env``). Needs root (mknod, SlurmUser=root) and
Debian's packages; ``missing()`` says, in one line, why it cannot start and how to
install what lacks.

Teardown: every job cancelled, squeue empty, then the daemons stopped by their pid
files, and no process of the cluster (munged, slurmctld, slurmd, slurmstepd) left."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional

from services.dispatcher.procs import process_start_time
from tests.helpers import wait_until
from tests.system.slurmdb import AccountingDb, slurm_conf_lines

INSTALL = ("apt-get install -y --no-install-recommends slurmctld slurmd slurm-client "
           "munge (as root; .ci/run does it)")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol",
           "sinfo")
CMD_TIMEOUT_S = 15.0
# An idle node, as sinfo's %T says after every job is gone: "planned" is an idle node
# the backfill scheduler had planned a (since cancelled) job for, until its next cycle
# (bf_interval, 30 s); RESUME does not clear it.
IDLE = ("idle", "planned")


def missing() -> str:
    """Why no cluster can start here ("" when one can)."""
    lacking = [name for name in DAEMONS if shutil.which(name) is None]
    if lacking:
        return f"SLURM is not installed ({', '.join(lacking)} missing): {INSTALL}"
    if os.geteuid() != 0:
        return f"the SLURM test cluster needs root (mknod, SlurmUser=root): {INSTALL}"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONF = """ClusterName=ci
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={d}/munge/sock
CredType=cred/munge
SlurmUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/ctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/ctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
{accounting}JobAcctGatherType=jobacct_gather/none
ReturnToService=2
SlurmdTimeout={slurmd_timeout}
MinJobAge={min_job_age}
KillWait={kill_wait}
SchedulerParameters=batch_sched_delay=0
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName={urgent} Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
"""
NO_ACCOUNTING = "AccountingStorageType=accounting_storage/none\n"
URGENT = "urgent"   # a partition whose jobs preempt the ci partition's (PREEMPTED)


class SlurmCluster:
    def __init__(self, kill_wait_s: int = 5, slurmd_timeout_s: int = 10,
                 accounting: bool = False) -> None:
        self.dir = tempfile.mkdtemp(prefix="slurm-ci-")
        self.host = socket.gethostname().split(".")[0]
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.env = {**os.environ, "SLURM_CONF": self.conf}
        self.kill_wait_s = kill_wait_s
        self.slurmd_timeout_s = slurmd_timeout_s   # a node silent this long is DOWN
        self.started_s = 0.0
        # with accounting (slurmdb.py: MariaDB and slurmdbd), sacct answers, and a
        # finished job leaves squeue within seconds (MinJobAge=2, not 300)
        self.db = AccountingDb(self.dir, self.env, free_port(), free_port()) \
            if accounting else None
        self.min_job_age_s = 2 if accounting else 300
        self._pids: list[tuple[int, Optional[float]]] = []

    # --- start ----------------------------------------------------------------------
    def start(self) -> "SlurmCluster":
        t0 = time.monotonic()
        d = self.dir
        for sub in ("munge", "state", "spool", "log", "dev"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, "munge"), 0o700)
        key = os.path.join(d, "munge", "key")
        with open(key, "wb") as fh:
            fh.write(os.urandom(1024))
        os.chmod(key, 0o400)
        for i in (0, 1):
            os.mknod(os.path.join(d, "dev", f"nvidia{i}"), 0o666 | 0o020000, os.makedev(1, 3))
        with open(self.conf, "w", encoding="utf-8") as fh:
            fh.write(CONF.format(host=self.host, d=d, ctld_port=free_port(),
                                 slurmd_port=free_port(), cpus=os.cpu_count() or 1,
                                 kill_wait=self.kill_wait_s, urgent=URGENT,
                                 min_job_age=self.min_job_age_s,
                                 accounting=slurm_conf_lines(self.db.dbd_port,
                                                             f"{d}/munge/sock")
                                 if self.db else NO_ACCOUNTING,
                                 slurmd_timeout=self.slurmd_timeout_s))
        with open(os.path.join(d, "gres.conf"), "w", encoding="utf-8") as fh:
            fh.write(f"NodeName={self.host} Name=gpu File={d}/dev/nvidia[0-1]\n")
        self._run(["munged", f"--key-file={key}", f"--socket={d}/munge/sock",
                   f"--pid-file={d}/munge/pid", f"--log-file={d}/log/munged.log",
                   f"--seed-file={d}/munge/seed", "--force"])
        self._remember(f"{d}/munge/pid")
        if self.db is not None:
            self.db.start("ci")
            for name in self.db.PID_FILES:
                self._remember(os.path.join(d, name))
        self.start_ctld()
        self.start_slurmd()
        self.started_s = time.monotonic() - t0
        return self

    def stop_accounting(self) -> None:
        """slurmdbd stopped: sacct fails (``start_accounting`` brings it back)."""
        assert self.db is not None, "a cluster without accounting"
        self.db.stop_dbd()

    def start_accounting(self) -> None:
        assert self.db is not None, "a cluster without accounting"
        self.db.start_dbd()
        self._remember(os.path.join(self.dir, "dbd.pid"))

    def start_slurmd(self) -> None:
        """slurmd (again, after kill_node), and wait until its node is idle (a node
        SLURM marked DOWN for not responding returns to service when its slurmd
        registers: ReturnToService=2)."""
        pidfile = f"{self.dir}/slurmd.pid"
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        self._run(["slurmd", "-f", self.conf])
        self._remember(pidfile)
        wait_until(lambda: self.node_state() == "idle", 30,
                   message="the SLURM test node to be idle")

    def node_state(self) -> str:
        """sinfo's state of the node ("idle", "mixed", "down*", ...; "" unanswered)."""
        return self.client(["sinfo", "-h", "-p", "ci", "-o", "%T"]).strip()

    def preempt(self, gpus: int = 2, seconds: float = 1.0) -> str:
        """A job in the urgent partition that needs ``gpus``: SLURM cancels the ci
        partition's jobs in its way (PREEMPTED). Its job id."""
        out = self.client(["sbatch", "--parsable", f"--partition={URGENT}",
                           f"--gres=gpu:{gpus}", f"--output={self.dir}/log/urgent-%j.out",
                           f"--wrap=sleep {seconds}"])
        return out.strip().split(";")[0]

    def kill_node(self, pids: tuple[int, ...] = (), pgids: tuple[int, ...] = ()) -> None:
        """The node lost with its jobs: SIGKILL slurmd, every slurmstepd of this
        cluster, the processes ``pids`` and the process groups ``pgids`` (a job's batch
        step and its worker's group), and wait until they are gone. slurmctld stays
        up: after slurmd_timeout_s it marks the node DOWN and ends its jobs NODE_FAIL."""
        with open(f"{self.dir}/slurmd.pid", encoding="ascii") as fh:
            slurmd = int(fh.read().strip())
        os.kill(slurmd, signal.SIGKILL)
        stepds = self.stepds()
        for pid in stepds:
            os.kill(pid, signal.SIGKILL)
        for pgid in pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        gone = [slurmd, *stepds, *pids]
        wait_until(lambda: all(process_start_time(p) is None for p in gone) and
                   not self.stepds(), 10, message="slurmd and the job's processes to die")

    def start_ctld(self) -> None:
        """slurmctld (again, after kill_ctld: its state is kept in the folder)."""
        pidfile = f"{self.dir}/ctld.pid"
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        self._run(["slurmctld", "-f", self.conf])
        self._remember(pidfile)
        wait_until(lambda: self.node_state() != "", 20,
                   message="slurmctld to answer")

    def kill_ctld(self, sig: int = signal.SIGKILL) -> int:
        """Stop slurmctld with ``sig`` (SIGTERM: it saves its state first; SIGKILL: jobs
        it had not saved yet are killed when it starts again) and wait until it is
        gone; its pid. Its jobs live on under slurmd meanwhile."""
        with open(f"{self.dir}/ctld.pid", encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, sig)
        wait_until(lambda: process_start_time(pid) is None, 10, message="slurmctld to die")
        return pid

    def ctld_alive(self) -> bool:
        try:
            with open(f"{self.dir}/ctld.pid", encoding="ascii") as fh:
                pid = int(fh.read().strip())
        except (FileNotFoundError, ValueError):
            return False
        return process_start_time(pid) is not None

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=CMD_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-500:]} (logs in {self.dir}/log)")

    def _remember(self, pidfile: str) -> None:
        def read() -> Optional[int]:
            try:
                with open(pidfile, encoding="ascii") as fh:
                    return int(fh.read().strip())
            except (FileNotFoundError, ValueError):
                return None
        pid = wait_until(read, 10, message=f"{pidfile} to be written")
        self._pids.append((pid, process_start_time(pid)))

    def client(self, argv: list[str]) -> str:
        """A SLURM client command against this cluster; its stdout ("" if it failed)."""
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=CMD_TIMEOUT_S)
        return done.stdout if done.returncode == 0 else ""

    def jobs(self) -> list[str]:
        """Every job of the cluster still listed and not finished: 'id|state|name'."""
        out = self.client(["squeue", "-h", "-o", "%i|%T|%j"])
        return [line for line in out.splitlines() if line.strip()]

    # --- stop -----------------------------------------------------------------------
    def cancel_all(self) -> None:
        """scancel every job, and wait until squeue lists none running or pending."""
        for line in self.jobs():
            self.client(["scancel", line.split("|")[0]])
        wait_until(lambda: not self.jobs(), 3 * self.kill_wait_s + 15,
                   message="squeue to be empty")

    def stepds(self) -> list[int]:
        """slurmstepd processes of this cluster (their command line names our conf or
        they descend from our slurmd): found by the cluster folder in /proc."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read()
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    env = fh.read()
            except OSError:
                continue
            if cmd.startswith(b"slurmstepd") and self.conf.encode() in env + cmd:
                out.append(int(entry))
        return out

    def alive(self) -> list[int]:
        return [pid for pid, start in self._pids
                if start is not None and process_start_time(pid) == start]

    def clean(self) -> None:
        """After a test: slurmctld up, every job cancelled and gone from squeue's active
        list, and no slurmstepd of this cluster left (waited for, then asserted)."""
        if not self.ctld_alive():
            self.start_ctld()
        self.cancel_all()
        state = self.node_state()
        if state not in IDLE:   # drained (a job id slurmd still ran, after a lost state)
            self.client(["scontrol", "update", f"NodeName={self.host}", "State=RESUME"])
            wait_until(lambda: self.node_state() in IDLE,
                       20, message=f"the SLURM test node to be idle again (was {state})")
        try:
            wait_until(lambda: not self.stepds(), 3 * self.kill_wait_s + 15,
                       message="no slurmstepd of the test's jobs left")
        finally:
            left = self.stepds()
            for pid in left:
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Cancel every job, stop the daemons, check that none of their processes is
        left (SIGKILL after 10 s), remove the folder."""
        try:
            self.cancel_all()
        finally:
            for pid, start in reversed(self._pids):
                if start is not None and process_start_time(pid) == start:
                    os.kill(pid, signal.SIGTERM)
            try:
                wait_until(lambda: not self.alive(), 10, message="the SLURM daemons to exit")
            finally:
                for pid in self.alive():
                    os.kill(pid, signal.SIGKILL)
                left = self.stepds()
                for pid in left:
                    os.kill(pid, signal.SIGKILL)
                shutil.rmtree(self.dir, ignore_errors=True)
            assert not left, f"slurmstepd processes left after the test: {left}"
