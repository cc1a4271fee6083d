"""Experiment 6, credit spreads (``credit_spreads.toml``): the fair spread of the simulated defaults and
losses by borrower type and instrument, against market spreads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from experiments.figures import _plt, save_figure
from experiments.named.common import (
    BOOTSTRAP,
    credit,
    ok_runs,
    pct,
    with_reference,
    write_csv,
)

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult


# Market spreads over the base rate, in basis points, from ../shared/calibration-facts.md section 3.
# High-yield coupons are turned into spreads with SOFR ~4.3 % (the baseline's base rate, an assumption).
MARKET_SPREADS: dict[str, tuple[float, float, str]] = {
    "neocloud_term_loan": (
        600.0,
        1300.0,
        "CoreWeave DDTL 2.0: SOFR + 6.00-6.50 % (IG contracts), + 13 % (non-IG) [R]",
    ),
    "neocloud_high_yield": (
        2.825e2,
        4.95e2,
        "HY coupons 7.125-9.25 % (Cipher, TeraWulf, CoreWeave) less SOFR 4.3 % [R]",
    ),
    "neocloud_all": (368.0, 643.0, "CoreWeave 5-yr CDS, Oct -> Dec 2025 [R]"),
    "miner_high_yield": (
        2.825e2,
        3.45e2,
        "miners' secured notes: Cipher 7.125 %, TeraWulf 7.75 %, less SOFR 4.3 % [R]",
    ),
}
CELLS = (
    "miner_term_loan",
    "miner_asset_backed",
    "miner_convertible",
    "miner_btc_margin",
    "neocloud_term_loan",
    "neocloud_asset_backed",
    "neocloud_high_yield",
)


SPREAD_FIELDS = ("exposure_years", "exposure_at_default", "recovered")


def fair_spread(exposure_years: np.ndarray, ead: np.ndarray, recovered: np.ndarray) -> float:
    """Annual spread that pays for the expected loss: economic loss (EAD x LGD, discounted at the loan
    rate and net of workout costs) per USD-year of balance at risk. Defaults count when they happened
    and on the balance then outstanding, and each loan is at risk only while it runs (its own tenor,
    amortisation and rollovers, up to the end of the run), so the horizon is the instrument's. It is the
    exposure-weighted default intensity (EAD per USD-year) times the exposure-weighted LGD."""
    years = exposure_years.sum()
    return float((ead.sum() - recovered.sum()) / years) if years > 0 else math.nan


def credit_spreads(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    s = sweeps[0]
    runs = ok_runs(s.runs)
    rng = np.random.default_rng(s.experiment.master_seed)
    rows = []
    for x, g in runs.groupby("rent_deflation"):
        for cell in (*CELLS, "neocloud_all", "miner_all"):
            parts = (
                [c for c in CELLS if c.startswith(cell.removesuffix("_all"))]
                if cell.endswith("_all")
                else [cell]
            )
            cols = {
                k: sum(credit(g, p, k).fillna(0).to_numpy() for p in parts)
                for k in ("loans", "defaulted", "tenor_months", *SPREAD_FIELDS)
            }
            if cols["loans"].sum() == 0:
                continue
            est = fair_spread(*(cols[k] for k in SPREAD_FIELDS))
            idx = rng.integers(0, len(g), size=(BOOTSTRAP, len(g)))
            boot = [fair_spread(*(cols[k][i] for k in SPREAD_FIELDS)) for i in idx]
            lo, hi = np.nanquantile(boot, [0.025, 0.975])
            n, years, ead = (
                cols["loans"].sum(),
                cols["exposure_years"].sum(),
                cols["exposure_at_default"].sum(),
            )
            intensity = ead / years if years > 0 else math.nan
            horizon = cols["tenor_months"].sum() / n / 12.0
            rows.append(
                {
                    "rent_deflation": x,
                    "cell": cell,
                    "loans": int(n),
                    "share_defaulted": cols["defaulted"].sum() / n,
                    "default_intensity": intensity,
                    "horizon_years": horizon,
                    "pd_horizon": 1.0 - math.exp(-intensity * horizon)
                    if np.isfinite(intensity)
                    else math.nan,
                    "lgd": 1.0 - cols["recovered"].sum() / ead if ead > 0 else math.nan,
                    "fair_spread_bp": 1e4 * est,
                    "low_bp": 1e4 * lo,
                    "high_bp": 1e4 * hi,
                }
            )
    table = pd.DataFrame(rows)
    contract = _contract_spreads(s.scenario)
    table["contract_spread_bp"] = table["cell"].map(contract)
    table["market_low_bp"] = table["cell"].map({k: v[0] for k, v in MARKET_SPREADS.items()})
    table["market_high_bp"] = table["cell"].map({k: v[1] for k, v in MARKET_SPREADS.items()})
    files = [write_csv(table, out / "credit_spreads.csv")]

    plt = _plt()
    base = (
        0.3
        if 0.3 in set(table["rent_deflation"])
        else sorted(table["rent_deflation"].unique())[len(table["rent_deflation"].unique()) // 2]
    )
    t = table[table["rent_deflation"] == base].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    xs = np.arange(len(t))
    ax.bar(
        xs,
        t["fair_spread_bp"],
        0.6,
        yerr=[t["fair_spread_bp"] - t["low_bp"], t["high_bp"] - t["fair_spread_bp"]],
        capsize=3,
        label=f"model fair spread (PD x LGD), deflation {base:g}",
    )
    for x_other, marker in zip(
        sorted(set(table["rent_deflation"]) - {base}), ("v", "^", "s", "D"), strict=False
    ):
        o = table[table["rent_deflation"] == x_other].set_index("cell")["fair_spread_bp"]
        ax.scatter(
            xs, t["cell"].map(o), marker=marker, color="k", s=18, zorder=3, label=f"deflation {x_other:g}"
        )
    for i, row in t.iterrows():
        if np.isfinite(row["market_low_bp"]):
            ax.fill_between(
                [i - 0.4, i + 0.4],
                row["market_low_bp"],
                row["market_high_bp"],
                color="tab:orange",
                alpha=0.35,
                lw=0,
                label="market (calibration facts)" if i == t["market_low_bp"].first_valid_index() else None,
            )
        if np.isfinite(row["contract_spread_bp"]):
            ax.plot(
                [i - 0.4, i + 0.4],
                [row["contract_spread_bp"]] * 2,
                color="tab:green",
                lw=2,
                label="spread in the scenario's loans" if i == 0 else None,
            )
    ax.set_xticks(xs, [c.replace("_", "\n", 1) for c in t["cell"]], fontsize=8)
    ax.set_ylabel("spread over base rate (bp/yr)")
    ax.set_yscale("symlog", linthresh=100)
    ax.legend(frameon=False, fontsize=7, ncol=2)
    ax.set_title(
        f"Experiment 6: fair vs market spreads (loss per USD-year at risk, {s.sweep.plan.months} months, "
        "bootstrap 95 % CI)"
    )
    key = save_figure(fig, out / "credit_spreads.png")

    def get(cell: str) -> pd.Series:
        row = t[t["cell"] == cell]
        return (
            row.iloc[0]
            if len(row)
            else pd.Series(
                {
                    "fair_spread_bp": math.nan,
                    "low_bp": math.nan,
                    "high_bp": math.nan,
                    "pd_horizon": math.nan,
                    "horizon_years": math.nan,
                    "lgd": math.nan,
                }
            )
        )

    nt, mt, na = get("neocloud_term_loan"), get("miner_term_loan"), get("neocloud_all")

    def pd_lgd(r: pd.Series) -> str:
        return f"PD {pct(r['pd_horizon'])} over {r['horizon_years']:.1f} years, LGD {pct(r['lgd'])}"

    finding = (
        f"At {pct(base)} a year rent deflation the simulated defaults and losses imply a fair spread of "
        f"{nt['fair_spread_bp']:.0f} bp [{nt['low_bp']:.0f}, {nt['high_bp']:.0f}] on neo-cloud term loans "
        f"({pd_lgd(nt)}) and {mt['fair_spread_bp']:.0f} bp [{mt['low_bp']:.0f}, {mt['high_bp']:.0f}] on miners' "
        f"term loans ({pd_lgd(mt)}), against 600-1,300 bp on CoreWeave's DDTL 2.0 and 368-643 bp on its CDS. "
        f"Across all of a neo-cloud's debt the fair spread is {na['fair_spread_bp']:.0f} bp, "
        f"{na['fair_spread_bp'] / 643:.1f}x the widest CDS quote: "
        + (
            "the market under-prices the risk the model simulates."
            if na["fair_spread_bp"] > 643
            else "the market spread covers the risk the model simulates."
        )
    )
    body = (
        "Fair spread = economic loss per USD-year at risk: the sum over loans of EAD x LGD (recoveries "
        "discounted to the default month at the loan's rate, net of workout costs; repossessed GPUs still "
        "held at the end valued at the mark) over the sum of each loan's monthly balance while it runs "
        "(amortisation, rollovers and its own tenor, up to the end of the run). It is the "
        "exposure-weighted default intensity (EAD per USD-year) times the exposure-weighted LGD; PD over "
        "the horizon is 1 - exp(-intensity x the cell's mean tenor). This is the actuarial spread under "
        "the simulated (physical) probabilities, with no risk premium: a market spread below it is "
        "under-priced even before any premium. docs/calibration.md section 23 explains the gaps. Market "
        "figures (orange):\n\n"
        + "\n".join(f"- `{k}`: {lo:.0f}-{hi:.0f} bp, {src}" for k, (lo, hi, src) in MARKET_SPREADS.items())
        + "\n\n| cell | share defaulted | PD over horizon (years) | LGD | fair spread (bp) | 95 % CI | "
        "scenario's spread (bp) |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {r['cell']} | {r['share_defaulted']:.2f} | {r['pd_horizon']:.2f} ({r['horizon_years']:.1f}) | "
            f"{r['lgd']:.2f} | {r['fair_spread_bp']:.0f} | [{r['low_bp']:.0f}, {r['high_bp']:.0f}] | "
            f"{r['contract_spread_bp']:.0f} |"
            for _, r in t.iterrows()
        )
    )
    report = Report(key, [key, *files], finding, body, {"table": table})
    return with_reference(report, s, {"rent_deflation": base})


def _contract_spreads(scenario: dict[str, Any]) -> dict[str, float]:
    """The spreads the scenario's generated loans carry, in bp (every instrument of a class shares one)."""
    gen = scenario["generated"]
    out = {}
    for cls, kind in (("miners", "miner"), ("neoclouds", "neocloud")):
        for cell in CELLS:
            if cell.startswith(kind):
                out[cell] = 1e4 * float(gen[cls]["spread"])
    return out
