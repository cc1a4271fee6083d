"""The market's state shared by the mechanisms (operations, cascade), without the Mesa model itself."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import Scenario
from core.ledger import LENDER_KINDS, LTV_BASES, Kind, Ledger
from core.secondary import Marks
from core.streams import Streams
from core.world import MarketWorld


@dataclass
class MarketState:
    scenario: Scenario
    ledger: Ledger
    world: MarketWorld
    marks: Marks
    streams: Streams
    lender_params: dict[str, np.ndarray]
    in_breach: np.ndarray
    redeeming: np.ndarray
    last_driver: np.ndarray  # per generation: the borrower whose fire sale last set the mark
    dscr_tested_month: int = -1  # DSCR covenants are tested once a month (model.cascade)
    # counterfactual runs (model.attribution): borrowers whose default makes no forced sale and costs
    # their creditors nothing (None: every default is resolved as usual)
    neutralised: np.ndarray | None = None
    facility_loan: np.ndarray | None = None  # lent by the last-resort facility (lend mode), per agent
    facility_budget: float = 0.0  # what the facility can still lend this month
    appraised_ratio: np.ndarray | None = None  # marks at this month's appraisal (lender_disposal 'choice')

    def appraise(self) -> None:
        """Start of a month: lenders appraise repossessed GPUs at the generation's mark (orderly value
        = mark x fundamental value); their sale reserves hold for the month, so a channel's haircut
        limits how far one month's sales can push the price."""
        self.appraised_ratio = self.marks.ratio.copy()

    def open_last_resort_facility(self) -> None:
        """Start of a month: a lending facility of last resort (``policy.buyer_of_last_resort_mode =
        'lend'``) has its monthly budget to lend again."""
        policy = self.scenario.policy
        if policy.buyer_of_last_resort_mode != "lend" or policy.buyer_of_last_resort_budget <= 0:
            return
        self.facility_budget = policy.buyer_of_last_resort_budget
        if self.facility_loan is None:
            self.facility_loan = np.zeros(self.ledger.n_agents)

    def industry_distress(self) -> float:
        """The share of borrowers (miners and neo-clouds) in covenant breach or defaulted within the last
        ``secondary.funding_memory_months``: the funding indicator of the industry's natural buyers,
        who are financed like the sellers and stressed when the sales come (Shleifer & Vishny 1992)."""
        led = self.ledger
        borrowers = self.borrower_mask()
        if not borrowers.any():
            return 0.0
        memory = self.scenario.secondary.funding_memory_months
        recent = led.defaulted & (self.world.month - led.default_month < memory)
        return float((self.in_breach | recent)[borrowers].mean())

    @property
    def markets_open(self) -> bool:
        """Borrowers can raise equity and bonds refinance outside the stress regime (or if allowed)."""
        return (not self.world.stress) or self.scenario.cascade.markets_open_in_stress

    def fundamental(self) -> np.ndarray:
        return self._fundamental

    def refresh_fundamental(self) -> None:
        """Recompute the fundamental value per GPU (once a month, and after a launch shock): of a unit
        with the mean remaining life of the generation's units in the market (the generation's
        reference, at which it trades and is marked), and of each holder's units with their own life."""
        world = self.world
        world.generations.reference_end = self.mean_end_of_life()
        table = world.market_values_by_life(self.scenario.world.valuation_discount_rate)
        columns = np.arange(len(world.generations))
        self._fundamental = table[world.remaining_life().astype(np.int64), columns]
        life = np.minimum(
            np.maximum(np.round(self.ledger.end_of_life - world.month), 0.0), table.shape[0] - 1
        )
        self._unit_value = table[life.astype(np.int64), columns[None, :]]

    def unit_values(self) -> np.ndarray:
        """Fundamental value of one unit of each generation held by each agent ([agents, generations]):
        its units' own remaining physical life, counted from their purchase."""
        return self._unit_value

    def value_at_mark(self, agents: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Each agent's GPUs (of ``agents``) at the secondary mark: their own fundamental value x the
        generation's mark."""
        return (self.ledger.gpus[agents] * self._unit_value[agents]) @ self.marks.ratio

    def lot_values_at_mark(self) -> np.ndarray:
        """Each repossessed lot at the mark; a lot keeps the remaining life of the fleet it came from."""
        lots = self.ledger.lots
        own = self._unit_value[lots.source, lots.generation]
        return lots.units * own * self.marks.ratio[lots.generation]

    def mean_end_of_life(self) -> np.ndarray:
        """Units-weighted mean end of physical life of each generation's units in the market (fleets,
        buyers' installations, repossessed lots); for a generation nobody holds, the reference so far.
        One price per generation is a simplification: vintages of a generation trade alike."""
        led, gens = self.ledger, self.world.generations
        held = led.gpus > 0
        units = led.gpus.sum(axis=0)
        weighted = np.where(held, led.gpus * np.where(held, led.end_of_life, 0.0), 0.0).sum(axis=0)
        lots = led.lots
        if len(lots):
            units = units + np.bincount(lots.generation, weights=lots.units, minlength=led.n_generations)
            lot_end = led.end_of_life[lots.source, lots.generation]
            weighted = weighted + np.bincount(
                lots.generation, weights=lots.units * lot_end, minlength=led.n_generations
            )
        return np.divide(weighted, units, out=gens.reference_end.copy(), where=units > 0)

    def collateral_value(self, marks: np.ndarray | None = None) -> np.ndarray:
        """Each agent's GPUs as collateral: at the secondary mark (or at ``marks``, e.g. this month's
        appraisal), or with the price channel off at the fundamental value, each unit with its own
        remaining life; less the policy haircut by the units' age since their purchase."""
        led, world = self.ledger, self.world
        if not self.scenario.cascade.price_channel:
            ratio = np.ones(len(world.generations))
        else:
            ratio = self.marks.ratio if marks is None else marks
        per_unit = self._unit_value * ratio[None, :]
        rate = self.scenario.policy.haircut_per_year_of_age
        if rate > 0:
            purchase = led.end_of_life - world.generations.life_months[None, :]
            age_years = np.maximum(world.month - purchase, 0.0) / 12.0
            per_unit = per_unit * (1.0 - np.clip(rate * age_years, 0.0, 1.0))
        return (led.gpus * per_unit).sum(axis=1)

    def contract_value(self, in_force: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """What each fleet's contracts in force add to its collateral: the contracted rent above today's
        spot rent for the contract's remaining months, discounted at the valuation rate (a contract
        below spot adds nothing; the GPUs themselves are valued at the collateral price). Lenders such
        as CoreWeave's DDTL take the contracts first and the GPUs second (docs/calibration.md).
        ``in_force``: ``_contracts_in_force()`` just worked out, if the caller has it."""
        from model.network import contract_revenue_per_gpu

        led, world = self.ledger, self.world
        contracted, annuity = self._contracts_in_force() if in_force is None else in_force
        if not contracted.any():
            return np.zeros(led.n_agents)
        premium = np.maximum(
            contract_revenue_per_gpu(world, led.contract_rent) - world.revenue_per_gpu()[None, :], 0.0
        )
        return contracted * annuity * (led.gpus * premium).sum(axis=1)

    def _contracts_in_force(self) -> tuple[np.ndarray, np.ndarray]:
        """Each fleet's share under a contract in force and the contract's annuity factor: the value
        today of one dollar a month over its remaining months, at the valuation rate."""
        from agents.neocloud import NeoCloud

        led, world = self.ledger, self.world
        contracted = NeoCloud.contract_in_force(
            world.month, led.contract_end, led.tenant_alive, led.contract_share
        )
        if not contracted.any():
            return contracted, np.zeros(led.n_agents)
        months_left = np.maximum(led.contract_end - world.month, 0)
        monthly = (1.0 + self.scenario.world.valuation_discount_rate) ** (1.0 / 12.0) - 1.0
        annuity = (1.0 - (1.0 + monthly) ** (-months_left)) / monthly
        return contracted, annuity

    def ltv_collateral(self) -> np.ndarray:
        """What each borrower's LTV covenant values, by its ``ltv_basis`` (``covenants`` of issue 16 part
        3): ``mark``, the GPUs at the collateral price plus the contracts above spot (the calibrated
        model); ``olv``, the appraised orderly-liquidation value, ``secondary.orderly_share`` x the GPUs
        at this month's appraisal (an appraisal is not redone within the month); ``borrowing_base``, a
        contracted-cash-flow borrowing base as in CoreWeave's DDTLs: the present value of the contracted
        revenue of the contracts in force (rent x contracted units over the remaining months, at the
        valuation rate) plus the GPUs not under contract at the collateral price."""
        from model.network import contract_revenue_per_gpu

        led = self.ledger
        at_mark = self.collateral_value()
        in_force = self._contracts_in_force()  # once for both bases that read the contracts
        basis = led.ltv_basis
        if not basis.any():
            return at_mark + self.contract_value(in_force)
        value = np.where(basis == LTV_BASES.index("mark"), at_mark + self.contract_value(in_force), 0.0)
        olv = basis == LTV_BASES.index("olv")
        if olv.any():
            appraised = self.collateral_value(
                self.marks.ratio if self.appraised_ratio is None else self.appraised_ratio
            )
            value = np.where(olv, self.scenario.secondary.orderly_share * appraised, value)
        base = basis == LTV_BASES.index("borrowing_base")
        if base.any():
            contracted, annuity = in_force
            revenue = (led.gpus * contract_revenue_per_gpu(self.world, led.contract_rent)).sum(axis=1)
            value = np.where(base, contracted * annuity * revenue + (1.0 - contracted) * at_mark, value)
        return value

    def mark_price(self) -> np.ndarray:
        return self._fundamental * self.marks.ratio

    def lender_equity(self, assets: np.ndarray | None = None) -> np.ndarray:
        """Equity of every agent seen as a lender: cash, performing loans, repossessed stock at the mark
        and outside assets, less what it owes (outside liabilities and loans from other lenders).
        ``assets``: the ``lender_assets()`` just worked out, if the caller has them."""
        return self._lender_equity(self.lender_assets() if assets is None else assets)

    def _lender_equity(self, assets: np.ndarray) -> np.ndarray:
        led = self.ledger
        return led.cached("lender_equity", lambda: assets - led.external_liabilities - led.debt())

    def lender_assets(self) -> np.ndarray:
        return self.ledger.cached("lender_assets", self._lender_assets)

    def _lender_assets(self) -> np.ndarray:
        led = self.ledger
        assets = led.cash + led.loan_assets()
        if len(led.lots):  # no stock adds 0.0, which changes no sum of loans (they start at 0.0, not -0.0)
            assets = assets + self._inventory_value()
        return assets + led.external_assets

    def _inventory_value(self) -> np.ndarray:
        """What each lender's repossessed stock is worth to it (``repossessed_value``, summed by the
        lender holding each loan's lots)."""
        led = self.ledger
        loan, value = self.repossessed_value()
        return np.bincount(led.loans.creditor[loan], weights=value, minlength=led.n_agents)

    def repossessed_value(self) -> tuple[np.ndarray, np.ndarray]:
        """The loans that hold repossessed GPUs (ascending ids) and, for each, those GPUs at the mark up
        to the loan's unrecovered claim: sale proceeds above the claim go to the borrower's owners (ODD
        7.5), so stock worth more is not the lender's. Only the lots' loans are visited, not the book."""
        led = self.ledger
        loans, lots = led.loans, led.lots
        loan, lot_of = lots.by_loan()
        held = np.bincount(lot_of, weights=self.lot_values_at_mark(), minlength=loan.size)
        return loan, np.minimum(
            held, np.maximum(loans.exposure_at_default[loan] - loans.recovered[loan], 0.0)
        )

    def capital_ratio(self) -> np.ndarray:
        assets = self.lender_assets()
        return np.divide(self.lender_equity(assets), assets, out=np.zeros_like(assets), where=assets > 0)

    def lender_mask(self) -> np.ndarray:
        return self.ledger.of_kind(*LENDER_KINDS)

    def borrower_mask(self) -> np.ndarray:
        return self.ledger.of_kind(Kind.MINER, Kind.NEOCLOUD)
