"""Standard plots of a sweep: a metric against one parameter with a confidence band across
replicates, and a heatmap of a metric's mean over two parameters.

Both take the runs table (``OUT/runs.parquet``) as a DataFrame; failed runs are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from experiments.design import Experiment

HEADLINE = ("share_failed", "defaults_total", "largest_cascade", "time_to_first_default")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out, write as PNG without a software stamp (byte-stable for the same figure), close."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    _plt().close(fig)
    return path


def band(runs: pd.DataFrame, parameter: str, metric: str, level: float = 0.95) -> pd.DataFrame:
    """Mean, standard error and a normal-approximation confidence band of ``metric`` per value of
    ``parameter`` (across replicates and any other varied parameters)."""
    from scipy import stats

    ok = runs[runs["status"] == "ok"]
    y = pd.to_numeric(ok[metric], errors="coerce").astype(float)
    g = y.groupby(ok[parameter])
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()})
    z = stats.norm.ppf(0.5 + level / 2)
    half = z * out["sd"].fillna(0.0) / np.sqrt(out["n"].clip(lower=1))
    return out.assign(low=out["mean"] - half, high=out["mean"] + half).reset_index()


def metric_vs_parameter(
    runs: pd.DataFrame, parameter: str, metric: str, ax: Axes | None = None, level: float = 0.95
) -> Axes:
    """Line of the mean with a shaded confidence band across replicates."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    b = band(runs, parameter, metric, level)
    ax.plot(b[parameter], b["mean"], marker="o", ms=3)
    ax.fill_between(b[parameter], b["low"], b["high"], alpha=0.25, lw=0, label=f"{level:.0%} CI")
    ax.set_xlabel(parameter)
    ax.set_ylabel(metric)
    ax.legend(frameon=False)
    return ax


def heatmap(runs: pd.DataFrame, x: str, y: str, metric: str, ax: Axes | None = None) -> Axes:
    """Mean of ``metric`` over a grid of two parameters (rows ``y``, columns ``x``)."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    ok = runs[runs["status"] == "ok"].assign(_v=lambda d: pd.to_numeric(d[metric], errors="coerce"))
    table = ok.pivot_table(index=y, columns=x, values="_v", aggfunc="mean").sort_index(ascending=False)
    im = ax.imshow(table.to_numpy(dtype=float), aspect="auto", cmap="viridis")
    ax.set_xticks(range(table.shape[1]), [f"{v:.3g}" if isinstance(v, float) else v for v in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{v:.3g}" if isinstance(v, float) else v for v in table.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.figure.colorbar(im, ax=ax, label=f"mean {metric}")
    return ax


def standard_figures(runs: pd.DataFrame, experiment: Experiment, folder: Path) -> list[Path]:
    """For each headline metric: one line plot per parameter; a heatmap over the first two parameters
    when the design is a grid with at least two."""
    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in HEADLINE if m in runs and pd.to_numeric(runs[m], errors="coerce").notna().any()]
    params = [p for p in experiment.parameters if pd.api.types.is_numeric_dtype(runs[p])]
    written = []
    for metric in metrics:
        for p in params:
            fig, ax = plt.subplots(figsize=(5, 3.4))
            metric_vs_parameter(runs, p, metric, ax)
            ax.set_title(f"{experiment.name}: {metric}")
            written.append(save_figure(fig, folder / f"{metric}_vs_{p}.png"))
        if experiment.design.kind == "grid" and len(params) >= 2:
            fig, ax = plt.subplots(figsize=(5.5, 4))
            heatmap(runs, params[0], params[1], metric, ax)
            ax.set_title(f"{experiment.name}: {metric}")
            written.append(save_figure(fig, folder / f"{metric}_heatmap_{params[0]}_{params[1]}.png"))
    return written
