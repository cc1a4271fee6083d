"""Hardware buyers on the secondary market: hyperscalers, tier-2 clouds, labs, brokers."""

from __future__ import annotations

import numpy as np

from agents.balance_sheet import BalanceSheetAgent
from model.config import HardwareBuyerClass, Policy
from model.secondary import BuyerBook
from model.world import MarketWorld

UNLIMITED_GPUS = 1e12  # the buyer of last resort installs any volume its budget pays for


class HardwareBuyer(BalanceSheetAgent):
    """Buys GPUs it can host (rack power and cooling) at up to its valuation: the present value of the
    margins it expects at its own hurdle rate. In stress its budget shrinks and its expectations
    sour, so the buy side empties exactly when forced sellers arrive."""

    def __init__(self, model, index: int, name: str, spec: HardwareBuyerClass | None) -> None:
        super().__init__(model, index, name)
        self.spec = spec  # None: the policy's buyer of last resort

    @staticmethod
    def monthly_book(
        buyers: list[HardwareBuyer], world: MarketWorld, stress: bool, policy: Policy
    ) -> BuyerBook:
        """Every buyer's demand parameters for this month (decided once, before any sale)."""
        gens = world.generations
        fundamental = world.fundamental_value()
        valuation, dispersion, eligible, budget, capacity = [], [], [], [], []
        cache: dict[tuple[float, float], np.ndarray] = {}
        for buyer in buyers:
            spec = buyer.spec
            if spec is None:  # buyer of last resort: a fixed bid for any generation, any volume
                valuation.append(policy.buyer_of_last_resort_price * fundamental)
                dispersion.append(0.01)
                eligible.append(np.ones(len(gens), dtype=bool))
                budget.append(policy.buyer_of_last_resort_budget)
                capacity.append(UNLIMITED_GPUS)  # finite: inf x a zero budget share would be NaN
                continue
            deflation = min(spec.expected_deflation + (spec.stress_deflation_add if stress else 0.0), 0.99)
            key = (deflation, spec.hurdle_rate)
            if key not in cache:
                cache[key] = world.present_value(world.extrapolated_rent_path(deflation), spec.hurdle_rate)
            valuation.append(cache[key])
            dispersion.append(spec.valuation_dispersion)
            eligible.append((gens.rack_kw <= spec.max_rack_kw) & world.launched)
            budget.append(spec.budget_per_month * (1.0 - spec.stress_budget_cut if stress else 1.0))
            capacity.append(spec.capacity_gpus_per_month)
        return BuyerBook(
            valuation=np.array(valuation).reshape(len(buyers), len(gens)),
            dispersion=np.array(dispersion),
            eligible=np.array(eligible).reshape(len(buyers), len(gens)),
            budget=np.array(budget, dtype=float),
            capacity=np.array(capacity, dtype=float),
        )
