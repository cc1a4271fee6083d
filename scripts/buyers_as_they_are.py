"""What the buy side and lenders' disposal "as they are" change (issue 16 part 2), measured cheaply.

    python scripts/buyers_as_they_are.py --out docs/img/buyers_as_they_are.json

1. The 2022 miner crisis (``miners_2022``, deterministic: observed BTC and hashprice paths; the scenario
   has the mechanisms on, with the session-10 posterior), with buyers valuing every month on their own
   extrapolated path (session 10) or the months they expect to idle a rig as the fundamental does
   (``secondary.idle_valuation``, the shipped scenario), and other idling-option values; experiment 8's
   grid (buyer depth 0.5 / 1 / 2 x miners' power price 4 / 5 / 6 c/kWh) for both buyer rules; and a scan
   of the two parameters that set the fundamental's trough (idling volatility x miners' fixed cost).
   Measures: the rig's peak-to-trough price fall, the term lenders' recovery on defaulted rig loans as
   experiment 8 computes it (cash recovered plus repossessed rigs still held, at the mark, over exposure
   at default) and the realised (cash) recovery alone, miner defaults, rigs sold and still held.
2. Experiment 4 (buyer depth, the largest miner defaulted in month 3) and experiment 7's buyer of last
   resort over posterior draws at a reduced size, from ``experiments/examples/buyers_*.toml``.
3. The fire-sale amplification of the calibrated baseline (seeds 1-30, 60 months): defaults with the
   price channel on over defaults with it off, on the same seeds, with the flag off and on.

Runs serially (one core): about 370 runs of 12-60 months, about 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OWN_PATH = {"secondary.idle_valuation": "own"}
VARIANTS_2022: dict[str, dict[str, Any]] = {
    "session 10: buyers value every month on their own path": OWN_PATH,
    "buyers value idle months as the fundamental (shipped)": {},
    "no idling option, buyers' own path": {**OWN_PATH, "world.idle_option_volatility": 0.0},
    "no idling option, idle months as the fundamental": {"world.idle_option_volatility": 0.0},
    "idling option 0.15, buyers' own path": {**OWN_PATH, "world.idle_option_volatility": 0.15},
    "idling option 0.15, idle months as the fundamental": {"world.idle_option_volatility": 0.15},
}
# the two parameters that set the fundamental's trough (and the defaults), around the posterior medians
SCAN_VOLATILITY = (0.055, 0.1, 0.15, 0.175, 0.2, 0.25)
SCAN_FIXED_COST = (70.0, 80.0, 90.0, 95.9)
SWEEPS = {
    "buyers_repo_market": {"shocks": [{"month": 3, "kind": "default_largest_miner"}]},
    "buyers_last_resort_off": {},
    "buyers_last_resort": {},
}


def replay_2022(overrides: dict[str, Any], **params: Any) -> dict[str, float]:
    """One run of the 2022 replay: the rig's price fall, term lenders' recovery, defaults, units sold."""
    from model.metrics import run_summary
    from model.model import GPUCreditModel

    overrides = dict(overrides)
    flag = overrides.pop("flag", False)
    model = GPUCreditModel("miners_2022", overrides=overrides, buyers_as_they_are=flag, **params)
    sold = 0.0
    for _ in range(model.months):
        model.step()
        sold += model.last_cascade.forced_units
    summary = run_summary(model)
    term = summary["credit"]["miner_term_loan"]
    ead = term["exposure_at_default"]
    return {
        "rig_price_peak_to_trough": summary["price_peak_to_trough"]["ASIC"],
        "term_recovery": term["recovered"] / ead if ead else math.nan,
        "term_cash_recovery": summary["cash_recovered"]["miner_term_loan"] / ead if ead else math.nan,
        "miner_defaults": summary["defaults_by_type"]["miner"],
        "rigs_sold": sold,
        "rigs_held_by_lenders": float(model.ledger.lots.units.sum()),
        "lowest_price_to_fundamental": summary["price_to_fundamental_trough"],
    }


def mean_ci(values: Any) -> dict[str, float]:
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def run_sweep_file(stem: str, patch: dict[str, Any], out: Path) -> tuple[Any, list[str]]:
    """Plan and run one example sweep serially (resumable), with the scenario patch applied."""
    import pandas as pd

    from experiments.design import parse_experiment
    from experiments.named import base_scenario
    from experiments.sweep import RESULTS, SerialExecutor, prepare, run_sweep

    path = ROOT / "experiments" / "examples" / f"{stem}.toml"
    text = path.read_text()
    experiment = parse_experiment(text, str(path))
    scenario = base_scenario(experiment, path, patch)
    folder = out / stem
    sweep = prepare(experiment, text, scenario, folder, str(path.relative_to(ROOT)))
    outcome = run_sweep(sweep, SerialExecutor(), 1, progress=False, command=["scripts/buyers_as_they_are.py"])
    if outcome.failed:
        raise RuntimeError(f"{stem}: {len(outcome.failed)} run(s) failed, e.g. {outcome.failed[0]}")
    return pd.read_parquet(folder / RESULTS), list(experiment.parameters)


def summarise(runs: Any, by: list[str], metrics: list[str]) -> list[dict[str, Any]]:
    rows = []
    for key, group in runs.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, [k.item() if hasattr(k, "item") else k for k in key], strict=True))
        for metric in metrics:
            row[metric] = mean_ci(group[metric])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "buyers_as_they_are.json")
    parser.add_argument("--sweeps", type=Path, default=ROOT / "results" / "sweeps" / "buyers_as_they_are")
    args = parser.parse_args(argv)

    from model.metrics import run_summary
    from model.model import GPUCreditModel

    result: dict[str, Any] = {
        "miners_2022": {},
        "miners_2022_grid": [],
        "miners_2022_scan": [],
        "baseline": {},
    }
    for name, overrides in VARIANTS_2022.items():
        result["miners_2022"][name] = replay_2022(overrides)
        print(name, {k: round(v, 3) for k, v in result["miners_2022"][name].items()})
    for idle in ("own", "market"):
        for depth in (0.5, 1.0, 2.0):
            for power in (0.04, 0.05, 0.06):
                row = replay_2022(
                    {"secondary.idle_valuation": idle, "world.power.price_per_kwh": power},
                    buyer_depth_scale=depth,
                )
                result["miners_2022_grid"].append(
                    {"idle_valuation": idle, "depth": depth, "power": power, **row}
                )
    for idle in ("own", "market"):
        rows = [r for r in result["miners_2022_grid"] if r["idle_valuation"] == idle]
        for metric in ("rig_price_peak_to_trough", "term_recovery", "term_cash_recovery"):
            values = [r[metric] for r in rows]
            print(f"grid idle_valuation={idle} {metric}: {min(values):.3f} .. {max(values):.3f}")
    for volatility in SCAN_VOLATILITY:
        for cost in SCAN_FIXED_COST:
            row = replay_2022(
                {"world.idle_option_volatility": volatility, "world.power.hosting_per_kw_month": cost}
            )
            result["miners_2022_scan"].append({"volatility": volatility, "fixed_cost": cost, **row})
            print("scan", volatility, cost, {k: round(v, 3) for k, v in row.items()})

    metrics = ["defaults_total", "systemic_loss", "price_to_fundamental_trough", "share_failed"]
    for stem, patch in SWEEPS.items():
        runs, by = run_sweep_file(stem, patch, args.sweeps)
        result["baseline"][stem] = summarise(runs, by, metrics)
        for row in result["baseline"][stem]:
            print(stem, {k: (round(v["mean"], 4) if isinstance(v, dict) else v) for k, v in row.items()})
    result["amplification"] = {}
    for flag in (False, True):
        counts = {"on": 0, "off": 0, "lowest_mark": []}
        for seed in range(1, 31):
            for channel in (True, False):
                model = GPUCreditModel(seed=seed, months=60, price_channel=channel, buyers_as_they_are=flag)
                model.run()
                counts["on" if channel else "off"] += int(model.ledger.defaulted.sum())
                if channel:
                    counts["lowest_mark"].append(run_summary(model)["price_to_fundamental_trough"])
        counts["amplification"] = counts["on"] / counts["off"] if counts["off"] else math.nan
        counts["lowest_mark"] = mean_ci(counts["lowest_mark"])
        result["amplification"][str(flag)] = counts
        print("amplification flag", flag, counts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
