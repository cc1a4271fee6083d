"""The calibrated baseline's default distribution over posterior draws (docs/calibration.md, section 20).

Runs the baseline scenario at ``--draws`` parameter sets drawn (by weight, seeded) from a calibration's
posterior, ``--seeds`` replicates each (seeds from one SeedSequence), and reports borrower defaults:
the share of runs with none, the annual borrower default rate over all months and over calm months
(months outside the stress regime: defaults in them per borrower-year spent in them), to compare with
published default rates of comparable credit. Each run is paired with two counterfactuals on the same
draw and seed (price channel off; price channel and interbank lending off) to report the fire-sale
amplification and the contagion share: the share of defaults that need a contagion channel. Writes
``OUT/baseline_over_posterior.json`` and a figure.

    python scripts/baseline_over_posterior.py results/calibration/history --out docs/img/calibration
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.ledger import Kind  # noqa: E402
from experiments.posterior import draw_parameters, read_posterior  # noqa: E402
from model.model import GPUCreditModel  # noqa: E402

SEED = 20261204
START_STATE = ("world.rent.h100_rent_per_hour", "world.btc.network_hashrate_eh")  # Jan 2023, not Jul 2026


def posterior_draws(folder: Path, draws: int) -> list[dict[str, float]]:
    # the starting state comes from the baseline's own data: only the processes' parameters carry over
    return draw_parameters(
        read_posterior(folder / "posterior.parquet", "calibration folder"),
        draws,
        np.random.SeedSequence(SEED, spawn_key=(0,)),
        exclude=START_STATE,
    )


CHANNELS_OFF = {  # the paired counterfactuals: same draw, same seed (common random numbers)
    "defaults_without_price_channel": {"cascade.price_channel": False},
    "defaults_without_contagion": {"cascade.price_channel": False, "generated.interbank_share": 0.0},
}


def run(params: dict[str, float], seed: int) -> dict[str, float]:
    model = GPUCreditModel("baseline", seed=seed, overrides=params)
    model.run()
    paired = {}
    for name, off in CHANNELS_OFF.items():
        twin = GPUCreditModel("baseline", seed=seed, overrides={**params, **off})
        twin.run()
        paired[name] = int(twin.ledger.defaulted.sum())
    led = model.ledger
    borrowers = (led.kind == Kind.MINER) | (led.kind == Kind.NEOCLOUD)
    steps = model.metrics.steps[1:]
    calm = [row for row in steps if not row["stress"]]
    live_calm_years = (
        sum(borrowers.sum() - (row["defaults_miner"] + row["defaults_neocloud"]) for row in calm) / 12
    )
    return {
        "borrower_defaults": int((led.defaulted & borrowers).sum()),
        "borrowers": int(borrowers.sum()),
        "lender_defaults": int((led.defaulted & ~borrowers & model.state.lender_mask()).sum()),
        "calm_defaults": int(sum(row["new_defaults_miner"] + row["new_defaults_neocloud"] for row in calm)),
        "calm_borrower_years": float(live_calm_years),
        "calm": len(calm) == len(steps),  # not one month in stress
        "years": model.months / 12,
        "defaults": int(led.defaulted.sum()),
        **paired,
    }


def ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibration", type=Path, help="a calibration's output folder (posterior.parquet)")
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("results/calibration"))
    args = parser.parse_args()
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(SEED).spawn(args.seeds)]
    rows = []
    for i, params in enumerate(posterior_draws(args.calibration, args.draws)):
        for seed in seeds:
            rows.append({"draw": i, "seed": seed, **run(params, seed)})
        print(f"\rdraw {i + 1}/{args.draws}", end="", file=sys.stderr)
    print(file=sys.stderr)
    frame = pd.DataFrame(rows)
    rate = lambda f: float(f.borrower_defaults.sum() / (f.borrowers * f.years).sum())  # noqa: E731
    calm = frame[frame.calm]
    summary = {
        "runs": len(frame),
        "draws": args.draws,
        "seeds_per_draw": args.seeds,
        "share_runs_without_borrower_default": float((frame.borrower_defaults == 0).mean()),
        "annual_borrower_default_rate": rate(frame),
        "calm_runs": len(calm),
        "annual_borrower_default_rate_calm_months": float(
            frame.calm_defaults.sum() / frame.calm_borrower_years.sum()
        ),
        "share_of_defaults_in_calm_months": ratio(frame.calm_defaults.sum(), frame.borrower_defaults.sum()),
        "share_runs_with_lender_failure": float((frame.lender_defaults > 0).mean()),
        # defaults with every channel on over defaults with the price channel off (fire-sale
        # amplification), and the share of defaults that need the price or interbank channel
        "fire_sale_amplification": ratio(frame.defaults.sum(), frame.defaults_without_price_channel.sum()),
        "contagion_share": 1.0 - ratio(frame.defaults_without_contagion.sum(), frame.defaults.sum()),
        "runs_where_contagion_changes_defaults": float(
            (frame.defaults != frame.defaults_without_contagion).mean()
        ),
        "borrower_defaults_quantiles": {
            q: float(frame.borrower_defaults.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baseline_over_posterior.json").write_text(json.dumps(summary, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    n = int(frame.borrowers.iloc[0])
    bins = np.arange(-0.5, n + 1.5)
    ax.hist(frame.borrower_defaults, bins=bins)
    ax.set_xlabel(f"borrower defaults in {frame.years.iloc[0]:.0f} years (of {n} borrowers)")
    ax.set_ylabel("runs")
    ax.set_title(f"Calibrated baseline over {args.draws} posterior draws x {args.seeds} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "baseline_over_posterior.png", dpi=110, metadata={"Software": None})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
