"""The run summary places its seed in the distribution over seeds (issue 19); the shipped reference file
matches the baseline configuration and today's model."""

from __future__ import annotations

import json

import numpy as np

from core.config import load_scenario
from experiments.design import replicate_seeds
from experiments.run_report import format_summary, run_command_summary
from experiments.seed_distribution import (
    MASTER_SEED,
    cached_reference,
    config_digest,
    outcome,
    reference_path,
    seed_distribution,
    seed_outcomes,
)
from model.metrics import run_summary
from model.model import GPUCreditModel


def test_the_baseline_reference_matches_the_config_and_the_model() -> None:
    """A stale reference (another config, or a model whose behaviour changed) fails here: rebuild it with
    ``python -m experiments.seed_distribution baseline``."""
    config = load_scenario("baseline")
    reference = cached_reference(config)
    assert reference is not None, f"{reference_path('baseline')} does not match the baseline config"
    assert len(reference["seeds"]) == 200
    first = reference["seeds"][:3]
    again = seed_outcomes(config, first)
    for name, values in again.items():
        assert values == reference["values"][name][:3], name
    # the digest ignores the seed only
    assert config_digest(load_scenario("baseline", seed=7)) == reference["config_digest"]
    assert config_digest(load_scenario("baseline", months=59)) != reference["config_digest"]


def test_the_summary_places_the_seed_among_seeds() -> None:
    """Without a matching reference the distribution is computed now; the numbers are those of the
    seeds run one by one."""
    model = GPUCreditModel("baseline", seed=16, months=12)
    model.run()
    summary = run_summary(model)
    dist = seed_distribution(model, summary)
    assert dist["source"] == "computed for this run" and dist["seeds"] == 40
    values = seed_outcomes(model.config, replicate_seeds(MASTER_SEED, 40))
    defaults = np.array(values["borrower_defaults"])
    m = dist["measures"]["borrower_defaults"]
    assert m["this_seed"] == outcome(summary)["borrower_defaults"]
    assert m["median"] == float(np.median(defaults))
    assert m["band_90"] == [float(q) for q in np.quantile(defaults, [0.05, 0.95])]
    assert m["share_of_seeds_at_or_below"] == float((defaults <= m["this_seed"]).mean())


def test_the_printed_summary_and_summary_json_carry_the_distribution() -> None:
    model = GPUCreditModel("baseline", months=60)
    model.run()
    summary = run_command_summary(model)
    assert summary["seed_distribution"]["source"] == "reference file baseline_seeds.json"
    text = format_summary(model, summary)
    assert "this seed among 200 seeds of the same configuration" in text
    assert "borrower defaults:" in text and "90 % band" in text
    json.dumps(summary, default=float)
