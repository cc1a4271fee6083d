"""Experiment 4, the missing repo market (``repo_market.toml``): defaults, price troughs and recoveries
against the depth and rack capacity of the buy side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from experiments.figures import _plt, save_figure
from experiments.named.common import (
    change,
    ci_table,
    exposure_and_recovery,
    ok_runs,
    pct,
    pooled_ratio,
    with_reference,
    write_csv,
)
from experiments.paired import arm

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult


def repo_market(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    s = sweeps[0]
    runs = ok_runs(s.runs)
    depth, cap = "buyer_depth_scale", "buyer_rack_kw_cap"
    wo, rec = exposure_and_recovery(runs)
    runs["recovery"] = np.where(wo > 0, rec / wo.where(wo > 0, 1.0), np.nan)
    ts = pd.read_parquet(s.folder / "timeseries.parquet")
    shock_month = 3
    before = ts[ts["month"] == shock_month - 1].set_index("run_id")["book_ltv"]
    runs["book_ltv_before_shock"] = runs["run_id"].map(before)
    table = ci_table(
        runs, [depth, cap], ["defaults_total", "price_to_fundamental_trough", "recovery", "systemic_loss"]
    )
    files = [write_csv(table, out / "repo_market.csv")]

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    for ax, metric, label, cmap in (
        (axes[0], "defaults_total", f"mean defaults in {s.sweep.plan.months} months", "magma_r"),
        (axes[1], "price_to_fundamental_trough", "secondary price trough / fundamental", "viridis"),
    ):
        grid = table.pivot(index=cap, columns=depth, values=metric).sort_index(ascending=False)
        im = ax.imshow(grid.to_numpy(float), aspect="auto", cmap=cmap)
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}x" for v in grid.columns], fontsize=8)
        ax.set_yticks(range(grid.shape[0]), [f"{v:g} kW" for v in grid.index])
        for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
            ax.text(
                j,
                i,
                f"{v:.2f}" if metric != "defaults_total" else f"{v:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if (metric == "defaults_total") == (v > grid.to_numpy().mean()) else "black",
            )
        ax.set_xlabel("buyer depth (budgets and capacity, x baseline)")
        ax.set_ylabel("densest rack buyers can host")
        fig.colorbar(im, ax=ax, label=label)
    ax = axes[2]
    pts = runs.dropna(subset=["book_ltv_before_shock", "recovery"])
    sc = ax.scatter(
        pts["book_ltv_before_shock"], pts["recovery"], c=np.log10(pts[depth]), cmap="coolwarm", s=16
    )
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.text(ax.get_xlim()[0], 1.01, " what book LTV < 1 promises", fontsize=7, color="grey", va="bottom")
    ax.set_ylim(0, 1.1)
    ax.set_xlabel(f"book LTV of live borrowers, month {shock_month - 1} (before the shock)")
    ax.set_ylabel("realised recovery on defaulted loans")
    fig.colorbar(sc, ax=ax, label="log10 buyer depth")
    ax.set_title("the LTV illusion", fontsize=9)
    fig.suptitle("Experiment 4: the missing repo market (largest miner forced into default in month 3)")
    key = save_figure(fig, out / "repo_market.png")

    d_lo, d_hi = table[depth].min(), table[depth].max()
    c_lo, c_hi = table[cap].min(), table[cap].max()

    ltv = float(pts["book_ltv_before_shock"].mean()) if len(pts) else math.nan
    r, r_lo, r_hi = pooled_ratio(rec.to_numpy(), wo.to_numpy(), 4)
    one, two = (lambda v: f"{v:.1f}"), (lambda v: f"{v:.2f}")
    signed_one, signed_two = (lambda v: f"{v:+.1f}"), (lambda v: f"{v:+.2f}")

    def deeper(c: float, metric: str, shown: Callable[[float], str], signed: Callable[[float], str]) -> str:
        """The move of ``metric`` from the thinnest to the deepest buy side at rack cap ``c``, paired."""
        return change(
            arm(runs, {depth: d_lo, cap: c}, metric), arm(runs, {depth: d_hi, cap: c}, metric), shown, signed
        )

    finding = (
        f"With every buyer able to host dense racks ({c_hi:g} kW), going from {d_lo:g}x to {d_hi:g}x today's "
        f"buyer depth, mean defaults within {s.sweep.plan.months} months "
        f"{deeper(c_hi, 'defaults_total', one, signed_one)} and the secondary price trough "
        f"(share of fundamental value) {deeper(c_hi, 'price_to_fundamental_trough', two, signed_two)} "
        f"(air-cooled buyers only, {c_lo:g} kW: defaults {deeper(c_lo, 'defaults_total', one, signed_one)}). "
        f"Book LTV before the shock averaged {ltv:.2f}, a cushion that promises full recovery, and lenders "
        f"got back {pct(r)} [{pct(r_lo)}, {pct(r_hi)}] of the exposure at default (1 - LGD)."
    )
    body = (
        "Recovery pools all borrower loans: 1 - LGD, exposure-weighted; recoveries (cash as it arrived, "
        "repossessed GPUs still held at the end at the mark) discounted to the default month at the loan "
        "rate, net of workout costs (model.metrics.loan_outcomes). The price trough is the lowest secondary mark of any launched "
        "generation as a share of its fundamental value. A blind spot shows at the 30 kW cap: no buyer "
        "can host the repossessed H100/H200s (40 kW racks), so nothing trades, the mark never moves "
        "and covenants see no fall in value (fewer defaults than a thin market that clears, a "
        "'trough' of 1.00); the repossessed "
        "stock is still booked at the old mark. A market that cannot clear hides its price; that is "
        "the LTV illusion in its purest form, not safety."
    )
    report = Report(key, [key, *files], finding, body, {"table": table, "recovery": r, "book_ltv": ltv})
    return with_reference(report, s, {depth: d_lo, cap: c_hi})
