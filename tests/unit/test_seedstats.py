"""runtime.seedstats: the statistics of issue 17 against hand-computed values,
the reproducibility and the coverage of the bootstrap intervals, the common step grid
and its band, the performance profile, and the refusals."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from runtime.seedstats import (Summary, band, best, bootstrap_ci, common_grid, iqm,
                               performance_profile, rank, summary)

HAVE_SCIPY = importlib.util.find_spec("scipy") is not None


# --- IQM: scipy.stats.trim_mean(values, 0.25), as rliable ------------------------------

@pytest.mark.parametrize("values, expected", [
    # n=8: int(0.25*8)=2 cut from each end; the middle four 3,4,5,6.
    (list(range(1, 9)), (3 + 4 + 5 + 6) / 4),
    # n=5: int(1.25)=1 cut from each end (trim_mean cuts less, no fractional weight).
    ([100, 1, 4, 2, 3], (2 + 3 + 4) / 3),
    # n=6: int(1.5)=1 cut from each end.
    ([5, 100, 1, 3, 2, 4], (2 + 3 + 4 + 5) / 4),
    # n=7: int(1.75)=1.
    ([-50, 1, 2, 3, 4, 5, 60], (1 + 2 + 3 + 4 + 5) / 5),
    # n=3: int(0.75)=0, the plain mean.
    ([1, 2, 10], 13 / 3),
    ([7.5], 7.5),
])
def test_iqm_of_hand_computed_samples(values: list[float], expected: float) -> None:
    assert iqm(values) == pytest.approx(expected, rel=1e-12)
    assert summary(values).iqm == pytest.approx(expected, rel=1e-12)
    if HAVE_SCIPY:
        import scipy.stats
        assert iqm(values) == pytest.approx(
            float(scipy.stats.trim_mean(values, proportiontocut=0.25)), rel=1e-12)


@pytest.mark.skipif(not HAVE_SCIPY, reason="scipy is not installed (not a dependency)")
def test_iqm_matches_scipy_trim_mean_on_random_samples() -> None:
    import scipy.stats
    gen = np.random.default_rng(7)
    for n in range(1, 40):
        values = gen.normal(size=n)
        assert iqm(values) == pytest.approx(
            float(scipy.stats.trim_mean(values, proportiontocut=0.25)), rel=1e-12)


def test_mean_std_median_of_a_known_sample() -> None:
    s = summary([2, 4, 4, 4, 5, 5, 7, 9])
    assert s.n == 8
    assert s.mean == 5.0
    # Squared deviations 9,1,1,1,0,0,4,16 sum to 32; the sample std divides by n-1=7.
    assert s.std == pytest.approx(math.sqrt(32 / 7), rel=1e-12)
    assert s.median == 4.5
    assert s.iqm == pytest.approx((4 + 4 + 5 + 5) / 4)
    assert s.statistic == "iqm" and s.confidence == 0.95 and s.reps == 2000
    assert s.ci_low <= s.iqm <= s.ci_high


def test_one_seed_collapses_the_interval_to_its_value() -> None:
    s = summary([3.25])
    assert (s.n, s.mean, s.std, s.median, s.iqm) == (1, 3.25, 0.0, 3.25, 3.25)
    assert (s.ci_low, s.ci_high) == (3.25, 3.25)


# --- the bootstrap interval -------------------------------------------------------------

def test_the_interval_is_reproducible_with_the_same_seed() -> None:
    values = [10.0, 12.5, 9.0, 15.0, 11.0, 30.0]
    a = summary(values)
    assert summary(values) == a                               # default seed 0
    assert summary(values, rng=0) == a
    assert summary(values, rng=np.random.default_rng(0)) == a
    assert summary(values, rng=1) != a                        # another seed, another draw
    m = summary(values, "mean", reps=500, rng=3)
    assert (m.ci_low, m.ci_high) == bootstrap_ci(values, "mean", reps=500, rng=3)
    assert m.statistic == "mean" and m.ci_low < m.mean < m.ci_high
    assert m.ci_high - m.ci_low > 0


def test_the_interval_of_two_seeds_is_their_range() -> None:
    # Resamples of {a, b}: (a, a), (b, b) with probability 1/4 each: the 2.5 % and
    # 97.5 % quantiles of the resampled means are a and b themselves.
    assert bootstrap_ci([1.0, 3.0], "mean") == (1.0, 3.0)


def _coverage(seeds: int, experiments: int, statistic: str, confidence: float = 0.95
              ) -> float:
    true_center = 5.0           # the mean, and by symmetry the IQM, of N(5, 2^2)
    draws = np.random.default_rng(2021).normal(true_center, 2.0, size=(experiments, seeds))
    hits = 0
    for i, values in enumerate(draws):
        low, high = bootstrap_ci(values, statistic, confidence=confidence, rng=i)
        hits += low <= true_center <= high
    return hits / experiments


def test_the_95_percent_interval_covers_the_true_mean() -> None:
    # The percentile bootstrap of a mean is about mean +- 1.96 * s * sqrt((n-1)/n) /
    # sqrt(n), a normal interval narrower than Student's: with 10 seeds its coverage is
    # P(|t_9| < 1.96 * sqrt(0.9)) ~= 0.904, with 20 seeds P(|t_19| < 1.91) ~= 0.93.
    # 600 experiments each: a standard error of ~1.1 points.
    assert 0.86 <= _coverage(seeds=10, experiments=600, statistic="mean") <= 0.98
    assert 0.90 <= _coverage(seeds=20, experiments=600, statistic="mean") <= 0.98


def test_the_95_percent_interval_of_the_iqm_covers_the_true_iqm() -> None:
    assert 0.90 <= _coverage(seeds=10, experiments=300, statistic="iqm") <= 0.99


def test_the_coverage_check_tells_a_narrow_interval_apart() -> None:
    # The check above would catch an interval of the wrong width: a 50 % one covers ~half.
    assert _coverage(seeds=10, experiments=300, statistic="mean", confidence=0.5) < 0.6


# --- rank and best ----------------------------------------------------------------------

def _points() -> dict[str, Summary]:
    return {"lr=0.1": summary([1, 2, 3, 4]), "lr=0.01": summary([5, 6, 7, 8]),
            "lr=0.001": summary([3, 4, 5, 6]), "lr=0.3": summary([3, 4, 5, 6])}


def test_rank_orders_by_a_field_and_breaks_ties_by_name() -> None:
    points = _points()
    assert rank(points) == ["lr=0.01", "lr=0.001", "lr=0.3", "lr=0.1"]
    assert rank(points, higher_is_better=False) == ["lr=0.1", "lr=0.001", "lr=0.3", "lr=0.01"]
    assert rank(points, by="mean")[0] == "lr=0.01"
    assert best(points) == "lr=0.01"
    assert best(points, by="median", higher_is_better=False) == "lr=0.1"
    assert rank({}) == []


def test_rank_and_best_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="by: 'speed' is not one of"):
        rank(_points(), by="speed")
    with pytest.raises(ValueError, match="points: empty"):
        best({})
    with pytest.raises(ValueError, match=r"points\['x'\]: a float, not a Summary"):
        rank({"x": 1.0})  # type: ignore[dict-item]


# --- curves: the common grid and the band -----------------------------------------------

def _two_curves() -> list[tuple[list[float], list[float]]]:
    return [([0, 10, 20], [0, 10, 20]),           # y = x on 0..20
            ([5, 15, 25], [0, 20, 40])]           # y = 2 (x - 5) on 5..25


def test_common_grid_interpolates_onto_the_shared_range() -> None:
    grid, values = common_grid(_two_curves(), points=4)
    np.testing.assert_array_equal(grid, [5, 10, 15, 20])          # max first, min last
    np.testing.assert_allclose(values, [[5, 10, 15, 20],
                                        [0, 10, 20, 30]])
    grid, values = common_grid(_two_curves())
    assert grid.shape == (200,) and values.shape == (2, 200)
    assert (grid[0], grid[-1]) == (5.0, 20.0)


def test_common_grid_of_curves_sharing_one_step() -> None:
    grid, values = common_grid([([0, 5], [1, 2]), ([5, 9], [7, 8])])
    np.testing.assert_array_equal(grid, [5.0])
    np.testing.assert_array_equal(values, [[2.0], [7.0]])


def test_band_is_the_mean_over_seeds_with_a_bootstrap_band() -> None:
    _, values = common_grid(_two_curves(), points=4)
    b = band(values)
    np.testing.assert_allclose(b.mean, [2.5, 10, 17.5, 25])
    # Two seeds: each resample is seed A twice, B twice (1/4 each) or both, so the 2.5 %
    # and 97.5 % quantiles per step are the lower and the upper curve.
    np.testing.assert_allclose(b.low, values.min(axis=0))
    np.testing.assert_allclose(b.high, values.max(axis=0))
    again = band(values)
    np.testing.assert_array_equal(again.low, b.low)
    np.testing.assert_array_equal(again.high, b.high)


def test_band_resamples_seeds_not_steps() -> None:
    # Ten seeds, each a constant curve: a resample of whole seeds gives constant
    # resampled means, so the band is flat; a per-step resampling would make it jagged.
    offsets = np.arange(10.0)[:, None]
    curves = np.repeat(offsets, 50, axis=1)
    b = band(curves, reps=1000, rng=5)
    assert np.ptp(b.low) == 0 and np.ptp(b.high) == 0
    assert b.low[0] < 4.5 < b.high[0]
    np.testing.assert_allclose(b.mean, 4.5)
    one = band(curves[:1])
    np.testing.assert_array_equal(one.low, one.mean)
    np.testing.assert_array_equal(one.high, one.mean)


def test_common_grid_and_band_refuse_bad_curves() -> None:
    with pytest.raises(ValueError, match="curves: empty"):
        common_grid([])
    with pytest.raises(ValueError, match="share no step"):
        common_grid([([0, 1], [0, 1]), ([2, 3], [0, 1])])
    with pytest.raises(ValueError, match=r"curves\[1\]: 3 steps but 2 values"):
        common_grid([([0, 1], [0, 1]), ([0, 1, 2], [0, 1])])
    with pytest.raises(ValueError, match=r"curves\[0\]\.steps\[2\] = 1\.0 does not increase"):
        common_grid([([0, 1, 1], [0, 1, 2])])
    with pytest.raises(ValueError, match=r"curves\[0\]\.values\[1\] is nan"):
        common_grid([([0, 1], [0, float("nan")])])
    with pytest.raises(ValueError, match=r"curves\[0\]: not a \(steps, values\) pair"):
        common_grid([[1, 2, 3]])
    with pytest.raises(ValueError, match="points: 1 is not an integer >= 2"):
        common_grid(_two_curves(), points=1)
    with pytest.raises(ValueError, match=r"curves_on_grid\[1, 0\] is inf"):
        band([[1.0, 2.0], [float("inf"), 1.0]])
    with pytest.raises(ValueError, match="curves_on_grid: expected a non-empty"):
        band([1.0, 2.0])


# --- performance profile ----------------------------------------------------------------

def test_performance_profile_is_the_fraction_strictly_above_each_threshold() -> None:
    profile = performance_profile([1, 2, 3, 4], [0, 1, 2.5, 4, 5])
    assert isinstance(profile, np.ndarray)
    np.testing.assert_array_equal(profile, [1.0, 0.75, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="thresholds: empty"):
        performance_profile([1], [])
    with pytest.raises(ValueError, match=r"scores\[0\] is -inf"):
        performance_profile([float("-inf")], [0])


# --- refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"values": []}, "values: empty"),
    ({"values": [1.0, float("nan"), 2.0]}, r"values\[1\] is nan"),
    ({"values": [1.0, 2.0, float("inf")]}, r"values\[2\] is inf"),
    ({"values": [[1.0, 2.0]]}, r"values: expected a 1-D sequence"),
    ({"values": ["a"]}, "values: not a sequence of numbers"),
    ({"values": [1.0], "statistic": "max"}, "statistic: 'max' is not one of iqm, mean"),
    ({"values": [1.0], "reps": 0}, "reps: 0 is not a positive integer"),
    ({"values": [1.0], "confidence": 1.0}, "confidence: 1.0 is not a number strictly"),
    ({"values": [1.0, 2.0], "rng": -1}, "rng: -1 is neither"),
])
def test_summary_refuses_bad_input_naming_it(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summary(**kwargs)
