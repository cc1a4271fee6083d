"""The fitted model's band over the observed series, fit period and forecast (docs/calibration.md 20).

Runs the calibration's own set-up (``history_2023_2026`` driven by the observed BTC and fed funds up to
Dec 2025, simulated after) at ``--draws`` parameter sets drawn by weight from its posterior, and draws
the monthly 5-95 % band and median of rent, hashprice, BTC and borrower defaults over the observed
points (fit period shaded; the points after Dec 2025 were not used in the fit).

    python scripts/history_bands.py results/calibration/history --out docs/img/calibration
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.observed import load_observed  # noqa: E402
from experiments.posterior import draw_parameters, read_posterior  # noqa: E402
from model.model import GPUCreditModel  # noqa: E402

SEED = 20261205
FIT_END = "2025-12"
SERIES = {  # model column -> (title, observed series drawn as points)
    "rent_per_h100_hour": (
        "H100 rent, USD per GPU-hour",
        [
            "h100_rent_contract_usd_per_hour",
            "h100_rent_on_demand_usd_per_hour",
            "h100_rent_spot_usd_per_hour",
        ],
    ),
    "hashprice_per_ph_day": ("hashprice, USD per PH/s per day", ["hashprice_usd_per_ph_day"]),
    "btc_price": ("BTC, USD (observed to Dec 2025, then simulated)", ["btc_close_usd"]),
    "defaults_borrowers": ("borrower defaults (none observed)", []),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibration", type=Path)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("results/calibration"))
    args = parser.parse_args()
    posterior = read_posterior(args.calibration / "posterior.parquet", "calibration folder")
    draws, seeds_of = np.random.SeedSequence(SEED).spawn(2)
    seeds = np.random.default_rng(seeds_of).integers(0, 2**62, size=args.draws)
    runs = []
    for i, (params, seed) in enumerate(
        zip(draw_parameters(posterior, args.draws, draws), seeds, strict=True)
    ):
        model = GPUCreditModel(
            "history_2023_2026", seed=int(seed), months=46, overrides={**params, "history.until": FIT_END}
        )
        model.run()
        frame = pd.DataFrame(model.metrics.steps)
        frame["defaults_borrowers"] = frame["defaults_miner"] + frame["defaults_neocloud"]
        runs.append(frame)
        print(f"\rdraw {i + 1}/{args.draws}", end="", file=sys.stderr)
    print(file=sys.stderr)
    dates = pd.to_datetime(runs[0]["date"])
    data = load_observed()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
    for ax, (column, (title, observed)) in zip(axes.flat, SERIES.items(), strict=True):
        values = np.array([r[column].to_numpy(dtype=float) for r in runs])
        lo, mid, hi = np.quantile(values, [0.05, 0.5, 0.95], axis=0)
        ax.fill_between(dates, lo, hi, alpha=0.25, label="model 5-95 %")
        ax.plot(dates, mid, lw=1.2, label="model median")
        for name, marker in zip(observed, "os^", strict=False):
            points = data.get(name)
            points = points[
                (points.index >= runs[0]["date"].iloc[0]) & (points.index <= runs[0]["date"].iloc[-1])
            ]
            ax.plot(
                pd.to_datetime(points.index),
                points.to_numpy(),
                marker,
                ms=4,
                ls="none",
                label=name.replace("_usd_per_hour", "").replace("_usd_per_ph_day", "").replace("_usd", ""),
            )
        ax.axvspan(dates.iloc[0], pd.Timestamp(FIT_END + "-28"), color="grey", alpha=0.08)
        ax.set_title(title, fontsize=9)
        if column == "btc_price":
            ax.set_yscale("log")
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(
        f"history_2023_2026 over {args.draws} posterior draws: fit to Dec 2025 (shaded), forecast Jan-Nov 2026",
        fontsize=10,
    )
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "history_fit_forecast.png", dpi=110, metadata={"Software": None})
    print(f"wrote {args.out / 'history_fit_forecast.png'}")


if __name__ == "__main__":
    main()
