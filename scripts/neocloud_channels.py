"""What each channel between miners and neo-clouds changes in their joint distress (issue 16 part 3).

    python scripts/neocloud_channels.py --seeds 16 --out docs/img/neocloud_channels.json

The calibrated baseline, 60 months, each seed run once per arm with nothing else different (common
random numbers: the loadings read the factor the world draws anyway, so BTC, rents and the regime are
the same in every arm). Arms: none; each channel alone at an illustrative value (``CHANNELS``); all of
them; and, to measure what miners' defaults do to neo-clouds through shared lenders and shared buyers,
the first and the last again with every miner's default neutralised (``model.attribution``: its
creditors are paid in full from outside and its GPUs leave unsold, so nobody else feels it). Joint
distress is ``scripts/joint_distress.py``'s: some miner and some neo-cloud default within 12 months;
``neocloud_defaults_near_miner`` counts the neo-cloud defaults within 12 months of a miner's.
Differences are paired by seed with ``experiments.paired.paired_table`` (95 % normal intervals).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LENDERS = ("bank", "credit_fund", "abs_trust", "bond_investors")
# illustrative values, labelled assumptions in docs/calibration.md 22.2 (the defaults are all 0 / off)
CHANNELS: dict[str, dict[str, Any]] = {
    "tenants": {"tenants.factor_loading": 0.45},
    "buyers": {"secondary.budget_factor_loading": 0.5},
    "lenders": {f"lenders.{kind}.funding_factor_loading": 0.1 for kind in LENDERS},
    "hosts": {"host_failure.disruption_months": 3, "host_failure.revenue_lost": 1.0},
}
ARMS: dict[str, tuple[dict[str, Any], bool]] = {  # name -> (overrides, miners' defaults neutralised)
    "none": ({}, False),
    **{name: (overrides, False) for name, overrides in CHANNELS.items()},
    "all": ({k: v for overrides in CHANNELS.values() for k, v in overrides.items()}, False),
    "none_miners_neutralised": ({}, True),
    "all_miners_neutralised": ({k: v for overrides in CHANNELS.values() for k, v in overrides.items()}, True),
}
METRICS = [
    "joint_distress",
    "miner_defaults",
    "neocloud_defaults",
    "neocloud_defaults_near_miner",
    "miner_rollover_refusals",
    "neocloud_rollover_refusals",
    "neocloud_defaults_parent_miner",
    "hosted_neocloud_defaults",
]


def shared_lenders(model: Any) -> dict[str, float]:
    """The market as built: lenders that lend to both miners and neo-clouds, and their share of the
    neo-clouds' borrowing."""
    import numpy as np

    from core.ledger import Kind

    led = model.ledger
    loans = led.loans
    debtor_kind = led.kind[loans.debtor]
    to_miners = set(loans.creditor[debtor_kind == Kind.MINER].tolist())
    to_neoclouds = loans.creditor[debtor_kind == Kind.NEOCLOUD]
    principal = loans.original_principal[debtor_kind == Kind.NEOCLOUD]
    shared = np.isin(to_neoclouds, list(to_miners))
    return {
        "lenders_to_both": len(to_miners & set(to_neoclouds.tolist())),
        "lenders_to_neoclouds": len(set(to_neoclouds.tolist())),
        "neocloud_debt_share_of_shared_lenders": float(principal[shared].sum() / principal.sum()),
    }


def run_arm(seed: int, months: int, arm: str, miners: tuple[str, ...]) -> dict[str, Any]:
    """One run: the joint-distress flag and the neo-clouds' defaults by route (``miners``: the
    miners' names, neutralised in the arms that say so)."""
    from model.model import GPUCreditModel
    from scripts.joint_distress import WINDOW_MONTHS, joint_distress

    overrides, neutralised = ARMS[arm]
    neutralise = miners if neutralised else ()
    model = GPUCreditModel("baseline", seed=seed, months=months, overrides=overrides, neutralise=neutralise)
    model.run()
    d = model.metrics.defaults_table()
    miner, neocloud = d[d["type"] == "miner"], d[d["type"] == "neocloud"]
    hosted = set(model.ledger.hosting_tenant.tolist())
    near = [any(abs(b - a) < WINDOW_MONTHS for a in miner["month"]) for b in neocloud["month"]]
    parent_kind = [model.names[p].split("-")[0] if p >= 0 else "" for p in neocloud["parent"]]
    return {
        "arm": arm,
        "replicate": seed,
        "status": "ok",
        "joint_distress": int(joint_distress(miner["month"].tolist(), neocloud["month"].tolist())),
        "miner_defaults": len(miner),
        "neocloud_defaults": len(neocloud),
        "neocloud_defaults_near_miner": sum(near),
        "miner_rollover_refusals": int((miner["cause"] == "rollover_refused").sum()),
        "neocloud_rollover_refusals": int((neocloud["cause"] == "rollover_refused").sum()),
        "neocloud_defaults_parent_miner": sum(kind == "miner" for kind in parent_kind),
        "hosted_neocloud_defaults": int(neocloud["agent"].isin(hosted).sum()),
        **(shared_lenders(model) if arm == "none" else {}),
    }


def summarise(runs: Any) -> dict[str, Any]:
    from experiments.paired import paired_table

    means = runs.groupby("arm")[METRICS].mean()
    out: dict[str, Any] = {"arms": {arm: ARMS[arm][0] for arm in ARMS}, "mean": means.to_dict("index")}
    comparisons = {
        "vs_none": (runs[~runs["arm"].str.endswith("neutralised")], {"arm": "none"}),
        "miners_defaults_felt": (
            runs[runs["arm"].isin(["none", "none_miners_neutralised"])],
            {"arm": "none_miners_neutralised"},
        ),
        "miners_defaults_felt_all": (
            runs[runs["arm"].isin(["all", "all_miners_neutralised"])],
            {"arm": "all_miners_neutralised"},
        ),
    }
    for name, (subset, base) in comparisons.items():
        table = paired_table(subset, ["arm"], METRICS, base)
        out[name] = table.set_index("arm").to_dict("index")
    structure = runs[runs["arm"] == "none"]
    out["shared_lenders"] = {
        key: float(structure[key].mean())
        for key in ("lenders_to_both", "lenders_to_neoclouds", "neocloud_debt_share_of_shared_lenders")
    }
    return out


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from core.config import load_scenario
    from scripts.joint_distress import print_and_save

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    miners = tuple(f"miner-{i}" for i in range(load_scenario("baseline").generated.miners.count))
    runs = pd.DataFrame([run_arm(seed, args.months, arm, miners) for seed in seeds for arm in ARMS])
    summary = {"scenario": "baseline", "months": args.months, "seeds": [seeds.start, seeds.stop - 1]}
    summary |= summarise(runs)
    print_and_save(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
