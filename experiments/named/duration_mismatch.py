"""Experiment 2, duration mismatch (``duration_mismatch.toml``): principal still owed when the financed GPUs
are worth nothing, and loss given default, by tenor and amortisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from experiments.figures import _plt, save_figure
from experiments.named.common import (
    band_plot,
    ci_table,
    exposure_and_recovery,
    num,
    ok_runs,
    paired_phrase,
    pct,
    points,
    pooled_ratio,
    with_reference,
    write_csv,
)
from experiments.paired import arm

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult


def duration_mismatch(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    s = sweeps[0]
    runs = ok_runs(s.runs)
    profile = "generated.neoclouds.amortisation"
    secured = ["neocloud_term_loan", "neocloud_asset_backed"]
    wo, rec = exposure_and_recovery(runs, secured)
    runs["neocloud_lgd"] = np.where(wo > 0, 1.0 - rec / wo.where(wo > 0, 1.0), np.nan)
    table = ci_table(
        runs,
        ["loan_tenor_months", profile],
        ["principal_unpaid_at_collateral_zero", "collateral_zero_month", "neocloud_lgd"],
    )
    pooled = []
    for _, g in runs.groupby(["loan_tenor_months", profile], sort=True):
        gwo, grec = exposure_and_recovery(g, secured)
        pooled.append(1.0 - pooled_ratio(grec.to_numpy(), gwo.to_numpy(), 2)[0])
    table["pooled_neocloud_lgd"] = pooled
    files = [write_csv(table, out / "duration_mismatch.csv")]

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for name, t in table.groupby(profile):
        band_plot(axes[0], t, "loan_tenor_months", "principal_unpaid_at_collateral_zero", name)
        band_plot(axes[1], t, "loan_tenor_months", "neocloud_lgd", name)
    life = float(num(runs["collateral_zero_month"]).mean())
    for ax in axes:
        ax.axvline(life, color="grey", ls=":", lw=1)
        ax.set_xlabel("loan tenor (months)")
        ax.legend(frameon=False, fontsize=8, title="neo-cloud amortisation", title_fontsize=8)
    axes[0].set_ylabel("GPU principal unpaid when fleet value < 5 %")
    axes[1].set_ylabel("loss given default (neo-cloud loans)")
    axes[0].text(life, 0.02, f" economic life\n ~{life:.0f} months", fontsize=7, color="grey")
    fig.suptitle(f"Experiment 2: duration mismatch ({s.sweep.plan.months} months, 95 % CI)")
    key = save_figure(fig, out / "duration_mismatch.png")

    def at(tenor: int, prof: str, col: str) -> float:
        row = table[(table["loan_tenor_months"] == tenor) & (table[profile] == prof)]
        return float(row[col].iloc[0]) if len(row) else math.nan

    def unpaid_at_zero(tenor: int, prof: str) -> str:
        share = at(tenor, prof, "principal_unpaid_at_collateral_zero")
        return (
            pct(share)
            if np.isfinite(share)
            else "an unmeasured share (no run of that design point gets there)"
        )

    tenors = sorted(table["loan_tenor_months"].unique())
    short, long_ = tenors[0], tenors[-1]
    reached = float(num(runs["collateral_zero_month"]).notna().mean())
    unpaid = "principal_unpaid_at_collateral_zero"
    tenor_phrase = paired_phrase(
        arm(runs, {"loan_tenor_months": short, profile: "linear"}, unpaid),
        arm(runs, {"loan_tenor_months": long_, profile: "annuity"}, unpaid),
        points,
        " points",
    )
    finding = (
        f"The starting fleet's value falls below 5 % of its start in month {life:.0f} on average (in "
        f"{pct(reached)} of runs within the horizon); at that point {unpaid_at_zero(short, 'linear')} "
        f"of GPU-secured principal is still unpaid with {short}-month linear loans, against "
        f"{unpaid_at_zero(long_, 'annuity')} with {long_}-month annuities and "
        f"{unpaid_at_zero(long_, 'bullet')} with {long_}-month bullets ({long_}-month annuities against "
        f"{short}-month linear loans: {tenor_phrase}). "
        f"Pooled loss given default on neo-cloud loans is {_lgd(at(short, 'linear', 'pooled_neocloud_lgd'))} "
        f"at {short} months (linear) and {_lgd(at(long_, 'annuity', 'pooled_neocloud_lgd'))} at {long_} "
        f"months (annuity)."
    )
    body = (
        "Unpaid principal counts defaulted loans' written-off balances as unpaid (the lender's exposure "
        "before recoveries). Columns: tenor, neo-cloud amortisation, unpaid share at collateral zero "
        "(95 % CI), month of collateral zero, pooled LGD.\n\n"
        + "\n".join(
            f"| {int(r['loan_tenor_months'])} | {r[profile]} | {r['principal_unpaid_at_collateral_zero']:.2f} "
            f"[{r['principal_unpaid_at_collateral_zero_low']:.2f}, {r['principal_unpaid_at_collateral_zero_high']:.2f}] "
            f"| {r['collateral_zero_month']:.0f} | {r['pooled_neocloud_lgd']:.2f} |"
            for _, r in table.iterrows()
        )
    )
    body = body.replace(
        "\n\n|", "\n\n| tenor | profile | unpaid at zero | zero month | LGD |\n|---|---|---|---|---|\n|", 1
    )
    report = Report(key, [key, *files], finding, body, {"table": table})
    return with_reference(report, s, {"loan_tenor_months": short, profile: "linear"})


def _lgd(x: float) -> str:
    return pct(x) if np.isfinite(x) else "undefined (no neo-cloud loan defaulted)"
