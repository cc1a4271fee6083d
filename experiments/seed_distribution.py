"""Where one run's seed sits among seeds: its defaults and losses against the median and the 90 % band
over many seeds of the same configuration (issue 19: one path is not the distribution).

The seeds are ``replicate_seeds(MASTER_SEED, n)`` (``experiments.design``), whatever the run's own
seed, so every configuration is compared with the same seeds. For a configuration whose digest (its
canonical config without the seed) matches a reference file in ``experiments/reference/`` the values
are read from it (``REFERENCE_SEEDS`` seeds); otherwise they are computed now over ``QUICK_SEEDS``
seeds. Rebuild a reference after a change of behaviour (the golden tests say when):
``python -m experiments.seed_distribution baseline``; ``tests/test_seed_distribution.py`` re-runs a few
of its seeds, so a stale file fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import Scenario, canonical_dict, load_scenario
from experiments.design import replicate_seeds
from model.manifest import atomic_write_json

if TYPE_CHECKING:
    from model.model import GPUCreditModel

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
MASTER_SEED = 19  # the seeds every configuration is compared on
REFERENCE_SEEDS = 200  # seeds in a shipped reference file (~25 s for the 60-month baseline)
QUICK_SEEDS = 40  # seeds run at once for a configuration without a reference file
BAND = (0.05, 0.95)  # the 90 % band
METRICS = {  # name: (label, format)
    "borrower_defaults": ("borrower defaults", "{:.0f}"),
    "lender_loss_busd": ("lender losses, USD bn", "{:.3g}"),
    "share_failed": ("share of borrowers and lenders failed", "{:.1%}"),
}


def config_digest(config: Scenario) -> str:
    """The configuration without its seed: runs that differ only by seed share it."""
    data = canonical_dict(config)
    data.pop("seed", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def outcome(summary: dict[str, Any]) -> dict[str, float]:
    """The measures placed in the distribution, from a run summary (``model.metrics.run_summary``)."""
    by_type = summary["defaults_by_type"]
    return {
        "borrower_defaults": float(by_type.get("miner", 0) + by_type.get("neocloud", 0)),
        "lender_loss_busd": round(float(sum(summary["lender_losses_by_type"].values())) / 1e9, 6) + 0.0,
        "share_failed": float(summary["share_failed"]),
    }


def seed_outcomes(config: Scenario, seeds: list[int]) -> dict[str, list[float]]:
    """Each measure on each seed of ``config``."""
    from model.metrics import run_summary
    from model.model import GPUCreditModel

    values: dict[str, list[float]] = {name: [] for name in METRICS}
    for seed in seeds:
        model = GPUCreditModel(config, seed=seed)
        model.run()
        for name, value in outcome(run_summary(model)).items():
            values[name].append(value)
    return values


def reference_path(name: str) -> Path:
    return REFERENCE_DIR / f"{name}_seeds.json"


def cached_reference(config: Scenario) -> dict[str, Any] | None:
    """The shipped reference for this configuration, if its digest matches."""
    path = reference_path(config.name)
    if not path.exists():
        return None
    reference = json.loads(path.read_text())
    return reference if reference["config_digest"] == config_digest(config) else None


def seed_distribution(model: GPUCreditModel, summary: dict[str, Any]) -> dict[str, Any]:
    """This run's measures against the median and 90 % band over seeds (cached or computed now)."""
    config = model.config
    reference = cached_reference(config)
    if reference is not None:
        values, source = reference["values"], f"reference file {reference_path(config.name).name}"
        n = len(reference["seeds"])
    else:
        n = QUICK_SEEDS
        values, source = seed_outcomes(config, replicate_seeds(MASTER_SEED, n)), "computed for this run"
    this = outcome(summary)
    measures = {}
    for name, column in values.items():
        arr = np.asarray(column, dtype=float)
        low, high = np.quantile(arr, BAND)
        measures[name] = {
            "this_seed": this[name],
            "median": float(np.median(arr)),
            "band_90": [float(low), float(high)],
            "share_of_seeds_at_or_below": float((arr <= this[name]).mean()),
            "share_of_seeds_above_zero": float((arr > 0).mean()),
        }
    return {"seeds": n, "master_seed": MASTER_SEED, "source": source, "measures": measures}


def format_distribution(dist: dict[str, Any]) -> list[str]:
    """The summary's lines: this seed against the median and 90 % band."""
    lines = [f"this seed among {dist['seeds']} seeds of the same configuration ({dist['source']}):"]
    for name, m in dist["measures"].items():
        label, shown = METRICS[name][0], METRICS[name][1].format
        lines.append(
            f"  {label}: {shown(m['this_seed'])} (median {shown(m['median'])}, 90 % band "
            f"{shown(m['band_90'][0])} to {shown(m['band_90'][1])}; "
            f"{m['share_of_seeds_at_or_below']:.0%} of seeds at or below, {m['share_of_seeds_above_zero']:.0%} above zero)"
        )
    return lines


def write_reference(scenario: str, n: int = REFERENCE_SEEDS) -> Path:
    """Run the configuration on ``n`` seeds and write its reference file."""
    config = load_scenario(scenario)
    seeds = replicate_seeds(MASTER_SEED, n)
    path = reference_path(config.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        path,
        {
            "scenario": config.name,
            "config_digest": config_digest(config),
            "months": config.months,
            "master_seed": MASTER_SEED,
            "seeds": seeds,
            "values": seed_outcomes(config, seeds),
        },
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a scenario's seed-distribution reference file.")
    parser.add_argument("scenario", help="scenario name (experiments/scenarios/NAME.toml)")
    parser.add_argument("--seeds", type=int, default=REFERENCE_SEEDS)
    args = parser.parse_args(argv)
    print(f"wrote {write_reference(args.scenario, args.seeds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
