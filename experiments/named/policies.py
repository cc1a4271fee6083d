"""Experiment 7, policies (``policy_*.toml``): expected and tail lender loss under each policy, paired with
no policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from experiments.figures import _plt, save_figure
from experiments.named.common import (
    ci_table,
    lender_loss,
    num,
    ok_runs,
    with_reference,
    write_csv,
)
from experiments.paired import paired_difference

if TYPE_CHECKING:
    from experiments.named import Report, SweepResult


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
