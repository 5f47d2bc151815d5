"""`trainer logs` when the gateway goes away mid-stream: with -f it says so once on
stderr, waits, says when the gateway is back and resumes at the next byte (nothing
repeated or skipped); without -f it ends with the one-line unreachable message and
exit 1 within a few seconds (a fake run folder, the run finished through the registry)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import IO

import pytest

from tests.helpers import REPO, wait_until
from tests.system.gateway import CONFIG, Gateway
from tests.system.stack import Stack
from tests.system.test_gateway_logs import append

pytestmark = pytest.mark.timeout(60)

DOWN = "not reachable, retrying"
BACK = "is back, resuming at byte"


class Cli:
    """`trainer ARGS...` as a process; its stdout and stderr read in threads (or, with
    ``read_stdout=False``, left unread until ``read_stdout()``: the pipe fills up)."""

    def __init__(self, gw: Gateway, *args: str, read_stdout: bool = True) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "trainer.cli.main", *args],
                                     env=gw.env, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out, self.err = bytearray(), bytearray()
        self.threads = [self._reader(self.proc.stderr, self.err)]
        if read_stdout:
            self.read_stdout()

    def _reader(self, pipe: IO[bytes] | None, into: bytearray) -> threading.Thread:
        def read() -> None:
            assert pipe is not None
            for block in iter(lambda: pipe.read1(65536), b""):
                into.extend(block)
        t = threading.Thread(target=read, daemon=True)
        t.start()
        return t

    def read_stdout(self) -> None:
        self.threads.append(self._reader(self.proc.stdout, self.out))

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running after {timeout} s; stderr: {self.err!r}")
        for t in self.threads:
            t.join(10)
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


def fake_run(gw: Gateway, stack: Stack) -> tuple[str, str]:
    run_id = gw.client().submit(CONFIG).run.run_id
    folder = os.path.join(stack.settings.runs_dir, run_id)
    os.makedirs(folder, exist_ok=True)
    return run_id, os.path.join(folder, "stdout.log")


def finish(stack: Stack, run_id: str) -> None:
    reg = stack.client()
    reg.call("claim_gpus", {"run_id": run_id, "gpu_uuids": [], "claimed_by": "test"})
    reg.call("record_started", {"run_id": run_id, "pid": 4242, "pid_start_time": 1.0})
    reg.call("finish", {"run_id": run_id, "outcome": "completed", "exit_code": 0})


def test_follow_says_the_gateway_is_away_and_back_and_resumes_at_the_next_byte(
        gateway: Gateway, stack: Stack) -> None:
    run_id, out = fake_run(gateway, stack)
    append(out, b"one\n")
    cli = Cli(gateway, "logs", run_id, "-f")
    try:
        wait_until(lambda: bytes(cli.out) == b"one\n", 15, message="the first line")
        assert gateway.proc.stop() == 0
        wait_until(lambda: DOWN in cli.err.decode(), 10,
                   message="the note that the gateway is not reachable")
        append(out, b"two\n")                              # written while it is away
        gateway.start()
        wait_until(lambda: BACK in cli.err.decode(), 15, message="the note that it is back")
        wait_until(lambda: bytes(cli.out) == b"one\ntwo\n", 10, message="the missed line")
        append(out, b"three\n")
        finish(stack, run_id)
        assert cli.wait(20) == 0, cli.err
        assert bytes(cli.out) == b"one\ntwo\nthree\n"
        lines = cli.err.decode().splitlines()
        assert len(lines) == 2, lines
        assert lines[0] == (f"gateway at {gateway.addr} not reachable, retrying "
                            "(started again with `trainer up`?)")
        assert lines[1] == f"gateway at {gateway.addr} is back, resuming at byte 4"
    finally:
        cli.close()


def test_without_follow_a_gateway_gone_mid_stream_ends_unreachable(
        gateway: Gateway, stack: Stack) -> None:
    run_id, out = fake_run(gateway, stack)
    data = b"".join(b"line %07d\n" % i for i in range(3_000_000))  # 36 MB: more than
    append(out, data)                                  # the pipe and gRPC's windows hold
    cli = Cli(gateway, "logs", run_id, read_stdout=False)  # then stuck on a full pipe
    try:
        assert cli.proc.stdout is not None
        cli.out += os.read(cli.proc.stdout.fileno(), 4096)   # the stream is open
        assert gateway.proc.stop() == 0                   # while the stream is open
        cli.read_stdout()
        assert cli.wait(20) == 1
        assert data.startswith(bytes(cli.out)) and 0 < len(cli.out) < len(data)
        assert cli.err.decode().strip() == (
            f"Error: the gateway is not reachable at {gateway.addr}: start the services "
            "with `trainer up` (or check TRAINER_GATEWAY_ADDR and the TLS settings)")
    finally:
        cli.close()
