"""Does correlation convergence matter? The probability that miners and neo-clouds are in distress in
the same 12 months, with the stress correlation of BTC and compute demand at two values and every
marginal distribution fixed (issue 16, part 1).

    python scripts/joint_distress.py --seeds 1000 --workers 2 --out docs/img/joint_distress.json

Each seed is run twice, once per correlation, and nothing else differs: the two runs draw the same
random numbers (common random numbers), so the difference is measured seed by seed. A run counts as
joint distress when some miner and some neo-cloud default within 12 months of each other (months
``a`` and ``b`` with ``|a - b| <= 11``). The 95 % interval of the difference is the normal one on the
paired differences (each -1, 0 or 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WINDOW_MONTHS = 12


def joint_distress(miner_months: list[int], neocloud_months: list[int]) -> bool:
    """Some miner and some neo-cloud default within ``WINDOW_MONTHS`` months of each other."""
    return any(abs(a - b) < WINDOW_MONTHS for a in miner_months for b in neocloud_months)


def run_pair(job: tuple[str, int, int, float, float]) -> dict[str, Any]:
    """One seed at both correlations: whether each run had joint distress, and its defaults by type."""
    from model.model import GPUCreditModel

    scenario, seed, months, low, high = job
    out: dict[str, Any] = {"seed": seed}
    for label, rho in (("low", low), ("high", high)):
        model = GPUCreditModel(
            scenario, seed=seed, months=months, overrides={"world.btc.correlation_stress": rho}
        )
        model.run()
        defaults = model.metrics.defaults_table()
        miners = defaults.loc[defaults["type"] == "miner", "month"].tolist()
        neoclouds = defaults.loc[defaults["type"] == "neocloud", "month"].tolist()
        out[label] = {
            "joint": joint_distress(miners, neoclouds),
            "miner_defaults": len(miners),
            "neocloud_defaults": len(neoclouds),
            "stress_months": int(model.metrics.steps_table()["stress"].sum()),
        }
    return out


def paired_difference(high: list[float], low: list[float]) -> dict[str, Any]:
    """Mean of the seed-by-seed differences with its normal 95 % interval."""
    diff = [h - lo for h, lo in zip(high, low, strict=True)]
    n = len(diff)
    mean = sum(diff) / n
    half = 1.96 * math.sqrt(sum((d - mean) ** 2 for d in diff) / (n - 1) / n)
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def summarise(rows: list[dict[str, Any]], low: float, high: float) -> dict[str, Any]:
    n = len(rows)
    joint = {k: [int(r[k]["joint"]) for r in rows] for k in ("low", "high")}
    diff = [h - lo for h, lo in zip(joint["high"], joint["low"], strict=True)]

    def share(k: str) -> dict[str, float]:
        p = sum(joint[k]) / n
        half = 1.96 * math.sqrt(p * (1 - p) / n)
        return {"probability": p, "ci95": [p - half, p + half]}

    def mean_of(k: str, field: str) -> float:
        return sum(r[k][field] for r in rows) / n

    return {
        "seeds": n,
        "correlation_stress": {"low": low, "high": high},
        "joint_distress_low": share("low"),
        "joint_distress_high": share("high"),
        "difference": paired_difference(joint["high"], joint["low"]),
        "seeds_joint_only_high": sum(1 for d in diff if d > 0),
        "seeds_joint_only_low": sum(1 for d in diff if d < 0),
        "mean_defaults": {
            k: {t: mean_of(k, f"{t}_defaults") for t in ("miner", "neocloud")} for k in ("low", "high")
        },
        "defaults_difference": {
            t: paired_difference(
                [r["high"][f"{t}_defaults"] for r in rows], [r["low"][f"{t}_defaults"] for r in rows]
            )
            for t in ("miner", "neocloud")
        },
        "mean_stress_months": {k: mean_of(k, "stress_months") for k in ("low", "high")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="baseline")
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--low", type=float, default=0.0, help="stress correlation of the first run")
    parser.add_argument("--high", type=float, default=0.9, help="stress correlation of the second run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    jobs = [
        (args.scenario, seed, args.months, args.low, args.high)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(run_pair, jobs, chunksize=8))
    else:
        rows = [run_pair(job) for job in jobs]
    summary = {"scenario": args.scenario, "months": args.months, "first_seed": args.first_seed}
    summary |= summarise(rows, args.low, args.high)
    print_and_save(summary, args.out)
    return 0


def print_and_save(summary: dict[str, Any], out: Path | None) -> None:
    """Print a summary as JSON and, if ``out`` is given, write it there."""
    text = json.dumps(summary, indent=2, default=float)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
