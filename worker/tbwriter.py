"""Every metric the SDK logs, also in TensorBoard event files (docs/WORKERS.md,
"TensorBoard"): ``runs/<run_id>/tensorboard/<label>/events.out.tfevents.<time>.<host>
.trainer-sdk``, so that ``tensorboard --logdir $TRAINER_HOME/runs`` lists the run as
``<run_id>/tensorboard/<label>``: its id and its name (the config's ``name``, else its
``worker``; core.rundir has the names).

One ``Run.log_metrics`` call is one TensorBoard event at its step and time, holding
every numeric value as a scalar (``simple_value``: TensorBoard keeps float32, while
``metrics.jsonl`` keeps the full doubles). The file's first event after the header is
a text summary ``trainer/run`` naming the run (TensorBoard's TEXT tab).

The hot path is cheap: the event is built with tensorboardX's protocol buffers
(TensorBoard's schema), framed as a TFRecord (runtime.tbevents.record: CRC-32C by
google-crc32c, in C) and written to a buffered file in the caller's thread: about 9 us a
call of three values. tensorboardX's own writers cost more: its ``EventsWriter`` 18 us
(a pure-Python CRC unless the ``crc32c`` package is installed), its ``SummaryWriter`` 42
us (each event passes a multiprocessing queue and two threads); measured on this
machine. A daemon thread flushes every FLUSH_S seconds when something was written, and
``close`` flushes, so a killed worker leaves a readable file (at most its last FLUSH_S
seconds missing, and a torn last record that readers skip). The file name holds the
process id, so two attempts started in the same second never share a file.

Without tensorboardX (a worker's own environment may lack it), with SDK_TENSORBOARD=0
(a run's ``env_vars`` may set it), or where the folder cannot be written, one line goes
to stderr and the run goes on with metrics.jsonl only.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import threading
import time
from typing import Any, Mapping, Optional

from core.rundir import CONFIG_FILE, TB_DIR, TB_SDK_SUFFIX

SWITCH_ENV = "SDK_TENSORBOARD"   # "0": write no event files (a run may set it: env_vars)
FLUSH_S = 2.0
MAX_LABEL = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,@-]+")


def run_label(config: Mapping[str, Any]) -> str:
    """The folder under ``tensorboard/`` for a run's config: its ``name``, else its
    ``worker``, else ``trainer``, as a safe file name (other characters become ``_``,
    at most MAX_LABEL characters, no leading dot)."""
    for key in ("name", "worker"):
        text = config.get(key)
        if isinstance(text, str):
            label = _UNSAFE.sub("_", text.strip()).lstrip(".")[:MAX_LABEL]
            if label.strip("_"):
                return label
    return "trainer"


def read_config(run_dir: str) -> dict[str, Any]:
    """The run's config.json as the dispatcher wrote it; {} when absent or unreadable
    (a script run by hand)."""
    try:
        with open(os.path.join(run_dir, CONFIG_FILE), encoding="utf-8") as fh:
            got = json.load(fh)
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def _say(text: str) -> None:
    print(f"worker.tbwriter: {text}", file=sys.stderr, flush=True)


class TbWriter:
    """The SDK's event file of one process, opened on the first ``write``."""

    def __init__(self, run_dir: str, run_id: str,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.run_dir = run_dir
        self.run_id = run_id
        e = os.environ if env is None else env
        self.enabled = e.get(SWITCH_ENV, "1") != "0"
        self.path: Optional[str] = None
        self._file: Any = None         # the buffered event file, once open
        self._pb: Any = None           # (Event, Summary, record)
        self._lock = threading.Lock()  # the file: the caller's writes, the flusher
        self._dirty = False
        self._closed = threading.Event()
        self._flusher: Optional[threading.Thread] = None

    def _open(self) -> bool:
        self.enabled = False           # until it is open: a failure is said once
        try:
            from tensorboardX.proto.event_pb2 import Event
            from tensorboardX.proto.summary_pb2 import Summary
            from tensorboardX.summary import text

            from runtime.tbevents import record
        except ImportError as exc:
            _say(f"no TensorBoard files ({exc}); metrics go to metrics.jsonl only "
                 "(pip install tensorboardX)")
            return False
        config = read_config(self.run_dir)
        label = run_label(config)
        folder = os.path.join(self.run_dir, TB_DIR, label)
        now = time.time()
        path = os.path.join(folder, f"events.out.tfevents.{int(now)}."
                                    f"{socket.gethostname()}.{os.getpid()}{TB_SDK_SUFFIX}")
        about = (f"run `{self.run_id}` · name `{config.get('name') or '-'}` · worker "
                 f"`{config.get('worker') or '-'}` · label `{label}`")
        try:
            os.makedirs(folder, exist_ok=True)
            self._file = open(path, "ab", buffering=64 * 1024)
            self._file.write(record(Event(wall_time=now, file_version="brain.Event:2")
                                    .SerializeToString()))
            self._file.write(record(Event(wall_time=now, step=0, summary=text(
                "trainer/run", about)).SerializeToString()))
        except OSError as exc:
            _say(f"cannot write TensorBoard files in {folder} ({exc}); metrics go to "
                 "metrics.jsonl only")
            if self._file is not None:
                self._file.close()
                self._file = None
            return False
        self._pb, self.path, self._dirty = (Event, Summary, record), path, True
        self._flusher = threading.Thread(target=self._flush_loop, name="tb-flush",
                                         daemon=True)
        self._flusher.start()
        self.enabled = True
        return True

    def write(self, step: int, ts: float, values: Mapping[str, Any]) -> None:
        """One event: every int or float value (not bool) as a scalar named by its key."""
        if self._file is None and not (self.enabled and self._open()):
            return
        Event, Summary, record = self._pb
        scalars = [Summary.Value(tag=k, simple_value=v) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and _fits(v)]
        if not scalars or self._closed.is_set():
            return
        data = record(Event(wall_time=ts, step=step,
                            summary=Summary(value=scalars)).SerializeToString())
        try:
            with self._lock:
                if self._file is None:    # closed meanwhile (by another thread)
                    return
                self._file.write(data)
        except OSError as exc:            # a full disk: said once, jsonl goes on
            _say(f"TensorBoard file {self.path} not written ({exc}); stopped writing it")
            self._closed.set()
            return
        self._dirty = True

    def _flush_loop(self) -> None:
        while not self._closed.wait(FLUSH_S):
            self.flush()

    def flush(self) -> None:
        if self._file is None or not self._dirty:
            return
        self._dirty = False
        try:
            with self._lock:
                if self._file is not None:
                    self._file.flush()
        except OSError as exc:
            _say(f"TensorBoard file {self.path} not flushed ({exc})")

    def close(self) -> None:
        """Flush and close the file (idempotent); later writes are dropped."""
        if self._file is None:
            self.enabled = False
            return
        self._closed.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=2)
        with self._lock:
            try:
                self._file.close()
            except OSError as exc:
                _say(f"TensorBoard file {self.path} not closed cleanly ({exc})")
            self._file = None
        self.enabled = False


def _fits(value: float) -> bool:
    """A number TensorBoard's float32 takes (NaN and infinities are kept as such)."""
    try:
        number = float(value)
    except OverflowError:   # an integer too large for a double
        return False
    return not math.isfinite(number) or abs(number) < 3.4e38
