"""What the named experiments' analyses share: tables of means with 95 % intervals, pooled ratios,
the wording of paired comparisons (``change``), credit columns, and the counted contagion of a
reference run. Each experiment's analysis is in its own module next to its experiment file
(``experiments/named/<name>.py``); each takes the finished sweeps of its experiment files and an
output folder and returns a :class:`experiments.named.Report`.

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

from experiments.paired import Z95, paired_difference

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult

LENDER_TYPES = ("bank", "credit_fund", "abs_trust", "bond_investors")

BOOTSTRAP = 400


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
