"""The worker SDK: a few lines turn any training script into a worker.

    from worker.sdk import Run
    with Run.from_env() as run:               # reads TRAINER_RUN_ID, TRAINER_RUN_DIR, ...
        for step in range(budget):
            if run.stop_requested:            # SIGTERM: checkpoint and leave
                break
            ...
            run.progress(step=step, episode=ep, last_return=r)
            run.log_metrics(step, loss=0.1)
        run.finish("completed", metrics={"return": r})

A background thread publishes a heartbeat with the latest progress every
``heartbeat_interval`` seconds on ``hb.<run_id>``. ``finish`` (or leaving the
``with`` block) writes ``result.json`` in the run directory, whatever the exit path.
``log_metrics`` appends to ``metrics.jsonl``, publishes on ``metric.<run_id>`` and writes
a TensorBoard scalar per value under ``tensorboard/<run name>/`` (worker/tbwriter.py).

SIGTERM sets the stop flag instead of killing the process. A script that does heavy
imports before creating its ``Run`` calls ``catch_sigterm()`` first: a SIGTERM that
arrives in between is then remembered, and the new ``Run`` starts with
``stop_requested`` set. ``load_config()`` reads the run config the dispatcher wrote
(``--config PATH`` on the command line). Heartbeats carry ``gpu_mem_bytes``, the
memory in use on the run's GPUs (None without a GPU; see worker/gpu.py).

Liveness (docs/SUPERVISION.md): heartbeats also carry ``metrics_finite`` (every value
``log_metrics`` got since the beat before was finite; None when it got none) and
``nonfinite_metric`` (the first that was not), ``phase`` (``evaluating`` inside
``with run.evaluating():``, else ""), ``updates`` (``progress(updates=...)``, else 0)
and ``last_return``, which falls back on the newest return ``log_metrics`` got (a
metric named like ``return``, ``return_mean``, ``episode_return``). A worker that
calls only ``progress()`` and ``log_metrics()`` is judged on all of it. A rule whose
action is ``checkpoint`` sends SIGUSR2: ``run.checkpoint_requested`` turns True until
``run.checkpoint_done()``; save one then.

Resuming (docs/WORKERS.md, "Resuming: attempts and checkpoints"): ``run.attempt`` is
TRAINER_ATTEMPT (1 by default); ``run.resume_checkpoint`` the checkpoint this attempt
must continue from (TRAINER_RESUME_CHECKPOINT, else the config's ``resume_from``, else
None), and ``run.take_checkpoint()`` the same path, noting that the worker loads it. A
run given a checkpoint that finishes ``completed`` without having taken it is recorded
as ``failed`` with cause ``checkpoint_ignored``, and ``worker.runner`` exits with
EXIT_CHECKPOINT_IGNORED (3).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import resource
import signal
import sys
import threading
import time
from typing import Any, Iterator, Optional

import zmq

from bus import curvekeys
from bus.codec import FORMAT_VERSION, MessageType, pack
from bus.topics import Topic
from runtime.atomicfile import atomic_file
from core.rundir import MANIFEST_FILE, METRICS_FILE, RESULT_FILE
from worker import attemptcode
from worker.artifactpath import artifact_path
from worker.gpu import GpuProbe
from worker.metricnotes import MetricNotes
from worker.tbwriter import TbWriter
from worker.resume import (ATTEMPT_ENV, CHECKPOINT_IGNORED, EXIT_BAD_CONFIG,  # noqa: F401
                           EXIT_CHECKPOINT_IGNORED, RESUME_ENV, Resume,
                           exit_status, mark_checkpoint_ignored, parse_attempt)
from worker.workerconfig import load_config  # noqa: F401 - the SDK's, re-exported


_EARLY_STOP = threading.Event()


def _on_early_sigterm(signum: int, frame: object) -> None:
    _EARLY_STOP.set()


def catch_sigterm() -> bool:
    """Turn SIGTERM into the stop flag from now on (call it before heavy imports).
    Returns False when it cannot (not the main thread): SIGTERM then keeps its
    default action."""
    try:
        signal.signal(signal.SIGTERM, _on_early_sigterm)
        return True
    except ValueError:
        return False


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain Python values (msgpack and JSON take those)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()   # numpy scalar or array
    return value


JOIN_TIMEOUT_S = 2.0  # longest wait for the bus's subscriptions at start
EVALUATING = "evaluating"   # the phase during ``with run.evaluating():``


class Run:
    def __init__(self, run_id: str, run_dir: str, bus_pub: str, heartbeat_interval: float,
                 ctx: Optional[zmq.Context] = None, gpu: Optional[GpuProbe] = None,
                 resume: Optional[Resume] = None) -> None:
        self.run_id = run_id
        self.run_dir = os.path.abspath(run_dir)
        self.heartbeat_interval = heartbeat_interval
        # attempt 1, and the config's resume_from (read from --config when needed)
        self._resume = resume or Resume(runs_dir=os.path.dirname(self.run_dir))
        self._ctx = ctx or zmq.Context.instance()
        # XPUB rather than PUB: it hears the subscriptions the broker forwards, so the
        # SDK can wait until they have arrived before its first message (a PUB drops
        # what it sends before then: the slow-joiner loss).
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.LINGER, 1000)
        self.joined = False
        if bus_pub:   # a CURVE client where TRAINER_BUS_CURVE_KEY names its key file
            curvekeys.connect(self._sock, bus_pub, curvekeys.keys_from_env(os.environ))
            self.joined = bool(self._sock.poll(int(JOIN_TIMEOUT_S * 1000), zmq.POLLIN))
        self._lock = threading.Lock()
        self._progress: dict[str, Any] = {"step": 0, "episode": 0, "last_return": None,
                                          "mean_return": None}
        # The hot path: progress() is the dict's own update, a C call with no Python
        # frame (~0.16 us against ~0.23 us for a method, timeit), so calling it every
        # CartPole step costs ~4 % of the steps/s (bench/bench_sdk.py). Same signature
        # as the method below.
        # Only the first call goes through _first_progress (it notes where this process
        # started counting: a resumed run starts at its checkpoint's step), which then
        # puts the dict's update in its place.
        self.progress = self._first_progress  # type: ignore[method-assign]
        self._base: Optional[tuple[int, float]] = None  # (first step, monotonic then)
        self._beats = 0
        self.last_heartbeat_at: Optional[float] = None  # time.time() of the last one sent
        self._gpu = gpu or GpuProbe(os.environ.get("CUDA_VISIBLE_DEVICES"))
        self._tb = TbWriter(self.run_dir, run_id)   # TensorBoard files, opened on first use
        self._stop = threading.Event()
        self._stop_flag = threading.Event()
        self._checkpoint_flag = threading.Event()
        self._seen = MetricNotes()   # what log_metrics saw since the last beat
        self._source = f"worker:{run_id}"
        self._metrics: Optional[Any] = None   # metrics.jsonl, opened at the first record
        self._phase = ""
        self.finished = False
        try:
            signal.signal(signal.SIGTERM, self._on_sigterm)
            signal.signal(signal.SIGUSR2, self._on_sigusr2)
        except ValueError:
            pass  # not the main thread: SIGTERM keeps its default action
        if _EARLY_STOP.is_set():      # after our handler is in: no gap for a signal
            _EARLY_STOP.clear()
            self._stop_flag.set()
        self._thread = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        self._thread.start()
        attemptcode.announce_to(self._announce_artifact)  # the attempt's code, when known

    def _announce_artifact(self, record: dict[str, Any]) -> None:
        try:
            self._send(Topic.ARTIFACT.topic(self.run_id), MessageType.ARTIFACT_REPORTED.value,
                       record)
        except zmq.ZMQError:
            pass  # closed meanwhile: the manifest has it, registered at the run's end

    @classmethod
    def from_env(cls, env: Optional[dict[str, str]] = None) -> "Run":
        e = os.environ if env is None else env
        run_dir = e.get("TRAINER_RUN_DIR", ".")
        resume = Resume.from_env(e, run_dir)   # first: a bad TRAINER_ATTEMPT connects nothing
        return cls(e.get("TRAINER_RUN_ID", "local"), run_dir,
                   e.get("TRAINER_BUS_PUB", ""),
                   float(e.get("TRAINER_HEARTBEAT_INTERVAL", "1.0")),
                   gpu=GpuProbe(e.get("CUDA_VISIBLE_DEVICES")), resume=resume)

    # --- resuming --------------------------------------------------------------------
    @property
    def attempt(self) -> int:
        """Which attempt of the run this process is: TRAINER_ATTEMPT, 1 by default."""
        return self._resume.attempt

    @property
    def resume_checkpoint(self) -> Optional[str]:
        """The absolute path of the checkpoint this attempt must resume from:
        TRAINER_RESUME_CHECKPOINT if set, else the config's ``resume_from`` resolved
        (worker.checkpoint.resolve), else None. Reading it does not count as taking it.
        Raises core.errors.ValidationError (field TRAINER_RESUME_CHECKPOINT or
        resume_from) when the file named is not there."""
        return self._resume.checkpoint

    @property
    def resume_source(self) -> Optional[str]:
        """"TRAINER_RESUME_CHECKPOINT", "resume_from" or None: what names the
        checkpoint (the field to name in an error about it)."""
        return self._resume.source

    def take_checkpoint(self) -> Optional[str]:
        """``resume_checkpoint``, recording that the worker takes it: call it where you
        load the file. A run given a checkpoint that finishes ``completed`` without
        having called it is recorded ``failed`` (cause ``checkpoint_ignored``) and its
        process exits with EXIT_CHECKPOINT_IGNORED."""
        return self._resume.take()

    @property
    def stop_requested(self) -> bool:
        """True once SIGTERM arrived (also before this Run existed, see
        catch_sigterm) or request_stop() was called: checkpoint and leave."""
        return self._stop_flag.is_set()

    def request_stop(self) -> None:
        self._stop_flag.set()

    def wait_for_stop(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds, returning early (True) once a stop is
        requested: an interruptible pause for scripts that wait between steps."""
        return self._stop_flag.wait(timeout)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self._stop_flag.set()

    def _on_sigusr2(self, signum: int, frame: object) -> None:
        self._checkpoint_flag.set()

    # --- liveness --------------------------------------------------------------------
    @property
    def checkpoint_requested(self) -> bool:
        """True once the dispatcher asked for a checkpoint (SIGUSR2: a liveness rule
        with action ``checkpoint``, docs/SUPERVISION.md) until ``checkpoint_done()``."""
        return self._checkpoint_flag.is_set()

    def checkpoint_done(self) -> None:
        self._checkpoint_flag.clear()

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """An evaluation (or any pause of training the worker means): the liveness
        rules do not judge it, and their windows start again after it. A beat goes at
        once at both ends, so the dispatcher knows without waiting for the next one."""
        self.set_phase(EVALUATING)
        try:
            yield
        finally:
            self.set_phase("")

    def set_phase(self, phase: str) -> None:
        """``evaluating`` or "" (training): what ``evaluating()`` sets."""
        if phase == self._phase:
            return
        self._phase = phase
        try:
            self.heartbeat()
        except zmq.ZMQError:
            pass  # closed: nobody to tell

    # --- reporting -----------------------------------------------------------------
    def _send(self, topic: str, mtype: str, payload: dict[str, Any]) -> None:
        """The envelope packed as a map (bus.pubsub.Publisher.publish's hot path: no
        Envelope object; the same bytes)."""
        data = pack({"v": FORMAT_VERSION, "type": mtype, "source": self._source,
                     "ts": time.time(), "payload": payload})
        with self._lock:
            self._sock.send_multipart([topic.encode(), data])

    def progress(self, **values: Any) -> None:
        """Latest progress (step, episode, last_return, mean_return, any other keys),
        sent with the next heartbeat. Cheap enough to call every env step: each Run
        replaces this method by its progress dict's ``update`` (atomic under the GIL,
        no lock) once a first call has given a step (where this process's steps/s
        counts from)."""
        self._progress.update(values)

    def _first_progress(self, **values: Any) -> None:
        step = values.get("step")
        if isinstance(step, numbers.Real) and not isinstance(step, bool):
            self._base = (int(step), time.monotonic())
            self.progress = self._progress.update  # type: ignore[method-assign]
        self._progress.update(values)

    def steps_per_s(self, step: Any) -> float:
        """Steps done in this process per second, from the first progress() call
        that gave a step (not the steps a resumed checkpoint brought); 0 before."""
        if self._base is None or not isinstance(step, numbers.Real) or isinstance(step, bool):
            return 0.0
        first, since = self._base
        return max(step - first, 0) / max(time.monotonic() - since, 1e-9)

    def heartbeat(self) -> None:
        progress = _plain(dict(self._progress))
        with self._lock:
            self._beats += 1
            beat = self._beats
        finite, nonfinite = self._seen.take()
        if progress.get("last_return") is None and self._seen.latest_return is not None:
            progress["last_return"] = self._seen.latest_return
        payload = {"run_id": self.run_id, "beat": beat, "updates": 0, **progress,
                   "metrics_finite": finite, "nonfinite_metric": nonfinite,
                   "phase": self._phase,
                   "steps_per_s": self.steps_per_s(progress.get("step", 0)),
                   "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   "gpu_mem_bytes": self._gpu.memory_used()}
        self._send(Topic.HEARTBEAT.topic(self.run_id), MessageType.HEARTBEAT.value, payload)
        self.last_heartbeat_at = time.time()

    def log_metrics(self, step: int, **values: float) -> None:
        record = {"run_id": self.run_id, "step": int(step), "ts": time.time(),
                  "values": _plain(values)}
        self._seen.note(record["values"])
        if self._metrics is None:   # kept open: each line written and flushed at once
            self._metrics = open(os.path.join(self.run_dir, METRICS_FILE), "a",
                                 encoding="utf-8")
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        self._tb.write(record["step"], record["ts"], record["values"])
        self._send(Topic.METRICS.topic(self.run_id), MessageType.METRICS.value, record)

    def register_artifact(self, path: str, kind: str, **meta: Any) -> dict[str, Any]:
        rel, full = artifact_path(self.run_dir, path, kind)   # ValueError: why not
        record = {"run_id": self.run_id, "kind": kind, "path": rel,
                  "size": os.path.getsize(full), "meta": _plain(meta)}
        with open(os.path.join(self.run_dir, MANIFEST_FILE), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        self._send(Topic.ARTIFACT.topic(self.run_id), MessageType.ARTIFACT_REPORTED.value,
                   record)
        return record

    # --- lifecycle -------------------------------------------------------------------
    def _beat_loop(self) -> None:
        warned = False
        while not self._stop.is_set():
            try:
                self.heartbeat()
            except zmq.ZMQError:
                return
            except Exception as exc:  # noqa: BLE001 - e.g. a progress value msgpack refuses
                if not warned:
                    print(f"worker.sdk: heartbeat failed: {exc!r}", file=sys.stderr, flush=True)
                    warned = True
            self._stop.wait(self.heartbeat_interval)

    def finish(self, status: str, reason: str = "",
               metrics: Optional[dict[str, Any]] = None) -> None:
        """Write the exit record (status, reason, final metrics) and stop heartbeating.

        ``completed`` from a run given a checkpoint it never took (take_checkpoint) is
        recorded as ``failed``, cause ``checkpoint_ignored``, the checkpoint named in
        the reason (also on stderr), and the process's exit status becomes
        EXIT_CHECKPOINT_IGNORED (see exit_status). ``stopped`` and ``failed`` are
        recorded as given: a stop before the checkpoint was loaded ignores nothing."""
        if self.finished:
            return
        self.finished = True
        record: dict[str, Any] = {"run_id": self.run_id, "status": status, "reason": reason,
                                  "attempt": self.attempt}
        ignored = self._resume.ignored() if status == "completed" else None
        if ignored is not None:
            why = (f"checkpoint ignored: attempt {self.attempt} was given the checkpoint "
                   f"{ignored[0]} ({ignored[1]}) and finished 'completed' without taking "
                   "it (Run.take_checkpoint), so it did not continue the run")
            record.update(status="failed", cause=CHECKPOINT_IGNORED,
                          reason=f"{why}; the worker said: {reason}" if reason else why)
            mark_checkpoint_ignored()
            print(f"worker.sdk: {why}", file=sys.stderr, flush=True)
        record.update(metrics=_plain(metrics or {}), at=time.time())
        with atomic_file(os.path.join(self.run_dir, RESULT_FILE), durable=False) as fh:
            json.dump(record, fh)
        self.close()

    def close(self) -> None:
        attemptcode.announce_to(None)
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._sock.close()
        self._gpu.close()
        self._tb.close()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None or (exc_type is SystemExit and exc.code in (0, None)):
            self.finish("stopped" if self.stop_requested else "completed")
        else:
            self.finish("failed", f"{exc_type.__name__}: {exc}")
