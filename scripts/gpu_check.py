"""``make gpu-check``: the GPU check of issue 3, on a machine with an NVIDIA GPU.

Prints the pynvml inventory as the dispatcher reads it (no NVIDIA GPU or driver: says
so and exits 3, "nothing to check"); starts the real bus, registry and dispatcher (no
fake GPUs) in a fresh TRAINER_HOME (``--home``); submits a run asking for 1 GPU with
the worker ``test-gpu-hold`` (tests/workers), which records what it sees and holds
``--gib`` GiB of device memory until stopped. Checks that the GPU claimed in the
registry is the worker's CUDA_VISIBLE_DEVICES, that the worker sees exactly that one
GPU, that NVML shows the memory taken (and the worker among the compute processes,
where the driver reports them) and heartbeats carry it; cancels the run through the
registry (``request_cancel``, what ``trainer cancel`` sends through the gateway) and
checks that it ends CANCELLED, the memory is free again, the worker gone and the
registry's GPU slot free. Stops every service it started, also on failure or Ctrl-C.

One ``PASS``/``FAIL``/``SKIP`` line per check and a JSON report
(``$TRAINER_HOME/gpu_check.json`` or ``--report``). Exit 0 only if no check failed, 1
otherwise, 3 without a GPU. ``--without-gpu`` runs the same path with a run asking
for no GPU and holding nothing (the GPU checks SKIP): a test of the services, the
worker and an install where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from typing import Any, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, REPO)

from core.errors import OrchestratorError  # noqa: E402
from core.rundir import STDERR_FILE, STDOUT_FILE  # noqa: E402
from gpu_stack import (MIB, TERMINAL, Nvml, Report, Services, StartFailed,  # noqa: E402
                       interrupt, norm, print_inventory, tail)
from services.dispatcher.shell.gpuread import Inventory, read_inventory  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

EXIT_NOTHING_TO_CHECK = 3
GIB = 2**30
CONTEXT_MAX = 2 * GIB      # most a CUDA context (torch's kernels included) may add
FREED_SLACK = 256 * MIB    # "free again": back within this of the memory used before


class GpuCheck:
    def __init__(self, services: Services, nvml: Optional[Nvml], inv: Inventory,
                 args: argparse.Namespace, report: Report) -> None:
        self.s, self.nvml, self.inv, self.args, self.r = services, nvml, inv, args, report
        self.gpu = nvml is not None
        self.alloc = int(args.gib * GIB) if self.gpu else 0
        self.run_id: Optional[str] = None
        self.seen: dict[str, Any] = {}

    def seen_file(self) -> Optional[dict[str, Any]]:
        path = os.path.join(self.s.run_dir(self.run_id or ""), "gpu_seen.json")
        try:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def start(self) -> None:
        status = self.s.start()
        pids = ", ".join(f"{n} {p.pid}" for n, p in self.s.procs.items())
        self.r.check("services up", True, pids)
        counters = status.get("counters", {})
        uuids = [g["uuid"] for g in counters.get("gpus", [])]
        self.r.check("dispatcher inventory", counters.get("gpu_source") == self.inv.source.value
                     and uuids == list(self.inv.uuids),
                     f"source={counters.get('gpu_source')} gpus={uuids}")

    def submit(self) -> None:
        config = {"name": "gpu-check", "worker": "test-gpu-hold", "env": "CartPole-v1",
                  "seed": int(time.time()), "tags": ["gpu-check"],
                  "resources": {"gpus": 1 if self.gpu else 0, "cpu_slots": 1},
                  "hyperparameters": {"gib": self.alloc / GIB, "via": self.args.via},
                  "heartbeat_interval_s": 0.5, "heartbeat_timeout_s": 60.0,
                  "startup_grace_s": 120.0, "cancel_grace_s": 20.0}
        self.run_id = self.s.call("submit", {"config": config, "submitted_by": "gpu-check"}
                                  )["run"]["run_id"]
        print(f"submitted {self.run_id}: {json.dumps(config, sort_keys=True)}", flush=True)

    def wait_holding(self) -> bool:
        def ready() -> Optional[dict[str, Any]]:
            seen = self.seen_file()
            run = self.s.run(self.run_id or "")
            started = run["status"] not in ("PENDING", "DISPATCHING")  # the worker may
            state = (seen or {}).get("state")          # write its file before RunStarted
            if state == "failed" or (state == "holding" and started):
                return seen
            return {"state": "ended", "run": run} if run["status"] in TERMINAL else None
        try:
            self.seen = wait_until(ready, self.args.start_timeout, interval=0.2,
                                   message="the worker to hold its memory")
        except AssertionError as exc:
            self.seen = {"state": "timeout", "run": self.s.run(self.run_id or ""),
                         "error": str(exc)}
        print("worker saw: " + json.dumps(self.seen, sort_keys=True), flush=True)
        ok = self.seen.get("state") == "holding"
        run = self.s.run(self.run_id or "")
        stderr = tail(os.path.join(self.s.run_dir(self.run_id or ""), STDERR_FILE))
        return self.r.check("worker running and holding", ok and run["status"] == "RUNNING",
                            f"status {run['status']}, {self.seen.get('allocated_bytes', 0):,} "
                            f"bytes via {self.seen.get('allocated_via')}"
                            + ("" if ok else f"; waiting: {run.get('waiting_reason')!r}; "
                               f"message {run.get('message')!r}; stderr:\n{stderr}"))

    def check_gpu_seen(self) -> str:
        run = self.s.run(self.run_id or "")
        claimed = list(run.get("gpus") or [])
        events = self.s.events(self.run_id or "")
        event = [e["payload"].get("gpu_uuids") for e in events if e["type"] == "GpusClaimed"]
        slots = {s["gpu_uuid"]: s["run_id"] for s in self.s.call("gpu_slots")["slots"]}
        visible = self.seen.get("cuda_visible_devices")
        if not self.gpu:
            self.r.check("no GPU given", claimed == [] and visible == "" and not slots,
                         f"run gpus {claimed}, CUDA_VISIBLE_DEVICES={visible!r}, slots {slots}")
            return ""
        uuid = claimed[0] if len(claimed) == 1 else ""
        self.r.check("registry claim", bool(uuid) and event == [claimed]
                     and slots.get(uuid) == self.run_id,
                     f"run gpus {claimed}, GpusClaimed {event}, gpu_slots {slots}")
        self.r.check("CUDA_VISIBLE_DEVICES is the claimed GPU", bool(uuid) and visible == uuid,
                     f"{visible!r} (claimed {uuid!r})")
        via = "torch" if "error" not in self.seen.get("torch", {"error": 1}) else "driver"
        view = self.seen.get(via, {})
        devices = view.get("devices", [])
        self.r.check(f"worker sees exactly 1 GPU ({via})", view.get("device_count") == 1,
                     f"device_count {view.get('device_count')}: {devices or view.get('error')}")
        name = next((g.name for g in self.inv.gpus if g.uuid == uuid), "?")
        if devices and devices[0].get("uuid"):
            self.r.check("worker's GPU is the claimed one",
                         norm(devices[0]["uuid"]) == norm(uuid),
                         f"{devices[0]['uuid']} {devices[0].get('name')} (claimed {uuid})")
        else:
            self.r.check("worker's GPU is the claimed one (by name)", bool(devices)
                         and devices[0].get("name") == name, f"{devices} (claimed {name})")
        smi = self.seen.get("nvidia_smi", {})
        if smi.get("lines"):
            self.r.check("nvidia-smi -L lists the claimed GPU",
                         any(uuid in line for line in smi["lines"]), " | ".join(smi["lines"]))
        else:
            self.r.add("SKIP", "nvidia-smi -L", str(smi.get("error") or smi))
        return uuid

    def check_memory_taken(self, uuid: str, baseline: int) -> None:
        nvml = self.nvml
        assert nvml is not None
        def rise() -> int:
            return nvml.used(uuid) - baseline
        try:
            wait_until(lambda: rise() >= 0.9 * self.alloc, 30, interval=0.2,
                       message="NVML to show the allocation")
        except AssertionError:
            pass
        grew = rise()
        self.r.check("GPU memory taken (NVML)",
                     0.9 * self.alloc <= grew <= self.alloc + CONTEXT_MAX,
                     f"used rose by {grew / MIB:,.0f} MiB for {self.alloc / MIB:,.0f} MiB "
                     f"allocated (baseline {baseline / MIB:,.0f} MiB)")
        procs = nvml.processes(uuid)
        pid = self.seen.get("pid")
        if not procs:
            self.r.add("SKIP", "worker among compute processes",
                       f"the driver reports {procs!r}")
        else:
            self.r.check("worker among compute processes", any(p["pid"] == pid for p in procs),
                         f"worker pid {pid}; NVML: {procs}")

    def check_heartbeat(self) -> None:
        def beat() -> Optional[dict[str, Any]]:
            self.s.drain(100)
            hb = self.s.heartbeats.get(self.run_id or "")
            if hb is None or (self.gpu and (hb.get("gpu_mem_bytes") or 0) < 0.9 * self.alloc):
                return None
            return hb
        try:
            hb = wait_until(beat, 15, interval=0.05, message="a heartbeat")
            self.r.check("heartbeat", True, f"beat {hb.get('beat')}, gpu_mem_bytes "
                         f"{hb.get('gpu_mem_bytes')}, held_bytes {hb.get('held_bytes')}")
        except AssertionError:
            self.r.check("heartbeat", False, f"latest: {self.s.heartbeats.get(self.run_id or '')}")

    def cancel_and_check(self, uuid: str, baseline: int) -> None:
        run_id = self.run_id or ""
        self.s.call("request_cancel", {"run_id": run_id, "requested_by": "gpu-check",
                                       "reason": "GPU check: is the memory freed?"})
        t0 = time.monotonic()
        try:
            run = self.s.wait_run(run_id, lambda r: r["status"] in TERMINAL, 60, "to end")
        except AssertionError:
            run = self.s.run(run_id)
        self.r.check("cancelled", run["status"] == "CANCELLED",
                     f"{run['status']} after {time.monotonic() - t0:.1f}s, cause {run['cause']}, "
                     f"exit code {run['exit_code']}, signal {run['signal']}")
        seen = self.seen_file() or {}
        stdout = tail(os.path.join(self.s.run_dir(run_id), STDOUT_FILE), 3)
        self.r.check("worker released and exited cleanly", seen.get("state") == "released"
                     and run["exit_code"] == 0, f"state {seen.get('state')}, exit code "
                     f"{run['exit_code']}, stdout: {stdout!r}")
        try:
            wait_until(lambda: not self.s.worker_group_alive(run_id), 15, message="worker gone")
            self.r.check("worker processes gone", True, "its process group is empty")
        except AssertionError:
            self.r.check("worker processes gone", False, "its process group is still alive")
        nvml = self.nvml
        if nvml is None or not uuid:
            self.r.add("SKIP", "GPU memory free again", "no GPU claimed by the run")
        else:
            def used() -> int:
                return nvml.used(uuid)
            try:
                wait_until(lambda: used() <= baseline + FREED_SLACK, 30, interval=0.2,
                           message="the memory to be free")
            except AssertionError:
                pass
            self.r.check("GPU memory free again (NVML)", used() <= baseline + FREED_SLACK,
                         f"used {used() / MIB:,.0f} MiB, baseline {baseline / MIB:,.0f} MiB")
            procs = nvml.processes(uuid) or []
            self.r.check("worker not on the GPU any more", all(
                p["pid"] != self.seen.get("pid") for p in procs), f"NVML: {procs}")
        slots = self.s.call("gpu_slots")["slots"]
        released = [e["payload"].get("gpu_uuids") for e in self.s.events(run_id)
                    if e["type"] == "GpusReleased"]
        after = self.s.run(run_id)
        self.r.check("GPU slot free in the registry", slots == [] and not after["gpus_held"]
                     and (not uuid or released == [[uuid]]),
                     f"gpu_slots {slots}, gpus_held {after['gpus_held']}, GpusReleased {released}")

    def run(self) -> None:
        self.start()
        baseline = {g: self.nvml.used(g) for g in self.inv.uuids} if self.nvml else {}
        self.submit()
        if not self.wait_holding():
            return
        uuid = self.check_gpu_seen()
        if uuid:
            self.check_memory_taken(uuid, baseline[uuid])
        else:
            self.r.add("SKIP", "GPU memory taken", "no GPU claimed by the run")
        self.check_heartbeat()
        self.cancel_and_check(uuid, baseline.get(uuid, 0))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="TRAINER_HOME to use (default: a new folder in /tmp)")
    parser.add_argument("--report",
                        help="JSON report path (default $TRAINER_HOME/gpu_check.json)")
    parser.add_argument("--gib", type=float, default=2.0, help="GiB the worker allocates")
    parser.add_argument("--via", choices=("auto", "torch", "libcuda"), default="auto")
    parser.add_argument("--start-timeout", type=float, default=120.0,
                        help="seconds for the run to start and take its memory")
    parser.add_argument("--without-gpu", action="store_true",
                        help="no GPU wanted: the same path with a 0-GPU run holding nothing")
    args = parser.parse_args(argv)
    inv = read_inventory(0)
    print_inventory(inv)
    if not inv.gpus and not args.without_gpu:
        print(f"gpu check: no NVIDIA GPU here ({inv.error or 'NVML lists no device'}); "
              f"nothing to check (exit {EXIT_NOTHING_TO_CHECK})", flush=True)
        return EXIT_NOTHING_TO_CHECK
    home = args.home or tempfile.mkdtemp(prefix="gpu-check-", dir="/tmp")
    print(f"TRAINER_HOME={home}", flush=True)
    report = Report()
    services = Services(home)
    nvml = Nvml() if inv.gpus and not args.without_gpu else None
    if nvml is not None:
        print(f"NVIDIA driver {nvml.driver()}", flush=True)
    check = GpuCheck(services, nvml, inv, args, report)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        check.run()
    except KeyboardInterrupt as exc:
        report.check("finished", False, f"interrupted ({exc or 'Ctrl-C'})")
    except StartFailed as exc:
        report.check("services up", False, str(exc))
    except (OrchestratorError, OSError, AssertionError) as exc:
        report.check("finished", False, f"{type(exc).__name__}: {exc}")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):   # the clean-up is not interrupted
            signal.signal(signum, signal.SIG_IGN)
        if check.run_id is not None:
            print(f"run {check.run_id}: {services.end_run(check.run_id, 40.0)}", flush=True)
        codes = services.stop()
        print(f"services stopped, exit codes {codes}", flush=True)
        if nvml is not None:
            nvml.close()
    path = args.report or os.path.join(home, "gpu_check.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"home": home, "run_id": check.run_id, "failed": report.failed,
                   "inventory": [g.to_map() for g in inv.gpus],
                   "inventory_source": inv.source.value,
                   "checks": report.checks, "worker_seen": check.seen, "services_exit": codes},
                  fh, indent=1, default=str)
    print(f"logs: {services.logs}/{{bus,registry,dispatcher}}.log; run directory "
          f"{services.run_dir(check.run_id or '')}; report {path}")
    passed = sum(c["status"] == "PASS" for c in report.checks)
    skipped = sum(c["status"] == "SKIP" for c in report.checks)
    ok = report.failed == 0 and passed > 0
    print(f"gpu check {'PASSED' if ok else 'FAILED'}: {passed} checks passed, "
          f"{report.failed} failed, {skipped} skipped", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
