"""The experiment spec (core.sweepspec): parsing with refusals that name the field, the
points of grid and random axes, the cells' configs, and the spec's digest."""

from __future__ import annotations

import copy
import math

import pytest

from core.errors import ValidationError
from core.sweepspec import (MAX_CELLS, axis_of, cell_config, parse_spec, point_key,
                            point_label)

TEMPLATE = {"worker": "cartpole", "steps": 2000, "hyperparameters": {"population": 16}}


def spec(**kw):
    data = {"name": "exp1", "template": copy.deepcopy(TEMPLATE),
            "axes": {"hyperparameters.noise_std": [0.1, 0.5]}, "seeds": [0, 1, 2]}
    data.update(kw)
    return data


def refusal(data, default_name: str = "") -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_spec(data, default_name)
    return info.value


def test_a_grid_times_seeds_makes_every_cell_with_the_template_untouched() -> None:
    s = parse_spec(spec(axes={"hyperparameters.noise_std": [0.1, 0.5], "steps": [1000, 3000]}))
    points = s.points()
    assert points == [{"hyperparameters.noise_std": 0.1, "steps": 1000},
                      {"hyperparameters.noise_std": 0.1, "steps": 3000},
                      {"hyperparameters.noise_std": 0.5, "steps": 1000},
                      {"hyperparameters.noise_std": 0.5, "steps": 3000}]
    cells = s.cells()
    assert len(cells) == s.cell_count() == 12
    first = cells[0]
    assert (first.point, first.seed) == (0, 0)
    assert first.config == {"worker": "cartpole", "steps": 1000, "seed": 0,
                            "hyperparameters": {"population": 16, "noise_std": 0.1}}
    assert [(c.point, c.seed) for c in cells[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert s.template == TEMPLATE  # no cell shares (or changed) the template's maps


def test_an_experiment_without_axes_is_one_point_over_its_seeds() -> None:
    s = parse_spec(spec(axes={}, seeds=4))
    assert s.points() == [{}] and s.seeds == (0, 1, 2, 3)
    assert [c.config["seed"] for c in s.cells()] == [0, 1, 2, 3]
    assert point_label({}) == "(template)"


def test_random_axes_are_drawn_from_the_sample_seed_and_more_samples_keep_the_first() -> None:
    axes = {"hyperparameters.noise_std": {"uniform": [0.1, 0.9]},
            "hyperparameters.elite_frac": {"log_uniform": [0.01, 1.0]},
            "hyperparameters.population": {"int_uniform": [4, 8]},
            "env": {"choice": ["CartPole-v1", "Acrobot-v1"]}}
    four = parse_spec(spec(axes=axes, samples=4, sample_seed=7)).points()
    again = parse_spec(spec(axes=dict(reversed(list(axes.items()))), samples=4,
                            sample_seed=7)).points()
    six = parse_spec(spec(axes=axes, samples=6, sample_seed=7)).points()
    other = parse_spec(spec(axes=axes, samples=4, sample_seed=8)).points()
    assert [point_key(p) for p in four] == [point_key(p) for p in again]  # key order: no matter
    assert six[:4] == four and len(six) == 6
    assert other != four
    for p in six:
        assert 0.1 <= p["hyperparameters.noise_std"] <= 0.9
        assert 0.01 <= p["hyperparameters.elite_frac"] <= 1.0
        assert p["hyperparameters.population"] in range(4, 9)
        assert isinstance(p["hyperparameters.population"], int)
        assert p["env"] in ("CartPole-v1", "Acrobot-v1")


def test_grid_and_random_axes_combine_each_grid_point_with_each_draw() -> None:
    s = parse_spec(spec(axes={"steps": [1000, 2000],
                              "hyperparameters.noise_std": {"uniform": [0.0, 1.0]}},
                        samples=3, seeds=[5]))
    points = s.points()
    assert len(points) == 6 == s.cell_count()
    assert [p["steps"] for p in points] == [1000] * 3 + [2000] * 3
    assert [p["hyperparameters.noise_std"] for p in points[:3]] == \
        [p["hyperparameters.noise_std"] for p in points[3:]]


def test_the_int_uniform_draw_reaches_both_bounds_and_the_log_uniform_is_log_spread() -> None:
    s = parse_spec(spec(axes={"hyperparameters.population": {"int_uniform": [1, 3]},
                              "hyperparameters.init_std": {"log_uniform": [1e-4, 1.0]}},
                        samples=2000, seeds=[0]))
    pops = [p["hyperparameters.population"] for p in s.points()]
    assert set(pops) == {1, 2, 3}
    logs = [math.log10(p["hyperparameters.init_std"]) for p in s.points()]
    below = sum(1 for x in logs if x < -2) / len(logs)
    assert 0.4 < below < 0.6  # half the draws below the log-midpoint 1e-2


def test_the_digest_is_that_of_the_spec_not_of_its_key_order() -> None:
    a = parse_spec(spec(axes={"steps": [1, 2], "env": ["CartPole-v1"]}))
    b = parse_spec({"seeds": [0, 1, 2], "axes": {"steps": [1, 2], "env": ["CartPole-v1"]},
                    "template": copy.deepcopy(TEMPLATE), "name": "exp1"})
    c = parse_spec(spec(axes={"steps": [1, 2, 3], "env": ["CartPole-v1"]}))
    assert a.digest() == b.digest() != c.digest()
    assert parse_spec(a.to_map()).to_map() == a.to_map()  # what the log records reads back


def test_the_name_may_come_from_the_caller_and_must_be_a_stream_name() -> None:
    data = spec()
    del data["name"]
    assert parse_spec(data, "from-file").name == "from-file"
    assert refusal(data).details["field"] == "name"
    assert refusal(spec(name="a.b")).details["field"] == "name"
    assert refusal(spec(name="x" * 65)).details["field"] == "name"


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"axes": {"hyperparameters.noise_std": []}}, "axes.hyperparameters.noise_std", "empty"),
    ({"axes": {"hyperparameters.noise_std": [0.1, 0.1]}}, "axes.hyperparameters.noise_std[1]",
     "repeats"),
    ({"axes": {"seed": [1, 2]}}, "axes.seed", "seeds"),
    ({"axes": {"steps": 5}}, "axes.steps", "list of values"),
    ({"axes": {"steps..x": [1]}}, "axes.steps..x", "empty part"),
    ({"axes": {"hyperparameters": [{}], "hyperparameters.lr": [1]}}, "axes.hyperparameters.lr",
     "overlaps"),
    ({"axes": {"steps": {"normal": [0, 1]}}, "samples": 2}, "axes.steps", "distribution"),
    ({"axes": {"steps": {"uniform": [3, 1]}}, "samples": 2}, "axes.steps.uniform", "below"),
    ({"axes": {"steps": {"uniform": [0, float("inf")]}}, "samples": 2}, "axes.steps.uniform",
     "finite"),
    ({"axes": {"steps": {"log_uniform": [0, 1]}}, "samples": 2}, "axes.steps.log_uniform",
     "positive"),
    ({"axes": {"steps": {"int_uniform": [1.5, 3]}}, "samples": 2}, "axes.steps.int_uniform",
     "integers"),
    ({"axes": {"steps": {"uniform": [1, 3]}}}, "samples", "must be given"),
    ({"samples": 3}, "samples", "no axis is a distribution"),
    ({"axes": {"hyperparameters.x": [float("nan")]}}, "axes.hyperparameters.x[0]", "finite"),
    ({"seeds": [1, 2, 1]}, "seeds[2]", "duplicates seeds[0]"),
    ({"seeds": []}, "seeds", "non-empty"),
    ({"seeds": [-1]}, "seeds[0]", "integer"),
    ({"seeds": 0}, "seeds", "count"),
    ({"seeds": None}, "seeds", "must be given"),
    ({"template": [1]}, "template", "map"),
    ({"template": {"seed": 3}}, "template.seed", "seeds"),
    ({"max_concurrent": -1}, "max_concurrent", "integer"),
    ({"priority": 5000}, "priority", "integer"),
    ({"colour": "red"}, "colour", "not a field"),
])
def test_a_bad_spec_is_refused_naming_the_field(change, field, words) -> None:
    err = refusal(spec(**change))
    assert err.details["field"] == field
    assert words in err.details["reason"], err.details["reason"]


def test_too_many_cells_are_refused_before_any_is_made() -> None:
    err = refusal(spec(axes={"steps": list(range(1, 1001))}, seeds=list(range(11))))
    assert err.details["field"] == "axes" and str(MAX_CELLS) in err.details["reason"]


def test_a_config_refusal_is_blamed_on_the_axis_value_that_caused_it() -> None:
    s = parse_spec(spec(axes={"steps": [1000, -5], "hyperparameters.noise_std": [0.1]}))
    bad = s.points()[1]
    assert axis_of(s, bad, "steps") == "axes.steps[1]"
    assert axis_of(s, bad, "hyperparameters.noise_std") == "axes.hyperparameters.noise_std[0]"
    assert axis_of(s, bad, "hyperparameters") == "axes.hyperparameters.noise_std[0]"
    assert axis_of(s, bad, "env") == "template.env"
    drawn = parse_spec(spec(axes={"steps": {"int_uniform": [1, 9]}}, samples=2))
    assert axis_of(drawn, drawn.points()[0], "steps") == "axes.steps"


def test_cell_config_creates_the_maps_on_a_path_and_labels_are_short() -> None:
    assert cell_config({}, {"resources.gpus": 1}, 3) == {"resources": {"gpus": 1}, "seed": 3}
    assert point_label({"hyperparameters.noise_std": 0.1234567, "env": "CartPole-v1"}) == \
        "noise_std=0.123457, env=CartPole-v1"
