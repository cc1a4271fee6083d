"""Global sensitivity analysis of a sweep with SALib: Sobol (first-order and total indices with
confidence intervals) and Morris (mu*, sigma), as a table and a bar chart.

Replicates share seeds across design points (common random numbers), so the output analysed at each
point is the mean over its replicates; the points must be in the order the SALib sampler made them,
which the sweep's ``point`` column is.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import ConfigError
from experiments.design import Experiment, design_points, design_seed, salib_problem


def point_means(runs: pd.DataFrame, metric: str, n_points: int) -> np.ndarray:
    """The metric averaged over replicates at each design point, in point order."""
    if metric not in runs:
        raise ConfigError(f"sensitivity: no column '{metric}' in the results (allowed: {list(runs.columns)})")
    ok = runs[runs["status"] == "ok"]
    values = pd.to_numeric(ok[metric], errors="coerce").astype(float)
    means = values.groupby(ok["point"]).mean().reindex(range(n_points))
    if means.isna().any():
        missing = means.index[means.isna()].tolist()[:10]
        raise ConfigError(
            f"sensitivity of '{metric}': no successful runs (or no values) at design point(s) {missing}"
        )
    return means.to_numpy()


def sobol_table(runs: pd.DataFrame, experiment: Experiment, metric: str) -> pd.DataFrame:
    """Sobol first-order (S1) and total (ST) indices with their confidence half-widths."""
    from SALib.analyze import sobol

    if experiment.design.kind != "sobol":
        raise ConfigError(f"Sobol indices need design.kind = 'sobol' (got '{experiment.design.kind}')")
    problem = salib_problem(experiment)
    y = point_means(runs, metric, len(design_points(experiment)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sobol.analyze(
            problem,
            y,
            calc_second_order=experiment.design.second_order,
            num_resamples=200,
            conf_level=0.95,
            seed=design_seed(experiment.master_seed),
        )
    return pd.DataFrame(
        {
            "parameter": problem["names"],
            "S1": res["S1"],
            "S1_conf": res["S1_conf"],
            "ST": res["ST"],
            "ST_conf": res["ST_conf"],
        }
    ).assign(metric=metric)


def morris_table(runs: pd.DataFrame, experiment: Experiment, metric: str) -> pd.DataFrame:
    """Morris elementary effects: mu, mu* (with confidence half-width) and sigma."""
    from SALib.analyze import morris

    if experiment.design.kind != "morris":
        raise ConfigError(f"Morris indices need design.kind = 'morris' (got '{experiment.design.kind}')")
    problem = salib_problem(experiment)
    points = design_points(experiment)
    x = np.array([[p[n] for n in problem["names"]] for p in points], dtype=float)
    y = point_means(runs, metric, len(points))
    res = morris.analyze(
        problem,
        x,
        y,
        num_resamples=200,
        conf_level=0.95,
        num_levels=experiment.design.levels,
        seed=design_seed(experiment.master_seed),
    )
    return pd.DataFrame(
        {
            "parameter": problem["names"],
            "mu": res["mu"],
            "mu_star": res["mu_star"],
            "mu_star_conf": res["mu_star_conf"],
            "sigma": res["sigma"],
        }
    ).assign(metric=metric)


def bar_chart(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Bars of S1 and ST (or mu*) per parameter with their 95 % confidence intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(table) + 2), 3.6))
    x = np.arange(len(table))
    if "S1" in table:
        ax.bar(x - 0.2, table["S1"], 0.4, yerr=table["S1_conf"], capsize=3, label="first order (S1)")
        ax.bar(x + 0.2, table["ST"], 0.4, yerr=table["ST_conf"], capsize=3, label="total (ST)")
        ax.set_ylabel("Sobol index (95 % CI)")
        ax.legend(frameon=False)
    else:
        ax.bar(x, table["mu_star"], 0.6, yerr=table["mu_star_conf"], capsize=3)
        ax.set_ylabel("Morris mu* (95 % CI)")
    ax.set_xticks(x, table["parameter"], rotation=20, ha="right")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return path


def write_sensitivity(
    runs: pd.DataFrame, experiment: Experiment, metric: str, folder: Path, chart: bool = True
) -> list[Path]:
    """Write ``{sobol|morris}_METRIC.csv`` (and ``.png``) into ``folder``."""
    from model.manifest import atomic_write_bytes

    kind = experiment.design.kind
    table = (
        sobol_table(runs, experiment, metric) if kind == "sobol" else morris_table(runs, experiment, metric)
    )
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"{kind}_{metric}.csv"
    atomic_write_bytes(csv, table.to_csv(index=False, float_format="%.6g").encode())
    written = [csv]
    if chart:
        written.append(bar_chart(table, folder / f"{kind}_{metric}.png", f"{experiment.name}: {metric}"))
    return written
