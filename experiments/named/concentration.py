"""Experiment 5, concentration (``concentration.toml``, ``concentration_lenders.toml``): where a single
default stops being contained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from experiments.figures import _plt, save_figure
from experiments.named.common import (
    change,
    ci_table,
    ok_runs,
    pct,
    points,
    with_reference,
    write_csv,
)
from experiments.paired import arm

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult


def concentration(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    s = sweeps[0]
    runs = ok_runs(s.runs)
    ib, conc, banks = (
        "generated.interbank_share",
        "generated.lender_concentration",
        "generated.lender_capital_ratio.bank",
    )
    runs["not_contained"] = runs["systemic_event"].astype(float)
    table = ci_table(runs, [banks, ib, conc], ["not_contained", "systemic_loss", "share_failed"])
    files = [write_csv(table, out / "concentration.csv")]
    plt = _plt()
    bank_values = sorted(table[banks].unique())
    fig, axes = plt.subplots(1, len(bank_values), figsize=(4.6 * len(bank_values), 3.9), squeeze=False)
    for ax, b in zip(axes[0], bank_values, strict=True):
        grid = table[table[banks] == b].pivot(index=conc, columns=ib, values="not_contained")
        grid = grid.sort_index(ascending=True)
        x, y = grid.columns.to_numpy(float), grid.index.to_numpy(float)
        im = ax.pcolormesh(_edges(x), _edges(y), grid.to_numpy(float), cmap="Reds", vmin=0, vmax=1)
        if grid.to_numpy().min() < 0.5 < grid.to_numpy().max() and len(x) > 1 and len(y) > 1:
            ax.contour(x, y, grid.to_numpy(float), levels=[0.5], colors="k", linewidths=1.2)
        ax.set_xlabel("interbank share of lenders' liabilities")
        ax.set_ylabel("lender concentration (Zipf exponent)")
        ax.set_title(f"banks' capital ratio {b:g}", fontsize=9)
        fig.colorbar(im, ax=ax, label="P(not contained: >= 5 % of agents fail)")
    fig.suptitle("Experiment 5: where one default stops being contained (black line: P = 0.5)")
    key = save_figure(fig, out / "concentration.png")

    by_banks = runs.groupby(banks)["not_contained"].mean()
    corners = [  # no interbank lending and equal shares; the most interbank lending and concentration
        {ib: table[ib].min(), conc: table[conc].min()},
        {ib: table[ib].max(), conc: table[conc].max()},
    ]

    def moves(metric: str) -> str:
        """The corner-to-corner move of ``metric``, paired by replicate within each banks' capital."""
        before, after = (arm(runs, where, metric, ("replicate", banks)) for where in corners)
        return change(before, after, pct, points, " points")

    finding = (
        f"After a forced default of the largest miner in a calm world, the share of runs where the failure "
        f"is not contained (5 % or more of the agents fail within {s.sweep.plan.months} months) is "
        + ", ".join(f"{pct(v)} with banks' capital at {k:g}" for k, v in by_banks.items())
        + f" over the grid. From no interbank lending and equal market shares to interbank share "
        f"{table[ib].max():g} and concentration {table[conc].max():g}, that share "
        f"{moves('not_contained')} and mean systemic loss {moves('systemic_loss')} of lender equity."
    )
    body = (
        "Calm world: no stress regime and no BTC-backed loans, so the forced default is the only trigger; credit funds hold 5 % capital (assumption, baseline 35 %) "
        "(background defaults still occur: they are part of what the phase diagram counts)."
    )
    figures = [key]
    if len(sweeps) > 1:  # the number of lenders, at fixed concentration, with and without interbank exposure
        lenders_finding, lenders_files = _number_of_lenders(sweeps[1], out)
        finding += " " + lenders_finding
        figures += lenders_files
        body += " The second figure varies the number of banks (3 % capital) at lender concentration 1."
    report = Report(key, [*figures, *files], finding, body, {"table": table})
    return with_reference(report, s, corners[1] | {banks: table[banks].min()})


def _number_of_lenders(s: SweepResult, out: Path) -> tuple[str, list[Path]]:
    """P(not contained) and systemic loss against the number of banks, one line per interbank share."""
    runs = ok_runs(s.runs)
    banks, ib = "generated.banks", "generated.interbank_share"
    runs["not_contained"] = runs["systemic_event"].astype(float)
    table = ci_table(runs, [ib, banks], ["not_contained", "systemic_loss"])
    csv = write_csv(table, out / "concentration_lenders.csv")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    for share, group in table.groupby(ib):
        for ax, metric in zip(axes, ("not_contained", "systemic_loss"), strict=True):
            ax.plot(group[banks], group[metric], marker="o", label=f"interbank share {share:g}")
            ax.fill_between(group[banks], group[f"{metric}_low"], group[f"{metric}_high"], alpha=0.2)
    axes[0].set(xlabel="number of banks", ylabel="P(not contained)", xticks=sorted(table[banks].unique()))
    axes[1].set(
        xlabel="number of banks",
        ylabel="systemic loss (share of lender equity)",
        xticks=sorted(table[banks].unique()),
    )
    axes[0].legend(fontsize=8)
    fig.suptitle("Experiment 5: one default against the number of banks (95 % bands across replicates)")
    path = save_figure(fig, out / "concentration_lenders.png")
    by = table.set_index([ib, banks])["not_contained"]
    parts = [
        f"{pct(by[(share, n)])} with {int(n)} bank{'s' if n != 1 else ''}"
        for share in (table[ib].max(),)
        for n in sorted(table[banks].unique())
    ]
    finding = (
        f"With fragile banks (3 % capital) and interbank share {table[ib].max():g}, the share of runs not contained is "
        + ", ".join(parts)
        + f"; without interbank lending it is at most {pct(table[table[ib] == table[ib].min()]['not_contained'].max())}."
    )
    return finding, [path, csv]


def _edges(v: np.ndarray) -> np.ndarray:
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
