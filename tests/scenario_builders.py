"""Small scenarios for the mechanism, invariant and reproducibility tests.

Every scenario starts from the committed baseline (so tests follow its schema) and changes only what a
test needs: an explicit hand-written market with deterministic world processes, or a generated market
with the knobs the property-based tests vary.
"""

from __future__ import annotations

from typing import Any

from core.config import apply_override, read_scenario_data
from experiments.validation.common import without_issue16_mechanisms

# World settings that make rent, rates and the regime deterministic, so expectations can be hand-computed.
CALM_WORLD: dict[str, Any] = {
    "world.base_rate_volatility": 0.0,
    "world.rent.shock_volatility": 0.0,
    "world.regime.stress_entry_per_month": 0.0,
    "world.regime.stress_exit_per_month": 0.0,
    "tenants.ig_default_per_month": 0.0,
    "tenants.subig_default_per_month": 0.0,
}


# The hand calculations of the mechanism tests were written before workouts had a cost and a deadline;
# explicit markets leave both out unless a test sets them (tests/test_credit_accounting.py does).
NO_WORKOUT: dict[str, Any] = {"cascade.workout_months": "none", "cascade.workout_cost_share": 0.0}


def baseline_world_data() -> dict[str, Any]:
    """The baseline's raw scenario without its history section and started in January 2025, the world the
    hand calculations of the tests are written for (the calibrated baseline starts from observed data)."""
    data = read_scenario_data("baseline")
    data.pop("history", None)
    data["world"]["start"] = "2025-01"
    for kind in ("miners", "neoclouds"):  # their first purchase months, all before this start
        data["generated"][kind]["purchase_spread_months"] = 0
    return without_issue16_mechanisms(data)


def with_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for dotted, value in overrides.items():
        apply_override(data, dotted, value)
    return data


def explicit_market(
    agents: list[dict[str, Any]],
    loans: list[dict[str, Any]] | None = None,
    hosting: list[dict[str, Any]] | None = None,
    overrides: dict[str, Any] | None = None,
    months: int = 12,
    guarantees: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The baseline's world, lenders and buyers around a hand-written network, in a calm world."""
    data = baseline_world_data()
    del data["generated"]
    data["explicit"] = {
        "agents": agents,
        "loans": loans or [],
        "hosting": hosting or [],
        "guarantees": guarantees or [],
    }
    data["months"] = months
    return with_overrides(data, {**CALM_WORLD, **NO_WORKOUT, **(overrides or {})})


def generated_market(
    miners: int,
    neoclouds: int,
    lenders: tuple[int, int, int, int],
    topology: str,
    concentration: float,
    rent_deflation: float,
    btc_volatility: float,
    months: int = 24,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The baseline with a generated network of the given size and shape."""
    data = baseline_world_data()
    banks, funds, trusts, bonds = lenders
    data["months"] = months
    return with_overrides(
        data,
        {
            "generated.miners.count": miners,
            "generated.neoclouds.count": neoclouds,
            "generated.banks": banks,
            "generated.credit_funds": funds,
            "generated.abs_trusts": trusts,
            "generated.bond_investors": bonds,
            "generated.topology": topology,
            "generated.lender_concentration": concentration,
            "world.rent.new_price_decline_per_year": rent_deflation,
            "world.btc.volatility_per_year": btc_volatility,
            **(overrides or {}),
        },
    )
