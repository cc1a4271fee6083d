"""Experiment 3, double leverage and correlation convergence (``double_leverage.toml``): miner defaults
after a BTC crash with and without BTC-backed loans, and the effect of the stress correlation on miners,
neo-clouds and their joint distress.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from experiments.figures import _plt, save_figure
from experiments.named.common import (
    band_plot,
    ci_table,
    counts,
    interval,
    num,
    ok_runs,
    paired_phrase,
    pct,
    points,
    with_reference,
    write_csv,
)
from experiments.paired import arm, paired_difference

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult


def double_leverage(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    s = sweeps[0]
    runs = ok_runs(s.runs)
    n_m, n_n = counts(s.scenario)
    crash, corr, btc = "shocks.0.size", "stress_correlation", "generated.miners.btc_loan_to_value"
    miners, neoclouds = num(runs["defaults_by_type_miner"]), num(runs["defaults_by_type_neocloud"])
    runs["miner_default_rate"] = miners / n_m
    runs["neocloud_default_rate"] = neoclouds / n_n
    # joint distress: a miner and a neo-cloud both default in the run (what correlation convergence is about)
    runs["joint_distress"] = ((miners > 0) & (neoclouds > 0)).astype(float)
    measures = ["miner_default_rate", "neocloud_default_rate", "joint_distress", "systemic_loss"]
    table = ci_table(runs, [btc, corr, crash], measures)
    files = [write_csv(table, out / "double_leverage.csv")]
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {0.0: "tab:blue", 1: "tab:red"}
    chi, clo = table[corr].max(), table[corr].min()
    for (b, c), t in table.groupby([btc, corr]):
        style = "-" if b > 0 else "--"
        color = colors[1] if b > 0 else colors[0]
        alpha = 1.0 if c == chi else 0.5
        band_plot(
            ax,
            t,
            crash,
            "miner_default_rate",
            f"{'with' if b > 0 else 'without'} BTC loans, stress corr {c:g}",
            color=color,
            ls=style,
            alpha=alpha,
        )
    with_loans = table[table[btc] == table[btc].max()]
    for c, color in ((clo, "tab:gray"), (chi, "tab:purple")):
        t = with_loans[with_loans[corr] == c]
        band_plot(
            ax2, t, crash, "neocloud_default_rate", f"neo-cloud default rate, stress corr {c:g}", color=color
        )
        band_plot(
            ax2,
            t,
            crash,
            "joint_distress",
            f"runs with joint distress, stress corr {c:g}",
            color=color,
            ls=":",
        )
    ax.set_xlabel("BTC crash in month 6 (fall)")
    ax.set_ylabel(f"miner default rate within {s.sweep.plan.months} months")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title("Experiment 3: double leverage (95 % CI)")
    ax2.set_xlabel("BTC crash in month 6 (fall)")
    ax2.set_ylabel("share (neo-clouds; runs)")
    ax2.legend(frameon=False, fontsize=7)
    ax2.set_title("Correlation convergence: neo-clouds and joint distress")
    key = save_figure(fig, out / "double_leverage.png")

    def at(b: float, c: float, k: float) -> pd.Series:
        return table[(table[btc] == b) & (table[corr] == c) & (table[crash] == k)].iloc[0]

    kmax, kmin = table[crash].max(), table[crash].min()
    bon = table[btc].max()
    with_, without = at(bon, chi, kmax), at(0.0, chi, kmax)
    paired = runs.pivot_table(index=["replicate", btc, crash], columns=corr, values="miner_default_rate")
    effect, low, high, _ = paired_difference(paired[chi], paired[clo])

    def corr_effect(measure: str) -> str:
        """The stress correlation's paired effect at the largest crash, with BTC loans."""
        return paired_phrase(
            arm(runs, {btc: bon, corr: clo, crash: kmax}, measure),
            arm(runs, {btc: bon, corr: chi, crash: kmax}, measure),
            points,
            " points",
        )

    btc_loans = paired_phrase(
        arm(runs, {btc: 0.0, corr: chi, crash: kmax}, "miner_default_rate"),
        arm(runs, {btc: bon, corr: chi, crash: kmax}, "miner_default_rate"),
        points,
        " points",
    )
    finding = (
        f"A BTC crash of {pct(kmax)} leaves {interval(with_, 'miner_default_rate')} of miners in default with "
        f"BTC-backed loans on their books and {interval(without, 'miner_default_rate')} without them "
        f"({btc_loans}; stress correlation {chi:g}); with no crash the rates are {pct(at(bon, chi, kmin)['miner_default_rate'])} "
        f"and {pct(at(0.0, chi, kmin)['miner_default_rate'])}. Raising the stress correlation from {clo:g} to "
        f"{chi:g} changes the miner default rate by {100 * effect:+.1f} points on average over every crash "
        f"size [{100 * low:+.1f}, {100 * high:+.1f}] (paired by seed); at the {pct(kmax)} crash it moves the "
        f"neo-cloud default rate from {interval(at(bon, clo, kmax), 'neocloud_default_rate')} to "
        f"{interval(at(bon, chi, kmax), 'neocloud_default_rate')} ({corr_effect('neocloud_default_rate')}) and "
        f"the share of runs in which miners and neo-clouds both default from "
        f"{interval(at(bon, clo, kmax), 'joint_distress')} to {interval(at(bon, chi, kmax), 'joint_distress')} "
        f"({corr_effect('joint_distress')})."
    )
    body = (
        "The crash is a scheduled `btc_crash` shock in month 6 added to the baseline. A crash is a stress "
        "event: the world enters the stress regime and compute demand moves with the crash as the stress "
        "copula says (`world.btc.crash_comovement`, docs/ODD.md 7.1), so the stress correlation sets how "
        "far rents fall with BTC; it also couples BTC and rents in every later stress month. Joint distress: "
        "a miner and a neo-cloud both default within the run."
    )
    report = Report(key, [key, *files], finding, body, {"table": table, "corr_effect": effect})
    return with_reference(report, s, {btc: bon, corr: chi, crash: kmax})
