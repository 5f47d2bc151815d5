"""Running one SLURM command-line tool for the SLURM launcher (slurmlauncher.py): a
timeout on every call, and whatever goes wrong (not installed, no answer, a refusal)
as a SlurmError whose message says what and where."""

from __future__ import annotations

import subprocess

CALL_TIMEOUT_S = 20.0          # any one SLURM command


class SlurmError(Exception):
    """A SLURM command could not be run, did not answer in time, or refused."""


def run_tool(argv: list[str], env: dict[str, str], timeout_s: float = CALL_TIMEOUT_S,
             stdin: str = "") -> str:
    """The command's stdout; SlurmError with what went wrong otherwise."""
    try:
        done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True,
                              timeout=timeout_s)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not installed on the dispatcher's host (SLURM's "
                         "client tools: apt-get install slurm-client)") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer within {timeout_s:g} s "
                         "(slurmctld unreachable?)") from None
    except OSError as exc:
        raise SlurmError(f"{argv[0]} could not be run: {exc}") from None
    if done.returncode != 0:
        raise SlurmError(f"{argv[0]} failed (exit {done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-1000:]}")
    return done.stdout
