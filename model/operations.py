"""Step 2 of a month: borrowers earn, pay opex and debt service; loans amortise, mature or roll over.

Decide, then act: every payment and every lender's rollover decision is computed from the state at the
start of the phase, then all are applied at once. Agents that cannot pay are returned as defaults,
with their cause, for the cascade to resolve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from agents import Lender, Miner, NeoCloud
from agents.lender import OPERATE
from core.ledger import FLOW_WINDOW, Cause, Kind
from core.secondary import largest_by_group
from model.cascade import _credit_recoveries, lot_disposal
from model.network import contract_revenue_per_gpu, monthly_debt_service
from model.state import MarketState


@dataclass
class PaymentDefaults:
    agents: np.ndarray
    cause: np.ndarray
    parent: np.ndarray


def retire_end_of_life(state: MarketState) -> None:
    """GPUs past their physical life, counted from their purchase, leave the market (scrapped),
    wherever they are: fleets, buyers' installations, repossessed lots (which keep their source's age)."""
    led, month = state.ledger, state.world.month
    dead = (led.end_of_life <= month) & (led.gpus > 0)
    lots = led.lots
    lots_dead = led.end_of_life[lots.source, lots.generation] <= month
    if not dead.any() and not lots_dead.any():
        return
    scrapped = np.where(dead, led.gpus, 0.0).sum(axis=0)
    scrapped += np.bincount(
        lots.generation[lots_dead], weights=lots.units[lots_dead], minlength=led.n_generations
    )
    led.gpus_scrapped += scrapped
    led.gpus[dead] = 0.0
    lots.units[lots_dead] = 0.0
    lots.drop_empty()


def tenant_draws(state: MarketState) -> np.ndarray:
    """One uniform a month per miner and per neo-cloud, each class from its own stream (whatever else
    is in the ledger, or defaulted), so adding an agent of one class moves no other agent's draws.
    Non-borrowers get 1.0 (never below a hazard)."""
    led = state.ledger
    draws = np.ones(led.n_agents)
    for kind, stream in ((Kind.MINER, "tenants.miner"), (Kind.NEOCLOUD, "tenants.neocloud")):
        rows = led.of_kind(kind).nonzero()[0]
        draws[rows] = state.streams[stream].random(rows.size)
    return draws


def conditional_hazard(hazard: np.ndarray, loading: float, factor: float) -> np.ndarray:
    """The month's default probability of tenants whose unconditional hazard is ``hazard``, given the
    common factor ``factor`` of BTC and compute demand (Vasicek's one-factor model, loading ``c``): a
    tenant defaults when ``c f + sqrt(1 - c^2) e < Phi^-1(p)``, so given ``f`` the probability is
    ``Phi((Phi^-1(p) - c f) / sqrt(1 - c^2))``; ``f`` is N(0, 1), so its mean over ``f`` is ``p``:
    tenants default together in bad months without defaulting more often."""
    return ndtr((ndtri(hazard) - loading * factor) / np.sqrt(1.0 - loading * loading))


def host_disruption(state: MarketState, alive: np.ndarray) -> np.ndarray:
    """Share of each live borrower's revenue lost this month because a host miner defaulted in the past
    ``host_failure.disruption_months`` months: ``revenue_lost`` x the share of its fleet that host held.
    A neutralised host (a counterfactual run, ``model.attribution``) disrupts nothing."""
    led, rules = state.ledger, state.scenario.host_failure
    host, tenant, share = led.hosting_host, led.hosting_tenant, led.hosting_share
    since = state.world.month - led.default_month[host]
    struck = alive[tenant] & led.defaulted[host] & (since >= 1) & (since <= rules.disruption_months)
    if state.neutralised is not None:
        struck &= ~state.neutralised[host]
    lost = np.bincount(tenant[struck], weights=share[struck], minlength=led.n_agents)
    return rules.revenue_lost * np.minimum(lost, 1.0)


def earn(state: MarketState) -> np.ndarray:
    """Revenue less operating cost for every borrower this month (cash moves now); returns the
    operating cash flow per agent, the numerator of DSCR."""
    led, world = state.ledger, state.world
    alive = state.borrower_mask() & ~led.defaulted
    month = world.month
    # tenants default at their grade's hazard, higher in stress
    tenants = state.scenario.tenants
    hazard = np.where(led.tenant_subig, tenants.subig_default_per_month, tenants.ig_default_per_month)
    if world.stress:
        hazard = np.minimum(hazard * tenants.stress_multiplier, 1.0)
    if tenants.factor_loading > 0:  # tenants default together in bad months of the common factor
        hazard = conditional_hazard(hazard, tenants.factor_loading, world.common_factor)
    draws = tenant_draws(state)
    led.tenant_alive &= ~((draws < hazard) & ((led.contract_share > 0) | (led.lease_rent > 0)))

    contracted = NeoCloud.contract_in_force(month, led.contract_end, led.tenant_alive, led.contract_share)
    spot = world.revenue_per_gpu()[None, :]
    contract = contract_revenue_per_gpu(world, led.contract_rent)
    revenue = ((1.0 - contracted)[:, None] * spot + contracted[:, None] * contract) * led.gpus
    lease = np.where((month < led.contract_end) & led.tenant_alive, led.lease_rent, 0.0)
    opex = led.gpus @ world.opex_per_gpu
    if state.scenario.host_failure.disruption_months > 0:  # its host's default strands its GPUs a while
        revenue *= (1.0 - host_disruption(state, alive))[:, None]
    hosting_income, internal, guaranteed = _hosting(state, alive)
    mining = np.where(
        led.of_kind(Kind.MINER),
        Miner.mining_margin(
            led.hashrate_ph,
            led.mining_efficiency,
            world.hashprice(),
            world.config.power.price_per_kwh * world.config.power.pue,
        ),
        0.0,
    )
    earned = revenue.sum(axis=1)
    ocf = np.where(alive, earned + lease - opex + mining + hosting_income, 0.0)
    # outside money: all revenue and opex, except hosting fees paid from one borrower to another; a
    # guarantor's payments come from outside
    inflow = np.where(alive, earned + lease + mining, 0.0).sum() + guaranteed
    outflow = np.where(alive, opex, 0.0).sum() - internal
    led.cash_in += inflow
    led.cash_out += outflow
    led.cash += ocf
    # a borrower whose operations lose money covers the loss from cash; below zero it is out of cash
    return ocf


def _hosting(state: MarketState, alive: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A hosted neo-cloud pays the hosting part of its opex to its host miners (each its share)
    instead of a third party; after it defaults, a guarantee of its hosting pays its live hosts its last
    month's fee until the cap is used up. Returns each host's income, the fees paid between borrowers
    (not outside money) and what guarantors paid."""
    led, world = state.ledger, state.world
    fee = led.gpus @ (world.generations.power_kw * world.config.power.hosting_per_kw_month)
    host, tenant, share = led.hosting_host, led.hosting_tenant, led.hosting_share
    live = alive[tenant] & ~led.defaulted[host]
    income = np.bincount(host[live], weights=fee[tenant[live]] * share[live], minlength=led.n_agents)
    internal = np.bincount(tenant[live], weights=fee[tenant[live]] * share[live], minlength=led.n_agents)
    guarantees = led.guarantees
    if not len(guarantees):
        return income, float(internal.sum()), 0.0
    led.hosting_fee = np.where(alive, fee, led.hosting_fee)
    backed = np.flatnonzero(guarantees.covers_hosting & (guarantees.cap_left > 0))
    backed = backed[led.defaulted[guarantees.obligor[backed]]]
    if not backed.size:
        return income, float(internal.sum()), 0.0
    # each tie of a guaranteed tenant: which guarantee backs it (one per tenant, by the schema)
    backing = np.full(led.n_agents, -1)
    backing[guarantees.obligor[backed]] = backed
    ties = np.flatnonzero((backing[tenant] >= 0) & ~led.defaulted[host])
    due = led.hosting_fee[tenant[ties]] * share[ties]
    due_by_guarantee = np.bincount(backing[tenant[ties]], weights=due, minlength=len(guarantees))
    paid = guarantees.pay(backed, due_by_guarantee[backed])
    scale = np.zeros(len(guarantees))
    owed = due_by_guarantee[backed]
    scale[backed] = np.divide(paid, owed, out=np.zeros(backed.size), where=owed > 0)
    income = income + np.bincount(
        host[ties], weights=due * scale[backing[tenant[ties]]], minlength=led.n_agents
    )
    return income, float(internal.sum()), float(paid.sum())


def pay_debt_service(state: MarketState, ocf: np.ndarray) -> PaymentDefaults:
    """Interest and scheduled amortisation on every active loan; maturing balances roll over when the
    lender agrees, else fall due. Debtors who cannot pay (cash, then new equity) default."""
    led, world = state.ledger, state.world
    loans = led.loans
    act = (loans.active & ~led.defaulted[loans.debtor]).nonzero()[0]
    principal = loans.principal[act]
    loans.exposure_years[act] += principal / 12.0  # the balance at risk this month (fair spreads)
    rate = (world.base_rate + loans.spread[act]) / 12.0
    interest = principal * rate
    scheduled = (
        monthly_debt_service(
            principal,
            loans.spread[act],
            loans.tenor[act],
            loans.age[act],
            loans.amortisation[act],
            world.base_rate,
        )
        - interest
    )
    maturing = loans.tenor[act] - loans.age[act] <= 1
    balloon = np.where(maturing, principal - scheduled, 0.0)

    # lenders decide on rollovers from their own state at the start of the phase (a borrower that
    # cured last month's breach is compliant again; one that could not has already defaulted)
    capital_ratio = state.capital_ratio()
    params = state.lender_params
    if params["funding_factor_loading"].any():  # their own funding tightens in a bad month
        params = {**params, "rollover_capital_ratio": Lender.rollover_threshold(params, world.common_factor)}
    stressed = Lender.stressed(led.kind, capital_ratio, led.defaulted, state.redeeming, params)
    agree = Lender.agrees_to_roll(led.kind, stressed, state.markets_open)[loans.creditor[act]]
    rolled = maturing & agree & (balloon > 0)
    due_balloon = np.where(rolled, 0.0, balloon)

    debtors = loans.debtor[act]
    n = led.n_agents
    service = np.bincount(debtors, weights=interest + scheduled, minlength=n)
    balloons = np.bincount(debtors, weights=due_balloon, minlength=n)
    total_due = service + balloons
    cash = led.cash
    # lenders can also turn outside assets into cash; borrowers can raise equity while markets are open
    liquid = cash + np.where(state.lender_mask(), led.external_assets, 0.0)
    equity_room = led.equity_capacity if state.markets_open else np.zeros(n)
    short = np.maximum(total_due - liquid, 0.0)
    can_pay = short <= equity_room + 1e-9  # also: a debt-free borrower must cover a negative cash balance
    payer = np.zeros(n, dtype=bool)
    payer[debtors] = True
    payer |= state.borrower_mask() & ~led.defaulted & (led.cash < 0)  # out of cash even before debt service
    failed = payer & ~can_pay
    cause = np.where(balloons > 0, Cause.ROLLOVER_REFUSED, Cause.PAYMENT)
    cause = np.where((balloons > 0) & (service > liquid + equity_room), Cause.PAYMENT, cause)

    # act: payers pay; the rest pay nothing (their assets go to their creditors in the cascade)
    pays = can_pay[debtors]
    equity_used = np.where(can_pay, np.minimum(short, equity_room), 0.0)
    led.equity_capacity -= equity_used
    led.cash += equity_used
    led.cash_in += equity_used.sum()
    from_external = np.where(
        can_pay & state.lender_mask(),
        np.clip(total_due - np.maximum(cash, 0.0) - equity_used, 0.0, led.external_assets),
        0.0,
    )
    led.external_assets -= from_external
    led.cash_in += from_external.sum()  # outside assets sold for cash
    led.cash += from_external - np.where(can_pay, total_due, 0.0)
    received = (interest + scheduled + due_balloon) * pays
    led.cash += np.bincount(loans.creditor[act], weights=received, minlength=n)
    repaid = (scheduled + due_balloon) * pays
    loans.principal[act] -= repaid
    loans.repaid[act] += repaid
    loans.age[act] += pays.astype(np.int64)
    roll = act[rolled & pays]
    loans.age[roll] = 0
    loans.tenor[roll] = loans.rollover_tenor[roll]
    done = act[pays & (loans.principal[act] <= 1e-6 * np.maximum(loans.original_principal[act], 1.0))]
    loans.repaid[done] += loans.principal[done]
    loans.principal[done] = 0.0
    loans.active[done] = False

    led.operating_cash_flow = ocf
    led.debt_service_due = service
    led.cash_flow_history[world.month % FLOW_WINDOW] = ocf
    led.service_history[world.month % FLOW_WINDOW] = service
    fails = failed.nonzero()[0]
    parent = np.full(fails.size, -1, dtype=np.int64)
    refused = cause[fails] == Cause.ROLLOVER_REFUSED
    if refused.any():
        refusals = maturing & ~rolled & (balloon > 0)
        parent[refused] = _refusing_lender_parent(state, fails[refused], act[refusals], balloon[refusals])
    return PaymentDefaults(fails, cause[fails].astype(np.int8), parent)


def _refusing_lender_parent(
    state: MarketState, debtors: np.ndarray, refused_loans: np.ndarray, balloons: np.ndarray
) -> np.ndarray:
    """Attribute a refused rollover to the default that stressed the lender (or the lender itself if
    it failed); -1 when the lender refused for its own reasons (a static pool, a closed market). A
    debtor refused by several lenders is attributed to the one refusing the largest balloon."""
    led = state.ledger
    loans = led.loans
    refuser, _ = largest_by_group(
        led.n_agents, loans.debtor[refused_loans], balloons, loans.creditor[refused_loans]
    )
    lender = refuser[debtors]
    known = lender >= 0
    out = np.full(debtors.size, -1, dtype=np.int64)
    out[known] = np.where(led.defaulted[lender[known]], lender[known], led.stress_source[lender[known]])
    return out


def pay_redemptions(state: MarketState) -> None:
    """Credit funds pay investors who redeem after losses; outside money leaves the market."""
    led = state.ledger
    equity = state.lender_equity()
    funds = led.of_kind(Kind.CREDIT_FUND)
    wanted = np.where(funds, Lender.redemptions(equity, led.peak_equity, state.lender_params), 0.0)
    wanted = np.where(led.defaulted, 0.0, wanted)
    paid = np.minimum(wanted, np.maximum(led.cash, 0.0))
    led.cash -= paid  # investors' capital is the fund's equity: paying it out lowers equity, not debt
    led.cash_out += paid.sum()
    state.redeeming = wanted > 0
    led.peak_equity = np.where(funds, np.maximum(led.peak_equity, equity), 0.0)


def pay_out_lender_earnings(state: MarketState) -> None:
    """Live lenders that distribute their earnings (``lenders.<kind>.pays_out_earnings``) pay out of cash,
    each month, the equity above their starting capital ratio: x = (E - t A) / (1 - t) brings E / A back
    to t. Banks distribute profits above their capital target, funds their income to investors, ABS
    trusts their excess spread. Without it, interest retained against free outside liabilities lifts
    the ratio through any crisis whose losses are smaller than the interest (docs/calibration.md 9);
    with it, the ratio stays at its start in calm months and falls with losses."""
    led = state.ledger
    pays = state.lender_mask() & ~led.defaulted & (state.lender_params["pays_out_earnings"] > 0)
    if not pays.any():
        return
    target = led.target_capital_ratio
    assets = state.lender_assets()  # once, for the equity and the target
    excess = (state.lender_equity(assets) - target * assets) / np.maximum(1.0 - target, 1e-9)
    paid = np.where(pays, np.clip(excess, 0.0, np.maximum(led.cash, 0.0)), 0.0)
    led.cash -= paid
    led.cash_out += paid.sum()


def pay_out_surplus(state: MarketState, failed: np.ndarray) -> None:
    """Borrowers keep a cash buffer of some months of debt service and spend the rest outside the
    modelled fleet (growth capex, dividends): cash that piles up would otherwise make them
    unrealistically safe (an assumption; see docs/calibration.md). The borrowers in ``failed`` (this
    month's payment failures, not yet in default) pay nothing out: their cash is their creditors'. Nor
    does a borrower in breach (flagged by last month's covenant tests, cured or not) or with a DSCR
    shortfall on record: the cash trap of credit agreements keeps its cash in the business."""
    led = state.ledger
    live = state.borrower_mask() & ~led.defaulted & np.isfinite(led.cash_buffer_months)
    live &= ~state.in_breach & (led.dscr_breach_months == 0)
    live[failed] = False
    target = np.full(led.n_agents, np.inf)
    target[live] = led.cash_buffer_months[live] * led.debt_service_due[live]
    surplus = np.maximum(led.cash - target, 0.0)
    led.cash -= surplus
    led.cash_out += surplus.sum()


def operate_repossessed(state: MarketState) -> None:
    """Lenders that chose to operate repossessed lots (``secondary.lender_disposal = 'choice'``) earn
    this month's margin on them, idling units whose margin is negative, less the host's fee. Like a
    sale's proceeds, the income is credited to the loan the lot secures up to its unrecovered claim;
    the rest belongs to the borrower's owners."""
    led, world = state.ledger, state.world
    lots = led.lots
    if len(lots) == 0:
        return
    choice, _ = lot_disposal(state)
    running = choice == OPERATE
    if not running.any():
        return
    margin = np.maximum(world.margin_per_gpu(), 0.0) * (1.0 - state.scenario.secondary.operator_fee)
    income = lots.units[running] * margin[lots.generation[running]]
    kept = _credit_recoveries(led.loans, lots.loan[running], income, world.month)
    led.cash += np.bincount(lots.holder[running], weights=kept, minlength=led.n_agents)
    led.cash_in += income.sum()
    led.cash_out += income.sum() - kept.sum()
