"""``trainer submit | ls | show | watch | logs | cancel | rerun``: the gateway's API for
people."""

from __future__ import annotations

import codecs
import json
import os
import sys
import time
from typing import Any, Optional

import click
import grpc

from trainer.cli import errors
from trainer.cli import format as fmt
from trainer.cli.codelines import code_lines, submit_note
from trainer.client import MAX_PAGE_SIZE, Client, TrainerError, default_address
from trainer_api.v1 import trainer_pb2 as pb

TERMINAL = {pb.RUN_STATUS_COMPLETED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}
STATUS_CHOICE = click.Choice(["PENDING", "DISPATCHING", "RUNNING", "COMPLETED", "FAILED",
                              "CANCELLED"], case_sensitive=False)


def client() -> Client:
    return errors.open_client()


def fail(err: TrainerError, c: Any) -> errors.CliError:
    return errors.fail(err, getattr(c, "address", None) or default_address())


@click.command("submit")
@click.argument("config_file", required=False, metavar="[CONFIG.json]",
                type=click.Path(exists=True, dir_okay=False))
@click.option("--worker", help="Worker entry point name (trainer.workers), e.g. cartpole.")
@click.option("--env", "env_id", help="Gymnasium env id, e.g. CartPole-v1.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--steps", type=int, help="Training budget in env steps.")
@click.option("--gpus", type=int, help="Number of GPUs the run needs.")
@click.option("--priority", type=int, help="Higher runs first (-1000..1000).")
@click.option("--name", help="A name for the run.")
@click.option("--python-env", help="A registered Python environment to run the worker in "
              "(trainer env add; config python_env).")
@click.option("--env-var", "env_vars", multiple=True, metavar="NAME=VALUE",
              help="An environment variable for the worker (config env_vars); repeatable.")
@click.option("--launcher", type=click.Choice(["local", "slurm"]), help="Where the worker runs: "
              "local (a shim on the dispatcher's host) or slurm (a batch job; docs/SLURM.md); "
              "default: the installation's TRAINER_LAUNCHER (config launcher).")
@click.option("--wait", is_flag=True, help="Show a live progress bar until the run ends; exit "
              "0 only if it COMPLETED.")
def submit(config_file: Optional[str], worker: Optional[str], env_id: Optional[str],
           seed: Optional[int], steps: Optional[int], gpus: Optional[int],
           priority: Optional[int], name: Optional[str], python_env: Optional[str],
           env_vars: tuple[str, ...], launcher: Optional[str], wait: bool) -> None:
    """Submit a run from CONFIG.json (docs/CONFIG.md) and/or flags; flags override
    the file. Prints the run id and whether it already existed (same config digest)."""
    config: dict[str, Any] = {}
    if config_file:
        with open(config_file, encoding="utf-8") as fh:
            try:
                config = json.load(fh)
            except ValueError as exc:
                raise click.BadParameter(f"not JSON: {exc}", param_hint="CONFIG_FILE")
    for key, value in (("worker", worker), ("env", env_id), ("seed", seed), ("steps", steps),
                       ("priority", priority), ("name", name), ("python_env", python_env),
                       ("launcher", launcher)):
        if value is not None:
            config[key] = value
    if gpus is not None:
        config.setdefault("resources", {})["gpus"] = gpus
    for item in env_vars:
        var, sep, value = item.partition("=")
        if not sep or not var:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env-var")
        config.setdefault("env_vars", {})[var] = value
    with client() as c:
        try:
            reply = c.submit(config, submitted_by=os.environ.get("USER", "cli"))
        except TrainerError as err:
            raise fail(err, c)
        run = reply.run
        what = "submitted" if reply.created else "already exists (same config, same code)"
        click.echo(f"{run.run_id} {what} [{fmt.status_name(run.status)}]"
                   f"{submit_note(reply)}")
        if wait:
            sys.exit(follow_to_end(c, run.run_id))


def follow_to_end(c: Client, run_id: str, interval: float = 0.5) -> int:
    """Draw a progress bar until the run is terminal; 0 only for COMPLETED."""
    tty = sys.stdout.isatty()
    last_line = ""
    while True:
        try:
            run = c.get(run_id)
        except TrainerError as err:
            if not err.retryable:
                raise fail(err, c)
            time.sleep(interval)  # the gateway is restarting: poll again
            continue
        step, budget, sps, ret = fmt.progress(run)
        status = fmt.status_name(run.status)
        line = (f"{run_id} {status:<11} {fmt.bar(step, budget)} {step:,}/{budget:,} steps "
                f"{sps:,.0f} steps/s  return {ret}")
        if line != last_line:
            click.echo(("\r" + line) if tty else line, nl=not tty)
            last_line = line
        if run.status in TERMINAL:
            if tty:
                click.echo()
            if run.status == pb.RUN_STATUS_COMPLETED:
                click.echo(f"{run_id} COMPLETED")
                return 0
            click.echo(ending(run), err=True)
            return 1
        time.sleep(interval)  # refresh rate of the progress bar


def ending(run: pb.RunRecord) -> str:
    """How a run that did not complete ended: its status, cause and whole message
    (for a failed worker: its exit code and the last lines of its stderr), as `show`."""
    head = f"{run.run_id} {fmt.status_name(run.status)}: {fmt.cause_name(run.cause) or '-'}"
    if run.HasField("exit_code"):
        head += f" (exit code {run.exit_code})"
    if not run.message:
        return head
    return head + "\n" + "\n".join("  " + line for line in
                                     fmt.clean_block(run.message).splitlines())


@click.command("ls")
@click.option("--status", "statuses", multiple=True, type=STATUS_CHOICE,
              help="Only runs in this status (repeatable: in any of them).")
@click.option("--tag", "tags", multiple=True,
              help="Only runs with this tag (repeatable: with every one of them).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="Most runs to show (fetched in pages of up to 1000).")
def ls(statuses: tuple[str, ...], tags: tuple[str, ...], limit: int) -> None:
    """List runs, newest first."""
    wanted = [pb.RunStatus.Value("RUN_STATUS_" + s.upper()) for s in statuses]
    with client() as c:
        try:
            runs, total = newest_runs(c, wanted, list(dict.fromkeys(tags)), limit)
        except TrainerError as err:
            raise fail(err, c)
    now = time.time()
    click.echo(fmt.runs_table(runs, now))
    if total is None:
        click.echo(f"({len(runs)} runs shown, there may be more; --limit for more)")
    elif total > len(runs):
        click.echo(f"({len(runs)} of {total} runs; --limit for more)")


def newest_runs(c: Client, statuses: list[int], tags: list[str],
                limit: int) -> tuple[list[pb.RunRecord], Optional[int]]:
    """Up to ``limit`` runs, newest first, page by page; and how many match (None:
    not known). The gateway filters by one tag: further tags are checked here, on
    the pages of runs with the first one."""
    runs: list[pb.RunRecord] = []
    token, total = "", 0
    rest = set(tags[1:])
    while len(runs) < limit:
        page = c.list(statuses, tags[0] if tags else "",
                      page_size=MAX_PAGE_SIZE if rest else min(limit - len(runs),
                                                               MAX_PAGE_SIZE),
                      page_token=token)
        runs.extend(r for r in page.runs if rest <= set(fmt.config_of(r).get("tags") or ()))
        total = page.total_size
        token = page.next_page_token
        if not token:
            return runs[:limit], (len(runs) if rest else total)
    return runs[:limit], (None if rest else total)


@click.command("show")
@click.argument("run_id", metavar="RUN")
def show(run_id: str) -> None:
    """Everything about a run: status, why it waits or how it ended, resources,
    progress, artifacts and its event history."""
    with client() as c:
        try:
            run = c.get(run_id)
            artifacts = c.artifacts(run_id)
            history = run_history(c, run)
        except TrainerError as err:
            raise fail(err, c)
    cfg = fmt.config_of(run)
    step, budget, sps, ret = fmt.progress(run)
    lines = [
        ("run", run.run_id), ("name", cfg.get("name") or "-"),
        ("tags", ", ".join(cfg.get("tags") or []) or "-"),
        *((("experiment", f"{run.experiment} (trainer sweep show {run.experiment})"),)
          if run.experiment else ()),
        ("status", fmt.status_name(run.status)),
        *attempt_lines(run),
        ("cause", fmt.cause_name(run.cause) or "-"),
        ("exit code", run.exit_code if run.HasField("exit_code") else "-"),
        ("signal", run.signal if run.HasField("signal") else "-"),
        ("waiting because", run.waiting_reason or "-"),
        ("worker / env", f"{cfg.get('worker')} / {cfg.get('env')}  seed {cfg.get('seed')}"),
        ("python env", cfg.get("python_env") or "- (the orchestrator's own)"),
        ("resources", fmt.resources_text(cfg)),
        ("priority", run.priority), ("gpus", ", ".join(run.gpus) or "-"),
        ("pid", run.pid if run.HasField("pid") else "-"), ("host", run.host or "-"),
        ("launcher", fmt.launcher_text(run)),
        ("submitted", f"{fmt.when(run.submitted_at)} by {run.submitted_by}"),
        ("started", fmt.when(run.started_at)), ("finished", fmt.when(run.finished_at)),
        ("progress", f"{step:,}/{budget:,} steps, {sps:,.0f} steps/s, return {ret}"),
        ("cancel", f"by {run.cancel_requested_by}: {run.cancel_reason}"
         if run.cancel_requested_by else "-"),
        ("digest", run.digest), *code_lines(run), ("last seq", run.last_seq),
    ]
    for key, value in lines:  # each value on its line, control characters escaped
        click.echo(f"{key:>16}  {fmt.clean(value)}")
    if run.message:
        click.echo(f"{'message':>16}  " + fmt.clean_block(run.message).replace(
            "\n", "\n" + " " * 18))
    if run.flags:
        click.echo(f"\nliveness flags ({len(run.flags)}; docs/SUPERVISION.md):")
        for line in fmt.flag_lines(run):
            click.echo(line)
    click.echo(f"\nartifacts ({len(artifacts)}):")
    for a in artifacts:
        click.echo(f"  {fmt.clean(a.kind):<11} {fmt.clean(a.path)}  {a.size:,} B")
    click.echo(f"\nhistory ({len(history)} events):")
    for ev in history:
        payload = fmt.plain(ev.payload)
        hidden = {"run_id", "config", "digest", "code"}  # shown above
        if payload.get("kind") == "code":
            hidden.add("meta")
        fields = {k: v for k, v in payload.items()
                  if k not in hidden and v not in ("", None, [], {})}
        click.echo(f"  {ev.seq:>7}  {fmt.when(ev.recorded_at)}  {fmt.clean(ev.type):<18} "
                   f"{json.dumps(fields, default=str)}")


def attempt_lines(run: pb.RunRecord) -> list[tuple[str, str]]:
    """`show`'s attempt line; after the first attempt, how the one before it ended and
    what this one resumes from."""
    attempt, most = run.attempt or 1, run.max_attempts or 1
    text = fmt.attempt_text(run)
    if attempt > most:
        text += f" (a rerun past retry.max_attempts {most})"
    lines = [("attempt", text)]
    if attempt > 1:
        lines += [("previous attempt", f"ended: {fmt.cause_name(run.last_attempt_cause) or '-'}"),
                  ("resumes from", run.resume_from or "- (from scratch)")]
    return lines


def run_history(c: Client, run: pb.RunRecord) -> list[pb.RunEvent]:
    """The run's events: a watch from just before its submission up to its last seq."""
    out: list[pb.RunEvent] = []
    if not run.last_seq:
        return out
    start = max(0, run.submitted_seq - 1)
    for msg in c.watch([run.run_id], since_seq=start, resume=False):
        out.extend(e for e in msg.events if e.run_id == run.run_id)
        if msg.seq >= run.last_seq:
            break
    return out


@click.command("watch")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--status", "statuses", multiple=True, type=STATUS_CHOICE,
              help="Only runs in this status (repeatable: in any of them).")
def watch(interval: float, statuses: tuple[str, ...]) -> None:
    """A live table of runs (Ctrl-C to leave)."""
    wanted = [pb.RunStatus.Value("RUN_STATUS_" + s.upper()) for s in statuses]
    page: Optional[pb.ListRunsResponse]
    with client() as c:
        try:
            page = c.list(wanted, page_size=40)  # the first: is there a gateway at all?
        except TrainerError as err:
            raise fail(err, c)
        try:
            while True:
                try:
                    if page is None:
                        page = c.list(wanted, page_size=40)
                    body = fmt.runs_table(page.runs, time.time())
                except TrainerError as err:  # the gateway restarts: keep the table going
                    body = (errors.not_reachable(c.address) if errors.unreachable(err)
                            else fmt.clean(err.message)) + " (retrying)"
                page = None
                click.clear()
                click.echo(f"trainer watch  {time.strftime('%H:%M:%S')}\n\n{body}")
                time.sleep(interval)  # refresh period of the table
        except KeyboardInterrupt:
            pass


LOGS_GIVE_UP_S = 5.0  # without -f, a gateway away this long mid-stream ends `logs`


class OutageNote:
    """``logs -f``'s one line on stderr when the gateway is found unreachable, and one
    when it answers again (the stream then resumes at the next byte offset)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def __call__(self, err: Optional[TrainerError], offset: int) -> None:
        if err is None:
            click.echo(f"gateway at {self.address} is back, resuming at byte {offset:,}",
                       err=True)
        else:
            click.echo(f"gateway at {self.address} not reachable, retrying (started again "
                       "with `trainer up`?)", err=True)


@click.command("logs")
@click.argument("run_id", metavar="RUN")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the run has ended; "
              "if the gateway goes away, say so and wait for it.")
@click.option("--stderr", "use_stderr", is_flag=True, help="The run's stderr instead of stdout.")
@click.option("--offset", default=0, show_default=True, help="Start at this byte offset.")
@click.option("--raw", is_flag=True, help="The bytes as written, also on a terminal (where "
              "control characters are otherwise shown escaped).")
def logs(run_id: str, follow: bool, use_stderr: bool, offset: int, raw: bool) -> None:
    """Print a run's stdout (or stderr), from its log file in the run directory."""
    out = sys.stdout.buffer
    escape = not raw and sys.stdout.isatty()
    text = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    with client() as c:
        try:
            c.get(run_id)  # an unknown run, or no gateway: say so now, not never
            for chunk in c.logs(run_id, "stderr" if use_stderr else "stdout", offset, follow,
                                give_up_after=None if follow else LOGS_GIVE_UP_S,
                                on_outage=OutageNote(c.address) if follow else None):
                out.write(fmt.clean_block(text.decode(chunk.data)).encode()
                          if escape else chunk.data)
                out.flush()
        except TrainerError as err:
            raise fail(err, c)
        except KeyboardInterrupt:
            pass


@click.command("cancel")
@click.argument("run_id", metavar="RUN")
@click.option("--reason", default="", help="Why (recorded in the run's history).")
def cancel(run_id: str, reason: str) -> None:
    """Cancel a run: a pending one at once, a running one after its grace period."""
    with client() as c:
        try:
            run = c.cancel(run_id, reason=reason, requested_by=os.environ.get("USER", "cli"))
        except TrainerError as err:
            raise fail(err, c)
    click.echo(f"{run_id} {fmt.status_name(run.status)} (cancel requested)")


@click.command("rerun")
@click.argument("run_id", metavar="RUN")
@click.option("--reason", default="", help="Why (recorded in the run's history).")
@click.option("--from-scratch", is_flag=True, help="Start the new attempt from nothing, not "
              "from the run's latest checkpoint.")
@click.option("--force", is_flag=True, help="Rerun a run that COMPLETED (without it only a "
              "FAILED or CANCELLED run is rerun).")
def rerun(run_id: str, reason: str, from_scratch: bool, force: bool) -> None:
    """Give an ended run a new attempt: PENDING again, resuming from its latest
    checkpoint (or from scratch); prints the new attempt and where it starts."""
    with client() as c:
        try:
            run = c.rerun(run_id, reason=reason, from_scratch=from_scratch, force=force,
                          requested_by=os.environ.get("USER", "cli"))
        except TrainerError as err:
            raise rerun_refused(c, run_id, err) from None
    start = f"resuming from {fmt.clean(run.resume_from)}" if run.resume_from \
        else "from scratch"
    click.echo(f"{run_id} {fmt.status_name(run.status)} attempt {fmt.attempt_text(run)}, "
               f"{start}")


def rerun_refused(c: Any, run_id: str, err: TrainerError) -> errors.CliError:
    """A refused rerun said as what to do: a run that has not ended is cancelled first;
    a completed one needs --force. Anything else as every command says it."""
    if err.code != grpc.StatusCode.FAILED_PRECONDITION or errors.unreachable(err):
        return fail(err, c)
    try:
        status = fmt.status_name(c.get(run_id).status)
    except TrainerError:
        return fail(err, c)
    if status == "COMPLETED":
        return errors.CliError(f"{run_id} COMPLETED: add --force to rerun a completed run")
    if status in ("PENDING", "DISPATCHING", "RUNNING"):
        return errors.CliError(f"{run_id} is {status}: only an ended run is rerun; cancel "
                               f"it first (`trainer cancel {run_id}`)")
    return fail(err, c)
