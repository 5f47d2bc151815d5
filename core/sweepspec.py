"""An experiment's spec (docs/EXPERIMENTS.md): a template run config, axes, seeds, and
how the experiment is scheduled; parsed and checked here, and expanded into its cells.

    {"name": "cartpole-noise",
     "template": {"worker": "cartpole", "steps": 20000},
     "axes": {"hyperparameters.noise_std": [0.1, 0.5],            # a grid axis
              "hyperparameters.elite_frac": {"uniform": [0.1, 0.3]}},  # a random one
     "samples": 4, "sample_seed": 0,      # draws of the random axes (random search)
     "seeds": [0, 1, 2],                  # or a count: 3 means 0, 1, 2
     "max_concurrent": 4, "priority": 10}

A config point is one value per axis: every combination of the grid axes' values, each
with each of the ``samples`` draws of the random axes (drawn from ``sample_seed``, in
the axes' name order, so the same spec always gives the same points and a larger
``samples`` keeps the earlier draws). A cell is a point with a seed: the template with
the point's values set at their paths and ``seed`` set to the seed. Cells are ordinary
runs, found again by their config's digest: adding an axis value or a seed adds only the
new cells.

Pure: the standard library only; the sampling uses ``random.Random(seed).random()``,
whose sequence Python keeps stable across versions.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Any, Optional

from core.digest import canonical_json, check_depth, config_digest
from core.errors import ValidationError
from core.streams import is_experiment_name, EXPERIMENT_NAME_RE

MAX_CELLS = 10_000        # cells in one experiment
MAX_AXIS_VALUES = 1_000   # values of one grid axis
MAX_SAMPLES = 10_000
MAX_SEEDS = 1_000
MAX_SEED = 2**32 - 1      # core.runconfig's bound on a config's seed
SPEC_KEYS = ("name", "description", "template", "axes", "samples", "sample_seed", "seeds",
             "max_concurrent", "priority")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")
# Config fields no axis may set: the seed has its own list; a cell's name, tags and
# experiment belong to the template (they would split one config point into many).
NOT_AXES = ("seed", "schema_version")


@dataclass(frozen=True, slots=True)
class Distribution:
    """A random axis: ``kind`` one of DISTRIBUTIONS; ``args``: [low, high] or the
    choices."""

    kind: str
    args: tuple[Any, ...]

    def draw(self, rng: random.Random) -> Any:
        u = rng.random()
        if self.kind == "uniform":
            low, high = self.args
            return low + (high - low) * u
        if self.kind == "log_uniform":
            low, high = self.args
            return math.exp(math.log(low) + (math.log(high) - math.log(low)) * u)
        if self.kind == "int_uniform":
            low, high = self.args
            return low + min(int(u * (high - low + 1)), high - low)
        return self.args[min(int(u * len(self.args)), len(self.args) - 1)]

    def to_map(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.args)}


@dataclass(frozen=True, slots=True)
class Cell:
    """One run of the experiment: its point (an index into ``SweepSpec.points()``) and
    seed, and its config (the template with both set)."""

    point: int
    seed: int
    config: dict[str, Any]


@dataclass(frozen=True)
class SweepSpec:
    name: str
    template: dict[str, Any]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]        # (path, values), in the given order
    random_axes: tuple[tuple[str, Distribution], ...]    # by path
    samples: int
    sample_seed: int
    seeds: tuple[int, ...]
    max_concurrent: int = 0           # 0: no limit
    priority: Optional[int] = None    # None: each cell's config priority
    description: str = ""

    def to_map(self) -> dict[str, Any]:
        """The spec with its defaults, as plain data (what the log records)."""
        axes: dict[str, Any] = {path: list(values) for path, values in self.grid}
        axes.update({path: dist.to_map() for path, dist in self.random_axes})
        out: dict[str, Any] = {"name": self.name, "template": self.template, "axes": axes,
                               "seeds": list(self.seeds), "max_concurrent": self.max_concurrent}
        if self.random_axes:
            out.update(samples=self.samples, sample_seed=self.sample_seed)
        if self.priority is not None:
            out["priority"] = self.priority
        if self.description:
            out["description"] = self.description
        return out

    def digest(self) -> str:
        """SHA-256 of the canonical spec: the same spec, whatever its key order."""
        return config_digest(self.to_map())

    def points(self) -> list[dict[str, Any]]:
        """Every config point: the grid's combinations, each with each random draw."""
        rng = random.Random(self.sample_seed)
        draws = [{path: dist.draw(rng) for path, dist in self.random_axes}
                 for _ in range(self.samples if self.random_axes else 1)]
        paths = [path for path, _ in self.grid]
        combos = itertools.product(*(values for _, values in self.grid))
        return [{**dict(zip(paths, combo)), **draw} for combo in combos for draw in draws]

    def cells(self) -> list[Cell]:
        """Every (point, seed) with its config, points first, then seeds."""
        return [Cell(i, seed, cell_config(self.template, point, seed))
                for i, point in enumerate(self.points()) for seed in self.seeds]

    def cell_count(self) -> int:
        grid = math.prod(len(values) for _, values in self.grid)
        return grid * (self.samples if self.random_axes else 1) * len(self.seeds)


def cell_config(template: dict[str, Any], point: dict[str, Any], seed: int) -> dict[str, Any]:
    """The template with each of the point's values set at its dotted path (maps on the
    way are created or copied, never shared with the template) and ``seed``."""
    config = dict(template)
    for path, value in point.items():
        keys = path.split(".")
        where = config
        for key in keys[:-1]:
            inner = where.get(key)
            where[key] = dict(inner) if isinstance(inner, dict) else {}
            where = where[key]
        where[keys[-1]] = value
    config["seed"] = seed
    return config


def point_key(point: dict[str, Any]) -> str:
    """A point's identity: its canonical JSON (the same values, whatever their order)."""
    return canonical_json(point)


def point_label(point: dict[str, Any]) -> str:
    """A short name for a point: ``noise_std=0.5, env=CartPole-v1``, each axis by the
    last part of its path (the whole path where two axes share it), in the point's
    order, floats to 6 significant digits (a whole one as ``1.0``); ``(template)`` for
    the point of an experiment without axes. The one naming of points (the CLI, the
    results, the GUI)."""
    if not point:
        return "(template)"
    short = {path: path.rsplit(".", 1)[-1] for path in point}
    names = list(short.values())
    return ", ".join(f"{path if names.count(short[path]) > 1 else short[path]}={_short(v)}"
                     for path, v in point.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text + ".0" if text.lstrip("-").isdigit() else text  # 1.0, not 1
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- parsing ---------------------------------------------------------------------------

def parse_spec(data: Any, default_name: str = "") -> SweepSpec:
    """The spec of a map (a parsed JSON or YAML file), every field checked; a refusal
    names the field (``axes.hyperparameters.lr``, ``seeds[2]``) and the reason. The
    cells' configs are checked where the workers are known (the registry)."""
    if not isinstance(data, dict):
        raise ValidationError("spec", "must be a map (a JSON object)")
    unknown = sorted(str(k) for k in data if k not in SPEC_KEYS)
    if unknown:
        raise ValidationError(unknown[0], f"is not a field of an experiment spec (fields: "
                              f"{', '.join(SPEC_KEYS)})")
    name = data.get("name", default_name)
    if not is_experiment_name(name):
        raise ValidationError("name", f"{str(name)[:80]!r} is not an experiment name "
                              f"(letters, digits, '_' and '-', starting with a letter or "
                              f"digit, at most 64: {EXPERIMENT_NAME_RE.pattern[2:-2]})")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        raise ValidationError("description", "must be a string of at most 2000 characters")
    template = data.get("template")
    if not isinstance(template, dict):
        raise ValidationError("template", "must be a map: the run config of every cell")
    check_depth(template, "template")
    if "seed" in template:
        raise ValidationError("template.seed", "is set by the experiment: list the seeds "
                              "in \"seeds\"")
    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        raise ValidationError("axes", "must be a map of config paths to values")
    grid: list[tuple[str, tuple[Any, ...]]] = []
    randoms: list[tuple[str, Distribution]] = []
    for path, values in axes.items():
        _check_path(path, [p for p, _ in grid] + [p for p, _ in randoms])
        where = f"axes.{path}"
        if isinstance(values, list):
            grid.append((path, _grid_values(where, values)))
        elif isinstance(values, dict):
            randoms.append((path, _distribution(where, values)))
        else:
            raise ValidationError(where, "must be a list of values (a grid axis) or a "
                                  f"distribution ({', '.join(DISTRIBUTIONS)})")
    randoms.sort(key=lambda pair: pair[0])
    samples = _whole(data, "samples", 1, 1, MAX_SAMPLES)
    if "samples" in data and not randoms:
        raise ValidationError("samples", "is the number of draws of the random axes, and "
                              "no axis is a distribution")
    if randoms and "samples" not in data:
        raise ValidationError("samples", "must be given: how many points to draw from the "
                              "random axes")
    spec = SweepSpec(
        name=name, template=template, grid=tuple(grid), random_axes=tuple(randoms),
        samples=samples, sample_seed=_whole(data, "sample_seed", 0, 0, 2**63 - 1),
        seeds=_seeds(data.get("seeds")), description=description,
        max_concurrent=_whole(data, "max_concurrent", 0, 0, 100_000),
        priority=_whole(data, "priority", 0, -1000, 1000) if data.get("priority") is not None
        else None)
    if spec.cell_count() > MAX_CELLS:
        raise ValidationError("axes", f"make {spec.cell_count()} cells (points x seeds): at "
                              f"most {MAX_CELLS}")
    return spec


def _check_path(path: Any, seen: list[str]) -> None:
    if not isinstance(path, str) or not path:
        raise ValidationError("axes", f"{str(path)[:80]!r} is not a config path")
    parts = path.split(".")
    if any(not part for part in parts):
        raise ValidationError(f"axes.{path}", "is not a config path (an empty part)")
    if parts[0] in NOT_AXES:
        raise ValidationError(f"axes.{path}", "the seed is not an axis: list the seeds in "
                              "\"seeds\"" if parts[0] == "seed" else "cannot be an axis")
    for other in seen:
        if path.startswith(other + ".") or other.startswith(path + "."):
            raise ValidationError(f"axes.{path}", f"overlaps the axis {other}")


def _grid_values(where: str, values: list[Any]) -> tuple[Any, ...]:
    if not values:
        raise ValidationError(where, "is empty: a grid axis needs at least one value")
    if len(values) > MAX_AXIS_VALUES:
        raise ValidationError(where, f"has more than {MAX_AXIS_VALUES} values")
    keys: dict[str, int] = {}
    for i, value in enumerate(values):
        _plain(f"{where}[{i}]", value)
        key = canonical_json(value)
        if key in keys:
            raise ValidationError(f"{where}[{i}]", f"repeats the value of [{keys[key]}]")
        keys[key] = i
    return tuple(values)


def _plain(where: str, value: Any) -> None:
    try:
        canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(where, f"must be plain JSON data, finite numbers ({exc})") \
            from None
    if isinstance(value, (dict, list)):
        check_depth([value], where)


def _distribution(where: str, value: dict[str, Any]) -> Distribution:
    if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        raise ValidationError(where, "must be one distribution: {\"uniform\": [low, high]}, "
                              "log_uniform, int_uniform, or {\"choice\": [values]}")
    kind, args = next(iter(value.items()))
    where = f"{where}.{kind}"
    if not isinstance(args, list) or not args:
        raise ValidationError(where, "must be a non-empty list")
    if kind == "choice":
        return Distribution(kind, _grid_values(where, args))
    if len(args) != 2:
        raise ValidationError(where, "must be [low, high]")
    number = int if kind == "int_uniform" else (int, float)
    for bound in args:
        if isinstance(bound, bool) or not isinstance(bound, number) or \
                (isinstance(bound, float) and not math.isfinite(bound)):
            raise ValidationError(where, "bounds must be finite " +
                                  ("integers" if kind == "int_uniform" else "numbers"))
    low, high = args
    if not low < high:
        raise ValidationError(where, f"low ({low}) must be below high ({high})")
    if kind == "log_uniform" and low <= 0:
        raise ValidationError(where, "bounds must be positive (a log scale)")
    return Distribution(kind, (low, high))


def _seeds(value: Any) -> tuple[int, ...]:
    if value is None:
        raise ValidationError("seeds", "must be given: a list of seeds, or a count")
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_SEEDS:
            raise ValidationError("seeds", f"a count must be from 1 to {MAX_SEEDS}")
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        raise ValidationError("seeds", "must be a non-empty list of seeds, or a count")
    if len(value) > MAX_SEEDS:
        raise ValidationError("seeds", f"has more than {MAX_SEEDS} seeds")
    seen: dict[int, int] = {}
    for i, seed in enumerate(value):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValidationError(f"seeds[{i}]", f"must be an integer from 0 to {MAX_SEED}")
        if seed in seen:
            raise ValidationError(f"seeds[{i}]", f"duplicates seeds[{seen[seed]}] ({seed})")
        seen[seed] = i
    return tuple(value)


def _whole(data: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = data.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(name, f"must be an integer from {lo} to {hi}")
    return value


def axis_of(spec: SweepSpec, point: dict[str, Any], field: str) -> str:
    """The axis to blame for a config refusal of ``field`` at ``point``:
    ``axes.<path>[i]`` (or ``axes.<path>`` for a drawn value) where the field lies under
    an axis path, else the template's field."""
    for path, value in point.items():
        if field == path or field.startswith(path + ".") or path.startswith(field + "."):
            for grid_path, values in spec.grid:
                if grid_path == path:
                    index = [canonical_json(v) for v in values].index(canonical_json(value))
                    return f"axes.{path}[{index}]"
            return f"axes.{path}"
    return f"template.{field}"
