"""docs/CONFIG.md names every run config field and every built-in worker's
hyperparameter in a table row; docs/WORKERS.md has the entry-point line and its
complete example script really runs as a worker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.runconfig import field_names
from worker import cartpole, qlearning

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
pytestmark = pytest.mark.timeout(60)


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _rows(text: str) -> set[str]:
    """First cells (in backticks) of every table row."""
    return set(re.findall(r"^\|\s*`([^`]+)`\s*\|", text, re.MULTILINE))


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.MULTILINE)
    assert m, f"no heading {heading!r}"
    level = len(m.group(1))
    rest = text[m.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[:end.start()] if end else rest


def test_every_config_field_has_a_row() -> None:
    rows = _rows(_section(_text("CONFIG.md"), "Fields"))
    missing = [f for f in field_names() if f not in rows]
    assert not missing, "docs/CONFIG.md, section Fields: missing " + ", ".join(missing)


@pytest.mark.parametrize("module", [cartpole, qlearning])
def test_every_hyperparameter_has_a_row_with_its_default(module: Any) -> None:
    name = module.__name__.split(".")[-1]
    section = _section(_text("CONFIG.md"), name)
    problems = []
    for p in module.PARAMS:
        row = re.search(rf"^\|\s*`{p.name}`\s*\|.*$", section, re.MULTILINE)
        default = json.dumps(p.default) if p.kind is not float else repr(p.default)
        if row is None:
            problems.append(f"{p.name} (no row)")
        elif f"`{default}`" not in row.group(0):
            problems.append(f"{p.name} (default `{default}` not in its row)")
    assert not problems, f"docs/CONFIG.md, section {name}: " + ", ".join(problems)


def test_workers_md_shows_the_entry_points_and_the_sdk() -> None:
    text = _text("WORKERS.md")
    assert '[project.entry-points."trainer.workers"]' in text
    assert 'hillclimb = "my_trainer:main"' in text
    toml = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for line in ('cartpole = "worker.cartpole:main"', 'qlearning = "worker.qlearning:main"'):
        assert line in toml and line in text
    calls = _rows(_section(text, "The SDK (`worker/sdk.py`)"))
    for name in ("catch_sigterm()", "load_config(argv=None)", "Run.from_env()",
                 "run.progress(**values)", "run.log_metrics(step, **values)",
                 "run.register_artifact(path, kind, **meta)"):
        assert name in calls, name


def test_the_example_script_runs_as_a_worker(tmp_path: Path) -> None:
    text = _text("WORKERS.md")
    code = re.search(r"```python\n(.*?)```", _section(text, "A complete example"), re.S)
    assert code, "no python block in WORKERS.md's example"
    pkg = tmp_path / "my_trainer"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(code.group(1))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"worker": "hillclimb", "seed": 3, "steps": 3000,
                                  "hyperparameters": {"noise": 0.3}}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    env.update(TRAINER_RUN_DIR=str(run_dir), TRAINER_RUN_ID="r-doc",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-c", "import sys, my_trainer; "
                           "sys.exit(my_trainer.main())", "--config", str(config)],
                          env=env, cwd=run_dir, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["metrics"]["steps"] >= 3000
    manifest = [json.loads(line) for line in
                (run_dir / "artifacts.jsonl").read_text().splitlines()]
    assert [a["path"] for a in manifest] == ["checkpoints/best.npy"]
    assert (run_dir / "metrics.jsonl").read_text().count("\n") >= 10
