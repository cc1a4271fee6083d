"""The named experiments (issue 6): the model extensions they need, each experiment at a tiny size with
its figure and table, and the qualitative findings that must hold within noise."""

from __future__ import annotations

import numpy as np
import pytest

from model.config import ConfigError, load_scenario
from model.metrics import run_summary
from model.model import GPUCreditModel

# --- the exogenous BTC and rent paths (historical replays) -------------------------------------------


def test_btc_and_rent_paths_replace_the_random_processes_and_default_off():
    btc_path = [90000.0, 45000.0, 30000.0]
    rent_path = [2.0, 1.5]
    m = GPUCreditModel(
        "baseline",
        seed=3,
        months=5,
        overrides={"world.btc.path": btc_path, "world.rent.path": rent_path},
    )
    free = GPUCreditModel("baseline", seed=3, months=5)
    m.run()
    free.run()
    steps, free_steps = m.metrics.steps_table(), free.metrics.steps_table()
    assert steps["btc_price"].tolist()[1:4] == btc_path
    assert steps["rent_per_h100_hour"].tolist()[1:3] == rent_path
    # after the path ends the random process continues from the last recorded level
    assert steps["btc_price"].iloc[4] != btc_path[-1]
    assert steps["rent_per_h100_hour"].iloc[3] != rent_path[-1]
    # the paths do not use or shift the random stream: the base rate draws are identical
    assert steps["base_rate"].tolist() == free_steps["base_rate"].tolist()
    # the default (no path) is the random process
    assert free_steps["btc_price"].iloc[1] != btc_path[0]
    assert load_scenario("baseline").world.btc.path == []


def test_a_bad_path_is_one_clear_message():
    with pytest.raises(ConfigError, match=r"world\.btc\.path\.1"):
        load_scenario("baseline", {"world.btc.path": [1.0, -5.0]})


def test_new_summary_measures_are_consistent():
    m = GPUCreditModel("baseline", seed=5, months=24)
    m.run()
    s = run_summary(m)
    cells = s["credit"]
    defaulted_loans = sum(c["defaulted"] for c in cells.values())
    assert (defaulted_loans > 0) == (s["defaults_by_type"]["miner"] + s["defaults_by_type"]["neocloud"] > 0)
    for c in cells.values():
        assert 0 <= c["defaulted"] <= c["loans"]
        assert 0.0 <= c["recovered"] <= c["written_off"] + 1e-6
    assert 0.0 <= s["dscr_breach_probability"] <= 1.0
    losses = sum(s["lender_losses_by_type"].values())
    assert s["systemic_loss"] == pytest.approx(losses / m.metrics.initial_lender_equity)
    steps = m.metrics.steps_table()
    assert steps["fleet_value_index"].iloc[0] == pytest.approx(1.0)
    unpaid = steps["gpu_principal_unpaid_share"].to_numpy()
    assert unpaid[0] == pytest.approx(1.0) and np.all(np.diff(unpaid) <= 1e-12)  # repayments only add up


def test_buyer_aliases_scale_budgets_capacity_and_cap_racks():
    from model.model import _resolve_aliases

    base = load_scenario("baseline")
    o = _resolve_aliases("baseline", {"buyer_depth_scale": 2.0, "buyer_rack_kw_cap": 60})
    for b in base.buyers:
        assert o[f"buyers.{b.name}.budget_per_month"] == 2.0 * b.budget_per_month
        assert o[f"buyers.{b.name}.capacity_gpus_per_month"] == 2.0 * b.capacity_gpus_per_month
        assert o[f"buyers.{b.name}.max_rack_kw"] == min(b.max_rack_kw, 60)
