"""Experiment 1, rent deflation vs debt service (``rent_deflation.toml``): default rates, DSCR breaches and
lender loss against the yearly fall in rent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from experiments.figures import _plt, save_figure
from experiments.named.common import (
    band_plot,
    change,
    ci_table,
    counts,
    first_default_when,
    lender_loss,
    num,
    ok_runs,
    pct,
    points,
    with_reference,
    write_csv,
)
from experiments.paired import arm

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult


def rent_deflation(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    s = sweeps[0]
    runs = ok_runs(s.runs)
    n_m, n_n = counts(s.scenario)
    months = s.sweep.plan.months
    runs["miner_default_rate"] = num(runs["defaults_by_type_miner"]) / n_m
    runs["neocloud_default_rate"] = num(runs["defaults_by_type_neocloud"]) / n_n
    runs["borrower_default_rate"] = (
        num(runs["defaults_by_type_miner"]) + num(runs["defaults_by_type_neocloud"])
    ) / (n_m + n_n)
    runs["any_default"] = num(runs["time_to_first_default"]).notna().astype(float)
    runs["lender_loss_busd"] = lender_loss(runs) / 1e9
    metrics = [
        "dscr_breach_probability",
        "miner_default_rate",
        "neocloud_default_rate",
        "borrower_default_rate",
        "systemic_loss",
        "lender_loss_busd",
        "any_default",
        "time_to_first_default",
    ]
    table = ci_table(runs, ["rent_deflation"], metrics)
    medians = runs.groupby("rent_deflation")["time_to_first_default"].apply(lambda v: num(v).median())
    table["median_time_to_first_default"] = table["rent_deflation"].map(medians)
    files = [write_csv(table, out / "rent_deflation.csv")]

    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4))
    ax = axes[0, 0]
    band_plot(ax, table, "rent_deflation", "dscr_breach_probability", "DSCR breach (share of borrowers)")
    band_plot(ax, table, "rent_deflation", "any_default", "P(any default)")
    ax.set_ylabel("probability")
    ax.legend(frameon=False, fontsize=8)
    ax = axes[0, 1]
    band_plot(ax, table, "rent_deflation", "miner_default_rate", "miners")
    band_plot(ax, table, "rent_deflation", "neocloud_default_rate", "neo-clouds")
    ax.set_ylabel("default rate by type")
    ax.legend(frameon=False, fontsize=8)
    ax = axes[1, 0]
    band_plot(ax, table, "rent_deflation", "time_to_first_default", "mean (runs with a default)")
    ax.plot(table["rent_deflation"], table["median_time_to_first_default"], "k--", lw=1, label="median")
    ax.set_ylabel("time to first default (months)")
    ax.legend(frameon=False, fontsize=8)
    ax = axes[1, 1]
    band_plot(ax, table, "rent_deflation", "systemic_loss")
    ax.set_ylabel("lender loss / lender equity at start")
    for a in axes.flat:
        a.set_xlabel("rent deflation per year")
    fig.suptitle(f"Experiment 1: rent deflation vs debt service ({months} months, 95 % CI)")
    key = save_figure(fig, out / "rent_deflation.png")

    lo, hi = table.iloc[0], table.iloc[-1]

    def moves(metric: str) -> str:
        return change(
            arm(runs, {"rent_deflation": lo["rent_deflation"]}, metric),
            arm(runs, {"rent_deflation": hi["rent_deflation"]}, metric),
            pct,
            points,
            " points",
        )

    finding = (
        f"From {pct(lo['rent_deflation'])} to {pct(hi['rent_deflation'])} rent deflation a year, the mean "
        f"borrower default rate within {months} months {moves('borrower_default_rate')} and the share of "
        f"borrowers that breach their DSCR covenant {moves('dscr_breach_probability')}. The lenders' loss as "
        f"a share of their starting equity {moves('systemic_loss')}, and the median first default comes "
        f"{first_default_when(lo['median_time_to_first_default'])} vs "
        f"{first_default_when(hi['median_time_to_first_default'])}."
    )
    body = _table_md(
        table,
        ["rent_deflation", "dscr_breach_probability", "miner_default_rate", "neocloud_default_rate"],
        ["systemic_loss", "lender_loss_busd", "median_time_to_first_default"],
    )
    report = Report(key, [key, *files], finding, body, {"table": table})
    return with_reference(report, s, {"rent_deflation": hi["rent_deflation"]})


def _table_md(table: pd.DataFrame, first: list[str], more: list[str]) -> str:
    """A compact Markdown table: the first column as is, means with intervals, then plain means."""
    cols = first + more
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = [f"{row[first[0]]:.3g}" if isinstance(row[first[0]], float) else str(row[first[0]])]
        for c in first[1:]:
            cells.append(f"{row[c]:.3f} [{row[c + '_low']:.3f}, {row[c + '_high']:.3f}]")
        for c in more:
            cells.append(f"{row[c]:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
