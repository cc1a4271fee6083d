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
        buyers: list[HardwareBuyer], world: MarketWorld, stress: bool, policy: Policy, fundamental: np.ndarray
    ) -> BuyerBook:
        """Every buyer's demand parameters for this month (decided once, before any sale), given this
        month's fundamental value per GPU. Buyers that share a valuation (deflation view and hurdle
        rate) share one present value, and all of them are worked out together."""
        gens = world.generations
        specs = [buyer.spec for buyer in buyers]
        last_resort = np.array([spec is None for spec in specs], dtype=bool)
        regular = [spec for spec in specs if spec is not None]
        keys = [
            (
                min(spec.expected_deflation + (spec.stress_deflation_add if stress else 0.0), 0.99),
                spec.hurdle_rate,
            )
            for spec in regular
        ]
        distinct = list(dict.fromkeys(keys))
        row_of = {key: row for row, key in enumerate(distinct)}
        valuation = np.empty((len(buyers), len(gens)))
        if distinct:
            values = np.array(
                [world.present_value(world.extrapolated_rent_path(d), hurdle) for d, hurdle in distinct]
            )
            valuation[~last_resort] = values[[row_of[key] for key in keys]]
        # the buyer of last resort: a fixed bid for any generation, any volume
        valuation[last_resort] = policy.buyer_of_last_resort_price * fundamental
        max_rack_kw = np.array([spec.max_rack_kw for spec in regular], dtype=float)
        eligible = np.ones((len(buyers), len(gens)), dtype=bool)
        eligible[~last_resort] = (gens.rack_kw[None, :] <= max_rack_kw[:, None]) & world.launched[None, :]

        def each(regular_value, last_resort_value) -> np.ndarray:
            return np.array(
                [last_resort_value if spec is None else regular_value(spec) for spec in specs], dtype=float
            )

        budget = each(
            lambda spec: spec.budget_per_month * (1.0 - spec.stress_budget_cut if stress else 1.0),
            policy.buyer_of_last_resort_budget,
        )
        # a buyer whose month's budget does not pay for one unit of a generation at its own valuation
        # stays out of that generation's market (demand is in whole-unit budgets, not dust)
        eligible &= budget[:, None] >= valuation
        return BuyerBook(
            valuation=valuation,
            dispersion=each(lambda spec: spec.valuation_dispersion, 0.01),
            eligible=eligible,
            budget=budget,
            # finite: inf x a zero budget share would be NaN
            capacity=each(lambda spec: spec.capacity_gpus_per_month, UNLIMITED_GPUS),
        )
