"""SLURM accounting for a test cluster (tests/system/slurmcluster.py): a MariaDB
server in the cluster's folder (its own data directory, socket and free port; nothing
in /etc changed) and slurmdbd in front of it, started before slurmctld, so that
``sacct`` answers. Needs Debian's ``slurmdbd`` and ``mariadb-server``; ``missing()``
says, in one line, what lacks and how to install it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from tests.helpers import wait_until

INSTALL = ("apt-get install -y --no-install-recommends slurmdbd mariadb-server "
           "(as root; .ci/run does it)")
PROGRAMS = ("mariadb-install-db", "mariadbd", "mariadb", "slurmdbd", "sacctmgr", "sacct")
USER, PASSWORD = "slurm", "slurm-ci"

DBD_CONF = """AuthType=auth/munge
AuthInfo=socket={d}/munge/sock
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
PidFile={d}/dbd.pid
LogFile={d}/log/dbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser={user}
StoragePass={password}
StorageLoc=slurm_acct_db
"""


def missing() -> str:
    lacking = [p for p in PROGRAMS if shutil.which(p) is None]
    return f"SLURM accounting not installed ({', '.join(lacking)} missing): {INSTALL}" \
        if lacking else ""


def slurm_conf_lines(dbd_port: int, munge_socket: str) -> str:
    """What slurm.conf says to keep accounting in this slurmdbd (job comments too)."""
    return (f"AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost=127.0.0.1\nAccountingStoragePort={dbd_port}\n"
            f"AccountingStoragePass={munge_socket}\nAccountingStoreFlags=job_comment\n")


class AccountingDb:
    PID_FILES = ("db.pid", "dbd.pid")   # in the folder: MariaDB's, slurmdbd's

    def __init__(self, folder: str, env: dict[str, str], db_port: int,
                 dbd_port: int) -> None:
        self.dir = folder
        self.env = env
        self.db_port = db_port
        self.dbd_port = dbd_port

    def start(self, cluster_name: str) -> None:
        """MariaDB, then slurmdbd (the slurm.conf beside its conf must exist: slurmdbd
        reads slurmdbd.conf from SLURM_CONF's folder), then the cluster registered."""
        d = self.dir
        data = os.path.join(d, "db")
        self._run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                   "--auth-root-authentication-method=normal", "--skip-test-db"])
        # in the background (sh's child, not ours: no zombie to reap), as slurmdbd
        # daemonizes itself; the cluster stops both by their pid files
        self._run(["sh", "-c", f"exec mariadbd --no-defaults --datadir={data} "
                   f"--socket={d}/db.sock --port={self.db_port} --bind-address=127.0.0.1 "
                   f"--user=root --pid-file={d}/db.pid --log-error={d}/log/db.err "
                   ">/dev/null 2>&1 &"])
        wait_until(lambda: os.path.exists(f"{d}/db.sock") and os.path.exists(f"{d}/db.pid"),
                   30, message=f"MariaDB's socket (log: {d}/log/db.err)")
        self._run(["mariadb", "--no-defaults", "-S", f"{d}/db.sock", "-u", "root", "-e",
                   f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                   f"GRANT ALL ON *.* TO '{USER}'@'127.0.0.1';"])
        conf = os.path.join(d, "slurmdbd.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(DBD_CONF.format(d=d, dbd_port=self.dbd_port, db_port=self.db_port,
                                     user=USER, password=PASSWORD))
        os.chmod(conf, 0o600)   # slurmdbd refuses a conf others can read
        self.start_dbd()
        wait_until(lambda: self._sacctmgr(["add", "cluster", cluster_name]), 30,
                   message="slurmdbd to register the test cluster")

    def start_dbd(self) -> None:
        """slurmdbd (again, after stop_dbd): it daemonizes, its pid in dbd.pid."""
        self._run(["slurmdbd"])
        wait_until(lambda: self._sacctmgr(["list", "cluster"]), 30,
                   message="slurmdbd to answer")

    def stop_dbd(self) -> None:
        """slurmdbd stopped (SIGTERM, waited for): sacct fails until start_dbd."""
        pidfile = os.path.join(self.dir, "dbd.pid")
        with open(pidfile, encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 20,
                   message="slurmdbd to exit")

    def _sacctmgr(self, args: list[str]) -> bool:
        done = subprocess.run(["sacctmgr", "-i", *args], env=self.env, capture_output=True,
                              text=True, timeout=10)
        return done.returncode == 0 or "already exists" in done.stdout + done.stderr

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-500:]} (logs in {self.dir}/log)")
