"""``python -m bench [--quick] [NAME ...]``: run the benchmarks, print one markdown
table (ours, the raw baseline measured in the same run, ratio, target, PASS/FAIL)
and write it to bench/results/latest.md. Exits 1 when a target fails."""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from types import ModuleType

from bench import (append, bench_gateway, bench_sdk, bus_throughput, dispatcher,
                   experiment_create, experiment_results, idle, liveness, rebuild,
                   registry_rpc, slurm, watch_restart)
from bench.table import Row, render

BENCHMARKS: dict[str, ModuleType] = {
    "rpc": registry_rpc, "append": append, "bus": bus_throughput, "rebuild": rebuild,
    "sdk": bench_sdk, "gateway": bench_gateway, "dispatcher": dispatcher, "idle": idle,
    "restart": watch_restart, "experiment": experiment_create,
    "experiment_results": experiment_results, "liveness": liveness, "slurm": slurm,
}


def as_row(item: object) -> Row:
    """Benchmarks return Rows, or plain maps (name, unit, ours, baseline, target, ok)."""
    if isinstance(item, Row):
        return item
    assert isinstance(item, dict)
    notes = str(item.get("notes", ""))
    if item.get("ratio") is not None:  # the benchmark's own ratio (e.g. median of pairs)
        notes = f"judged on its ratio {float(item['ratio']):.1%}; {notes}"
    return Row(item["name"], item.get("unit", ""), item.get("ours"), item.get("baseline"),
               str(item.get("target", "-")), item.get("ok"), notes)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so every benchmark stops its processes


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and fewer repeats (100k-event log, 1 s windows)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from "
                     f"{', '.join(BENCHMARKS)})")
    names = args.names or list(BENCHMARKS)
    rows: list[Row] = []
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            rows += [as_row(r) for r in BENCHMARKS[name].run(quick=args.quick)]
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            rows.append(Row(name, "", None, None, "runs", False,
                            f"ERROR {type(exc).__name__}: {str(exc)[:200]}".replace("|", "/")
                            .replace("\n", " ")))
        print(f"bench: {name} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr,
              flush=True)
    header = (f"Benchmarks ({'quick' if args.quick else 'full'}) at {_revision()}, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {platform.node()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"total {time.perf_counter() - t_all:.0f}s")
    text = render(rows, header)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    return 0 if all(r.passed is not False for r in rows) else 1


def _revision() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10, cwd=os.path.dirname(RESULTS),
                              check=True).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
