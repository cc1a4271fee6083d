"""Hardware buyers on the secondary market: hyperscalers, tier-2 clouds, labs, brokers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agents.balance_sheet import BalanceSheetAgent
from core.config import HardwareBuyerClass, Policy, SecondaryMarket
from core.secondary import BuyerBook, DeferredBuyerBook
from core.world import MarketWorld

UNLIMITED_GPUS = 1e12  # the buyer of last resort installs any volume its budget pays for
MAX_EXPECTED_DEFLATION = 0.99


TRAILING_MONTHS = 12  # adaptive buyers look at the rent change over the past year


@dataclass(frozen=True)
class BuyerTerms:
    """The buyers' fixed terms as arrays (rows = buyers, as in the book), read-only, worked out once per
    run (``BuyerMemory.terms``) instead of from every buyer's spec every month; the buyer of last resort's rows
    hold its fixed dispersion and capacity (its budget is the policy's)."""

    last_resort: np.ndarray
    budget: np.ndarray  # calm monthly budget (0 for the buyer of last resort)
    stress_budget_cut: np.ndarray
    capacity: np.ndarray
    dispersion: np.ndarray
    # regular buyers only (rows of ``~last_resort``)
    expected_deflation: np.ndarray
    stress_deflation_add: np.ndarray
    hurdle_rate: list[float]
    max_rack_kw: np.ndarray

    @classmethod
    def of(cls, buyers: list[HardwareBuyer]) -> BuyerTerms:
        specs = [buyer.spec for buyer in buyers]
        regular = [spec for spec in specs if spec is not None]

        def each(field: str, last_resort_value: float) -> np.ndarray:
            return np.array(
                [last_resort_value if spec is None else getattr(spec, field) for spec in specs], dtype=float
            )

        terms = cls(
            last_resort=np.array([spec is None for spec in specs], dtype=bool),
            budget=each("budget_per_month", 0.0),
            stress_budget_cut=each("stress_budget_cut", 0.0),
            capacity=each("capacity_gpus_per_month", UNLIMITED_GPUS),  # finite: inf x 0 is NaN
            dispersion=each("valuation_dispersion", 0.01),
            expected_deflation=np.array([spec.expected_deflation for spec in regular], dtype=float),
            stress_deflation_add=np.array([spec.stress_deflation_add for spec in regular], dtype=float),
            hurdle_rate=[spec.hurdle_rate for spec in regular],
            max_rack_kw=np.array([spec.max_rack_kw for spec in regular], dtype=float),
        )
        for value in vars(terms).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # shared by every month's book
        return terms


class BuyerMemory:
    """What buyers carry from one month to the next (rows = buyers, as in the book): the expected
    annual log growth of rent (adaptive expectations), the installation headroom left after last
    month's purchases, and the rents of the past year."""

    def __init__(self, buyers: list[HardwareBuyer], rent: float, secondary: SecondaryMarket) -> None:
        specs = [buyer.spec for buyer in buyers]
        self._terms = BuyerTerms.of(buyers)
        self._terms_of = list(buyers)
        self.expected_growth = np.array(
            [0.0 if spec is None else math.log(1.0 - spec.expected_deflation) for spec in specs]
        )
        capacity = np.array([0.0 if spec is None else spec.capacity_gpus_per_month for spec in specs])
        # a calm market has let every buyer build up its full headroom (1 month: none is carried)
        self.headroom = (secondary.capacity_buffer_months - 1.0) * capacity
        self.rents = [rent]

    def observe(self, world: MarketWorld, secondary: SecondaryMarket, last_book: BuyerBook | None) -> None:
        """Start of a month: adaptive expectations move toward the rent growth seen over the past year
        (``k`` = 12 months, fewer at the start of a run), ``g <- g + gain ((12 / k) ln(r_t / r_t-k) -
        g)``: Nerlove's adaptive expectations of the growth rate, fed with the trailing-year change
        that survey expectations extrapolate (Greenwood & Shleifer 2014); installation headroom is
        what last month's purchases left."""
        if secondary.expectations == "adaptive":
            self.rents = [*self.rents[-TRAILING_MONTHS:], world.rent_per_perf_hour]
            months = len(self.rents) - 1
            observed = 12.0 / months * math.log(self.rents[-1] / self.rents[0])
            self.expected_growth += secondary.expectation_gain * (observed - self.expected_growth)
        if last_book is not None:
            self.headroom = np.maximum(last_book.capacity, 0.0)

    def terms(self, buyers: list[HardwareBuyer]) -> BuyerTerms:
        """The fixed terms of ``buyers`` in their order, kept while they are held in that order."""
        if self._terms_of != buyers:  # (another order: a test of order independence)
            self._terms, self._terms_of = BuyerTerms.of(buyers), list(buyers)
        return self._terms


class HardwareBuyer(BalanceSheetAgent):
    """Buys GPUs it can host (rack power and cooling) at up to its valuation: the present value of the
    margins it expects at its own hurdle rate. In stress its budget shrinks and its expectations
    sour, so the buy side empties exactly when forced sellers arrive."""

    def __init__(self, model, index: int, name: str, spec: HardwareBuyerClass | None) -> None:
        super().__init__(model, index, name)
        self.spec = spec  # None: the policy's buyer of last resort

    @staticmethod
    def monthly_book(
        buyers: list[HardwareBuyer],
        world: MarketWorld,
        stress: bool,
        policy: Policy,
        fundamental: np.ndarray,
        secondary: SecondaryMarket | None = None,
        memory: BuyerMemory | None = None,
        distress: float = 0.0,
    ) -> BuyerBook:
        """Every buyer's demand parameters for this month (decided once, before any sale), given this
        month's fundamental value per GPU. Buyers that share a valuation (deflation view and hurdle
        rate) share one present value, and all of them are worked out together.

        With ``secondary`` (and ``memory``): adaptive buyers extrapolate the rent growth they expect
        now; with ``idle_valuation = "market"`` the months in which a buyer's own path says the unit
        would sit idle count the market's expected margin of restarting it (the fundamental's months,
        with the idling option), so an idle unit whose margin the market expects to turn positive is
        worth more than zero to a buyer too; budgets shrink by ``funding_sensitivity x distress`` (the
        industry distress share) and move with the month's common factor ``f`` as ``exp(b f - b^2 / 2)``
        (``budget_factor_loading``); and installation capacity is the headroom left, refilled by a
        month's capacity up to the buffer."""
        secondary = secondary or SecondaryMarket()
        gens = world.generations
        terms = memory.terms(buyers) if memory is not None else BuyerTerms.of(buyers)
        last_resort = terms.last_resort
        adaptive = secondary.expectations == "adaptive" and memory is not None
        calm_deflation = (  # (np.minimum / np.maximum: np.clip's Python wrapper costs as much again)
            np.minimum(
                np.maximum(-np.expm1(memory.expected_growth[~last_resort]), 0.0), MAX_EXPECTED_DEFLATION
            )
            if adaptive
            else terms.expected_deflation
        )
        deflation = np.minimum(
            calm_deflation + (terms.stress_deflation_add if stress else 0.0), MAX_EXPECTED_DEFLATION
        )
        keys = list(zip(deflation.tolist(), terms.hurdle_rate, strict=True))
        distinct = list(dict.fromkeys(keys))
        row_of = {key: row for row, key in enumerate(distinct)}
        valuation = np.empty((len(buyers), len(gens)))
        # the buyer of last resort: a fixed bid for any generation, any volume
        valuation[last_resort] = policy.buyer_of_last_resort_price * fundamental
        eligible = np.ones((len(buyers), len(gens)), dtype=bool)
        eligible[~last_resort] = (gens.rack_kw[None, :] <= terms.max_rack_kw[:, None]) & world.launched[
            None, :
        ]
        budget = np.where(
            last_resort,
            policy.buyer_of_last_resort_budget,
            terms.budget * (1.0 - terms.stress_budget_cut) if stress else terms.budget,
        )
        if secondary.funding_sensitivity > 0:  # natural buyers are financed like the sellers
            budget[~last_resort] *= 1.0 - secondary.funding_sensitivity * distress
        if secondary.budget_factor_loading > 0:  # budgets shrink in bad months of the common factor
            b = secondary.budget_factor_loading
            budget[~last_resort] *= math.exp(b * world.common_factor - 0.5 * b * b)
        capacity = terms.capacity.copy()  # the book's own: sales draw it down
        if memory is not None:
            refill = np.minimum(
                memory.headroom + capacity, secondary.capacity_buffer_months * capacity
            )  # 1 month: exactly this month's capacity
            capacity = np.where(last_resort, capacity, refill)
        month_budget = budget.copy()  # the book's own budget is drawn down by sales

        def work_out() -> tuple[np.ndarray, np.ndarray]:
            """The buyers' valuations (present values along their expected rent paths) and, from
            them, eligibility: worked out on the month's first sale (``DeferredBuyerBook``)."""
            if distinct:
                # months a buyer expects to idle a unit, valued as the fundamental values them (or not)
                idle = world.market_margins() if secondary.idle_valuation == "market" else None
                # months up to the longest remaining life: all ``present_value`` reads of a path
                months = int(world.remaining_life().max(initial=0))
                paths = np.array(
                    [world.extrapolated_rent_path(d, cache=not adaptive, months=months) for d, _ in distinct]
                )
                values = world.present_value(paths, [hurdle for _, hurdle in distinct], idle)
                valuation[~last_resort] = values[[row_of[key] for key in keys]]
            # a buyer whose month's budget does not pay for one unit of a generation at its own
            # valuation stays out of that generation's market (demand is in whole-unit budgets, not dust)
            return valuation, eligible & (month_budget[:, None] >= valuation)

        return DeferredBuyerBook(work_out, terms.dispersion, budget, capacity)
