"""The Mesa model of credit contagion in AI compute infrastructure.

GPU operators (crypto miners and neo-clouds) finance fast-deflating GPUs with long, rigid debt. One
default forces a fire sale into a thin secondary market; every lender re-marks its GPU collateral to
that price; covenants break; more borrowers default. Miners add BTC as a second, correlated leverage.
The design brief is ``DESIGN.md`` (section 6 is the step below); the seed article is in ``shared/seeds``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mesa
import numpy as np

from agents import ABSTrust, Bank, BondInvestors, CreditFund, HardwareBuyer, Lender, Miner, NeoCloud
from agents.hardware_buyer import BuyerMemory
from core.config import ConfigError, Scenario, load_scenario
from core.ledger import Cause, Kind
from core.secondary import BuyerBook, Marks
from core.streams import Streams
from core.world import MarketWorld
from model.cascade import CascadeReport, Failures, run_cascade
from model.metrics import MetricsRecorder
from model.network import build_market
from model.operations import (
    earn,
    operate_repossessed,
    pay_debt_service,
    pay_out_lender_earnings,
    pay_out_surplus,
    pay_redemptions,
    retire_end_of_life,
)
from model.state import MarketState

AGENT_CLASS = {
    Kind.MINER: Miner,
    Kind.NEOCLOUD: NeoCloud,
    Kind.BANK: Bank,
    Kind.CREDIT_FUND: CreditFund,
    Kind.ABS_TRUST: ABSTrust,
    Kind.BOND_INVESTORS: BondInvestors,
}

# Short names for the parameters that matter most (sliders, batch_run, sweeps) -> dotted paths.
PARAMETER_ALIASES: dict[str, str] = {
    "rent_deflation": "world.rent.new_price_decline_per_year",  # the anchor's (price-performance) fall
    "rent_volatility": "world.rent.shock_volatility",
    "btc_volatility": "world.btc.volatility_per_year",
    "stress_correlation": "world.btc.correlation_stress",
    "buyer_budget_scale": "buyer_budget_scale",
    "buyer_depth_scale": "buyer_depth_scale",  # budgets and installation capacity together
    "buyer_rack_kw_cap": "buyer_rack_kw_cap",  # no buyer's facilities take racks denser than this (kW)
    "ltv_covenant": "ltv_covenant",
    "loan_tenor_months": "loan_tenor_months",
    "price_channel": "cascade.price_channel",
    "buyers_as_they_are": "buyers_as_they_are",  # True: BUYERS_AS_THEY_ARE (issue 16 part 2), all at once
}

# The buy side and lenders' disposal "as they are" (docs/ODD.md 7.5; docs/calibration.md section 15a):
# assumptions to be calibrated, not posterior values. ``world.idle_option_volatility`` is added from the
# scenario (``_idle_option_volatility``).
BUYERS_AS_THEY_ARE: dict[str, Any] = {
    "secondary.expectations": "adaptive",
    "secondary.idle_valuation": "market",
    "secondary.expectation_gain": 0.1,
    "secondary.funding_sensitivity": 1.0,
    "secondary.capacity_buffer_months": 3.0,
    "secondary.lender_disposal": "choice",
    "secondary.operators": ["credit_fund"],
    "secondary.settle_share": 0.5,
}
BTC_MONTHLY_VOLATILITY = 0.15  # realised BTC volatility 40-55 %/yr (calibration-facts 4) / sqrt(12)


def _idle_option_volatility(scenario: Scenario) -> float:
    """The rent uncertainty an owner's idling option is valued against: the rent process's monthly
    shock size, or where the scenario has none (a replay of observed paths, as ``miners_2022``, whose
    'rent' is a rig's mining revenue) BTC's monthly volatility."""
    shock = scenario.world.rent.shock_volatility
    return shock if shock > 0 else BTC_MONTHLY_VOLATILITY


def _resolve_aliases(scenario: Scenario | str | Path | dict, params: dict[str, Any]) -> dict[str, Any]:
    """Turn short parameter names into dotted overrides; some fan out to every borrower/buyer class."""
    overrides: dict[str, Any] = {}
    for key, value in params.items():
        if key not in PARAMETER_ALIASES:
            raise ConfigError(
                f"unknown model parameter '{key}' (allowed: {sorted(PARAMETER_ALIASES)}, or overrides=)"
            )
        path = PARAMETER_ALIASES[key]
        if path == "buyers_as_they_are":
            if not isinstance(value, bool | np.bool_):
                raise ConfigError(f"buyers_as_they_are must be true or false, got {value!r}")
            if value:
                base = load_scenario(scenario) if not isinstance(scenario, Scenario) else scenario
                overrides.update(BUYERS_AS_THEY_ARE)
                overrides["world.idle_option_volatility"] = _idle_option_volatility(base)
        elif path in ("buyer_budget_scale", "buyer_depth_scale", "buyer_rack_kw_cap"):
            base = load_scenario(scenario) if not isinstance(scenario, Scenario) else scenario
            for buyer in base.buyers:
                at = f"buyers.{buyer.name}"
                if path == "buyer_rack_kw_cap":
                    overrides[f"{at}.max_rack_kw"] = min(buyer.max_rack_kw, float(value))
                    continue
                overrides[f"{at}.budget_per_month"] = buyer.budget_per_month * float(value)
                if path == "buyer_depth_scale":
                    overrides[f"{at}.capacity_gpus_per_month"] = buyer.capacity_gpus_per_month * float(value)
        elif path in ("ltv_covenant", "loan_tenor_months"):
            field = "ltv_max" if path == "ltv_covenant" else "loan_tenor_months"
            for cls in ("miners", "neoclouds"):
                overrides[f"generated.{cls}.{field}"] = value
        else:
            overrides[path] = value
    return overrides


class GPUCreditModel(mesa.Model):
    """Miners, neo-clouds, lenders and hardware buyers on a lending network (see module docstring).

    Args:
        scenario: a scenario name (``experiments/scenarios/NAME.toml``), a path, a dict, or a Scenario.
        seed: the run's seed (default: the scenario's); all randomness flows from it, one stream per
            subsystem (``core.streams``).
        months: horizon (default: the scenario's).
        overrides: dotted-path overrides, e.g. ``{"world.rent.shock_volatility": 0.1}``.
        neutralise: names of borrowers whose default, if it comes, makes no forced sale and costs
            their creditors nothing (counterfactual runs of ``model.attribution``).
        **params: short names for the main parameters (see ``PARAMETER_ALIASES``).
    """

    def __init__(
        self,
        scenario: Scenario | str | Path | dict = "baseline",
        seed: int | str | None = None,
        months: int | None = None,
        overrides: dict[str, Any] | None = None,
        rng: Any = None,
        neutralise: tuple[str, ...] = (),
        **params: Any,
    ) -> None:
        seed = rng if seed is None and isinstance(rng, int | np.integer) else seed
        seed = (
            int(seed) if seed is not None and str(seed).strip() != "" else None
        )  # the visualiser sends text
        all_overrides = {**_resolve_aliases(scenario, params), **(overrides or {})}
        if isinstance(scenario, Scenario):
            data = scenario.model_dump(mode="json")
            self.config = load_scenario(data, all_overrides, seed=seed, months=months)
        else:
            self.config = load_scenario(scenario, all_overrides, seed=seed, months=months)
        self.streams = Streams(self.config.seed)
        # Mesa's own generators (model.rng, model.random) come from a stream of their own
        super().__init__(rng=int(self.streams.seed_of("mesa").generate_state(1)[0]))
        self.months = self.config.months
        world = MarketWorld(self.config.world, self.streams)
        market = build_market(self.config, world, self.streams)
        self.ledger = market.ledger
        self.ledger.fix_kinds()
        self._topology = market.topology  # the graph is built on first use of ``self.graph``
        self.names = market.names
        self.state = MarketState(
            scenario=self.config,
            ledger=self.ledger,
            world=world,
            marks=Marks(len(world.generations), self.config.cascade.mark_recovery_half_life_months),
            streams=self.streams,
            lender_params=Lender.behaviour_arrays(self.ledger.kind, self.config.lenders),
            in_breach=np.zeros(self.ledger.n_agents, dtype=bool),
            redeeming=np.zeros(self.ledger.n_agents, dtype=bool),
            last_driver=np.full(len(world.generations), -1, dtype=np.int64),
        )
        if neutralise:  # a counterfactual run (model.attribution)
            self.state.neutralised = np.zeros(self.ledger.n_agents, dtype=bool)
            self.state.neutralised[[self._index_of(name) for name in neutralise]] = True
        self.state.refresh_fundamental()
        self.ledger.target_capital_ratio = self.state.capital_ratio()
        self.state.appraise()
        self._create_agents()
        self.last_cascade = CascadeReport()
        self.metrics = MetricsRecorder(self)
        self.datacollector = mesa.DataCollector(model_reporters=self.metrics.mesa_reporters())
        self.metrics.record(self.last_cascade)
        self.datacollector.collect(self)

    def _create_agents(self) -> None:
        """One Mesa agent per ledger row, created in bulk per type (Mesa's ``create_agents``)."""
        kind = self.ledger.kind
        self.agent_of: list[mesa.Agent | None] = [None] * self.ledger.n_agents
        for k, cls in AGENT_CLASS.items():
            idx = np.flatnonzero(kind == k)
            if idx.size:
                created = cls.create_agents(
                    self, idx.size, index=idx.tolist(), name=[self.names[i] for i in idx]
                )
                for agent in created:
                    self.agent_of[agent.index] = agent
        buyer_idx = np.flatnonzero(kind == Kind.BUYER)
        specs = [b for b in self.config.buyers for _ in range(b.count)]
        if self.config.policy.last_resort_buys:
            specs.append(None)
        self.buyers = list(
            HardwareBuyer.create_agents(
                self,
                buyer_idx.size,
                index=buyer_idx.tolist(),
                name=[self.names[i] for i in buyer_idx],
                spec=specs,
            )
        )
        for agent in self.buyers:
            self.agent_of[agent.index] = agent
        self.buyer_memory = BuyerMemory(
            self.buyers, self.state.world.rent_per_perf_hour, self.config.secondary
        )

    # --- the month (DESIGN.md section 6) ---

    def step(self) -> None:
        self.move_markets()  # 1. rent, BTC, rates move; buyers update budgets and expectations
        payment_failures = self.operate()  # 2. revenue, opex, debt service, amortisation, rollovers
        forced = self.scheduled_shocks()  # scenario events of this month
        with self.ledger.caching():  # the metrics reuse the cascade's last lender equity and loan totals
            self.last_cascade = self.resolve_defaults(
                Failures.join([payment_failures, forced])
            )  # 3-4. the cascade
            self.metrics.record(self.last_cascade)  # 5. metrics
        self.datacollector.collect(self)
        self.running = self.time < self.months  # batch_run and the visualiser stop at the horizon

    def move_markets(self) -> None:
        state = self.state
        state.world.advance()
        retire_end_of_life(state)  # before valuing: the fundamental value is of the units left
        state.refresh_fundamental()
        state.marks.heal()
        state.open_last_resort_facility()
        state.appraise()
        self.buyer_memory.observe(state.world, self.config.secondary, getattr(self, "buyer_book", None))
        self.buyer_book = self.monthly_buyer_book()

    def monthly_buyer_book(self) -> BuyerBook:
        """The buyers' demand this month (rows in the order of ``self.buyers``)."""
        state = self.state
        secondary = self.config.secondary
        return HardwareBuyer.monthly_book(
            self.buyers,
            state.world,
            state.world.stress,
            self.config.policy,
            state.fundamental(),
            secondary,
            self.buyer_memory,
            state.industry_distress() if secondary.funding_sensitivity > 0 else 0.0,
        )

    def operate(self) -> Failures:
        ocf = earn(self.state)
        if self.config.secondary.lender_disposal == "choice":
            operate_repossessed(self.state)
        pay_redemptions(self.state)
        failed = pay_debt_service(self.state, ocf)
        pay_out_surplus(self.state, failed.agents)
        pay_out_lender_earnings(self.state)
        return Failures(failed.agents, failed.cause, failed.parent)

    def resolve_defaults(self, initial: Failures) -> CascadeReport:
        """Covenants and the cascade; breach flags are renewed here, so this month's rollover decisions
        (in operations) saw last month's breaches."""
        state = self.state
        state.in_breach[:] = False
        with self.ledger.caching():
            report = run_cascade(state, self.buyer_book, self.buyer_index, initial)
            # lenders below their rollover capital ratio (or redeeming) are flagged, as they now act
            stressed = Lender.stressed(
                self.ledger.kind,
                state.capital_ratio(),
                self.ledger.defaulted,
                state.redeeming,
                state.lender_params,
            )
            state.in_breach |= state.lender_mask() & ~self.ledger.defaulted & stressed
        return report

    def scheduled_shocks(self) -> Failures:
        """Apply this month's scenario shocks; return the defaults they force."""
        forced = [Failures.none()]
        for shock in self.config.shocks:
            if shock.month != self.state.world.month:
                continue
            self.decide_buyer_book()
            if shock.kind == "btc_crash":
                self.state.world.shock_btc(shock.size)
                self.state.refresh_fundamental()  # the rent moves with the crash (world.shock_btc)
            elif shock.kind == "launch_generation":
                self.state.world.launch_next_generation()
                self.state.refresh_fundamental()
            else:
                target = (
                    self.largest_live(Kind.MINER)
                    if shock.kind == "default_largest_miner"
                    else self._index_of(shock.agent)
                )
                if target is not None and not self.ledger.defaulted[target]:
                    forced.append(
                        Failures(np.array([target]), np.array([Cause.SHOCK], dtype=np.int8), np.array([-1]))
                    )
        return Failures.join(forced)

    def _index_of(self, name: str | None) -> int:
        if name not in self.names:
            raise ConfigError(
                f"shock agent '{name}': no such agent (generated names look like 'miner-0', 'neocloud-3', 'bank-0')"
            )
        return self.names.index(name)

    # --- shocks from outside (the visualiser's buttons, notebooks): they act now ---

    def default_agent(self, index: int) -> CascadeReport:
        """Force an agent into default now and resolve the cascade it sets off within this month."""
        if self.ledger.defaulted[index]:
            return CascadeReport()
        if not hasattr(self, "buyer_book"):
            self.buyer_book = self.monthly_buyer_book()
        shock = Failures(np.array([index]), np.array([Cause.SHOCK], dtype=np.int8), np.array([-1]))
        with self.ledger.caching():
            report = self.resolve_defaults(shock)
            self.last_cascade = report
            self.metrics.record(report, shock=True)
        return report

    def largest_live(self, kind: Kind) -> int | None:
        """The live agent of a kind with the largest GPU fleet (by value at the mark) or loan book."""
        led = self.ledger
        idx = np.flatnonzero((led.kind == kind) & ~led.defaulted)
        if idx.size == 0:
            return None
        size = self.state.value_at_mark(idx) + led.btc[idx] * self.state.world.btc_price
        return int(idx[np.argmax(size)])

    def default_largest_miner(self) -> CascadeReport:
        target = self.largest_live(Kind.MINER)
        return CascadeReport() if target is None else self.default_agent(target)

    def decide_buyer_book(self) -> None:
        """Work out this month's buyer valuations now, before a shock moves the world: buyers value
        once a month, at its start (``DeferredBuyerBook`` defers the work to the first sale)."""
        if hasattr(self, "buyer_book"):
            self.buyer_book.decide()

    def crash_btc(self, fall: float = 0.5) -> CascadeReport:
        """BTC falls by ``fall`` now, compute demand with it (``world.shock_btc``); margin calls and
        covenants are tested at once."""
        self.decide_buyer_book()
        self.state.world.shock_btc(fall)
        self.state.refresh_fundamental()
        return self.resolve_now()

    def launch_next_generation(self) -> str | None:
        """The next GPU generation launches now: rent per unit of performance steps down, older
        generations lose value; covenants are re-tested at once."""
        self.decide_buyer_book()
        name = self.state.world.launch_next_generation()
        self.state.refresh_fundamental()
        self.resolve_now()
        return name

    def resolve_now(self) -> CascadeReport:
        """Re-test covenants and run the cascade now, with no forced default."""
        if not hasattr(self, "buyer_book"):
            self.buyer_book = self.monthly_buyer_book()
        with self.ledger.caching():
            report = self.resolve_defaults(Failures.none())
            self.last_cascade = report
            self.metrics.record(report, shock=True)
        return report

    # --- views ---

    @property
    def buyer_index(self) -> np.ndarray:
        """Ledger rows of the buyers, in the order of ``self.buyers`` (the rows of the buyer book)."""
        return np.array([buyer.index for buyer in self.buyers], dtype=np.int64)

    @property
    def graph(self):
        """The lending network as a ``networkx.MultiDiGraph`` (agents, loans with their fixed terms,
        hosting and tenancy ties), as built with the market; built on first use."""
        return self._topology.graph()

    @property
    def in_breach(self) -> np.ndarray:
        return self.state.in_breach

    def lender_equity(self) -> np.ndarray:
        return self.state.lender_equity()

    @property
    def finished(self) -> bool:
        return self.time >= self.months

    def run(self, progress: bool = False) -> None:
        """Run to the horizon (with a progress bar if asked)."""
        remaining = int(self.months - self.time)
        if progress:
            from tqdm import tqdm

            for _ in tqdm(range(remaining), desc=f"{self.config.name} seed {self.config.seed}", unit="month"):
                self.step()
        else:
            for _ in range(remaining):
                self.step()
