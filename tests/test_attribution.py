"""Counterfactual attribution (issue 19) on a three-borrower market worked out by hand.

The market is ``fire_sale_demo``'s frozen world (no rent trend or noise, no regime switch, tenants that
never default) with one credit fund lending 60 % of fundamental value to three neo-clouds:

- ``big`` holds 20,000 H100 and 20,000 H200 and is forced into default in month 1;
- ``small-1`` holds 2,000 H200, ``small-2`` 2,000 H100; ``small-2`` is forced into default in month 3.

With ``big``'s fire sale, 20,000 units of each generation meet a broker with $5M a month: both marks
fall to the scrap floor (30 % of fundamental), so both small loans are at 60 / 30 = 200 % LTV against
an 80 % covenant: both default in month 1, round 1. Without it (``big`` paid out at par and its GPUs
gone unsold), nothing moves until month 3, when ``small-2``'s own default sells H100s only; the H200
mark, and so ``small-1``'s LTV (60 %), does not move. So ``big``'s default caused one extra default
(``small-1``, month 1) and brought one forward (``small-2``, month 1 instead of month 3); the two small
defaults, in the same round, did nothing to each other.
"""

from __future__ import annotations

import numpy as np

from core.config import read_scenario_data
from model.attribution import counterfactual, counterfactual_attribution, default_months
from model.model import GPUCreditModel


def three_borrowers(h100_loan: float = 1.0, h200_loan: float = 1.0) -> dict:
    """The market above with loans of ``h100_loan`` / ``h200_loan`` USD per GPU."""
    data = read_scenario_data("fire_sale_demo")
    data["tenants"]["ig_default_per_month"] = 0.0
    data["tenants"]["subig_default_per_month"] = 0.0
    fleets = {
        "big": {"H100": 20000, "H200": 20000},
        "small-1": {"H200": 2000},
        "small-2": {"H100": 2000},
    }
    agents = [a for a in data["explicit"]["agents"] if a["id"] == "fund" or a["id"] in fleets]
    for agent in agents:
        if agent["id"] in fleets:
            agent["fleet"] = fleets[agent["id"]]
    data["explicit"]["agents"] = agents
    template = data["explicit"]["loans"][0]  # the fund's GPU-secured term loan, 80 % LTV covenant
    data["explicit"]["loans"] = [
        {
            **template,
            "debtor": name,
            "principal": fleet.get("H100", 0) * h100_loan + fleet.get("H200", 0) * h200_loan,
        }
        for name, fleet in fleets.items()
    ]
    data["shocks"] = [
        {"month": 1, "kind": "default_agent", "agent": "big"},
        {"month": 3, "kind": "default_agent", "agent": "small-2"},
    ]
    return data


def run_market() -> GPUCreditModel:
    probe = GPUCreditModel(three_borrowers())
    gens, value = probe.state.world.generations, probe.state.fundamental()
    model = GPUCreditModel(three_borrowers(0.6 * value[gens.index("H100")], 0.6 * value[gens.index("H200")]))
    model.run()
    return model


def test_three_borrower_counterfactual_attribution_by_hand() -> None:
    model = run_market()
    assert default_months(model) == {"big": 1, "small-1": 1, "small-2": 1}
    tree = model.metrics.defaults_table().set_index("name")
    assert tree.loc["small-1", "parent_name"] == "big" and tree.loc["small-2", "parent_name"] == "big"

    without_big = counterfactual(model, "big")
    assert default_months(without_big) == {"big": 1, "small-2": 3}
    attribution = counterfactual_attribution(model)
    assert attribution["borrower_defaults"] == 3 and attribution["attributed"] == 3
    big, small_1, small_2 = attribution["defaults"]
    assert big == {
        "name": "big",
        "month": 1,
        "extra_defaults": [{"name": "small-1", "month": 1}],
        "brought_forward": [{"name": "small-2", "month": 1, "month_without": 3}],
        "delayed": [],
        "only_without_it": [],
    }
    for other in (small_1, small_2):
        assert other["extra_defaults"] == other["brought_forward"] == other["delayed"] == []


def test_a_neutralised_default_sells_nothing_and_costs_its_creditors_nothing() -> None:
    model = run_market()
    without_big = counterfactual(model, "big")
    big = without_big.names.index("big")
    loans = without_big.ledger.loans
    mine = loans.debtor == big
    assert (
        np.array_equal(loans.recovered[mine], loans.exposure_at_default[mine])
        and loans.exposure_at_default[mine].sum() > 0
    )
    assert without_big.ledger.gpus[big].sum() == 0.0
    prices = without_big.metrics.generations_table().query("generation == 'H200'")
    assert (prices["secondary_price"] == prices["fundamental_value"]).all()  # no H200 ever sold


def test_the_run_outputs_carry_the_attribution(tmp_path) -> None:
    """summary.json holds the attribution, the cause tree (defaults.parquet) its counts, the printed
    summary its months."""
    import json

    import pandas as pd

    from experiments.run_report import format_summary, write_run_outputs

    model = run_market()
    write_run_outputs(model, tmp_path, command=["test"], figures=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counterfactual_attribution"]["defaults"][0]["brought_forward"] == [
        {"name": "small-2", "month": 1, "month_without": 3}
    ]
    tree = pd.read_parquet(tmp_path / "defaults.parquet").set_index("name")
    assert tree["extra_defaults"].to_dict() == {"big": 1.0, "small-1": 0.0, "small-2": 0.0}
    assert tree["brought_forward"].to_dict() == {"big": 1.0, "small-1": 0.0, "small-2": 0.0}
    text = format_summary(model, summary)
    assert "big (month 1): 1 extra default(s) (small-1 m1); 1 brought forward (small-2 m1 not m3)" in text
