"""The shim fork server: a small process, started once by the dispatcher, that forks
each run's shim (``spawner.spawn_shim``) on request and reports each shim's exit.

Why: forking the dispatcher (zmq threads, every module loaded) costs milliseconds of
its loop per run, and each shim then copies the dispatcher's pages as it touches
them. This process imports only the standard library and ``spawner``, so a fork of
it is cheap, and it runs beside the dispatcher's loop instead of inside it.

Protocol (both pipes carry one JSON document per line):
- stdin, from the dispatcher: ``[run_dir, argv, env, limits]`` per shim to start
  (``limits``: the run's cores and memory limit, ``limits.Limits.to_wire``; a line
  without it starts a shim without limits);
- stdout, to the dispatcher: ``{"shim": pid, "run_dir": ...}`` once forked, and
  ``{"exited": pid, "status": wait status}`` when a shim ends (the dispatcher then
  reads the run's exit record; a run whose shim ended without one, and that no other
  shim holds, is lost: ``ended_dirs``).
End of input (the dispatcher exited, even by SIGKILL) ends the server; shims and
workers live on, as they do when the dispatcher itself goes.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
from typing import Any, Optional

from services.dispatcher.limits import Limits
from services.dispatcher.spawner import prepare_fork_server, spawn_shim


class ForkServerGone(RuntimeError):
    """The fork server exited; the dispatcher exits too and is restarted (its runs are
    adopted, a claimed run that never started is started again)."""


class ForkServer:
    """The dispatcher's side. ``wake_fd`` becomes readable when the server reported
    something or a shim has ended; ``ended()`` then says whether a shim ended.

    Each shim is also watched through a pidfd (Linux 5.3+), so that its end wakes the
    dispatcher at once, without waiting for the server to be scheduled, reap it and
    write its notice (which still comes, and covers a system without pidfds)."""

    def __init__(self, fd_soft_limit: Optional[int] = None) -> None:
        """``fd_soft_limit``: the RLIMIT_NOFILE soft limit the shims and workers get
        (the dispatcher raises its own; they keep the one it was started with)."""
        limit = [] if fd_soft_limit is None else [str(fd_soft_limit)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.dispatcher.forkserver", *limit],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.exits_fd = self.proc.stdout.fileno()
        os.set_blocking(self.exits_fd, False)
        self._partial = b""
        self.requested = 0
        self._epoll = select.epoll()
        self._epoll.register(self.exits_fd, select.EPOLLIN)
        self.wake_fd = self._epoll.fileno()
        self._pidfds: dict[int, int] = {}   # pidfd -> shim pid
        self._ended_pids: set[int] = set()  # seen ended by pidfd; the notice is still due
        self._dirs: dict[int, str] = {}     # live shim pid -> its run directory
        # Run directories whose shim (started here) has ended; the dispatcher discards
        # each once it is done with the run.
        self.ended_dirs: set[str] = set()
        # ... and how each shim exited (its wait status, from the server's notice, which
        # may come after the pidfd told of the end): a shim that could not write its
        # exit record tells by it whether its worker exited 0 (spawner.UNRECORDED_OK).
        self.exit_status: dict[str, int] = {}
        self._status_due: dict[int, str] = {}  # shim pid -> run dir, ended by pidfd

    def spawn(self, run_dir: str, argv: list[str], env: dict[str, str],
              limits: Limits = Limits()) -> None:
        """Ask for a shim; returns at once (the shim writes worker.json when it has
        started the worker)."""
        line = memoryview(json.dumps([run_dir, argv, env, limits.to_wire()]).encode()
                          + b"\n")
        fd = self.proc.stdin.fileno()  # type: ignore[union-attr]
        try:
            while line:  # a write may take part of the line (a signal, a full pipe)
                line = line[os.write(fd, line):]
        except (BrokenPipeError, ValueError):
            raise ForkServerGone(f"the shim fork server exited ({self.proc.poll()})") from None
        self.requested += 1

    def check(self) -> None:
        """Raise ForkServerGone if the server has exited (also seen as end of its
        output; this covers a server stopped but not yet gone)."""
        if self.proc.poll() is not None:
            raise ForkServerGone(f"the shim fork server exited ({self.proc.returncode})")

    def ended(self) -> bool:
        """Handle what is ready (never blocks); True if a shim has ended that was not
        reported before (by its pidfd, or by the server's notice)."""
        ready = [fd for fd, _ in self._epoll.poll(0)]
        ended = False
        for fd in ready:  # pidfds first: the notices below may reuse their numbers
            if fd != self.exits_fd and fd in self._pidfds:
                self._ended_pids.add(self._pidfds[fd])
                self._status_due[self._pidfds[fd]] = self._dirs.get(self._pidfds[fd], "")
                self._shim_ended(self._pidfds[fd])
                self._unwatch(fd)
                ended = True
        if self.exits_fd in ready:
            for notice in self.notices():
                if "shim" in notice:
                    self._dirs[int(notice["shim"])] = str(notice.get("run_dir", ""))
                    self._watch(int(notice["shim"]))
                elif "exited" in notice:
                    pid = notice["exited"]
                    run_dir = self._status_due.pop(pid, None) or self._dirs.get(pid)
                    if run_dir:
                        self.exit_status[run_dir] = int(notice.get("status", -1))
                    if pid in self._ended_pids:  # its pidfd told us already
                        self._ended_pids.discard(pid)
                        continue
                    ended = True
                    self._shim_ended(pid)
                    self._unwatch(next((f for f, p in self._pidfds.items() if p == pid), None))
        return ended

    def status_due(self, run_dir: str) -> bool:
        """True while the shim of ``run_dir`` has ended but its exit status is not in."""
        return run_dir in self._status_due.values()

    def done_with(self, run_dir: str) -> None:
        """Forget the run's shim: its end, its status, and a status still on its way
        (a late notice must not put one back for good); a shim of it still alive (an
        earlier attempt's, as the next one starts) is not reported when it ends."""
        self._dirs = {p: d for p, d in self._dirs.items() if d != run_dir}
        self.ended_dirs.discard(run_dir)
        self.exit_status.pop(run_dir, None)
        self._status_due = {p: d for p, d in self._status_due.items() if d != run_dir}

    def forget(self, run_dirs: set[str]) -> None:
        """Keep only these runs' ends (the others are done with)."""
        self.ended_dirs &= run_dirs
        self.exit_status = {d: s for d, s in self.exit_status.items() if d in run_dirs}

    def _shim_ended(self, pid: int) -> None:
        run_dir = self._dirs.pop(pid, None)
        if run_dir:
            self.ended_dirs.add(run_dir)

    def _watch(self, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, AttributeError, OSError):
            return  # gone already (its notice follows), no pidfds here, or no fd left
        self._pidfds[fd] = pid
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except OSError:
            del self._pidfds[fd]
            os.close(fd)

    def _unwatch(self, fd: Optional[int]) -> None:
        if fd is not None and self._pidfds.pop(fd, None) is not None:
            self._epoll.unregister(fd)
            os.close(fd)

    def notices(self) -> list[dict[str, Any]]:
        """What the server reported since the last call (never blocks)."""
        chunks = []
        while True:
            try:
                data = os.read(self.exits_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                raise ForkServerGone(f"the shim fork server exited ({self.proc.poll()})")
            chunks.append(data)
        lines = (self._partial + b"".join(chunks)).split(b"\n")
        self._partial = lines.pop()
        return [json.loads(line) for line in lines if line]

    def close(self) -> None:
        """End the server (its shims live on)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        for fd in list(self._pidfds):
            self._unwatch(fd)
        self._epoll.close()


def fork_server_of(dispatcher_pid: int) -> Optional[int]:
    """The pid of a dispatcher's fork server (for tools and tests), or None."""
    try:
        with open(f"/proc/{dispatcher_pid}/task/{dispatcher_pid}/children",
                  encoding="ascii") as fh:
            children = fh.read().split()
    except FileNotFoundError:
        return None
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as cmd:
                if b"services.dispatcher.forkserver" in cmd.read():
                    return int(child)
        except FileNotFoundError:
            continue
    return None


# --- the server process --------------------------------------------------------------

class _Notices:
    """Notices to the dispatcher, written only as fast as it reads them: the server
    never blocks on its output, so it keeps reading requests (a dispatcher that starts
    a thousand runs in one pass and reads notices only afterwards cannot deadlock it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.pending = bytearray()

    def add(self, obj: dict[str, Any]) -> None:
        self.pending += json.dumps(obj).encode() + b"\n"
        self.flush()

    def flush(self) -> None:
        """Write what the pipe takes now; BrokenPipeError when the dispatcher is gone."""
        while self.pending:
            try:
                n = os.write(self.fd, self.pending)
            except BlockingIOError:
                return
            del self.pending[:n]


def _reap(notices: _Notices) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        notices.add({"exited": pid, "status": status})


def serve(inp: int = 0, out: int = 1) -> int:
    # Terminal signals are the dispatcher's business: this process ends on end of input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    prepare_fork_server()
    try:
        _loop(inp, _Notices(out), wake_r)
    except BrokenPipeError:
        pass  # the dispatcher is gone (SIGKILL): so are we; the shims live on
    return 0


def _loop(inp: int, notices: _Notices, wake_r: int) -> None:
    """Until end of input: start the shims asked for, report the ones that ended."""
    buffered = b""
    while True:
        writing = [notices.fd] if notices.pending else []
        ready, can_write, _ = select.select([inp, wake_r], writing, [], 1.0)
        if can_write:
            notices.flush()
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
        if inp in ready:
            data = os.read(inp, 1 << 20)
            if not data:
                return
            lines = (buffered + data).split(b"\n")
            buffered = lines.pop()
            for line in lines:
                run_dir, argv, env, *rest = json.loads(line)
                pid = spawn_shim(run_dir, argv, env, Limits.from_wire(rest[0] if rest else None))
                notices.add({"shim": pid, "run_dir": run_dir})
        _reap(notices)


if __name__ == "__main__":
    if len(sys.argv) > 1:  # the file-descriptor soft limit for the shims and workers
        _hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), _hard))
    sys.exit(serve())
