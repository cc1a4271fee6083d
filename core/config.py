"""The scenario: every parameter of a run, typed, documented with its unit and range, and validated.

A scenario is read from a TOML file (see ``experiments/scenarios/``), optionally changed with dotted
overrides (``--set world.rent.shock_volatility=0.1``), and validated before anything runs. Bad input
raises :class:`ConfigError`, whose message names each offending field and what is allowed; the command
line prints it without a traceback. Sources of the baseline values are in ``docs/calibration.md``.
"""

from __future__ import annotations

import copy
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from core.common import (  # re-exported: the schema's users import them here
    PROJECT_DIR,
    ConfigError,
    month_index,
)

SCENARIO_DIR = PROJECT_DIR / "experiments" / "scenarios"

# The allowed ranges live here and in the Field(...) of each parameter: every float is finite (NaN and
# infinities are refused by ``Strict``) and bounded above, so no value can overflow the model's arithmetic
# (tests/test_bad_inputs.py checks that no float field of the schema is left unbounded).
MONTH_PATTERN = r"^(20\d\d|2100)-(0[1-9]|1[0-2])$"
Month = Annotated[str, Field(pattern=MONTH_PATTERN, description="a month, YYYY-MM, from 2000-01 to 2100-12")]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
# The caps on money and GPU counts are far above any real market but leave room for the "unlimited"
# stand-ins the validation reductions use (a buyer with $1e15 a month and 1e12 GPUs of capacity).
USD = Annotated[float, Field(ge=0.0, le=1e16, description="an amount of money, USD (up to 1e16)")]
GPUCount = Annotated[float, Field(ge=0.0, le=1e13, description="a number of GPUs (up to 1e13)")]
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}$"
Identifier = Annotated[
    str,
    Field(
        pattern=IDENTIFIER_PATTERN,
        description="a name used in file and folder names: letters, digits, _ . + -, not starting with "
        "'.' or '-', at most 100 characters (so never a path)",
    ),
]


def _no_covenant(value: Any) -> Any:
    """TOML has no null: a covenant that is absent is written ``"none"`` (or the key is left out)."""
    if isinstance(value, str) and value.strip().lower() == "none":
        return None
    return value


LTVCovenant = Annotated[
    Annotated[float, Field(gt=0.0, le=5.0)] | None,
    BeforeValidator(_no_covenant),
    Field(description='maximum LTV at the secondary mark; "none" (or no key) = no covenant'),
]
MarginCall = Annotated[
    Annotated[float, Field(gt=0.0, le=2.0)] | None,
    BeforeValidator(_no_covenant),
    Field(description='loan / BTC value that triggers a margin call; "none" (or no key) = no call'),
]

LTVBasis = Annotated[
    Literal["mark", "olv", "borrowing_base"],
    Field(
        description="what the LTV covenant values: mark (the GPUs at the collateral price plus contracts above "
        "spot), olv (the appraised orderly-liquidation value: secondary.orderly_share x the GPUs at this "
        "month's appraisal), borrowing_base (the present value of the contracted revenue of contracts in force "
        "plus the uncontracted GPUs at the collateral price)"
    ),
]
WorkoutMonths = Annotated[
    Annotated[int, Field(ge=1, le=120)] | None,
    BeforeValidator(_no_covenant),
    Field(
        description="months after a default at which its creditor auctions the repossessed GPUs it still "
        'holds (down to the scrap floor); "none" (or no key) = no deadline'
    ),
]
PATTERN_MEANING = {
    MONTH_PATTERN: "must be a month YYYY-MM from 2000-01 to 2100-12",
    IDENTIFIER_PATTERN: "must be a name of letters, digits and _ . + - (not starting with '.' or '-', "
    "at most 100 characters), not a path",
}


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are immutable after validation.
    The validators are built at the first validation (``defer_build``), not at import: ``import
    model.model`` is cheaper by about 1.4 % of its instructions, the first scenario loaded pays it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


# --- the world -----------------------------------------------------------------------------------


class Generation(Strict):
    """One GPU generation. Performance is in H100-equivalents of rent: what the market pays for it per hour
    relative to an H100 SXM (so rent per unit of performance is one price for every generation)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    launch: Month
    performance: Positive = Field(
        le=100.0, description="rentable performance: the rent it earns relative to an H100"
    )
    power_kw: Positive = Field(le=10.0, description="all-in power per GPU incl. server share, kW")
    rack_kw: Positive = Field(le=500.0, description="rack power density this generation needs, kW/rack")
    new_price: Positive = Field(
        le=1e7, description="hardware price of one new GPU (rack-scale systems: rack / GPUs), USD"
    )
    physical_life_years: Positive = Field(default=7.0, le=20.0, description="life before failure, years")


class RentProcess(Strict):
    """Rent per unit of performance: log-rent mean-reverts around a cost-based anchor (docs/ODD.md 7.1).

    The anchor is the rent at which the cheapest launched generation, bought new today, earns its
    hurdle rate over its payback period; new prices fall after launch and launches add cheaper
    compute, so the anchor falls with price-performance. Older generations lose value because their
    power per unit of performance is higher (obsolescence), not through a global trend.
    """

    h100_rent_per_hour: Positive = Field(
        le=100.0, description="rent of one H100-equivalent at the start, USD/h"
    )
    new_price_decline_per_year: float = Field(
        ge=0.0, le=0.95, description="fall per year of a generation's new price after its launch, fraction"
    )
    anchor_hurdle_rate: Positive = Field(le=1.0, description="annual return a new GPU must earn, fraction")
    anchor_payback_years: Positive = Field(le=20.0, description="period over which a new GPU repays its cost")
    anchor_capex_multiplier: float = Field(
        ge=1.0, le=5.0, description="all-in cost of a deployed GPU (networking, servers) / its new price"
    )
    deviation_half_life_months: Positive = Field(
        le=1e5, description="half-life of log rent's deviation from the anchor, months (1e5: no reversion)"
    )
    shock_volatility: NonNegative = Field(
        le=1.0, description="monthly s.d. of log-rent shocks, normal regime"
    )
    stress_volatility_multiplier: float = Field(
        default=1.0, ge=1.0, le=5.0, description="log-rent shocks are this much larger in stress"
    )
    utilisation: Fraction = Field(description="share of hours a GPU is rented")
    path: list[Annotated[float, Field(gt=0.0, le=100.0)]] = Field(
        default_factory=list,
        max_length=600,
        description="exogenous rent per H100-eq hour for months 1, 2, ... (USD/h); replaces the random "
        "process while it lasts (history mode); empty = off",
    )


class PowerCosts(Strict):
    price_per_kwh: Positive = Field(le=1.0, description="electricity, USD/kWh")
    pue: float = Field(ge=1.0, le=3.0, description="power usage effectiveness (facility overhead)")
    hosting_per_kw_month: NonNegative = Field(
        le=10_000.0, description="colocation/hosting fee, USD per kW-month"
    )


class BTCProcess(Strict):
    """BTC: a jump-diffusion with compensated jumps (the drift is the expected return), shocks correlated
    with compute demand, larger in stress; network hashrate grows with mining profitability."""

    initial_price: Positive = Field(le=1e8, description="USD per BTC at the start")
    drift_per_year: float = Field(ge=-1.0, le=2.0, description="expected return per year (jumps compensated)")
    volatility_per_year: NonNegative = Field(le=3.0, description="diffusive volatility, normal regime")
    jumps_per_year: NonNegative = Field(le=24.0, description="Poisson intensity of jumps")
    jump_mean: float = Field(ge=-2.0, le=2.0, description="mean log jump size")
    jump_std: NonNegative = Field(le=2.0)
    correlation_normal: float = Field(
        ge=-1.0, le=1.0, description="copula correlation of BTC returns and compute-demand shocks, normal"
    )
    correlation_stress: float = Field(
        ge=-1.0, le=1.0, description="copula correlation of BTC returns and compute-demand shocks, stress"
    )
    stress_volatility_multiplier: float = Field(ge=1.0, le=5.0)
    crash_comovement: bool = Field(
        default=True,
        description="a scheduled BTC crash is a stress event: the world enters the stress regime and compute "
        "demand moves with the crash as the stress copula says (the conditional mean rho_stress x z of the "
        "compute-demand shock given the crash's BTC score z); false: the crash moves BTC alone",
    )
    network_hashrate_eh: Positive = Field(le=1e6, description="network hashrate at the start, EH/s")
    hashrate_growth_per_year: float = Field(
        ge=-0.9, le=3.0, description="log growth of hashrate per year while mining breaks even"
    )
    hashrate_profit_elasticity: NonNegative = Field(
        default=0.0,
        le=20.0,
        description="extra log growth per year per unit of log(hashprice / marginal cost): rigs are switched "
        "on when mining pays and off when it does not",
    )
    marginal_rig_j_per_th: Positive = Field(
        default=30.0, le=500.0, description="efficiency of the network's marginal rigs, J/TH"
    )
    efficient_rig_j_per_th: Positive = Field(
        default=15.0,
        le=500.0,
        description="efficiency of the network's best rigs, J/TH: below their power cost every rig is off, so "
        "hashprice cannot fall below it (the hashrate falls at once instead)",
    )
    miner_power_price_per_kwh: Positive = Field(
        default=0.05, le=1.0, description="power price of the marginal miner, USD/kWh"
    )
    block_subsidy_btc: Positive = Field(le=50.0, description="BTC per block at the start")
    fees_btc_per_block: NonNegative = Field(le=50.0)
    halvings: list[Month] = Field(description="months at which the subsidy halves")
    path: list[Annotated[float, Field(gt=0.0, le=1e8)]] = Field(
        default_factory=list,
        max_length=600,
        description="exogenous BTC price for months 1, 2, ... (USD); replaces the random process while it "
        "lasts (history mode); empty = off",
    )
    hashprice_path: list[Annotated[float, Field(gt=0.0, le=1e5)]] = Field(
        default_factory=list,
        max_length=600,
        description="exogenous hashprice for months 1, 2, ... (USD/PH/day); the network hashrate is set so "
        "the model's hashprice equals it (history mode); empty = off",
    )


class Regime(Strict):
    """A two-state Markov regime (normal / stress) shared by BTC, compute demand and buyers; a bad month
    of the common factor makes the next month's entry into stress likelier and exit less likely."""

    stress_entry_per_month: Fraction
    stress_exit_per_month: Fraction
    start_in_stress: bool = False
    factor_loading: float = Field(
        default=0.5,
        ge=0.0,
        lt=1.0,
        description="weight of last month's common factor in the regime switch (0: switching ignores it); "
        "entry and exit probabilities stay the configured ones on average",
    )


class World(Strict):
    start: Month = "2025-01"
    base_rate: float = Field(ge=-0.02, le=0.3, description="annual base rate (SOFR)")
    base_rate_volatility: NonNegative = Field(le=0.05, description="monthly s.d. of base-rate changes")
    generations: list[Generation] = Field(min_length=1)
    rent: RentProcess
    power: PowerCosts
    btc: BTCProcess
    regime: Regime
    valuation_discount_rate: Positive = Field(le=1.0, description="rate for the fundamental value, /yr")
    idle_option_volatility: NonNegative = Field(
        default=0.0,
        le=1.0,
        description="monthly s.d. of log rent against which an owner's option to idle and restart a GPU is "
        "valued (every present value: fundamental, collateral, buyers); 0 = a month counts only where its "
        "expected margin is positive (no option value)",
    )
    base_rate_path: list[Annotated[float, Field(ge=-0.02, le=0.3)]] = Field(
        default_factory=list,
        max_length=600,
        description="exogenous base rate for months 1, 2, ... (annual fraction); replaces the random walk "
        "while it lasts (history mode); empty = off",
    )

    @model_validator(mode="after")
    def _distinct_generations(self) -> World:
        names = [g.name for g in self.generations]
        if len(set(names)) != len(names):
            raise ValueError(f"generation names must be distinct, got {names}")
        launches = [month_index(g.launch) for g in self.generations]
        if launches != sorted(launches):
            raise ValueError("generations must be listed in launch order")
        return self


# --- agents --------------------------------------------------------------------------------------

BorrowerKind = Literal["miner", "neocloud"]
LenderKind = Literal["bank", "credit_fund", "abs_trust", "bond_investors"]
Instrument = Literal["term_loan", "asset_backed", "high_yield", "convertible", "btc_margin", "interbank"]
Amortisation = Literal["linear", "annuity", "bullet"]
Collateral = Literal["gpu", "btc", "none"]


class LenderBehaviour(Strict):
    """How each lender type behaves (bank, credit fund, ABS trust, bond investors)."""

    rollover_capital_ratio: Fraction = Field(
        description="equity/assets below which it is stressed: refuses rollovers, sells in a hurry, and is "
        "flagged in breach"
    )
    patient_sale_share: Fraction = Field(description="share of repossessed stock offered per round when calm")
    hurried_sale_share: Fraction = Field(description="share offered per round when stressed")
    patient_reserve: Fraction = Field(description="lowest price accepted when calm, share of fundamental")
    redemption_trigger: Fraction = Field(
        default=1.0, description="credit funds: drawdown of equity that starts investor redemptions"
    )
    redemption_per_month: Fraction = Field(default=0.0, description="share of equity redeemed per month")
    sale_rule: Literal["stock_share", "leverage_target"] = Field(
        default="stock_share",
        description="how it sells repossessed GPUs: 'stock_share' offers a share of its stock per round "
        "(patient or hurried); 'leverage_target' also deleverages (Cont & Schaanning 2017): below "
        "leverage_buffer it pays debt from cash and sells a pro-rata slice of its stock back to "
        "leverage_target, and it fails below leverage_min",
    )
    leverage_min: Fraction = Field(
        default=0.03, description="leverage_target rule: equity/assets below which the lender fails"
    )
    leverage_buffer: Fraction = Field(
        default=0.04, description="leverage_target rule: equity/assets below which it deleverages"
    )
    leverage_target: Fraction = Field(
        default=0.05, description="leverage_target rule: equity/assets it deleverages back to"
    )
    pays_out_earnings: bool = Field(
        default=False,
        description="each month it pays out the equity above its starting capital ratio (dividends, "
        "distributions), so retained interest does not lift the ratio and losses lower it",
    )
    funding_factor_loading: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="its own funding tightens in a bad month of the common factor f: the capital ratio it "
        "needs to roll a maturing loan is rollover_capital_ratio x (1 + this x max(-f, 0)); 0 = no effect",
    )

    @model_validator(mode="after")
    def _leverage_order(self) -> LenderBehaviour:
        if not self.leverage_min < self.leverage_target:
            raise ValueError(
                f"leverage_min must be below leverage_target, got {self.leverage_min} and {self.leverage_target}"
            )
        if self.leverage_buffer < self.leverage_min:
            raise ValueError(
                f"leverage_buffer must be at least leverage_min, got {self.leverage_buffer} < {self.leverage_min}"
            )
        return self


class TrancheSpec(Strict):
    name: str
    share: Fraction = Field(description="share of the trust's liabilities")


class HardwareBuyerClass(Strict):
    """A class of secondary-market buyers (hyperscalers, tier-2 clouds, labs, brokers)."""

    name: str
    count: int = Field(ge=0, le=1000)
    budget_per_month: USD = Field(description="USD each buyer can spend per month, calm")
    max_rack_kw: Positive = Field(le=1000.0, description="densest rack its facilities can power and cool, kW")
    capacity_gpus_per_month: GPUCount = Field(description="GPUs it can install per month")
    hurdle_rate: Positive = Field(le=2.0, description="annual discount rate of its valuation")
    expected_deflation: float = Field(ge=0.0, le=0.95, description="rent deflation it expects, calm")
    stress_budget_cut: Fraction = Field(description="share of budget withdrawn while in stress")
    stress_deflation_add: float = Field(ge=0.0, le=0.9, description="extra expected deflation in stress")
    valuation_dispersion: Positive = Field(le=2.0, description="s.d. of log valuations across its desks")


class BorrowerClass(Strict):
    """How generated borrowers of one kind are financed (used by generated networks)."""

    count: int = Field(ge=0, le=1_000_000)
    fleet_gpus_median: Positive = Field(le=1e7, description="median fleet, GPUs")
    fleet_gpus_sigma: NonNegative = Field(le=3.0, description="s.d. of log fleet size")
    generation_mix: dict[str, Fraction] = Field(description="share of the fleet by generation name")
    purchase_month: Month = Field(description="when the first fleets were bought and financed")
    purchase_spread_months: int = Field(
        default=0,
        ge=0,
        le=240,
        description="each borrower bought and financed its fleet in a month drawn uniformly from "
        "purchase_month to purchase_month + this; its GPUs age, and its loans run, from that month",
    )
    loan_to_cost: float = Field(gt=0.0, le=1.0, description="debt / purchase cost at origination")
    loan_tenor_months: int = Field(ge=1, le=360, description="shortest tenor of term and asset-backed loans")
    loan_tenor_spread_months: int = Field(
        default=0, ge=0, le=240, description="each loan's tenor is drawn from loan_tenor_months + 0..this"
    )
    bond_tenor_months: int | None = Field(
        default=None,
        ge=1,
        le=360,
        description="shortest tenor of bonds (high yield, convertibles) at issue; none: loan_tenor_months",
    )
    bond_tenor_spread_months: int = Field(
        default=0, ge=0, le=240, description="each bond's tenor is drawn from bond_tenor_months + 0..this"
    )
    amortisation: Amortisation
    spread: float = Field(ge=0.0, le=0.5, description="annual spread over the base rate")
    dscr_min: NonNegative = Field(le=5.0, description="minimum debt-service coverage covenant; 0 = none")
    ltv_max: LTVCovenant = None
    ltv_basis: LTVBasis = "mark"
    cash_months: NonNegative = Field(le=120.0, description="cash buffer in months of debt service")
    equity_capacity: Fraction = Field(description="new equity it can raise while markets are open, of debt")
    contract_share: Fraction = Field(description="share of the fleet under take-or-pay contracts")
    contract_premium: float = Field(ge=0.0, le=3.0, description="contract rent over spot at signing")
    contract_months: int = Field(ge=0, le=240, description="shortest contract, months from purchase")
    contract_spread_months: int = Field(
        default=0, ge=0, le=240, description="each contract's length is contract_months + 0..this"
    )
    subinvestment_grade_tenants: Fraction = Field(description="share of contracts with sub-IG tenants")
    # miners only
    hashrate_ph_median: NonNegative = Field(default=0.0, le=1e7, description="mining hashrate, PH/s")
    mining_efficiency_j_per_th: Positive = Field(default=20.0, le=200.0)
    btc_treasury_months: NonNegative = Field(
        default=0.0, le=600.0, description="BTC held, months of mining revenue"
    )
    btc_loan_to_value: Fraction = Field(default=0.0, description="BTC-backed margin loan / BTC value")
    btc_margin_call_ltv: float = Field(
        default=0.85, gt=0.0, le=2.0, description="loan / BTC value that triggers a margin call"
    )
    hosting_share: Fraction = Field(default=0.0, description="share of miners that host a neo-cloud")


class Tenants(Strict):
    """Exogenous tenants of neo-cloud contracts: monthly default hazards by grade and regime."""

    ig_default_per_month: Fraction
    subig_default_per_month: Fraction
    stress_multiplier: float = Field(ge=1.0, le=50.0)
    factor_loading: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="weight c of the month's common factor of BTC and compute demand in each tenant's "
        "default (one-factor Vasicek): the month's hazard p becomes Phi((Phi^-1(p) - c f) / sqrt(1 - c^2)), "
        "whose mean over the factor is p; 0 = tenants default independently of the factor",
    )


class GeneratedNetwork(Strict):
    """A synthetic lending network; every random draw comes from the model's generator."""

    topology: Literal["core_periphery", "erdos_renyi", "scale_free"]
    loans_per_borrower: float = Field(ge=1.0, le=20.0, description="mean number of lenders per borrower")
    lender_concentration: float = Field(ge=0.0, le=5.0, description="Zipf exponent of lender market share")
    interbank_density: Fraction = Field(description="probability of a loan between two lenders")
    interbank_share: Fraction = Field(description="share of a lender's liabilities owed to other lenders")
    core_share: Fraction = Field(default=0.2, description="core_periphery: share of lenders in the core")
    banks: int = Field(ge=0, le=10_000)
    credit_funds: int = Field(ge=0, le=10_000)
    abs_trusts: int = Field(ge=0, le=10_000)
    bond_investors: int = Field(ge=0, le=10_000)
    miners: BorrowerClass
    neoclouds: BorrowerClass
    lender_capital_ratio: dict[LenderKind, Fraction] = Field(description="initial equity/assets by type")

    @model_validator(mode="after")
    def _has_lenders(self) -> GeneratedNetwork:
        if self.banks + self.credit_funds + self.abs_trusts + self.bond_investors == 0:
            raise ValueError("a generated network needs at least one lender")
        return self


class AgentSpec(Strict):
    """One agent of an explicit (hand-written) network."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=100)
    type: Literal["miner", "neocloud", "bank", "credit_fund", "abs_trust", "bond_investors"]
    cash: USD = 0.0
    fleet: dict[str, GPUCount] = Field(default_factory=dict, description="GPUs by generation name")
    purchase_month: Month | None = Field(
        default=None,
        description="when the fleet was bought (its GPUs age from then; never before a generation's "
        "launch); none: each generation at its launch",
    )
    btc: NonNegative = Field(default=0.0, le=21e6, description="BTC held (at most the 21 million supply)")
    hashrate_ph: NonNegative = Field(default=0.0, le=1e7, description="mining hashrate, PH/s")
    mining_efficiency_j_per_th: Positive = Field(default=20.0, le=200.0)
    equity_capacity: USD = 0.0
    contract_share: Fraction = 0.0
    contract_rent_per_hour: NonNegative = Field(
        default=0.0, le=100.0, description="contract rent per H100-eq hour"
    )
    contract_months: int = Field(default=0, ge=0, le=600)
    tenant_grade: Literal["ig", "subig"] = "ig"
    ltv_basis: LTVBasis = "mark"
    external_assets: USD = Field(default=0.0, description="lenders: other assets, USD")
    external_liabilities: USD = Field(default=0.0, description="lenders: deposits/investors, USD")
    lease_rent_per_month: USD = Field(
        default=0.0,
        description="borrowers: fixed rent from an outside lessee, USD a month (a lease SPV that owns "
        "buildings, not GPUs); paid for contract_months while its tenant (tenant_grade) survives",
    )


class LoanSpec(Strict):
    creditor: str
    debtor: str
    principal: Positive = Field(le=1e13, description="USD")
    spread: float = Field(ge=0.0, le=0.5)
    tenor_months: int = Field(ge=1, le=360)
    age_months: int = Field(default=0, ge=0, le=360)
    amortisation: Amortisation = "linear"
    seniority: int = Field(default=1, ge=1, le=9, description="1 = most senior")
    instrument: Instrument = "term_loan"
    collateral: Collateral = "gpu"
    dscr_min: NonNegative = Field(default=0.0, le=5.0)
    ltv_max: LTVCovenant = None
    margin_call_ltv: MarginCall = None


class HostingSpec(Strict):
    """The host miner earns its share of the tenant's hosting cost (world.power.hosting_per_kw_month x
    kW); a tenant hosted at several miners has one entry per host."""

    host: str
    tenant: str
    share: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="share of the tenant's fleet (and of its hosting fee) at this host; a tenant's shares "
        "add up to at most 1 (the rest is hosted by third parties)",
    )


class GuaranteeSpec(Strict):
    """A guarantee by a party outside the network (a hyperscaler's backstop). When the obligor defaults
    the guarantor pays, until its cap is used up: ``loans``, its creditors' shortfall at default (claim
    less the GPUs the secured waterfall gives them at the mark and the estate's cash); ``hosting``, its
    hosting fee to its hosts each month, as in its last month alive. What the guarantor pays is counted;
    its own solvency is not modelled."""

    guarantor: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=100, description="outside party")
    obligor: str = Field(description="id of the borrower whose obligations are guaranteed")
    covers: Literal["loans", "hosting"]
    cap: float = Field(gt=0.0, le=1e13, description="most the guarantor pays over the run, USD")


BORROWER_TYPES = typing.get_args(BorrowerKind)


class ExplicitNetwork(Strict):
    agents: list[AgentSpec] = Field(min_length=1)
    loans: list[LoanSpec] = Field(default_factory=list)
    hosting: list[HostingSpec] = Field(default_factory=list)
    guarantees: list[GuaranteeSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_exist(self) -> ExplicitNetwork:
        ids = [a.id for a in self.agents]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"agent ids must be unique, repeated: {dupes}")
        known = set(ids)
        kinds = {a.id: a.type for a in self.agents}
        for k, loan in enumerate(self.loans):
            for role in ("creditor", "debtor"):
                who = getattr(loan, role)
                if who not in known:
                    raise ValueError(f"loans[{k}].{role}: no agent with id '{who}' (known: {sorted(known)})")
            if loan.creditor == loan.debtor:
                raise ValueError(f"loans[{k}]: creditor and debtor are the same agent '{loan.debtor}'")
            if loan.collateral == "btc" and kinds[loan.debtor] != "miner":
                raise ValueError(f"loans[{k}].collateral: only miners hold BTC, '{loan.debtor}' does not")
        for k, a in enumerate(self.agents):
            if a.lease_rent_per_month > 0 and (a.type not in BORROWER_TYPES or a.contract_months == 0):
                raise ValueError(
                    f"agents[{k}].lease_rent_per_month: only a miner or neocloud earns lease rent, and "
                    f"only with contract_months > 0 (the lease term); '{a.id}' is a {a.type} with "
                    f"contract_months = {a.contract_months}"
                )
        shares: dict[str, float] = {}
        for k, h in enumerate(self.hosting):
            if kinds.get(h.host) != "miner" or kinds.get(h.tenant) != "neocloud":
                raise ValueError(f"hosting[{k}]: host must be a miner and tenant a neocloud id")
            if any(g.host == h.host and g.tenant == h.tenant for g in self.hosting[:k]):
                raise ValueError(f"hosting[{k}]: '{h.host}' already hosts '{h.tenant}' (one entry a pair)")
            shares[h.tenant] = shares.get(h.tenant, 0.0) + h.share
            if shares[h.tenant] > 1.0 + 1e-9:
                raise ValueError(
                    f"hosting[{k}].share: the shares of tenant '{h.tenant}' add up to "
                    f"{shares[h.tenant]:.6g}; at most 1 (the whole fleet)"
                )
        debtors = {loan.debtor for loan in self.loans}
        for k, g in enumerate(self.guarantees):
            if g.guarantor in known:
                raise ValueError(
                    f"guarantees[{k}].guarantor: '{g.guarantor}' is an agent of the network; a guarantor "
                    "is a party outside it (its payments are counted, its solvency is not modelled)"
                )
            if kinds.get(g.obligor) not in BORROWER_TYPES:
                raise ValueError(f"guarantees[{k}].obligor: no miner or neocloud with id '{g.obligor}'")
            if g.covers == "loans" and g.obligor not in debtors:
                raise ValueError(f"guarantees[{k}].covers: '{g.obligor}' owes no loan to guarantee")
            if g.covers == "hosting" and g.obligor not in shares:
                raise ValueError(f"guarantees[{k}].covers: '{g.obligor}' is hosted by no miner")
            if any(o.obligor == g.obligor and o.covers == g.covers for o in self.guarantees[:k]):
                raise ValueError(
                    f"guarantees[{k}]: '{g.obligor}' already has a guarantee of its {g.covers} "
                    "(one a borrower and coverage: add the caps)"
                )
        return self


# --- the cascade, policies and the whole scenario ------------------------------------------------


class CascadeRules(Strict):
    max_rounds: int = Field(ge=1, le=1000, description="cap on cascade rounds within a month")
    price_channel: bool = Field(description="covenants see the secondary mark (off: fundamental value)")
    scrap_value_share: Fraction = Field(description="hurried sellers' floor, share of fundamental")
    mark_recovery_half_life_months: Positive = Field(le=120.0)
    cure_grace_months: int = Field(default=0, ge=0, le=24, description="months a DSCR breach may last")
    dscr_test_every_months: Literal[1, 3, 6, 12] = Field(
        default=1, description="DSCR tested at calendar month-ends divisible by this (3: quarter ends)"
    )
    dscr_trailing_months: int = Field(
        default=1,
        ge=1,
        le=12,
        description="months of cash flow and debt service in the tested DSCR (12: TTM)",
    )
    markets_open_in_stress: bool = Field(default=False, description="can borrowers raise equity in stress")
    interbank_recovery: Literal["clearing", "zero"] = Field(
        default="clearing",
        description="claims on a failed lender: Eisenberg-Noe clearing, or zero (Gai-Kapadia)",
    )
    default_at_zero_equity: bool = Field(
        default=False, description="tie rule: a lender with equity exactly zero fails (True) or survives"
    )
    price_impact: Literal["buyers", "exponential", "linear"] = Field(
        default="buyers",
        description="secondary-market price: buyers' demand curves, exp(-impact_alpha x) of the mark for a "
        "share x of the outstanding units sold (Cifuentes-Ferrucci-Shin 2005), or (1 - impact_slope x) of it, "
        "floored at zero (linear impact, Cont & Schaanning 2017)",
    )
    impact_alpha: Positive = Field(
        default=1.0536,
        le=100.0,
        description="exponential price impact; 1.0536: selling 10 % lowers the price 10 %",
    )
    impact_slope: Positive = Field(
        default=1.0,
        le=100.0,
        description="linear price impact: fall of the price, share of the mark, per share of a generation's "
        "outstanding units sold (1 / market depth); 1.0: selling 10 % lowers the price 10 %",
    )
    execution_price: Literal["post_impact", "midpoint"] = Field(
        default="post_impact",
        description="what sellers receive per unit with an impact price (exponential or linear): the "
        "post-impact price, or the mid-point of the pre-impact mark and the post-impact price (Cont & "
        "Schaanning 2017: orders execute while the price moves)",
    )
    workout_months: WorkoutMonths = None
    workout_cost_share: Fraction = Field(
        default=0.0,
        description="cost of working out a default (legal, broker), paid by the creditor, share of EAD",
    )

    @model_validator(mode="after")
    def _midpoint_needs_impact(self) -> CascadeRules:
        if self.execution_price == "midpoint" and self.price_impact == "buyers":
            raise ValueError(
                "execution_price 'midpoint' needs an impact price (price_impact 'exponential' or 'linear'), "
                f"got price_impact {self.price_impact!r}: the buyers' market clears on their demand curves, "
                "with no impact path from the mark to average over"
            )
        return self


class Covenants(Strict):
    """Covenants as credit agreements write them (issue 16 part 3): equity cures limited in number and
    amount, and waivers when enforcing would cost the lenders more than waiting. The defaults keep the
    calibrated model: equity prepays any breach without a limit, and no breach is waived."""

    equity_cure: Literal["prepay", "agreement"] = Field(
        default="prepay",
        description="prepay: new equity prepays the breach need, any number of times; agreement: an equity "
        "cure injects only what the test needs (DSCR: the cash-flow shortfall, counted as cash flow of the "
        "test period; LTV: the prepayment cash cannot cover), at most equity_cures_per_year in any 12 months "
        "and equity_cures_total over the run, from the remaining equity capacity",
    )
    equity_cures_per_year: int = Field(
        default=2, ge=1, le=4, description="agreement: equity cures allowed in any four consecutive quarters"
    )
    equity_cures_total: int = Field(
        default=5, ge=0, le=20, description="agreement: equity cures allowed over the life of the loans"
    )
    waivers: bool = Field(
        default=False,
        description="the lenders waive a breach the borrower cannot cure when the value of continuing (its "
        "trailing cash flow over the loans' remaining months, plus the fee) is at least the recovery from "
        "enforcing now (collateral at the mark and cash, less the workout cost)",
    )
    waiver_fee: Fraction = Field(
        default=0.0025, description="fee for a waiver, share of the covenant loans' principal, paid in kind"
    )
    waiver_spread_step_up: float = Field(
        default=0.01, ge=0.0, le=0.2, description="annual margin added to the covenant loans by a waiver"
    )
    waiver_months: int = Field(
        default=12, ge=1, le=60, description="months during which a waiver suspends the DSCR and LTV tests"
    )


class Policy(Strict):
    """Policy levers (experiment 7); defaults leave the market as it is."""

    ltv_cap: float = Field(default=1.0, gt=0.0, le=1.0, description="cap on loan-to-cost at origination")
    haircut_per_year_of_age: Fraction = Field(default=0.0, description="collateral haircut per year of age")
    buyer_of_last_resort_budget: USD = Field(default=0.0, description="USD per month")
    buyer_of_last_resort_price: Fraction = Field(
        default=0.5,
        description="its bid (buy) or its advance against repossessed GPUs (lend), share of fundamental",
    )
    buyer_of_last_resort_mode: Literal["buy", "lend"] = Field(
        default="buy",
        description="buy: a buyer bidding the price for any generation; lend: a facility lending that share of "
        "fundamental value against stressed lenders' repossessed GPUs, so they need not sell in a hurry "
        "(needs secondary.lender_disposal = 'choice')",
    )

    @property
    def last_resort_buys(self) -> bool:
        """Whether the policy adds a buyer of last resort to the market (rather than a lending facility)."""
        return self.buyer_of_last_resort_budget > 0 and self.buyer_of_last_resort_mode == "buy"


class SecondaryMarket(Strict):
    """Buyers and sellers of used GPUs as they are (issue 16 part 2). The defaults reproduce the
    calibrated model: buyers extrapolate a fixed deflation, their budgets react to the regime only,
    installation capacity is a monthly flow, and lenders follow the patient / hurried sale plan."""

    expectations: Literal["fixed", "adaptive"] = Field(
        default="fixed",
        description="fixed: each buyer class extrapolates its configured deflation; adaptive: its expected "
        "log rent growth moves each month toward the rent change it observed (gain expectation_gain)",
    )
    idle_valuation: Literal["own", "market"] = Field(
        default="own",
        description="own: a buyer values every month of a GPU's life along its own extrapolated rent path; "
        "market: months in which that path's margin is not positive (it expects to idle the unit) are "
        "valued as the fundamental values them (the market's expected margin of restarting it, with the "
        "idling option), at the buyer's hurdle rate",
    )
    expectation_gain: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.1, description="adaptive expectations: weight of the latest observed rent change, per month"
    )
    funding_sensitivity: Fraction = Field(
        default=0.0,
        description="buyers' budgets shrink by this x the industry distress share (borrowers in breach or "
        "defaulted within funding_memory_months): natural buyers are financed like the sellers",
    )
    funding_memory_months: int = Field(
        default=12, ge=1, le=120, description="a default weighs on buyers' funding for this many months"
    )
    capacity_buffer_months: float = Field(
        default=1.0,
        ge=1.0,
        le=24.0,
        description="installation headroom a buyer can build up, months of capacity_gpus_per_month; it "
        "refills by capacity_gpus_per_month a month (1: a monthly flow, unused capacity is lost)",
    )
    lender_disposal: Literal["sale_plan", "choice"] = Field(
        default="sale_plan",
        description="sale_plan: patient / hurried shares and reserves (lenders.*); choice: each lot is "
        "operated, settled or sold through the channel worth most to its holder (orderly, auction, distressed)",
    )
    orderly_share: Fraction = Field(default=0.85, description="orderly sale: price as share of orderly value")
    orderly_months: NonNegative = Field(default=3.0, le=24.0, description="orderly sale: months to sell")
    auction_share: Fraction = Field(default=0.65, description="auction: price as share of orderly value")
    auction_months: NonNegative = Field(default=1.0, le=24.0, description="auction: months to sell")
    distressed_share: Fraction = Field(default=0.45, description="distressed sale: share of orderly value")
    distressed_months: NonNegative = Field(
        default=0.25, le=24.0, description="distressed sale: months to sell"
    )
    waiting_cost_calm: NonNegative = Field(
        default=0.01,
        le=10.0,
        description="a calm lender's cost of waiting for cash, per month (discount rate)",
    )
    waiting_cost_stressed: NonNegative = Field(
        default=0.25, le=10.0, description="a stressed lender's cost of waiting for cash, per month"
    )
    operators: list[LenderKind] = Field(
        default_factory=list, description="lender kinds that can operate repossessed GPUs through a host"
    )
    operator_fee: Fraction = Field(default=0.25, description="share of the operating margin the host keeps")
    settle_share: Fraction = Field(
        default=0.0,
        description="a defaulted borrower's owners buy its GPUs back off-market at this share of orderly "
        "value x (1 - industry distress share); 0 = no settlement",
    )
    settle_window_months: int = Field(
        default=6, ge=0, le=60, description="months after the default in which a settlement can be agreed"
    )
    budget_factor_loading: float = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description="buyers' budgets move with the month's common factor f of BTC and compute demand: "
        "multiplied by exp(b f - b^2 / 2), whose mean is 1, so they shrink in bad months and the average "
        "budget is unchanged; 0 = no effect (the buyer of last resort is never affected)",
    )

    @model_validator(mode="after")
    def _channels_ordered(self) -> SecondaryMarket:
        if not self.orderly_months >= self.auction_months >= self.distressed_months:
            raise ValueError(
                "secondary: sale channels must take orderly_months >= auction_months >= distressed_months"
            )
        return self


class HostFailure(Strict):
    """What a host miner's default does to the neo-cloud it hosts (off by default): the tenant's GPUs
    stand in the host's data centre, so for some months after the host's default (power cut, move to
    another site, re-cabling) they earn only part of their revenue while its costs run on."""

    disruption_months: int = Field(
        default=0,
        ge=0,
        le=60,
        description="months after its host's default in which a hosted neo-cloud's revenue is disrupted; "
        "0 = off (a host's default only ends the hosting fee it earned)",
    )
    revenue_lost: Fraction = Field(
        default=1.0, description="share of the hosted neo-cloud's revenue (spot and contracted) lost then"
    )


class Shock(Strict):
    """A scheduled event: it happens in ``month`` after operations, before covenants are tested."""

    month: int = Field(ge=1, le=600)
    kind: Literal["default_agent", "default_largest_miner", "btc_crash", "launch_generation"]
    agent: str | None = Field(default=None, description="default_agent: the agent's id (name)")
    size: Fraction = Field(default=0.5, description="btc_crash: the fall, 0.5 = -50 %")

    @model_validator(mode="after")
    def _agent_given(self) -> Shock:
        if self.kind == "default_agent" and not self.agent:
            raise ValueError("a default_agent shock needs agent = '<id>'")
        return self


SeriesName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", description="a series in data/observed")]


class History(Strict):
    """History mode: observed monthly series drive the world from the start month up to ``until``; the
    processes then continue from the last observed state (a conditional simulation). The series
    replace the start values and the ``path`` lists of the processes they drive (``core.history``)."""

    until: Month | Literal["latest"] = Field(
        description="last observed month that drives the world, or 'latest': the last month every driven "
        "series covers without a gap"
    )
    btc: SeriesName | None = Field(default="btc_close_usd", description="BTC price series (USD)")
    base_rate: SeriesName | None = Field(default="base_rate", description="base-rate series (fraction/yr)")
    rent: SeriesName | None = Field(
        default=None, description="rent series per H100 hour (USD); sparse series cannot drive"
    )
    hashprice: SeriesName | None = Field(default=None, description="hashprice series (USD/PH/day)")
    folder: str = Field(
        default="data/observed",
        description="the observed-data folder (a path relative to the project or absolute)",
    )


class Scenario(Strict):
    """Everything a run needs. ``network`` is either generated or explicit."""

    name: Identifier = "scenario"
    months: int = Field(default=60, ge=1, le=600)
    seed: int = Field(default=20250101, ge=0, lt=2**63)
    world: World
    tenants: Tenants
    lenders: dict[LenderKind, LenderBehaviour]
    abs_tranches: list[TrancheSpec] = Field(min_length=1)
    buyers: list[HardwareBuyerClass] = Field(min_length=1)
    generated: GeneratedNetwork | None = None
    explicit: ExplicitNetwork | None = None
    cascade: CascadeRules
    policy: Policy = Policy()
    secondary: SecondaryMarket = SecondaryMarket()
    host_failure: HostFailure = HostFailure()
    covenants: Covenants = Covenants()
    shocks: list[Shock] = Field(default_factory=list)
    history: History | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if (self.generated is None) == (self.explicit is None):
            raise ValueError("give exactly one of [generated] or [explicit] for the network")
        gens = {g.name for g in self.world.generations}
        if self.generated is not None:
            for kind in ("miners", "neoclouds"):
                mix = getattr(self.generated, kind).generation_mix
                unknown = set(mix) - gens
                if unknown:
                    raise ValueError(
                        f"generated.{kind}.generation_mix: unknown generation(s) {sorted(unknown)}"
                    )
                if abs(sum(mix.values()) - 1.0) > 1e-6:
                    raise ValueError(
                        f"generated.{kind}.generation_mix: shares must sum to 1, got {sum(mix.values())}"
                    )
                cls = getattr(self.generated, kind)
                first = month_index(cls.purchase_month)
                last = first + cls.purchase_spread_months
                if last > month_index(self.world.start):
                    raise ValueError(
                        f"generated.{kind}.purchase_month + purchase_spread_months: fleets are bought by "
                        f"world.start ({self.world.start}), got purchases up to {cls.purchase_spread_months} "
                        f"months after {cls.purchase_month}"
                    )
            missing = {"bank", "credit_fund", "abs_trust", "bond_investors"} - set(self.lenders)
            if missing:
                raise ValueError(f"lenders: behaviour missing for {sorted(missing)}")
        if self.explicit is not None:
            for a in self.explicit.agents:
                if a.purchase_month is not None and month_index(a.purchase_month) > month_index(
                    self.world.start
                ):
                    raise ValueError(
                        f"explicit agent '{a.id}'.purchase_month: fleets are bought by world.start "
                        f"({self.world.start}), got {a.purchase_month}"
                    )
                unknown = set(a.fleet) - gens
                if unknown:
                    raise ValueError(
                        f"explicit agent '{a.id}'.fleet: unknown generation(s) {sorted(unknown)}"
                    )
            missing = {a.type for a in self.explicit.agents if a.type not in BORROWER_TYPES} - set(
                self.lenders
            )
            if missing:
                raise ValueError(f"lenders: behaviour missing for {sorted(missing)}")
        if self.explicit is not None:
            ids = {a.id for a in self.explicit.agents}
            for k, shock in enumerate(self.shocks):
                if shock.kind == "default_agent" and shock.agent not in ids:
                    raise ValueError(
                        f"shocks[{k}].agent: no agent with id '{shock.agent}' (known: {sorted(ids)})"
                    )
        if (
            self.policy.buyer_of_last_resort_mode == "lend"
            and self.policy.buyer_of_last_resort_budget > 0
            and self.secondary.lender_disposal != "choice"
        ):
            raise ValueError(
                "policy.buyer_of_last_resort_mode = 'lend' needs secondary.lender_disposal = 'choice' (the "
                "facility changes how lenders dispose of repossessed GPUs)"
            )
        if abs(sum(t.share for t in self.abs_tranches) - 1.0) > 1e-6:
            raise ValueError("abs_tranches: shares must sum to 1")
        for k, shock in enumerate(self.shocks):
            if shock.month > self.months:
                raise ValueError(
                    f"shocks[{k}].month: {shock.month} is after the run's last month (months = {self.months})"
                )
        return self


# --- reading, overriding and explaining errors ---------------------------------------------------


def _parse_value(text: str) -> Any:
    """Parse an override's value as TOML does (number, bool, string, array), falling back to a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _schema_model(path: list[str]) -> type[BaseModel] | None:
    """The sub-model of the scenario schema that ``path`` names (written in the file or not), or None."""
    model: type[BaseModel] = Scenario
    for key in path:
        field = model.model_fields.get(key)
        if field is None:
            return None
        options = typing.get_args(field.annotation) or (field.annotation,)
        sections = [t for t in options if isinstance(t, type) and issubclass(t, BaseModel)]
        if not sections:
            return None
        model = sections[0]
    return model


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in the raw scenario dict; list items are addressed by index or by name."""
    keys = dotted.split(".")
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            found = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == key]
            if key.isdigit() and int(key) < len(node):
                idx = int(key)
            elif found:
                idx = found[0]
            else:
                names = [item.get("name") for item in node if isinstance(item, dict)]
                raise ConfigError(
                    f"--set {dotted}: '{where}' names no list item (indices 0..{len(node) - 1}, names {names})"
                )
            if last:
                node[idx] = value
            node = node[idx]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{'.'.join(keys[:depth])}' is a value, not a section")
        if key not in node and not last:
            if _schema_model(keys[: depth + 1]) is None:
                parent = _schema_model(keys[:depth])
                known = sorted(set(node) | set(parent.model_fields if parent else ()))
                raise ConfigError(f"--set {dotted}: unknown section '{where}' (known: {known})")
            node[key] = {}  # a section the file leaves at its defaults
        if last:
            node[key] = value
        else:
            node = node[key]


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` and ``X | None`` layers: the core type and the constraints met on the way."""
    constraints: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            base, *meta = typing.get_args(annotation)
            for item in meta:
                constraints += getattr(item, "metadata", [item])
            annotation = base
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation, constraints
            annotation = options[0]
        else:
            return annotation, constraints


def allowed_range(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The documented range of the number at ``loc`` in ``model``'s schema, e.g. ``0 < value <= 1e+08``
    ('' when it is not a bounded number), for error messages."""
    annotation: Any = model
    constraints: list[Any] = []
    for part in loc:
        core, _ = _unwrap(annotation)
        if isinstance(core, type) and issubclass(core, BaseModel):
            info = core.model_fields.get(str(part))
            if info is None:
                return ""
            annotation, constraints = info.annotation, list(info.metadata)
        elif typing.get_origin(core) in (list, dict):
            annotation, constraints = typing.get_args(core)[-1], []
        # else: a union branch's name (e.g. 'float'), not a step into the schema
    core, more = _unwrap(annotation)
    bounds = {
        key: getattr(c, key)
        for c in [*constraints, *more]
        for key in ("ge", "gt", "le", "lt")
        if getattr(c, key, None) is not None
    }
    if core not in (float, int) or not bounds:
        return ""
    low = f"{bounds['ge']:g} <= " if "ge" in bounds else f"{bounds['gt']:g} < " if "gt" in bounds else ""
    high = f" <= {bounds['le']:g}" if "le" in bounds else f" < {bounds['lt']:g}" if "lt" in bounds else ""
    return f"{low}value{high}" + (", finite" if core is float else ", a whole number")


def format_validation_error(
    error: ValidationError, source: str, what: str = "scenario", schema: type[BaseModel] | None = None
) -> str:
    """One readable line per problem: the dotted field, what is wrong, and what is allowed."""
    lines = [f"invalid {what} {source}:"]
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown parameter (check the spelling; see docs/calibration.md for every parameter)"
        elif item["type"] == "missing":
            msg = "required parameter is missing"
        elif item["type"] == "string_pattern_mismatch" and item["ctx"]["pattern"] in PATTERN_MEANING:
            msg = PATTERN_MEANING[item["ctx"]["pattern"]]
        elif allowed := allowed_range(schema or Scenario, item["loc"]):
            msg = f"{msg}; allowed: {allowed}"
        got = item.get("input")
        shown = "" if item["type"] in ("missing",) or isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {loc or what}: {msg}{shown}")
    return "\n".join(lines)


def resolve_scenario_path(scenario: str | Path) -> Path:
    """A scenario is a path to a TOML file or the name of one in ``experiments/scenarios``."""
    path = Path(scenario)
    if path.suffix != ".toml":
        path = SCENARIO_DIR / f"{scenario}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
        raise ConfigError(f"scenario '{scenario}': no such file (a .toml path, or one of {known})")
    return path


def read_scenario_data(scenario: str | Path) -> dict[str, Any]:
    path = resolve_scenario_path(scenario)
    return read_toml(path, "scenario")


def read_text(path: Path, what: str) -> str:
    """A user's text file (scenario, experiment, manifest, run record); a missing, unreadable or
    non-UTF-8 file is a ConfigError naming it (``what`` says which kind of file it is)."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as a dict; an unreadable, non-UTF-8 or malformed file is a ConfigError naming it."""
    try:
        return tomllib.loads(read_text(path, what))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path}: malformed TOML: {exc}") from None


def load_scenario(
    scenario: str | Path | dict[str, Any] = "baseline",
    overrides: dict[str, Any] | None = None,
    **direct: Any,
) -> Scenario:
    """Read, override and validate a scenario. ``overrides`` maps dotted paths to values (strings from
    the command line are parsed as TOML); ``direct`` sets top-level fields (``seed``, ``months``)."""
    data = copy.deepcopy(scenario) if isinstance(scenario, dict) else read_scenario_data(scenario)
    source = "(dict)" if isinstance(scenario, dict) else str(scenario)
    for dotted, value in (overrides or {}).items():
        apply_override(data, dotted, _parse_value(value) if isinstance(value, str) else value)
    for key, value in direct.items():
        if value is not None:
            data[key] = value
    try:
        scenario_model = Scenario.model_validate(data)
        if scenario_model.history is None:
            return scenario_model
        from core.history import with_observed_paths  # reads data/observed only when asked

        return Scenario.model_validate(with_observed_paths(data, scenario_model))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"invalid scenario {source}: {exc}") from None


def canonical_dict(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain data in a stable form (for manifests and digests)."""
    return scenario.model_dump(mode="json")
