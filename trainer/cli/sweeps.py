"""``trainer sweep submit | ls | show | wait | cancel | rerun | plot``: experiments,
sweeps over config points and seeds (docs/EXPERIMENTS.md), through the gateway
(CreateExperiment, ListExperiments, GetExperiment, CancelExperiment, RerunExperiment,
GetExperimentResults)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from trainer.cli import errors
from trainer.cli import format as fmt
from trainer.client import Client, TrainerError
from trainer_api.v1 import trainer_pb2 as pb

DEFAULT_METRIC = "eval_return_mean"
TERMINAL = {pb.RUN_STATUS_COMPLETED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}
ORDER = ("COMPLETED", "FAILED", "CANCELLED", "RUNNING", "DISPATCHING", "PENDING")


def _who() -> str:
    return os.environ.get("USER", "cli")


def read_spec(path: str) -> dict[str, Any]:
    """A spec file: YAML for .yaml/.yml (PyYAML's safe loader), JSON otherwise; its name
    defaults to the file's stem."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if path.endswith((".yaml", ".yml")):
        import yaml  # only for a YAML spec
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"not YAML: {exc}", param_hint="SPEC_FILE") from None
    else:
        try:
            spec = json.loads(text)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="SPEC_FILE") from None
    if not isinstance(spec, dict):
        raise click.BadParameter("must hold a map (an object)", param_hint="SPEC_FILE")
    if "name" not in spec:
        spec["name"] = os.path.splitext(os.path.basename(path))[0]
    return spec


def _call(c: Client, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except TrainerError as err:
        raise errors.fail(err, c.address) from None


def counts_line(exp: pb.Experiment) -> str:
    """``6 cells: 2 COMPLETED, 1 FAILED, 3 PENDING`` (statuses in a fixed order)."""
    counts = dict(exp.run_counts)
    parts = [f"{counts[s]} {s}" for s in ORDER if counts.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in ORDER and n]
    return f"{exp.cell_count} cells: {', '.join(parts) or 'none'}"


@click.group("sweep")
def sweep() -> None:
    """Experiments: a template config over axes of values, each point run with several
    seeds, compared with honest statistics (IQM with a bootstrap confidence interval).

    Every cell is an ordinary run: `trainer ls`, `show` and `logs` work on each."""


@sweep.command("submit")
@click.argument("spec_file", metavar="SPEC_FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--wait", is_flag=True, help="Show one progress line over the cells until "
              "every run ends; exit 0 only if all COMPLETED.")
def submit(spec_file: str, wait: bool) -> None:
    """Create the experiment of SPEC_FILE (JSON, or YAML for .yaml/.yml). The same spec
    again creates nothing; a changed spec of the same name creates only its new cells."""
    spec = read_spec(spec_file)
    with errors.open_client() as c:
        got = _call(c, c.create_experiment, spec, submitted_by=_who(), timeout=120.0)
        exp = got.experiment
        what = f"{got.created_runs} new runs" if got.created_runs else "no new run"
        click.echo(f"{exp.name} revision {exp.revision}: {len(exp.point_labels)} points x "
                   f"{len(json.loads(exp.spec_json)['seeds'])} seeds, {what}; "
                   f"{counts_line(exp)}")
        if wait:
            sys.exit(wait_for(c, exp.name))


@sweep.command("ls")
def ls() -> None:
    """The experiments, newest first, with their cells' runs by status."""
    with errors.open_client() as c:
        found = _call(c, lambda: list(c.experiments()))
    if not found:
        click.echo("no experiment (trainer sweep submit SPEC_FILE)")
        return
    click.echo(fmt.table(("NAME", "STATUS", "REV", "CREATED", "CELLS"),
                         [(e.name, e.status, e.revision, fmt.when(e.created_at),
                           counts_line(e)) for e in found]))


@sweep.command("show")
@click.argument("name")
@click.option("--metric", default=DEFAULT_METRIC, show_default=True,
              help="The metric compared: any name the workers report (metrics.jsonl, or "
                   "a tag of their own TensorBoard logs).")
@click.option("--json", "as_json", is_flag=True, help="The statistics as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="The statistics as CSV, a row per point.")
@click.option("--cells", is_flag=True, help="Also list every cell's run.")
def show(name: str, metric: str, as_json: bool, as_csv: bool, cells: bool) -> None:
    """A table per config point: its seeds done, failed and running, and the final
    value of METRIC over its completed seeds (mean, std, median, IQM and a 95 %
    bootstrap confidence interval), the points ranked by IQM and the best marked."""
    with errors.open_client() as c:
        exp = _call(c, c.experiment, name)
        got = _call(c, c.experiment_results, name, metric)
    results = json.loads(got.results_json)
    from trainer.experiments import table  # numpy-free formatting of the results
    if as_json:
        click.echo(table.json(results))
        return
    if as_csv:
        click.echo(table.csv(results), nl=False)
        return
    click.echo(f"{exp.name}  {exp.status}  revision {exp.revision}  {counts_line(exp)}")
    if exp.max_concurrent or exp.has_priority:
        limits = [f"at most {exp.max_concurrent} at once" if exp.max_concurrent else "",
                  f"priority {exp.priority}" if exp.has_priority else ""]
        click.echo("  " + ", ".join(x for x in limits if x))
    click.echo(table.text(results))
    if metric not in results.get("metrics", []) and results.get("metrics"):
        click.echo(f"(no run reports {metric!r}; the cells report: "
                   f"{', '.join(results['metrics'])})", err=True)
    if cells:
        for cell in exp.cells:
            click.echo(f"  {exp.point_labels[cell.point]:<30} seed {cell.seed:<6} "
                       f"{cell.run_id}  {fmt.status_name(cell.status):<11} "
                       f"attempt {cell.attempt}  {fmt.cause_name(cell.cause) or ''}")


def progress_line(exp: pb.Experiment) -> str:
    return f"{exp.name} {counts_line(exp)}"


def wait_for(c: Client, name: str, interval: float = 1.0) -> int:
    """One progress line over the cells until every run has ended; 0 only if all
    COMPLETED."""
    tty = sys.stdout.isatty()
    last = ""
    while True:
        try:
            exp = c.experiment(name)
        except TrainerError as err:
            if not err.retryable:
                raise errors.fail(err, c.address) from None
            time.sleep(interval)  # the gateway is restarting: ask again
            continue
        line = progress_line(exp)
        if line != last:
            click.echo(("\r" + line.ljust(len(last))) if tty else line, nl=not tty)
            last = line
        if all(cell.status in TERMINAL for cell in exp.cells):
            if tty:
                click.echo()
            bad = [cell for cell in exp.cells if cell.status != pb.RUN_STATUS_COMPLETED]
            for cell in bad[:20]:
                click.echo(f"{cell.run_id} {fmt.status_name(cell.status)}: "
                           f"{fmt.cause_name(cell.cause) or '-'} (point "
                           f"{exp.point_labels[cell.point]}, seed {cell.seed})", err=True)
            return 1 if bad else 0
        time.sleep(interval)  # refresh rate of the progress line


@sweep.command("wait")
@click.argument("name")
def wait(name: str) -> None:
    """Follow the experiment with one progress line until every cell's run has ended;
    exit 0 only if all COMPLETED."""
    with errors.open_client() as c:
        sys.exit(wait_for(c, name))


@sweep.command("cancel")
@click.argument("name")
@click.option("--reason", default="", help="Why (recorded on every run).")
def cancel(name: str, reason: str) -> None:
    """Cancel every run of the experiment that has not ended."""
    with errors.open_client() as c:
        got = _call(c, c.cancel_experiment, name, reason=reason, requested_by=_who())
    click.echo(f"{name} cancelled: {len(got.cancelled_run_ids)} runs asked to stop; "
               f"{counts_line(got.experiment)}")


@sweep.command("rerun")
@click.argument("name")
@click.option("--from-scratch", is_flag=True, help="Not from each run's latest checkpoint.")
@click.option("--reason", default="", help="Why (recorded on every run).")
def rerun(name: str, from_scratch: bool, reason: str) -> None:
    """Give every FAILED or CANCELLED cell's run a new attempt (the completed ones are
    kept)."""
    with errors.open_client() as c:
        got = _call(c, c.rerun_experiment, name, reason=reason, from_scratch=from_scratch,
                    requested_by=_who())
    click.echo(f"{name}: {len(got.rerun_run_ids)} runs rerun; {counts_line(got.experiment)}")


@sweep.command("plot")
@click.argument("name")
@click.option("--metric", default=DEFAULT_METRIC, show_default=True, help="The metric drawn.")
@click.option("-o", "--output", default="", help="The PNG to write (default: NAME-METRIC.png).")
@click.option("--profile", is_flag=True, help="Add a performance profile: the fraction of "
              "completed runs whose final value is above each score.")
@click.option("--grid", "grid_points", default=200, show_default=True,
              type=click.IntRange(2, 5000), help="Steps of the common grid.")
def plot(name: str, metric: str, output: str, profile: bool, grid_points: int) -> None:
    """Curves of METRIC over steps, one per config point: the mean over its seeds on a
    common step grid with a shaded 95 % bootstrap band (matplotlib, no display needed)."""
    from trainer.experiments.plot import plot_curves  # matplotlib: only for a plot

    with errors.open_client() as c:
        got = _call(c, c.experiment_results, name, metric, curves=True,
                    grid_points=grid_points)
    results = json.loads(got.results_json)
    path = output or f"{name}-{metric.replace('/', '_')}.png"
    if not results.get("curves"):
        raise errors.CliError(f"no run of {name} reports {metric!r} yet" + (
            f" (they report: {', '.join(results['metrics'])})" if results.get("metrics")
            else ""))
    plot_curves(results, path, profile=profile, title=f"{name}: {metric}")
    click.echo(f"wrote {os.path.abspath(path)}")
