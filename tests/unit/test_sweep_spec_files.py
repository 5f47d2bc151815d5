"""`trainer sweep submit`'s spec files (trainer.cli.sweeps.read_spec): JSON, or YAML for
.yaml/.yml (PyYAML's safe loader: no Python objects), the name defaulting to the file's
stem; a file that does not parse, or holds no map, is a usage error naming SPEC_FILE."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from core.sweepspec import parse_spec
from trainer.cli.sweeps import read_spec

YAML = """\
template:
  worker: cartpole
  steps: 20000
axes:
  hyperparameters.noise_std: [0.1, 0.5]
  hyperparameters.elite_frac: {uniform: [0.1, 0.3]}
samples: 2
seeds: 3
"""


def test_a_yaml_spec_reads_as_its_json_twin_and_takes_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "noise-sweep.yaml"
    path.write_text(YAML)
    spec = read_spec(str(path))
    assert spec["name"] == "noise-sweep"
    parsed = parse_spec(spec)
    assert parsed.cell_count() == 2 * 2 * 3
    twin = tmp_path / "noise-sweep.json"
    twin.write_text('{"template": {"worker": "cartpole", "steps": 20000}, "axes": '
                    '{"hyperparameters.noise_std": [0.1, 0.5], "hyperparameters.elite_frac":'
                    ' {"uniform": [0.1, 0.3]}}, "samples": 2, "seeds": 3}')
    assert parse_spec(read_spec(str(twin))).digest() == parsed.digest()


def test_a_name_in_the_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_text("name: mine\n" + YAML)
    assert read_spec(str(path))["name"] == "mine"


@pytest.mark.parametrize(("name", "text", "words"), [
    ("bad.json", "{not json", "not JSON"),
    ("bad.yaml", "a: [1, 2", "not YAML"),
    ("list.json", "[1, 2]", "must hold a map"),
    ("obj.yaml", "!!python/object/apply:os.system ['true']", "not YAML"),
])
def test_a_file_that_does_not_parse_is_refused_naming_it(tmp_path: Path, name: str,
                                                         text: str, words: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(click.BadParameter) as info:
        read_spec(str(path))
    assert words in str(info.value) and info.value.param_hint == "SPEC_FILE"
