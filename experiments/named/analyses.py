"""The analyses of the nine named experiments: figures (PNG), tables (CSV) and a finding drawn from the
measured numbers. Each takes the finished sweeps of its experiment files and an output folder and
returns a :class:`experiments.named.Report`.

Confidence intervals are 95 % normal-approximation intervals of the mean across replicates (as in
``experiments.figures.band``); pooled ratios (loss given default, recovery, fair spreads) use a seeded
bootstrap over runs. Market figures compared in experiments 6 and 8 are quoted from
``../shared/calibration-facts.md`` with their section.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from experiments.figures import _plt, save_figure
from experiments.paired import Z95, arm, paired_difference

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult

LENDER_TYPES = ("bank", "credit_fund", "abs_trust", "bond_investors")

BOOTSTRAP = 400


# --- helpers --------------------------------------------------------------------------------------


def ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"].copy()


def num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype(float)


def ci_table(runs: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, n and 95 % interval of each metric per group (NaN values are left out)."""
    rows = []
    for key, group in runs.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=True))
        for m in metrics:
            y = num(group[m]).dropna()
            mean = float(y.mean()) if len(y) else math.nan
            half = Z95 * float(y.std(ddof=1)) / math.sqrt(len(y)) if len(y) > 1 else 0.0
            row.update({m: mean, f"{m}_low": mean - half, f"{m}_high": mean + half, f"{m}_n": len(y)})
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_ratio(num_: np.ndarray, den: np.ndarray, seed: int) -> tuple[float, float, float]:
    """sum(num) / sum(den) with a bootstrap 95 % interval over runs (NaN when den sums to zero)."""
    num_, den = np.asarray(num_, float), np.asarray(den, float)
    if den.sum() <= 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(den), size=(BOOTSTRAP, len(den)))
    d = den[idx].sum(axis=1)
    boot = np.divide(num_[idx].sum(axis=1), d, out=np.full(BOOTSTRAP, np.nan), where=d > 0)
    lo, hi = np.nanquantile(boot, [0.025, 0.975]) if np.isfinite(boot).any() else (math.nan, math.nan)
    return float(num_.sum() / den.sum()), float(lo), float(hi)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6g")
    return path


def band_plot(ax: Any, table: pd.DataFrame, x: str, metric: str, label: str | None = None, **kw: Any) -> None:
    t = table.sort_values(x)
    ax.plot(t[x], t[metric], marker="o", ms=3, label=label, **kw)
    ax.fill_between(t[x], t[f"{metric}_low"], t[f"{metric}_high"], alpha=0.2, lw=0, color=kw.get("color"))


def pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x + 0.0:.0f} %".replace("-0 %", "0 %")


def first_default_when(month: float | None) -> str:
    """'in month N', or 'in no run' when no run had a default (the median is then undefined)."""
    return "in no run" if month is None or not np.isfinite(month) else f"in month {month:.0f}"


def interval(t: pd.Series | dict, m: str) -> str:
    return f"{pct(t[m])} [{pct(t[f'{m}_low'])}, {pct(t[f'{m}_high'])}]"


def points(x: float) -> str:
    """A signed difference of shares in percentage points (the unit is the caller's: " points")."""
    return f"{100 * x:+.1f}"


def paired_phrase(before: pd.Series, after: pd.Series, signed: Callable[[float], str], unit: str = "") -> str:
    """ "paired difference D [L, H]" of ``after - before`` over the runs both arms have (common random
    numbers: the same seed and posterior draw), with its 95 % interval (``experiments.paired``)."""
    d, low, high, n = paired_difference(after, before)
    if n == 0:
        return "no paired difference (no replicate measures both)"
    return f"paired difference {signed(d)}{unit} [{signed(low)}, {signed(high)}]"


def change(
    before: pd.Series,
    after: pd.Series,
    shown: Callable[[float], str],
    signed: Callable[[float], str],
    unit: str = "",
) -> str:
    """A verb phrase for the move of a metric between two arms run on the same replicates (per-run
    values indexed by the pairing key, ``experiments.paired.arm``) that says what the numbers say: the
    arms' means over their pairs, "stays at A" when both print the same, "goes from A to B" otherwise,
    with the paired difference and its 95 % interval, flagged as no clear change when that interval
    contains zero."""
    pairs = pd.concat([num(before), num(after)], axis=1, join="inner").dropna()
    if pairs.empty:
        return "cannot be compared (no replicate has both)"
    a, b = shown(float(pairs.iloc[:, 0].mean())), shown(float(pairs.iloc[:, 1].mean()))
    paired = paired_phrase(pairs.iloc[:, 0], pairs.iloc[:, 1], signed, unit)
    if a == b:
        return f"stays at {a} ({paired})"
    _, low, high, _ = paired_difference(pairs.iloc[:, 1], pairs.iloc[:, 0])
    unclear = ": no clear change" if low <= 0.0 <= high else ""
    return f"goes from {a} to {b} ({paired}{unclear})"


def lender_loss(runs: pd.DataFrame) -> pd.Series:
    cols = [f"lender_losses_by_type_{t}" for t in LENDER_TYPES if f"lender_losses_by_type_{t}" in runs]
    return sum(num(runs[c]).fillna(0.0) for c in cols)


def counts(scenario: dict[str, Any]) -> tuple[int, int]:
    gen = scenario["generated"]
    return int(gen["miners"]["count"]), int(gen["neoclouds"]["count"])


OLD_EXPOSURE = "written_off"
"""What result files written before issue 19 call the exposure at default (the same quantity). Their
``recovered`` is the older measure: undiscounted, gross of workout costs, with repossessed GPUs still
held at the end of the run at the mark; ``model.metrics.loan_outcomes`` says what it is now."""


def credit(runs: pd.DataFrame, cell: str, field: str) -> pd.Series:
    """Column ``credit_<cell>_<field>`` of the runs; ``exposure_at_default`` is read under its old name
    from result files that have it."""
    name = f"credit_{cell}_{field}"
    if name not in runs and field == "exposure_at_default":
        name = f"credit_{cell}_{OLD_EXPOSURE}"
    return num(runs[name])


def exposure_and_recovery(runs: pd.DataFrame, cells: list[str] | None = None) -> tuple[pd.Series, pd.Series]:
    """Exposure at default and what came back (``recovered``: LGD = 1 - recovered / EAD), summed over
    ``cells`` (default: every credit cell kept in the runs)."""
    if cells is None:
        cells = sorted(
            {
                c.removeprefix("credit_").removesuffix(f"_{suffix}")
                for c in runs
                for suffix in ("exposure_at_default", OLD_EXPOSURE)
                if c.startswith("credit_") and c.endswith(f"_{suffix}")
            }
        )
    return (
        sum(credit(runs, c, "exposure_at_default").fillna(0.0) for c in cells),
        sum(credit(runs, c, "recovered").fillna(0.0) for c in cells),
    )


ATTRIBUTED = 3
"""Borrower defaults of a reference run given a counterfactual attribution in an experiment's report
(each costs one more run of the reference; ``model.attribution``)."""


def reference_attribution(s: SweepResult, where: dict[str, Any], limit: int = ATTRIBUTED) -> dict[str, Any]:
    """Counterfactual attribution of the reference run of sweep ``s``: the first replicate with a
    default at the design point whose parameters equal ``where`` (found from the sweep's
    ``defaults_total``, or, for a sweep that does not keep it, by rerunning its first ``limit``
    replicates), rerun from its plan (seed, months, overrides); then its first ``limit`` borrower
    defaults, each rerun without it. No run with a default: ``defaults`` is empty, ``run_id`` None."""
    from model.attribution import counterfactual_attribution
    from model.model import GPUCreditModel

    runs = ok_runs(s.runs)
    for column, value in where.items():
        runs = runs[runs[column] == value]
    runs = runs.sort_values("replicate")
    if "defaults_total" in runs:  # the record says which runs had a default; the rerun must agree
        runs = runs[num(runs["defaults_total"]) > 0].head(1)
    specs = {r.run_id: r for r in s.sweep.plan.runs}
    looked_at = runs.head(limit)
    for _, run in looked_at.iterrows():
        spec = specs[run["run_id"]]
        model = GPUCreditModel(s.scenario, seed=spec.seed, months=spec.months, overrides=spec.overrides)
        model.run()
        defaults = len(model.metrics.defaults_table())
        if "defaults_total" in run and defaults != int(run["defaults_total"]):
            raise RuntimeError(
                f"{s.stem}: the rerun of {spec.run_id} does not reproduce its recorded defaults"
            )
        if defaults:
            return {"run_id": spec.run_id, "seed": spec.seed, "where": where} | counterfactual_attribution(
                model, limit
            )
    return {"run_id": None, "seed": None, "where": where, "looked_at": len(looked_at), "defaults": []}


def with_reference(report: Report, s: SweepResult, where: dict[str, Any]) -> Report:
    """``report`` with the counted contagion of its reference run (``reference_attribution``) added to
    its body and numbers."""
    attribution = reference_attribution(s, where)
    report.body = report.body.rstrip() + "\n\n" + attribution_markdown(attribution)
    report.numbers["attribution"] = attribution
    return report


def attribution_markdown(attribution: dict[str, Any]) -> str:
    """The counted contagion of a reference run, in words: for each attributed default, the extra
    defaults it caused and the defaults it brought forward, with months."""

    def names(items: list[dict[str, Any]], forward: bool = False) -> str:
        if not items:
            return "none"
        return ", ".join(
            f"{d['name']} (month {d['month']}" + (f", else {d['month_without']})" if forward else ")")
            for d in items
        )

    point = ", ".join(
        f"`{k}` = {v:g}" if isinstance(v, float) else f"`{k}` = {v}" for k, v in attribution["where"].items()
    )
    if attribution["run_id"] is None:
        return (
            f"**Counted contagion ({point}).** "
            + (
                f"None of the first {attribution['looked_at']} replicates at this design point, rerun, has a default"
                if attribution["looked_at"]
                else "No run at this design point has a default"
            )
            + ", so there is nothing to attribute."
        )
    head = (
        f"**Counted contagion (reference run `{attribution['run_id']}`, the first replicate with a default "
        f"at {point}; seed {attribution['seed']}).** "
    )
    if not attribution["defaults"]:
        return head + "Its defaults are all lenders' (only borrower defaults are attributed)."
    lines = [
        head
        + f"Of its {attribution['borrower_defaults']} borrower default(s), the first {attribution['attributed']} "
        "were each rerun on the same random streams without their forced sale and clearing losses "
        "(`model.attribution`); what each default did:",
        "",
    ]
    for d in attribution["defaults"]:
        lines.append(
            f"- {d['name']} (month {d['month']}): {len(d['extra_defaults'])} extra default(s): "
            f"{names(d['extra_defaults'])}; {len(d['brought_forward'])} brought forward: "
            f"{names(d['brought_forward'], forward=True)}."
        )
    return "\n".join(lines)


# --- 1. rent deflation ------------------------------------------------------------------------------


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


# --- 2. duration mismatch ---------------------------------------------------------------------------


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


# --- 3. double leverage -----------------------------------------------------------------------------


def double_leverage(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    s = sweeps[0]
    runs = ok_runs(s.runs)
    n_m, _ = counts(s.scenario)
    crash, corr, btc = "shocks.0.size", "stress_correlation", "generated.miners.btc_loan_to_value"
    runs["miner_default_rate"] = num(runs["defaults_by_type_miner"]) / n_m
    table = ci_table(runs, [btc, corr, crash], ["miner_default_rate", "systemic_loss"])
    files = [write_csv(table, out / "double_leverage.csv")]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    colors = {0.0: "tab:blue", 1: "tab:red"}
    for (b, c), t in table.groupby([btc, corr]):
        style = "-" if b > 0 else "--"
        color = colors[1] if b > 0 else colors[0]
        alpha = 1.0 if c == table[corr].max() else 0.5
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
    ax.set_xlabel("BTC crash in month 6 (fall)")
    ax.set_ylabel(f"miner default rate within {s.sweep.plan.months} months")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title("Experiment 3: double leverage (95 % CI)")
    key = save_figure(fig, out / "double_leverage.png")

    def at(b: float, c: float, k: float) -> pd.Series:
        return table[(table[btc] == b) & (table[corr] == c) & (table[crash] == k)].iloc[0]

    kmax, kmin = table[crash].max(), table[crash].min()
    chi, clo = table[corr].max(), table[corr].min()
    bon = table[btc].max()
    with_, without = at(bon, chi, kmax), at(0.0, chi, kmax)
    paired = runs.pivot_table(index=["replicate", btc, crash], columns=corr, values="miner_default_rate")
    effect, low, high, _ = paired_difference(paired[chi], paired[clo])
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
        f"{chi:g} changes the miner default rate by {100 * effect:+.1f} points on average "
        f"[{100 * low:+.1f}, {100 * high:+.1f}] (paired by seed)."
    )
    body = (
        "The crash is a scheduled `btc_crash` shock in month 6 added to the baseline; the stress "
        "correlation acts only in the stress regime (corr. of BTC returns with the compute-demand shock)."
    )
    report = Report(key, [key, *files], finding, body, {"table": table, "corr_effect": effect})
    return with_reference(report, s, {btc: bon, corr: chi, crash: kmax})


# --- 4. the missing repo market -----------------------------------------------------------------------


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


# --- 5. concentration ---------------------------------------------------------------------------------


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


# --- 6. credit spreads ----------------------------------------------------------------------------------

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


# --- 7. policies ------------------------------------------------------------------------------------------


def policies(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    frames = []
    for s in sweeps:
        runs = ok_runs(s.runs)
        param = next(iter(s.experiment.parameters))
        labels = {
            "policy_ltv_cap": lambda v: "no policy" if v >= 1.0 else f"LTV cap {v:g}",
            "policy_amortisation": lambda v: f"{int(v)}-month amortisation",
            "policy_haircut": lambda v: f"age haircut {v:g}/yr",
            "policy_last_resort": lambda v: f"buyer of last resort ${v / 1e9:g}B/month",
        }[s.stem]
        runs["policy"] = runs[param].map(labels)
        runs["lender_loss_busd"] = lender_loss(runs) / 1e9
        frames.append(
            runs[["policy", "replicate", "seed", "lender_loss_busd", "systemic_loss", "share_failed"]]
        )
    runs = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(runs["policy"]))
    table = ci_table(runs, ["policy"], ["lender_loss_busd", "systemic_loss", "share_failed"])
    q = runs.groupby("policy")[["lender_loss_busd", "systemic_loss"]].quantile(0.99)
    table["lender_loss_busd_p99"] = table["policy"].map(q["lender_loss_busd"])
    table["systemic_loss_p99"] = table["policy"].map(q["systemic_loss"])
    base = runs[runs["policy"] == "no policy"].set_index("replicate")["lender_loss_busd"]
    diffs = {
        p: paired_difference(runs[runs["policy"] == p].set_index("replicate")["lender_loss_busd"], base)
        for p in order
    }
    table["paired_change_busd"] = table["policy"].map({k: v[0] for k, v in diffs.items()})
    table["paired_change_low"] = table["policy"].map({k: v[1] for k, v in diffs.items()})
    table["paired_change_high"] = table["policy"].map({k: v[2] for k, v in diffs.items()})
    table = table.set_index("policy").loc[order].reset_index()
    files = [write_csv(table, out / "policies.csv")]

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = np.arange(len(table))
    ax.bar(
        xs,
        table["lender_loss_busd"],
        0.6,
        yerr=[
            table["lender_loss_busd"] - table["lender_loss_busd_low"],
            table["lender_loss_busd_high"] - table["lender_loss_busd"],
        ],
        capsize=3,
        label="expected lender loss (95 % CI)",
    )
    ax.scatter(
        xs, table["lender_loss_busd_p99"], color="tab:red", marker="_", s=400, lw=2, label="99 % quantile"
    )
    ax.set_xticks(xs, [p.replace(" ", "\n", 1) for p in table["policy"]], fontsize=8)
    ax.set_ylabel("lender loss (USD bn)")
    n = int(runs.groupby("policy").size().min())
    ax.set_title(f"Experiment 7: policies ({n} replicates each, same seeds)")
    ax.legend(frameon=False, fontsize=8)
    key = save_figure(fig, out / "policies.png")

    pol = table[table["policy"] != "no policy"]
    cuts = pol[pol["paired_change_high"] < 0]  # paired 95 % interval entirely below zero
    best = (cuts if len(cuts) else pol).sort_values("paired_change_busd").iloc[0]
    best_tail = pol.loc[pol["lender_loss_busd_p99"].idxmin()]
    none = table[table["policy"] == "no policy"].iloc[0]
    finding = (
        f"With no policy, lenders lose ${none['lender_loss_busd']:.2f}B on average "
        f"[{none['lender_loss_busd_low']:.2f}, {none['lender_loss_busd_high']:.2f}] and ${none['lender_loss_busd_p99']:.2f}B "
        f"at the 99 % quantile; "
        + (
            "the largest cut in expected loss comes from the "
            if len(cuts)
            else "no policy cuts expected loss beyond noise (every paired 95 % interval reaches zero); the "
            "largest point estimate is the "
        )
        + f"{best['policy']} ({best['paired_change_busd']:+.2f}B, paired 95 % CI "
        f"[{best['paired_change_low']:+.2f}, {best['paired_change_high']:+.2f}]). "
        f"The lowest tail loss is under the {best_tail['policy']} (${best_tail['lender_loss_busd_p99']:.2f}B at the 99 % "
        f"quantile; with {n} replicates this quantile is close to the worst run, so it is a rough tail measure)."
    )
    body = (
        "| policy | expected loss, USD bn (95 % CI) | 99 % quantile | paired change vs no policy | systemic loss | share failed |\n"
        "|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {r['policy']} | {r['lender_loss_busd']:.2f} [{r['lender_loss_busd_low']:.2f}, {r['lender_loss_busd_high']:.2f}] | "
            f"{r['lender_loss_busd_p99']:.2f} | {r['paired_change_busd']:+.2f} [{r['paired_change_low']:+.2f}, {r['paired_change_high']:+.2f}] | "
            f"{r['systemic_loss']:.2f} | {r['share_failed']:.2f} |"
            for _, r in table.iterrows()
        )
        + "\n\nAn LTV cap also shrinks the loan book itself, so part of its effect on dollar losses is less lending."
    )
    report = Report(key, [key, *files], finding, body, {"table": table})
    no_policy = next(x for x in sweeps if x.stem == "policy_ltv_cap")  # a cap of 1 or more binds nothing
    cap = next(iter(no_policy.experiment.parameters))
    return with_reference(report, no_policy, {cap: num(no_policy.runs[cap]).max()})


# --- 8. the 2022 miner crisis -------------------------------------------------------------------------------

HISTORY_2022 = {
    "rig_price_trough": (-0.88, -0.85),  # section 5, derived: collateral -85 to -88 % peak to trough
    "recovery": (0.20, 0.50),  # section 5: lenders recovered ~20-50 % of principal
    "hashprice_2022_mean": 123.9,  # section 4 [R] Hashrate Index
    "hashprice_2022_low": 55.9,
    "miner_defaults": 4,  # data/miners_2022/sources.csv: outcome_2022 = default (of the 8 modelled)
}


def miners_2022(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report

    s = sweeps[0]
    runs = ok_runs(s.runs)
    depth, power = "buyer_depth_scale", "world.power.price_per_kwh"
    wo, rec = exposure_and_recovery(runs, ["miner_term_loan"])
    runs["recovery"] = np.where(wo > 0, rec / wo.where(wo > 0, 1.0), np.nan)
    n_miners = sum(1 for a in s.scenario["explicit"]["agents"] if a["type"] == "miner")
    runs["miner_default_rate"] = num(runs["defaults_by_type_miner"]) / n_miners
    table = ci_table(
        runs,
        [depth, power],
        ["price_peak_to_trough_ASIC", "recovery", "miner_default_rate", "time_to_first_default"],
    )
    files = [write_csv(table, out / "miners_2022.csv")]
    ts = pd.read_parquet(s.folder / "timeseries.parquet")
    one = ts[ts["run_id"] == ts["run_id"].iloc[0]]
    in_2022 = one[(one["month"] >= 2) & (one["month"] <= 13)]  # month 0 = Nov 2021
    hp_mean, hp_low = (
        float(in_2022["hashprice_per_ph_day"].mean()),
        float(in_2022["hashprice_per_ph_day"].min()),
    )

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.plot(one["month"], one["btc_price"] / one["btc_price"].iloc[0], label="BTC (path)")
    ax.plot(
        one["month"],
        one["hashprice_per_ph_day"] / one["hashprice_per_ph_day"].iloc[0],
        label="hashprice (model)",
    )
    ax.set_xticks(
        range(0, 14, 2), ["Nov21", "Jan22", "Mar22", "May22", "Jul22", "Sep22", "Nov22"], fontsize=7
    )
    ax.set_ylabel("index, Nov 2021 = 1")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(
        f"model hashprice 2022: mean {hp_mean:.0f}, low {hp_low:.0f} $/PH/day\n(history: 123.9, 55.9)",
        fontsize=8,
    )
    for ax, metric, hist, label in (
        (axes[1], "price_peak_to_trough_ASIC", HISTORY_2022["rig_price_trough"], "rig price, peak to trough"),
        (axes[2], "recovery", HISTORY_2022["recovery"], "lender recovery on defaulted rig loans"),
    ):
        for p, t in table.groupby(power):
            ax.errorbar(
                t[depth],
                t[metric],
                yerr=[t[metric] - t[f"{metric}_low"], t[f"{metric}_high"] - t[metric]],
                marker="o",
                ms=4,
                capsize=3,
                label=f"power {100 * p:.0f} c/kWh",
            )
        ax.axhspan(*hist, color="tab:orange", alpha=0.3, label="2022 history")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("rig-market buyer depth (x scenario)")
        ax.set_ylabel(label)
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle("Experiment 8: the 2022 bitcoin-miner credit crisis, model vs history")
    key = save_figure(fig, out / "miners_2022.png")

    trough = num(runs["price_peak_to_trough_ASIC"])
    r, r_lo, r_hi = pooled_ratio(rec.to_numpy(), wo.to_numpy(), 8)
    in_band = lambda v, band: band[0] <= v <= band[1]  # noqa: E731
    deepest, shallowest = pct(-trough.min()), pct(-trough.max())
    spread = (
        f"{shallowest} to {deepest} over the design points"
        if deepest != shallowest
        else "the same at every design point"
    )
    finding = (
        f"Driven by the 2021-22 BTC path, the model's rig price falls {pct(-trough.mean())} peak to trough "
        f"({spread}) against 85-88 % in "
        f"2022, and lenders recover {pct(r)} [{pct(r_lo)}, {pct(r_hi)}] of defaulted principal against "
        f"~20-50 % ({'inside' if in_band(r, HISTORY_2022['recovery']) else 'outside'} the historical range). "
        f"{pct(runs['miner_default_rate'].mean())} of the scenario's {n_miners} miners default (2022: "
        f"{HISTORY_2022['miner_defaults']} of {n_miners}), the first in month "
        f"{num(runs['time_to_first_default']).median():.0f} (month 0 = Nov 2021); hashprice averages "
        f"{hp_mean:.0f} $/PH/day in 2022 (history 123.9) with a low of {hp_low:.0f} (55.9)."
    )
    body = (
        "Scenario `experiments/scenarios/miners_2022.toml` (its header explains the mapping): the only "
        "hardware generation is an efficient 2021 ASIC (100 TH/s, 3.05 kW), whose 'rent' is the rig's "
        "mining revenue (hashprice x 0.1 PH), so it is valued, repossessed and sold like a GPU; eight "
        "public miners (Core Scientific, Stronghold, Greenidge, Iris Energy's SPVs, Riot, Marathon, "
        "CleanSpark, Bitfarms) with their fleets, rig loans, notes and converts from filings "
        "(data/miners_2022/sources.csv; 4 of them defaulted or handed rigs back in 2022, the rest did "
        "not); "
        "BTC follows recalled month-end closes (assumptions) scaled so Nov 2022 is -77 % from the peak "
        "[R]; 2022 is one stress episode. The world is deterministic, so replicates agree (zero-width "
        "intervals); the grid brackets buyer depth and the power price instead.\n\n"
        "**What the model misses.** The model values a rig at the present value of its margins with the "
        "current hashprice extrapolated downwards, so when margins near zero its value nears zero; the "
        "2022 market still paid ~$16/TH at the trough (an option on a BTC recovery that the valuation "
        "has no place for), and the model's trough is accordingly deeper wherever forced sales hit the "
        "scrap floor. Recovery here is measured at the end of 2022 (cash plus rigs held at the mark), "
        "closer to the later BankProv figure (~22 %) than to recoveries at repossession (~38 %). The "
        "historical trough is from May 2021 ($119.25/TH); the scenario starts in Nov 2021 at the model's "
        "fundamental value. The rig loans carry no LTV covenant (an absent covenant never binds; until issue "
        "22 it was the number 5, which bound once the mark fell below 20 % of the debt)."
    )
    return Report(
        key, [key, *files], finding, body, {"table": table, "recovery": r, "hashprice": (hp_mean, hp_low)}
    )


# --- 9. sensitivity -----------------------------------------------------------------------------------------


def sensitivity(sweeps: list[SweepResult], out: Path) -> Report:
    from experiments.named import Report
    from experiments.sensitivity import bar_chart, sobol_table

    s = sweeps[0]
    tables = [sobol_table(s.runs, s.experiment, m) for m in s.experiment.outputs.sensitivity]
    table = pd.concat(tables, ignore_index=True)
    files = [write_csv(table, out / "sobol.csv")]
    main = tables[0]
    key = bar_chart(main, out / "sensitivity.png", f"Experiment 9: Sobol indices of {main['metric'].iloc[0]}")
    ranked = main.sort_values("ST", ascending=False).reset_index(drop=True)
    top, second = ranked.iloc[0], ranked.iloc[1]
    n_points = len(s.sweep.plan.points)
    finding = (
        f"{top['parameter']} has the largest total Sobol index of systemic loss (ST = {top['ST']:.2f} +/- "
        f"{top['ST_conf']:.2f}), then {second['parameter']} ({second['ST']:.2f} +/- {second['ST_conf']:.2f}); the "
        f"first-order indices sum to {main['S1'].sum():.2f}, so {'much of the variance comes from interactions' if main['S1'].sum() < 0.7 else 'the parameters act mostly on their own'}. "
        f"With {n_points} design points the intervals are wide; the ranking of the top parameter is what "
        f"this size supports."
    )
    body = (
        "| metric | parameter | S1 | S1 95 % | ST | ST 95 % |\n|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {r['metric']} | {r['parameter']} | {r['S1']:.2f} | {r['S1_conf']:.2f} | {r['ST']:.2f} | {r['ST_conf']:.2f} |"
            for _, r in table.iterrows()
        )
        + "\n\nSystemic loss = lender losses over lenders' equity at the start. Replicates share seeds "
        "across design points (common random numbers) and are averaged per point before the analysis."
    )
    return Report(key, [key, *files], finding, body, {"table": table})
