"""The PNG of an experiment's results (`runtime.experimentresults.experiment_results` with
``curves=True``): per config point the mean curve of the metric on the common step grid
and its bootstrap band, and optionally the performance profile of the points' final
values. Matplotlib's Agg canvas on a `Figure` of its own: no pyplot, no global state,
no display needed."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.errors import ValidationError
from runtime import seedstats

PROFILE_THRESHOLDS = 101
DPI = 100


def _colour(point: int) -> str:
    return f"C{point % 10}"


def _labels(results: dict[str, Any]) -> dict[int, str]:
    return {p["point"]: p["label"] for p in results["points"]}


def _curves(ax: Any, results: dict[str, Any]) -> None:
    labels = _labels(results)
    for curve in results.get("curves", []):
        steps = np.asarray(curve["steps"], dtype=float)
        colour = _colour(curve["point"])
        ax.plot(steps, curve["mean"], color=colour,
                label=f"{labels.get(curve['point'], curve['point'])} (n={curve['n']})")
        ax.fill_between(steps, curve["low"], curve["high"], color=colour, alpha=0.25,
                        linewidth=0)
    if not results.get("curves"):
        ax.text(0.5, 0.5, "no curve data yet", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel(results["metric"])
    ax.set_title(f"{results['metric']}: mean over seeds, "
                 f"{float(results.get('confidence', 0.95)):.0%} bootstrap band")
    ax.grid(True, alpha=0.3)
    if results.get("curves"):
        ax.legend(loc="best", fontsize="small")


def completed_finals(point: dict[str, Any]) -> list[float]:
    """The final values of a point's COMPLETED seeds (those the statistics count)."""
    return [f["value"] for f in point["finals"]
            if f["status"] == "COMPLETED" and f["value"] is not None]


def _profile(ax: Any, results: dict[str, Any]) -> None:
    finals = {p["point"]: completed_finals(p) for p in results["points"]}
    every = [v for values in finals.values() for v in values]
    if every:
        low, high = min(every), max(every)
        pad = 0.05 * (high - low) if high > low else max(abs(low) * 0.05, 1.0)
        taus = np.linspace(low - pad, high + pad, PROFILE_THRESHOLDS)
        for point in results["points"]:
            values = finals[point["point"]]
            if values:
                ax.step(taus, seedstats.performance_profile(values, taus), where="post",
                        color=_colour(point["point"]),
                        label=f"{point['label']} (n={len(values)})")
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no completed runs yet", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"final {results['metric']} threshold τ")
    ax.set_ylabel("fraction of completed runs with score > τ")
    ax.set_title("performance profile")
    ax.grid(True, alpha=0.3)


def figure(results: dict[str, Any], *, profile: bool = False, title: str = "") -> Figure:
    """The figure itself (one panel, or two with ``profile``)."""
    fig = Figure(figsize=(13 if profile else 8, 5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if profile else 1, squeeze=False)[0]
    _curves(axes[0], results)
    if profile:
        _profile(axes[1], results)
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(results: dict[str, Any], path: str, *, profile: bool = False,
                title: str = "") -> str:
    """Write the PNG to ``path`` and return it. ``results`` needs its "curves" (from
    ``experiment_results(..., curves=True)``): without them there is nothing to draw."""
    if "curves" not in results:
        raise ValidationError("results.curves", "absent (ask experiment_results for"
                              " curves=True)")
    fig = figure(results, profile=profile, title=title)
    fig.savefig(path, format="png")
    return path
