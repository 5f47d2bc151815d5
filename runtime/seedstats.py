"""The statistics of an experiment over its seeds (issue 17, "Results you can trust").

Pure functions over numpy arrays: no I/O, no clock, and every random draw comes from a
seeded generator (the ``rng`` parameters, seed 0 by default), so a table or a plot made
twice from the same values is the same.

- `summary`: n, mean, std, median, IQM and a 95 % percentile-bootstrap confidence
  interval (of the IQM or of the mean) of the final metric values of one config point.
- `rank` and `best`: the config points ordered by one field of their `Summary`.
- `common_grid` and `band`: per-seed curves with different step grids, interpolated onto
  one grid, then their mean per step with a 95 % bootstrap band over seeds.
- `performance_profile`: the fraction of runs above each threshold (Agarwal et al. 2021).

The IQM is rliable's ``aggregate_iqm``, that is ``scipy.stats.trim_mean(values,
proportiontocut=0.25)``, reproduced with numpy (`iqm`): sort, drop ``k = int(0.25 * n)``
values from each end, average the rest. When n is not a multiple of 4, trim_mean cuts
*less* than 25 % (no fractional weights at the cut points): n=5 and n=6 drop one value
from each end, n=1..3 drop none.

Bad input is refused with a ValueError that names the argument, and for a value that is
NaN or infinite, its index: the statistics of a config point with a missing seed are not
silently those of the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Statistic = Literal["iqm", "mean"]
STATISTICS: tuple[str, ...] = ("iqm", "mean")
# The fields of Summary that `rank` may order by.
RANKABLE: tuple[str, ...] = ("mean", "median", "iqm", "std", "ci_low", "ci_high", "n")

DEFAULT_REPS = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_GRID_POINTS = 200

RngLike = int | np.random.Generator


@dataclass(frozen=True)
class Summary:
    """The final values of one config point's seeds. ``ci_low``/``ci_high``: the
    ``confidence`` percentile-bootstrap interval of ``statistic`` over seeds."""
    n: int
    mean: float
    std: float          # sample standard deviation (ddof=1); 0.0 for n=1
    median: float
    iqm: float          # scipy.stats.trim_mean(values, 0.25), as rliable
    ci_low: float
    ci_high: float
    statistic: str      # what the interval is of: "iqm" or "mean"
    confidence: float
    reps: int


@dataclass(frozen=True)
class Band:
    """Per grid step: the mean over seeds and its bootstrap band (arrays of one length)."""
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


# --- checks ---------------------------------------------------------------------------

def _finite_1d(values: Any, name: str) -> np.ndarray:
    """``values`` as a non-empty 1-D float array, or a ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not a sequence of numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty (at least one value is needed)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] is {float(arr[i])!r}: NaN and infinite values are refused"
                         f" ({bad.size} such value(s); first at index {i})")
    return arr


def _check_options(statistic: str, confidence: float, reps: int) -> None:
    if statistic not in STATISTICS:
        raise ValueError(f"statistic: {statistic!r} is not one of {', '.join(STATISTICS)}")
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence: {confidence!r} is not a number strictly between 0 and 1")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps: {reps!r} is not a positive integer")


def _generator(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or not isinstance(rng, int) or rng < 0:
        raise ValueError(f"rng: {rng!r} is neither a numpy Generator nor a seed (int >= 0)")
    return np.random.default_rng(rng)


# --- the statistics -------------------------------------------------------------------

def _iqm_last_axis(arr: np.ndarray) -> np.ndarray:
    """trim_mean(arr, 0.25, axis=-1): sort, drop int(0.25 * n) from each end, average."""
    n = arr.shape[-1]
    k = int(0.25 * n)
    trimmed: np.ndarray = np.sort(arr, axis=-1)[..., k:n - k].mean(axis=-1)
    return trimmed


def iqm(values: Any) -> float:
    """The interquartile mean: ``scipy.stats.trim_mean(values, proportiontocut=0.25)``
    (rliable's ``aggregate_iqm``), so ``int(0.25 * n)`` values are dropped from each end
    of the sorted values and the rest averaged (no fractional weights)."""
    return float(_iqm_last_axis(_finite_1d(values, "values")))


def _statistic_last_axis(statistic: str, arr: np.ndarray) -> np.ndarray:
    return _iqm_last_axis(arr) if statistic == "iqm" else arr.mean(axis=-1)


def bootstrap_ci(values: Any, statistic: Statistic = "iqm", *,
                 confidence: float = DEFAULT_CONFIDENCE, reps: int = DEFAULT_REPS,
                 rng: RngLike = 0) -> tuple[float, float]:
    """The percentile-bootstrap interval of ``statistic`` over ``values``: ``reps``
    resamples of the n values with replacement, drawn at once (a reps x n index array),
    and the (1-c)/2 and (1+c)/2 quantiles of the statistic over them. With one value
    the interval is that value."""
    arr = _finite_1d(values, "values")
    _check_options(statistic, confidence, reps)
    gen = _generator(rng)
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    resampled = arr[gen.integers(0, arr.size, size=(reps, arr.size))]
    boot = _statistic_last_axis(statistic, resampled)
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1.0 - alpha / 2])
    return float(low), float(high)


def summary(values: Any, statistic: Statistic = "iqm", *,
            confidence: float = DEFAULT_CONFIDENCE, reps: int = DEFAULT_REPS,
            rng: RngLike = 0) -> Summary:
    """The `Summary` of one config point's final values (one per seed).

    Percentile bootstrap rather than BCa: with the handful of seeds an RL sweep has,
    BCa's acceleration (a jackknife over the seeds) is itself noisy; rliable's interval
    estimates default to the percentile method as well. Both under-cover
    a little for very few seeds (about 90 % nominal-95 % for the mean of 10 normal seeds).
    """
    arr = _finite_1d(values, "values")
    _check_options(statistic, confidence, reps)
    low, high = bootstrap_ci(arr, statistic, confidence=confidence, reps=reps, rng=rng)
    return Summary(
        n=int(arr.size),
        mean=float(arr.mean()),
        std=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        median=float(np.median(arr)),
        iqm=float(_iqm_last_axis(arr)),
        ci_low=low, ci_high=high, statistic=statistic, confidence=float(confidence),
        reps=reps)


# --- ranking --------------------------------------------------------------------------

def rank(points: Mapping[str, Summary], by: str = "iqm",
         higher_is_better: bool = True) -> list[str]:
    """The names of ``points``, best first, by the field ``by`` of their summaries.
    Ties keep the names' sorted order, so the ranking does not depend on dict order."""
    if by not in RANKABLE:
        raise ValueError(f"by: {by!r} is not one of {', '.join(RANKABLE)}")
    for name, point in points.items():
        if not isinstance(point, Summary):
            raise ValueError(f"points[{name!r}]: a {type(point).__name__}, not a Summary")
    sign = -1.0 if higher_is_better else 1.0
    return sorted(points, key=lambda name: (sign * float(getattr(points[name], by)), name))


def best(points: Mapping[str, Summary], by: str = "iqm",
         higher_is_better: bool = True) -> str:
    """The name of the best point (the first of `rank`)."""
    if not points:
        raise ValueError("points: empty (no config point to choose from)")
    return rank(points, by=by, higher_is_better=higher_is_better)[0]


# --- curves ---------------------------------------------------------------------------

def _curve(curve: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        steps_in, values_in = curve
    except (TypeError, ValueError):
        raise ValueError(f"curves[{index}]: not a (steps, values) pair") from None
    steps = _finite_1d(steps_in, f"curves[{index}].steps")
    values = _finite_1d(values_in, f"curves[{index}].values")
    if steps.size != values.size:
        raise ValueError(f"curves[{index}]: {steps.size} steps but {values.size} values")
    if steps.size > 1 and not np.all(np.diff(steps) > 0):
        i = int(np.flatnonzero(np.diff(steps) <= 0)[0]) + 1
        raise ValueError(f"curves[{index}].steps[{i}] = {float(steps[i])!r} does not increase"
                         f" (after {float(steps[i - 1])!r}): steps must be strictly increasing")
    return steps, values


def common_grid(curves: Sequence[Any], points: int = DEFAULT_GRID_POINTS
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed curves ``(steps, values)`` on one step grid: ``points`` evenly spaced
    steps from the largest first step to the smallest last step (the range every curve
    covers: nothing is extrapolated), each curve interpolated linearly onto it.
    Returns ``(grid, values)``, values of shape (len(curves), len(grid)). Where the
    range is a single step, the grid is that one step."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points: {points!r} is not an integer >= 2")
    if len(curves) == 0:
        raise ValueError("curves: empty (at least one curve is needed)")
    checked = [_curve(c, i) for i, c in enumerate(curves)]
    start = max(float(s[0]) for s, _ in checked)
    end = min(float(s[-1]) for s, _ in checked)
    if start > end:
        raise ValueError(f"curves: their step ranges share no step (the latest first step"
                         f" is {start:g}, the earliest last step {end:g})")
    grid = np.array([start]) if start == end else np.linspace(start, end, points)
    values = np.stack([np.interp(grid, s, v) for s, v in checked])
    return grid, values


def band(curves_on_grid: Any, *, confidence: float = DEFAULT_CONFIDENCE,
         reps: int = DEFAULT_REPS, rng: RngLike = 0) -> Band:
    """The mean over seeds per grid step and its percentile-bootstrap band, from an
    array of shape (seeds, steps) such as `common_grid`'s values. Seeds are resampled
    (whole curves, never single steps), all ``reps`` at once: each resample is a row of
    multinomial counts over the seeds, and the resampled means are one matrix product."""
    try:
        arr = np.asarray(curves_on_grid, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"curves_on_grid: not an array of numbers ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"curves_on_grid: expected a non-empty (seeds, steps) array,"
                         f" got shape {arr.shape}")
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        seed, step = (int(x) for x in bad[0])
        raise ValueError(f"curves_on_grid[{seed}, {step}] is {float(arr[seed, step])!r}:"
                         " NaN and infinite values are refused")
    _check_options("mean", confidence, reps)
    gen = _generator(rng)
    mean = arr.mean(axis=0)
    n = arr.shape[0]
    if n == 1:
        return Band(mean=mean, low=mean.copy(), high=mean.copy())
    counts = gen.multinomial(n, np.full(n, 1.0 / n), size=reps)      # (reps, seeds)
    boot = counts @ arr / n                                          # (reps, steps)
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1.0 - alpha / 2], axis=0)
    return Band(mean=mean, low=low, high=high)


# --- performance profile --------------------------------------------------------------

def performance_profile(scores: Any, thresholds: Any) -> np.ndarray:
    """For each threshold tau, the fraction of ``scores`` strictly above it (rliable's
    run-score distribution, ``mean(scores > tau)``), as a float array of thresholds'
    length."""
    arr = _finite_1d(scores, "scores")
    taus = _finite_1d(thresholds, "thresholds")
    return np.asarray((arr[None, :] > taus[:, None]).mean(axis=1), dtype=float)

