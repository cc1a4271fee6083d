"""Steps 3-4 of a month: covenants, then the default -> repossession -> fire sale -> re-mark loop.

Each round, on whole arrays:
1. test every borrower's covenants at the latest collateral price (DSCR once a month, in the first
   round of the month's first cascade; LTV at the secondary mark and BTC margin calls in every round);
2. breached borrowers cure (cash, equity, selling GPUs) or default;
3. defaulted borrowers' GPUs are repossessed into lots held by their secured lenders, their BTC and
   cash paid to their creditors by priority; each loan's principal becomes its exposure at default;
4. lenders' equity is re-measured and lender-to-lender claims cleared (Eisenberg-Noe, or zero recovery);
5. lenders and curing borrowers post GPUs (a lot whose workout period has ended goes to auction); the
   secondary market clears; every holder is re-marked.
The loop ends when a round brings no new default and no fall in any mark, or at the round cap (recorded).
Every default records its cause and the agent that caused it, so a cascade is a tree.

Speed (results unchanged): lender equity, assets and loan totals are worked out once per phase and
reused (``Ledger.caching``; they are invalidated after every phase that can change a balance, and kept
through a covenant test with no live borrower, which changes none they depend on);
phases with nothing to do are skipped (no live borrower: no covenant test; no lots: no lender offers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from agents import Borrower, Lender, Miner
from agents.lender import ORDERLY, SETTLE
from core.clearing import eisenberg_noe, zero_recovery_failed
from core.ledger import COLLATERALS, FLOW_WINDOW, INSTRUMENTS, KIND_BY_NAME, Cause, Ledger
from core.secondary import BuyerBook, Offers, clear, clear_impact, largest_by_group, run_starts
from model.state import MarketState

GPU = COLLATERALS.index("gpu")
BTC = COLLATERALS.index("btc")
INTERBANK = INSTRUMENTS.index("interbank")
BOOK_LIFE_MONTHS = 72
MARGIN_RESTORE = 0.75  # a met margin call restores the loan to 75 % of the call level (assumption)


@dataclass
class CascadeReport:
    rounds: int = 0
    capped: bool = False
    new_defaults: int = 0
    forced_units: float = 0.0
    forced_value: float = 0.0
    cure_units: float = 0.0


_EMPTY_INT = np.zeros(0, np.int64)
_EMPTY_CAUSE = np.zeros(0, np.int8)
_EMPTY_FLOAT = np.zeros(0)
_NO_OFFERS = Offers(_EMPTY_INT, _EMPTY_FLOAT, _EMPTY_FLOAT, _EMPTY_INT, _EMPTY_INT, _EMPTY_INT)


@dataclass
class Failures:
    agents: np.ndarray
    cause: np.ndarray
    parent: np.ndarray

    @classmethod
    def none(cls) -> Failures:
        return cls(_EMPTY_INT, _EMPTY_CAUSE, _EMPTY_INT)  # empty arrays: nothing can change them

    @classmethod
    def join(cls, parts: list[Failures]) -> Failures:
        """Concatenate, keeping the first record of an agent listed in two parts (each part lists an
        agent at most once)."""
        parts = [p for p in parts if p.agents.size]
        if len(parts) <= 1:
            return parts[0] if parts else cls.none()
        agents = np.concatenate([p.agents for p in parts])
        cause = np.concatenate([p.cause for p in parts])
        parent = np.concatenate([p.parent for p in parts])
        _, first = np.unique(agents, return_index=True)
        first.sort()
        return cls(agents[first], cause[first], parent[first])


def run_cascade(
    state: MarketState, book: BuyerBook, buyer_index: np.ndarray, initial: Failures
) -> CascadeReport:
    """Resolve a month's defaults until quiet (or the round cap). ``initial`` holds payment failures
    and shocks from earlier in the month."""
    led = state.ledger
    with led.caching():
        led.invalidate()  # balances may have changed since an enclosing block cached them
        return _cascade_loop(state, book, buyer_index, initial)


def _cascade_loop(
    state: MarketState, book: BuyerBook, buyer_index: np.ndarray, initial: Failures
) -> CascadeReport:
    rules = state.scenario.cascade
    led = state.ledger
    report = CascadeReport()
    pending = initial
    # DSCR is tested at most once a month, in the first round of the month's first cascade (a shock
    # between steps runs another cascade in the same month), and only at its test dates
    test_dscr = state.dscr_tested_month != state.world.month and dscr_test_date(state)
    state.dscr_tested_month = state.world.month
    for round_ in range(rules.max_rounds):
        report.rounds = round_ + 1
        if pending.agents.size:  # already failed: they must not also cure, prepay or sell this round
            led.record_default(pending.agents, state.world.month, round_, pending.cause, pending.parent)
        breaches, cure_offers = test_and_cure(state, test_dscr=test_dscr and round_ == 0)
        failures = Failures.join([pending, breaches])
        if failures.agents.size:
            if failures is not pending:  # new breaches (``pending`` alone is recorded above)
                led.record_default(
                    failures.agents, state.world.month, round_, failures.cause, failures.parent
                )
            repossess(state, failures.agents)
            led.invalidate()
            report.new_defaults += failures.agents.size
        pending = Failures.none()
        lender_failures = clear_lenders(state)
        if lender_failures.agents.size:
            led.invalidate()
            led.record_default(
                lender_failures.agents,
                state.world.month,
                round_,
                lender_failures.cause,
                lender_failures.parent,
            )
            report.new_defaults += lender_failures.agents.size
        to_sell = deleverage_from_cash(state) if state.lender_params["leverage_targeting"].any() else None
        offers = Offers.concat([lender_offers(state, to_sell), cure_offers]) if len(led.lots) else cure_offers
        fell = False
        if len(offers):
            fell = sell(state, offers, book, buyer_index, report)
            led.invalidate()
        quiet = failures.agents.size == 0 and lender_failures.agents.size == 0 and not fell
        if quiet:
            return report
    report.capped = True
    return report


# --- covenants and cures -------------------------------------------------------------------------


def _per_borrower(state: MarketState, loan_mask: np.ndarray, values: np.ndarray, reduce: str) -> np.ndarray:
    """Reduce a loan-level covenant to the borrower (the tightest covenant binds)."""
    n = state.ledger.n_agents
    debtors = state.ledger.loans.debtor[loan_mask]
    if reduce == "min":
        out = np.full(n, np.inf)
        np.minimum.at(out, debtors, values[loan_mask])
    else:
        out = np.zeros(n)
        np.maximum.at(out, debtors, values[loan_mask])
    return out


class _CovenantLimits(NamedTuple):
    """Each borrower's tightest LTV covenant over its active GPU-secured loans and margin-call level
    over its active BTC-secured loans (inf: none), with what the tests derive from them."""

    ltv_limit: np.ndarray
    ltv_finite: np.ndarray
    ltv_or_zero: np.ndarray  # the limit where finite, else 0
    call_finite: np.ndarray
    call_or_zero: np.ndarray
    restore: np.ndarray  # the LTV a met margin call restores (MARGIN_RESTORE x the call level, or 0)


def _covenant_limits(state: MarketState, gpu_loans: np.ndarray, btc_loans: np.ndarray) -> _CovenantLimits:
    """The covenant limits of ``test_and_cure``: fixed terms reduced over the active loans, so they are
    worked out again only when a loan's activity changes (``LoanBook.per_activity``). Read-only."""
    loans = state.ledger.loans
    ltv_limit = _per_borrower(state, gpu_loans, loans.ltv_max, "min")
    ltv_limit = np.where(np.isfinite(ltv_limit), ltv_limit, np.inf)
    ltv_finite = np.isfinite(ltv_limit)
    call_level = _per_borrower(state, btc_loans, loans.margin_call_ltv, "min")
    call_finite = np.isfinite(call_level)
    call_or_zero = np.where(call_finite, call_level, 0.0)
    limits = _CovenantLimits(
        ltv_limit=ltv_limit,
        ltv_finite=ltv_finite,
        ltv_or_zero=np.where(ltv_finite, ltv_limit, 0.0),
        call_finite=call_finite,
        call_or_zero=call_or_zero,
        restore=MARGIN_RESTORE * call_or_zero,
    )
    for array in limits:
        array.flags.writeable = False
    return limits


def test_and_cure(state: MarketState, test_dscr: bool) -> tuple[Failures, Offers]:
    """Test covenants on every live borrower, let breached ones cure, and return who defaults (with
    cause and parent) and the GPUs curing borrowers put up for sale. Forgets the ledger's cached
    aggregates once cures and margin calls have changed balances."""
    led, world = state.ledger, state.world
    loans = led.loans
    if not led.static("any_borrower", lambda: bool(state.borrower_mask().any())):
        return _nobody_to_test(state, test_dscr)
    alive = state.borrower_mask() & ~led.defaulted
    if not alive.any():
        return _nobody_to_test(state, test_dscr)
    covenants = state.scenario.covenants
    # a waiver's covenant holiday suspends the DSCR and LTV tests (covenants.waivers)
    waived = alive & (led.waiver_until > world.month) if covenants.waivers else None
    tested = alive if waived is None else alive & ~waived
    collateral = state.ltv_collateral()
    gpu_loans = loans.active & led.static("gpu_secured", lambda: loans.collateral == GPU)
    btc_loans = loans.active & led.static("btc_secured", lambda: loans.collateral == BTC)
    limits = loans.per_activity("covenant_limits", lambda: _covenant_limits(state, gpu_loans, btc_loans))
    gpu_debt = np.bincount(
        loans.debtor[gpu_loans], weights=loans.principal[gpu_loans], minlength=led.n_agents
    )
    ltv_limit = limits.ltv_limit
    limit_value = np.where(limits.ltv_finite, limits.ltv_or_zero * collateral, np.inf)
    ltv_breach = tested & (gpu_debt > 0) & (gpu_debt > limit_value * (1 + 1e-9))
    need_ltv = np.where(ltv_breach, gpu_debt - limit_value, 0.0)

    dscr_breach = np.zeros(led.n_agents, dtype=bool)
    need_dscr = np.zeros(led.n_agents)
    shortfall = np.zeros(led.n_agents)  # cash flow the DSCR test lacks (an equity cure's amount)
    if test_dscr:
        total_debt = led.debt()
        dscr_min = _per_borrower(state, loans.active, loans.dscr_min, "max")
        cash_flow, service = trailing_flows(state)
        short = tested & (dscr_min > 0) & (service > 0) & (cash_flow < dscr_min * service)
        rules = state.scenario.cascade
        led.dscr_breach_months = np.where(short, led.dscr_breach_months + rules.dscr_test_every_months, 0)
        dscr_breach = short & (led.dscr_breach_months > rules.cure_grace_months)
        with np.errstate(divide="ignore", invalid="ignore"):
            cut = 1.0 - np.clip(cash_flow / (dscr_min * service), 0.0, 1.0)
        need_dscr = np.where(dscr_breach, cut * total_debt, 0.0)
        shortfall = np.where(dscr_breach, dscr_min * service - cash_flow, 0.0)

    # BTC margin calls (miners): top up with cash; a missed call makes the lender sell just the BTC that
    # restores the ratio, and the miner defaults only when its BTC no longer covers the loan
    btc_debt = np.bincount(
        loans.debtor[btc_loans], weights=loans.principal[btc_loans], minlength=led.n_agents
    )
    btc_value = led.btc * world.btc_price
    call_value = np.where(limits.call_finite, limits.call_or_zero * btc_value, np.inf)
    called = alive & (btc_debt > 0) & (btc_debt > call_value)
    margin_fail = called  # no call (most rounds): nothing is topped up, sold or seized
    if called.any():
        call_need = np.where(called, btc_debt - MARGIN_RESTORE * call_value, 0.0)
        met = called & Miner.meet_margin_call(call_need, np.maximum(led.cash, 0.0))
        _prepay(state, np.where(met, call_need, 0.0), btc_loans)
        restore = limits.restore
        covered = called & ~met & (btc_debt <= btc_value) & (restore < 1.0)
        # selling x of BTC against the loan: (debt - x) = restore x (value - x)
        to_sell = np.where(
            covered, (btc_debt - restore * btc_value) / np.where(covered, 1.0 - restore, 1.0), 0.0
        )
        sell_pledged_btc(state, np.minimum(to_sell, btc_value))
        margin_fail = called & ~met & ~covered

    breached = (ltv_breach | dscr_breach) & ~margin_fail
    state.in_breach |= breached | called
    if waived is not None:
        state.in_breach |= waived  # the cash trap holds through a covenant holiday
    idx = breached.nonzero()[0]
    if idx.size == 0:  # nobody to cure (most rounds): only margin failures
        return _margin_failures(state, margin_fail), _NO_OFFERS
    need = np.maximum(need_ltv, need_dscr)
    equity_room = led.equity_capacity if state.markets_open else np.zeros(led.n_agents)
    if covenants.equity_cure == "agreement":
        idx, equity_room = equity_cures(state, idx, shortfall, need_ltv, gpu_loans, equity_room)
    # the value a cure sale is priced at, and the LTV limit on that value: with another basis than the
    # mark the covenant's value moves in proportion with the fleet sold, so the limit is rescaled
    sale_base, sale_limit = collateral, ltv_limit
    if led.ltv_basis.any():
        sale_base = state.collateral_value() + state.contract_value()
        finite = np.isfinite(ltv_limit) & (sale_base > 0)
        sale_limit = np.where(finite, limit_value / np.where(finite, sale_base, 1.0), np.inf)
    plan = Borrower.plan_cure(
        need[idx],
        np.maximum(led.cash[idx], 0.0),
        equity_room[idx],
        gpu_debt[idx],
        sale_base[idx],
        np.where(np.isfinite(sale_limit[idx]), sale_limit[idx], 1.0),
        can_sell=~dscr_breach[idx],
    )
    # act: prepay from cash and new equity; post the GPUs to be sold
    raised = np.zeros(led.n_agents)
    raised[idx] = plan.from_equity
    led.equity_capacity -= raised
    led.cash += raised
    led.cash_in += raised.sum()
    prepay = np.zeros(led.n_agents)
    prepay[idx] = plan.from_cash + plan.from_equity
    # an LTV cure must cut GPU-secured debt; a DSCR cure cuts debt service on any loan: a borrower in
    # breach of both cuts its GPU-secured debt first, by what the LTV covenant needs, then all its loans
    to_gpu_loans = np.where(dscr_breach, np.minimum(prepay, need_ltv), prepay)
    _prepay(state, to_gpu_loans, gpu_loans)
    _prepay(state, prepay - to_gpu_loans, loans.active)
    sellers = idx[plan.cured & (plan.sale_value > 0)]
    share = plan.sale_value[plan.cured & (plan.sale_value > 0)] / sale_base[sellers]
    units = led.gpus[sellers] * share[:, None]
    s_rows, gens = np.nonzero(units > 0)
    fundamental = state.fundamental()
    cure_offers = Offers(
        generation=gens,
        units=units[s_rows, gens],
        reserve=state.scenario.cascade.scrap_value_share * fundamental[gens],
        seller=sellers[s_rows],
        lot=np.full(gens.size, -1, dtype=np.int64),
        source=sellers[s_rows],
    )

    uncured = idx[~plan.cured]
    if covenants.waivers and uncured.size:
        uncured = uncured[~grant_waivers(state, uncured)]
    ltv_fail = uncured[ltv_breach[uncured] & (need_ltv[uncured] >= need_dscr[uncured])]
    dscr_fail = np.setdiff1d(uncured, ltv_fail)
    margin = np.flatnonzero(margin_fail)
    seize_btc(state, margin)
    led.invalidate()
    failures = Failures(
        agents=np.concatenate([margin, ltv_fail, dscr_fail]),
        cause=np.concatenate(
            [
                np.full(margin.size, Cause.MARGIN_CALL),
                np.full(ltv_fail.size, Cause.COVENANT_LTV),
                np.full(dscr_fail.size, Cause.COVENANT_DSCR),
            ]
        ).astype(np.int8),
        parent=np.concatenate(
            [np.full(margin.size, -1), price_parent(state, ltv_fail), np.full(dscr_fail.size, -1)]
        ).astype(np.int64),
    )
    return failures, cure_offers


def equity_cures(
    state: MarketState,
    breached: np.ndarray,
    shortfall: np.ndarray,
    need_ltv: np.ndarray,
    gpu_loans: np.ndarray,
    equity_room: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Equity cures as credit agreements allow them (``covenants.equity_cure = 'agreement'``): the
    sponsor injects, from the borrower's remaining equity capacity, only what the tests need (DSCR: the
    cash-flow shortfall, counted as cash flow of the test period and so of the trailing tests that
    include it; LTV: the prepayment its cash cannot cover), at most ``equity_cures_per_year`` times in
    any twelve months and ``equity_cures_total`` times in all; a cure must cure every breach at once.
    Returns the breached borrowers still to cure and the equity room left to them (none: equity comes
    only through a cure)."""
    led, month = state.ledger, state.world.month
    rules = state.scenario.covenants
    recent = (month - led.equity_cure_months[:, breached] < 12).sum(axis=0)
    allowed = (recent < rules.equity_cures_per_year) & (led.equity_cures[breached] < rules.equity_cures_total)
    from_cash = np.minimum(np.maximum(led.cash[breached], 0.0), need_ltv[breached])
    amount = shortfall[breached] + need_ltv[breached] - from_cash
    cure = allowed & (amount > 0) & (amount <= equity_room[breached])
    cured = breached[cure]
    if cured.size:
        injected = amount[cure]
        led.equity_capacity[cured] -= injected
        led.cash[cured] += injected
        led.cash_in += injected.sum()
        prepay = np.zeros(led.n_agents)
        prepay[cured] = need_ltv[cured]
        _prepay(state, prepay, gpu_loans)
        led.cash_flow_history[month % FLOW_WINDOW, cured] += shortfall[cured]
        oldest = led.equity_cure_months[:, cured].argmin(axis=0)
        led.equity_cure_months[oldest, cured] = month
        led.equity_cures[cured] += 1
        led.invalidate()
    return breached[~cure], np.zeros(led.n_agents)


def grant_waivers(state: MarketState, candidates: np.ndarray) -> np.ndarray:
    """Which borrowers that cannot cure a breach their covenant lenders waive (``covenants.waivers``),
    from what the lenders observe. Enforcing now recovers ``R = min(D, V + cash) - w D``: ``D`` the
    principal of the loans that carry a DSCR or LTV covenant, ``V`` the GPUs at the lenders' mark, ``w``
    the workout cost share. Continuing is worth ``C = min(D, (D / total debt) x f x a(n, r))``: the
    borrower's trailing monthly operating cash flow ``f`` (of the DSCR test's window), shared pro rata
    by balance with its other creditors, for the covenant loans' longest remaining tenor ``n`` at their
    balance-weighted rate ``r``. The lenders waive when ``C`` plus the waiver fee is at least ``R``:
    the fee (``waiver_fee`` x D) is capitalised into the covenant loans, their margin steps up by
    ``waiver_spread_step_up`` and the tests are suspended for ``waiver_months``. Returns a mask over
    ``candidates``."""
    led, world = state.ledger, state.world
    loans = led.loans
    rules, terms = state.scenario.covenants, state.scenario.cascade
    covenant = loans.active & ((loans.dscr_min > 0) | np.isfinite(loans.ltv_max))
    debtor = loans.debtor[covenant]
    n = led.n_agents
    debt = np.bincount(debtor, weights=loans.principal[covenant], minlength=n)[candidates]
    rate = np.bincount(debtor, weights=loans.principal[covenant] * loans.spread[covenant], minlength=n)
    rate = world.base_rate + np.divide(rate[candidates], debt, out=np.zeros(candidates.size), where=debt > 0)
    months_left = np.zeros(n)
    np.maximum.at(months_left, debtor, (loans.tenor[covenant] - loans.age[covenant]).astype(float))
    months_left = months_left[candidates]
    monthly = rate / 12.0
    with np.errstate(divide="ignore", invalid="ignore"):
        annuity = np.where(monthly > 0, (1.0 - (1.0 + monthly) ** (-months_left)) / monthly, months_left)
    cash_flow, _ = trailing_flows(state)
    months_seen = min(terms.dscr_trailing_months, max(world.month, 1))
    per_month = np.maximum(cash_flow[candidates] / months_seen, 0.0)
    total = led.debt()[candidates]
    share = np.divide(debt, total, out=np.zeros(candidates.size), where=total > 0)
    keep_going = np.minimum(debt, share * per_month * annuity)
    enforce = (
        np.minimum(debt, state.collateral_value()[candidates] + np.maximum(led.cash[candidates], 0.0))
        - terms.workout_cost_share * debt
    )
    grant = (debt > 0) & (keep_going + rules.waiver_fee * debt >= enforce)
    granted = candidates[grant]
    if granted.size:
        sel = np.flatnonzero(covenant & np.isin(loans.debtor, granted))
        fee = rules.waiver_fee * loans.principal[sel]
        loans.principal[sel] += fee  # paid in kind: new principal lent to pay the fee
        loans.original_principal[sel] += fee
        loans.spread[sel] += rules.waiver_spread_step_up
        led.waiver_until[granted] = world.month + rules.waiver_months
        led.waivers[granted] += 1
    return grant


def dscr_test_date(state: MarketState) -> bool:
    """Whether this month ends a DSCR test period: its calendar month (1-12) is a multiple of
    ``cascade.dscr_test_every_months`` (1: every month; 3: March, June, September, December)."""
    calendar_month = (state.world.start_index + state.world.month) % 12 + 1
    return calendar_month % state.scenario.cascade.dscr_test_every_months == 0


def trailing_flows(state: MarketState) -> tuple[np.ndarray, np.ndarray]:
    """Operating cash flow and debt service summed over the last ``cascade.dscr_trailing_months``
    months (months before the run count as nothing on both sides)."""
    led, months = state.ledger, state.scenario.cascade.dscr_trailing_months
    if months == 1:
        return led.operating_cash_flow, led.debt_service_due
    rows = (state.world.month - np.arange(months)) % FLOW_WINDOW
    return led.cash_flow_history[rows].sum(axis=0), led.service_history[rows].sum(axis=0)


def _margin_failures(state: MarketState, margin_fail: np.ndarray) -> Failures:
    """The end of ``test_and_cure`` when no borrower is to cure: the same effects on the ledger as the
    cure with nothing to do (adding the zero equity raised turns a cash balance of -0.0 into 0.0),
    then the BTC of failed margin calls is seized."""
    led = state.ledger
    led.cash += 0.0
    led.cash_in += 0.0
    margin = margin_fail.nonzero()[0]
    seize_btc(state, margin)
    led.invalidate()
    if margin.size == 0:
        return Failures.none()
    return Failures(
        margin,
        np.full(margin.size, Cause.MARGIN_CALL, dtype=np.int8),
        np.full(margin.size, -1, dtype=np.int64),
    )


def _nobody_to_test(state: MarketState, test_dscr: bool) -> tuple[Failures, Offers]:
    """``test_and_cure`` with no live borrower: nobody breaches, cures or sells. Only its effects on
    the ledger remain: the DSCR breach counters restart, and adding the (zero) equity raised turns a
    cash balance of -0.0 into 0.0. The cached aggregates stay valid: no sum with that cash changes, as
    the loan assets added to it are never -0.0 (a sum of loans starts at 0.0)."""
    led = state.ledger
    if test_dscr:
        led.dscr_breach_months = np.zeros(led.n_agents, dtype=np.int64)
    led.cash += 0.0
    led.cash_in += 0.0
    return Failures.none(), _NO_OFFERS


def price_parent(state: MarketState, borrowers: np.ndarray) -> np.ndarray:
    """The default whose fire sale depressed the borrower's collateral most (-1 if none did)."""
    if borrowers.size == 0:
        return np.zeros(0, dtype=np.int64)
    held = state.ledger.gpus[borrowers] * state.unit_values()[borrowers]
    lost = held * (1.0 - state.marks.ratio)[None, :]
    lost = np.where(state.last_driver[None, :] >= 0, lost, 0.0)
    worst = lost.argmax(axis=1)
    return np.where(lost.max(axis=1) > 0, state.last_driver[worst], -1)


def _prepay(state: MarketState, amount: np.ndarray, loan_mask: np.ndarray) -> None:
    """Each debtor pays ``amount`` out of its cash, spread over its loans in ``loan_mask`` by balance."""
    if not (amount > 0).any():
        return
    led = state.ledger
    loans = led.loans
    sel = np.flatnonzero(loan_mask & (amount[loans.debtor] > 0))
    owed = np.bincount(loans.debtor[sel], weights=loans.principal[sel], minlength=led.n_agents)
    pay = np.minimum(amount, owed)
    share = np.divide(
        loans.principal[sel],
        owed[loans.debtor[sel]],
        out=np.zeros(sel.size),
        where=owed[loans.debtor[sel]] > 0,
    )
    paid = pay[loans.debtor[sel]] * share
    loans.principal[sel] -= paid
    loans.repaid[sel] += paid
    led.cash -= pay
    led.cash += np.bincount(loans.creditor[sel], weights=paid, minlength=led.n_agents)
    done = sel[loans.principal[sel] <= 1e-9 * np.maximum(loans.original_principal[sel], 1.0)]
    loans.active[done] = False


def seize_btc(state: MarketState, miners: np.ndarray) -> None:
    """Margin-call failure: BTC lenders take the BTC and sell it (a deep market) against their loans."""
    if miners.size == 0:
        return
    amount = np.zeros(state.ledger.n_agents)
    amount[miners] = np.inf
    sell_pledged_btc(state, amount)


def sell_pledged_btc(state: MarketState, amount: np.ndarray) -> None:
    """BTC lenders sell up to ``amount`` (USD, per miner) of the miner's BTC (a deep market, at today's
    price) and apply the proceeds to its BTC loans pro rata by balance, never beyond what is owed."""
    if not (amount > 0).any():
        return
    led = state.ledger
    loans = led.loans
    btc_loans = np.flatnonzero(
        loans.active & led.static("btc_secured", lambda: loans.collateral == BTC) & (amount[loans.debtor] > 0)
    )
    proceeds = np.minimum(led.btc * state.world.btc_price, amount)
    owed = np.bincount(loans.debtor[btc_loans], weights=loans.principal[btc_loans], minlength=led.n_agents)
    share = np.divide(
        loans.principal[btc_loans],
        owed[loans.debtor[btc_loans]],
        out=np.zeros(btc_loans.size),
        where=owed[loans.debtor[btc_loans]] > 0,
    )
    to_loan = np.minimum(proceeds[loans.debtor[btc_loans]] * share, loans.principal[btc_loans])
    used = np.bincount(loans.debtor[btc_loans], weights=to_loan, minlength=led.n_agents)
    btc_price = state.world.btc_price
    led.btc -= used / btc_price
    led.btc = np.maximum(led.btc, 0.0)
    led.cash_in += to_loan.sum()  # BTC sold to the outside market
    led.cash += np.bincount(loans.creditor[btc_loans], weights=to_loan, minlength=led.n_agents)
    loans.principal[btc_loans] -= to_loan
    loans.repaid[btc_loans] += to_loan  # repaid from its collateral
    paid_off = btc_loans[
        loans.principal[btc_loans] <= 1e-9 * np.maximum(loans.original_principal[btc_loans], 1.0)
    ]
    loans.active[paid_off] = False


# --- defaults: repossession and recovery --------------------------------------------------------


def repossess(state: MarketState, defaulters: np.ndarray) -> None:
    """All loans of the defaulters default: each loan's principal becomes its exposure at default and
    its creditor pays the workout cost. GPUs go to the GPU-secured lenders by seniority (a waterfall
    on value at the current mark), then pro rata; BTC is sold and its proceeds go to the BTC-secured
    lenders first; the estate's cash then pays what the collateral does not cover, most senior loans
    first (pro rata within a seniority class), then what is still owed in cash in the same order; the
    rest belongs to the borrower's owners."""
    if state.neutralised is not None and state.neutralised[defaulters].any():
        settle_outside(state, defaulters[state.neutralised[defaulters]])
        defaulters = defaulters[~state.neutralised[defaulters]]
        if not defaulters.size:
            return
    led = state.ledger
    loans = led.loans
    n = led.n_agents
    month = state.world.month
    if defaulters.size == 1:  # one estate (a shock): its loans by one comparison, not a lookup per loan
        sel = (loans.debtor == defaulters[0]).nonzero()[0]
    else:
        is_def = np.zeros(n, dtype=bool)
        is_def[defaulters] = True
        sel = is_def[loans.debtor].nonzero()[0]
    sel = sel[loans.active[sel]]
    has_fleet = bool(led.gpus[defaulters].any())
    led.book_ltv_at_default[defaulters] = _book_ltv_of(state, defaulters, sel) if has_fleet else np.nan
    claim = loans.principal[sel]
    debtor = loans.debtor[sel]

    # BTC: sold to the outside market; the BTC-secured loans are paid first, the rest is estate cash
    if led.btc[defaulters].any():
        btc_cash = np.zeros(n)
        btc_cash[defaulters] = led.btc[defaulters] * state.world.btc_price
        led.cash_in += btc_cash.sum()
        led.btc[defaulters] = 0.0
        btc_secured = np.where(loans.collateral[sel] == BTC, claim, 0.0)
        to_btc_lender, _ = _waterfall(debtor, np.ones(sel.size, dtype=np.int64), btc_secured, btc_cash)
        cash = led.cash[defaulters] + (
            btc_cash[defaulters] - np.bincount(debtor, weights=to_btc_lender, minlength=n)[defaulters]
        )
    else:  # no BTC: nothing to sell or pay (the zero proceeds are still added, as a sale's would be)
        to_btc_lender = np.zeros(sel.size)
        cash = led.cash[defaulters] + led.btc[defaulters] * state.world.btc_price
        led.btc[defaulters] = 0.0
    # unpaid operating bills of a borrower that ran out of cash are lost to outside suppliers
    overdrawn = np.minimum(cash, 0.0)
    led.cash_out += overdrawn.sum()
    cash -= overdrawn
    led.cash[defaulters] = cash

    owing = debtor[claim > 0]  # defaulters that owe something: with nothing owed, the fleet and cash stay
    if has_fleet:
        all_claim = np.bincount(debtor, weights=claim, minlength=n)
        claim_share = np.divide(claim, all_claim[debtor], out=np.zeros(sel.size), where=all_claim[debtor] > 0)
        allocated = _repossess_fleets(state, sel, claim, claim_share)
        led.gpus[owing] = 0.0
    else:  # no fleet: nothing to allocate
        allocated = np.zeros(sel.size)
    paid = _pay_from_estate_cash(led, sel, claim, allocated, to_btc_lender, owing)
    if len(led.guarantees):
        paid += _guaranteed_shortfall(led, sel, np.maximum(claim - allocated - paid, 0.0))
    recovered = paid.any()
    if recovered:
        led.cash += np.bincount(loans.creditor[sel], weights=paid, minlength=n)
    else:  # nothing recovered: adding the zeros would only turn a cash balance of -0.0 into 0.0
        led.cash += 0.0
    share = state.scenario.cascade.workout_cost_share
    cost = loans.default(sel, month, state.world.base_rate, share)
    if share:  # (with no workout cost there is nothing to pay)
        pay_workout_costs(led, loans.creditor[sel], cost)
    if recovered:  # (nothing recovered books nothing)
        loans.recover(sel, paid, month)

    # lenders remember the default that has cost them most so far (for attributing their later decisions)
    hurt_most, hurt = largest_by_group(
        n, loans.creditor[sel], np.maximum(claim - allocated - paid, 0.0) + cost, debtor
    )
    worse = hurt > led.stress_loss
    np.copyto(led.stress_source, hurt_most, where=worse)
    np.copyto(led.stress_loss, hurt, where=worse)


def _pay_from_estate_cash(
    led: Ledger,
    sel: np.ndarray,
    claim: np.ndarray,
    allocated: np.ndarray,
    to_btc_lender: np.ndarray,
    owing: np.ndarray,
) -> np.ndarray:
    """What each defaulting loan ``sel`` (owed ``claim``, ``allocated`` GPUs by the secured waterfall)
    recovers in cash: its BTC proceeds and the cash of the estates that owe something (``owing``, ids
    that may repeat) by priority, first to what neither the GPUs nor the BTC cover, then to what is
    still owed. The estates' cash leaves them; what the creditors do not take is the owners'."""
    cash = np.maximum(led.cash[owing], 0.0)
    if not cash.any():  # no cash to share (0.0 to every loan) and none leaves an estate
        return 0.0 + to_btc_lender
    estate_cash = np.zeros(led.n_agents)
    estate_cash[owing] = cash
    loans = led.loans
    debtor, seniority = loans.debtor[sel], loans.seniority[sel]
    uncovered = np.maximum(claim - allocated - to_btc_lender, 0.0)
    paid, left = _waterfall(debtor, seniority, uncovered, estate_cash)
    paid += _waterfall(debtor, seniority, np.maximum(claim - to_btc_lender - paid, 0.0), left)[0]
    paid += to_btc_lender
    led.cash[owing] -= estate_cash[owing]
    led.cash_out += estate_cash.sum() - (paid - to_btc_lender).sum()  # the rest is the owners'
    return paid


def _guaranteed_shortfall(led: Ledger, sel: np.ndarray, shortfall: np.ndarray) -> np.ndarray:
    """What guarantors pay on the defaulting loans ``sel`` (outside money): each guarantee of its
    obligor's loans pays their ``shortfall`` at default (claim less the GPUs the secured waterfall gives
    it at the mark and the estate's cash), pro rata, up to what is left of its cap. A share of surplus
    collateral that later sales bring is not netted: they are credited only up to the unrecovered claim."""
    guarantees = led.guarantees
    backing = np.full(led.n_agents, -1)
    on_loans = np.flatnonzero(~guarantees.covers_hosting)
    backing[guarantees.obligor[on_loans]] = on_loans
    which = backing[led.loans.debtor[sel]]
    covered = which >= 0
    if not covered.any():
        return np.zeros(sel.size)
    due = np.bincount(which[covered], weights=shortfall[covered], minlength=len(guarantees))
    backed = np.flatnonzero(due > 0)
    paid = guarantees.pay(backed, due[backed])
    led.cash_in += paid.sum()
    scale = np.zeros(len(guarantees))
    scale[backed] = paid / due[backed]
    return np.where(covered, shortfall * scale[np.maximum(which, 0)], 0.0)


def pay_workout_costs(led: Ledger, creditors: np.ndarray, cost: np.ndarray) -> None:
    """Creditors pay the workout costs of their defaulted loans to outside parties (lawyers, brokers):
    from cash, then (lenders) by selling outside assets, as for debt service; what a creditor cannot pay
    (a failed lender's empty estate) it still owes them, as an outside liability."""
    if not (cost > 0).any():
        return
    owed = np.bincount(creditors, weights=cost, minlength=led.n_agents)
    cash = np.maximum(led.cash, 0.0)
    from_outside = np.clip(owed - cash, 0.0, led.external_assets)
    unpaid = np.maximum(owed - cash - from_outside, 0.0)
    paid = owed - unpaid
    led.external_assets -= from_outside
    led.external_liabilities += unpaid
    led.cash_in += from_outside.sum()  # outside assets sold for cash
    led.cash += from_outside - paid
    led.cash_out += paid.sum()
    led.invalidate()


def _waterfall(
    debtor: np.ndarray, seniority: np.ndarray, owed: np.ndarray, available: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What each loan (of ``debtor``, owed ``owed``) gets from its debtor's ``available`` value (cash,
    BTC proceeds, GPUs at the mark; indexed by agent): the most senior class (lowest number) first, pro
    rata within a class, never beyond what is owed. Returns it and what is left of each agent's value."""
    paid = np.zeros(owed.size)
    remaining = available.copy()
    if not remaining.any():  # nothing to share (an estate without cash or BTC): every loan gets 0.0
        return paid, remaining
    n = available.size
    for level in np.unique(seniority[owed > 0]):
        in_level = (seniority == level) & (owed > 0)
        level_owed = np.bincount(debtor[in_level], weights=owed[in_level], minlength=n)
        take = np.minimum(level_owed, remaining)
        share = np.divide(owed, level_owed[debtor], out=np.zeros(owed.size), where=level_owed[debtor] > 0)
        paid += np.where(in_level, np.minimum(take[debtor] * share, owed), 0.0)
        remaining -= take
    return paid, remaining


def settle_outside(state: MarketState, defaulters: np.ndarray) -> None:
    """A counterfactual default without its fire sale and its clearing losses (``model.attribution``):
    the borrower leaves the market as it would, but its creditors are paid every loan in full from
    outside and its GPUs leave the market unsold, so neither a mark nor a lender's capital moves."""
    led = state.ledger
    loans = led.loans
    is_def = np.zeros(led.n_agents, dtype=bool)
    is_def[defaulters] = True
    sel = np.flatnonzero(loans.active & is_def[loans.debtor])
    led.book_ltv_at_default[defaulters] = np.nan
    claim = loans.principal[sel]
    led.cash += np.bincount(loans.creditor[sel], weights=claim, minlength=led.n_agents)
    led.cash_in += claim.sum()
    month = state.world.month
    loans.default(sel, month, state.world.base_rate, workout_cost_share=0.0)  # paid at once: no workout
    loans.recover(sel, claim, month)
    led.gpus[defaulters] = 0.0


def _repossess_fleets(
    state: MarketState, sel: np.ndarray, claim: np.ndarray, claim_share: np.ndarray
) -> np.ndarray:
    """The defaulters' GPUs, as lots, to the holders of their loans ``sel``: a seniority waterfall on
    value at the mark to the GPU-secured lenders, pro rata within a seniority class; any value left
    over (over-collateralised) to all the estate's creditors by claim. Returns the value allocated to
    each loan by the waterfall."""
    led = state.ledger
    loans = led.loans
    n = led.n_agents
    debtor = loans.debtor[sel]
    fleet_value = state.value_at_mark()
    secured = loans.collateral[sel] == GPU
    allocated, remaining = _waterfall(
        debtor, loans.seniority[sel], np.where(secured, claim, 0.0), fleet_value
    )
    alloc_share = np.divide(
        allocated, fleet_value[debtor], out=np.zeros(sel.size), where=fleet_value[debtor] > 0
    )
    leftover_share = np.divide(remaining, fleet_value, out=np.ones(n), where=fleet_value > 0)
    unit_share = alloc_share + leftover_share[debtor] * claim_share
    units = led.gpus[debtor] * unit_share[:, None]
    rows, gens = np.nonzero(units > 0)
    led.lots.append(loans.creditor[sel][rows], gens, units[rows, gens], sel[rows], debtor[rows])
    return allocated


def book_value(state: MarketState, agents: np.ndarray | None = None) -> np.ndarray:
    """GPU fleets (of ``agents``, default all) at book value: cost depreciated straight-line over six
    years from their purchase (the accounting life CoreWeave and most hyperscalers use; see
    docs/calibration.md)."""
    led, world = state.ledger, state.world
    rows = slice(None) if agents is None else agents
    purchase = led.end_of_life[rows] - world.generations.life_months[None, :]
    age = np.maximum(world.month - purchase, 0.0)
    # (np.minimum / np.maximum, not np.clip's Python wrapper: 1 - age / life is never NaN or -0.0)
    per_gpu = world.generations.new_price[None, :] * np.minimum(
        np.maximum(1.0 - age / BOOK_LIFE_MONTHS, 0.0), 1.0
    )
    return (led.gpus[rows] * per_gpu).sum(axis=1)


def _book_ltv_of(state: MarketState, agents: np.ndarray, their_loans: np.ndarray) -> np.ndarray:
    """GPU-secured debt over the fleet's book value for ``agents`` (NaN without a fleet), given the ids
    of all their active loans (ascending), so no pass over the whole book is needed."""
    loans = state.ledger.loans
    value = book_value(state, agents)
    gpu = their_loans[loans.collateral[their_loans] == GPU]
    debt = np.bincount(loans.debtor[gpu], weights=loans.principal[gpu], minlength=state.ledger.n_agents)
    return np.divide(debt[agents], value, out=np.full(value.size, np.nan), where=value > 0)


# --- lenders -------------------------------------------------------------------------------------


def clear_lenders(state: MarketState) -> Failures:
    """Lender-to-lender clearing at the round's balances. With ``clearing`` recovery, Eisenberg-Noe
    (2001) gives what each failing lender pays, pari passu in every round: the estates of lenders that
    failed in earlier rounds are cleared again with them, so their creditors' recoveries follow what
    those estates are now worth (a debt owed to a failed lender is written down at its debtor's
    clearing value, which can lower what the failed lender itself pays). With ``zero`` recovery (Gai-
    Kapadia 2010) claims on a failed lender are lost in full, a debt owed to a failed lender included;
    the contagion among lenders runs to its end within the clearing, as Eisenberg-Noe's does."""
    led = state.ledger
    rules = state.scenario.cascade
    lender = state.lender_mask()
    live_lender = lender & ~led.defaulted
    if not live_lender.any():
        return Failures.none()
    loans = led.loans
    equity = state.lender_equity()
    insolvent = equity <= 0 if rules.default_at_zero_equity else equity < 0
    params = state.lender_params
    if params["leverage_targeting"].any():  # leverage targeting: it fails below its minimum leverage
        insolvent |= params["leverage_targeting"] & (state.capital_ratio() < params["leverage_min"])
    zero = rules.interbank_recovery == "zero"
    if zero and not (insolvent & live_lender).any():
        return Failures.none()  # with zero recovery, losses on other lenders start from a failure
    among_lenders = led.static(  # interbank loans held by lenders: fixed terms and kinds
        "interbank_held_by_lenders", lambda: (loans.instrument == INTERBANK) & lender[loans.creditor]
    )
    # the performing claims among lenders: with zero recovery those on lenders that are no longer live
    # may stay in (their debtors never fail again, so nothing is lost on them); else only on live ones
    claims = loans.active & among_lenders
    ib = (claims if zero else claims & live_lender[loans.debtor]).nonzero()[0]
    debtor, creditor, amount = loans.debtor[ib], loans.creditor[ib], loans.principal[ib]
    if zero:  # agents that are not live lenders lose nothing here and never fail (infinite equity)
        failing = zero_recovery_failed(
            led.n_agents,
            debtor,
            creditor,
            amount,
            np.where(live_lender, equity, np.inf),
            rules.default_at_zero_equity,
        )
    else:
        failing, recovery = _clear_pari_passu(state, lender, ib, insolvent)
        failing &= live_lender
    failed = failing.nonzero()[0]
    if failed.size == 0:
        return Failures.none()
    hit_rows = failing[debtor].nonzero()[0]  # every claim on a newly failed lender
    hit = ib[hit_rows]
    hit_debtor, hit_creditor, hit_amount = debtor[hit_rows], creditor[hit_rows], amount[hit_rows]

    # cause: its own losses (insolvent even if every other lender paid) or its counterparties'
    own = insolvent[failed]
    cause = np.where(own, Cause.INSOLVENCY, Cause.COUNTERPARTY).astype(np.int8)
    if own.all():  # nobody's parent is a counterparty
        parent = led.stress_source[failed]
    else:  # the failed lender a counterparty failure was most exposed to
        through_counterparty = np.zeros(led.n_agents, dtype=bool)
        through_counterparty[failed[~own]] = True
        theirs = through_counterparty[hit_creditor].nonzero()[0]
        most_exposed, _ = largest_by_group(
            led.n_agents, hit_creditor[theirs], hit_amount[theirs], hit_debtor[theirs]
        )
        parent = np.where(own, led.stress_source[failed], most_exposed[failed])

    # booked as in repossession: the whole claim is the exposure at default, what clearing pays is recovered
    month = state.world.month
    cost = loans.default(hit, month, state.world.base_rate, rules.workout_cost_share)
    if rules.workout_cost_share:  # (with no workout cost there is nothing to pay)
        pay_workout_costs(led, hit_creditor, cost)
    if not zero:  # what clearing pays moves from the estate's outside assets to the creditor's
        _settle(led, hit, recovery[hit_debtor] * hit_amount)
    return Failures(failed, cause, parent)


def _settle(led, loan_ids: np.ndarray, payment: np.ndarray) -> None:
    """Book ``payment`` as what each interbank loan recovers: the change from what it recovered so far
    moves from its debtor's outside assets to its creditor's. A clearing values the claim on the estate
    as of the loan's default month, so the recovery (and any later clearing's revision of it, up or
    down) is booked in that month."""
    loans = led.loans
    change = payment - loans.recovered[loan_ids]
    led.external_assets += np.bincount(loans.creditor[loan_ids], weights=change, minlength=led.n_agents)
    led.external_assets -= np.bincount(loans.debtor[loan_ids], weights=change, minlength=led.n_agents)
    default_month = loans.default_month[loan_ids]
    for month in np.unique(default_month):
        at = default_month == month
        loans.recover(loan_ids[at], change[at], int(month))
    led.invalidate()  # outside assets moved: lender equity and assets change


def _clear_pari_passu(
    state: MarketState, lender: np.ndarray, live_claims: np.ndarray, insolvent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Eisenberg-Noe clearing of every interbank claim among lenders: the performing ones
    (``live_claims``, on live lenders, whoever holds them) and those on lenders that failed in earlier
    rounds' clearings (at the face written off). Each node's outside assets are its assets less its
    interbank claims at their booked values (face, or what earlier clearings paid on them), plus what
    it paid out itself. The failed estates' recoveries are settled here, at the new clearing; returns
    which agents fail (mask) and the share of its obligations each agent pays (1 for the others)."""
    led = state.ledger
    loans = led.loans
    n = led.n_agents
    # (two comparisons, not np.isin: its set-up costs as much again as the rest of a quiet clearing)
    cleared_by_lenders = (led.default_cause == Cause.INSOLVENCY) | (led.default_cause == Cause.COUNTERPARTY)
    estate = lender & led.defaulted & cleared_by_lenders
    cleared = _EMPTY_INT
    if estate.any():
        interbank = led.static("interbank_loans", lambda: loans.instrument == INTERBANK)
        cleared = np.flatnonzero(interbank & ~loans.active & estate[loans.debtor] & lender[loans.creditor])
    if cleared.size:
        debtor = np.concatenate([loans.debtor[live_claims], loans.debtor[cleared]])
        creditor = np.concatenate([loans.creditor[live_claims], loans.creditor[cleared]])
        face = np.concatenate([loans.principal[live_claims], loans.exposure_at_default[cleared]])
        booked = np.concatenate([loans.principal[live_claims], loans.recovered[cleared]])
        paid_out = np.bincount(loans.debtor[cleared], weights=loans.recovered[cleared], minlength=n)
    else:  # the live claims alone, booked at face; nobody paid out (+0.0, as the bincount of nothing)
        debtor, creditor = loans.debtor[live_claims], loans.creditor[live_claims]
        face = booked = loans.principal[live_claims]
        paid_out = 0.0
    claims = np.bincount(creditor, weights=booked, minlength=n)
    outside_assets = state.lender_assets() - claims + paid_out
    if cleared.size == 0:  # no failed estate owes anything here: only the live lenders' payments matter
        live = np.flatnonzero(lender & ~led.defaulted)
        obligations = np.bincount(debtor, weights=face, minlength=n)[live] + led.external_liabilities[live]
        if _all_pay_in_full(outside_assets[live], claims[live], obligations):
            return insolvent & lender, np.ones(n)
    nodes = np.flatnonzero(lender)
    local = np.full(n, -1, dtype=np.int64)
    local[nodes] = np.arange(nodes.size)
    result = eisenberg_noe(
        nodes.size,
        local[debtor],
        local[creditor],
        face,
        outside_assets[nodes],
        external_liabilities=led.external_liabilities[nodes],
    )
    recovery = np.ones(n)
    recovery[nodes] = result.recovery
    if cleared.size:
        _settle(led, cleared, recovery[loans.debtor[cleared]] * loans.exposure_at_default[cleared])
    # a lender with negative equity (zero too, with the tie rule) fails even where the clearing has it
    # pay in full (its debts outside the interbank network can exceed what it holds)
    failing = np.zeros(n, dtype=bool)
    failing[nodes] = result.defaulted | insolvent[nodes]
    return failing, recovery


def _all_pay_in_full(outside_assets: np.ndarray, claims: np.ndarray, obligations: np.ndarray) -> bool:
    """Whether Eisenberg-Noe clearing has every lender pay in full, decided without the clearing (the
    usual quiet month): its first round values each lender, all others paying in full, at its outside
    assets plus its claims, and finds it solvent if that covers its obligations to within 1e-12 of
    them; it then stops with everyone paying in full and no default. Here a lender must clear that
    bar by 1e-9 of its balance sheet, far beyond any rounding difference between the two sums (about
    1e-16 per term), or owe nothing; otherwise the clearing is run. The ledger's claims are valid by
    construction (what the clearing checks), as for ``zero_recovery_failed``."""
    room = outside_assets + claims - obligations
    scale = np.abs(outside_assets) + claims + obligations
    return bool(((obligations == 0) | (room > 1e-9 * scale)).all())


def lender_offers(state: MarketState, to_sell: np.ndarray | None = None) -> Offers:
    """Lenders offer repossessed GPUs: a calm lender a share at a patient reserve, a stressed or failed
    one more, down to the scrap floor; a leverage-targeting lender the slice worth ``to_sell`` (what
    ``deleverage_from_cash`` left it to sell this round); or (``secondary.lender_disposal = 'choice'``)
    each lot goes the way worth most to its holder (``chosen_offers``, which has no deleveraging)."""
    if state.scenario.secondary.lender_disposal == "choice":
        return chosen_offers(state)
    led = state.ledger
    lots = led.lots
    stressed = Lender.stressed(
        led.kind, state.capital_ratio(), led.defaulted, state.redeeming, state.lender_params
    )
    share, reserve_share = Lender.sale_plan(stressed, state.lender_params)
    if to_sell is not None:
        share, reserve_share = _deleveraging_sales(state, share, reserve_share, to_sell)
    share, reserve_share = share[lots.holder], reserve_share[lots.holder]
    rules = state.scenario.cascade
    if rules.workout_months is not None:  # a workout that has run its course ends in an auction
        since = led.loans.default_month[lots.loan]
        ended = (since >= 0) & (state.world.month - since >= rules.workout_months)
        share, reserve_share = np.where(ended, 1.0, share), np.where(ended, 0.0, reserve_share)
    fundamental = state.fundamental()
    floor = rules.scrap_value_share
    units = lots.units * share
    keep = units > 1e-9
    gen = lots.generation[keep]
    return Offers(
        generation=gen,
        units=units[keep],
        reserve=np.maximum(reserve_share[keep], floor) * fundamental[gen],
        seller=lots.holder[keep],
        lot=np.flatnonzero(keep),
        source=lots.source[keep],
    )


def _deleveraging_plan(state: MarketState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Lender.leverage_target_plan`` for the live leverage-targeting lenders (zeros for the rest)."""
    led, params = state.ledger, state.lender_params
    fails, from_cash, to_sell = Lender.leverage_target_plan(
        state.lender_equity(),
        state.lender_assets(),
        led.cash,
        params["leverage_min"],
        params["leverage_buffer"],
        params["leverage_target"],
    )
    acting = params["leverage_targeting"] & ~led.defaulted & ~fails
    return acting, np.where(acting, from_cash, 0.0), np.where(acting, to_sell, 0.0)


def deleverage_from_cash(state: MarketState) -> np.ndarray:
    """Leverage-targeting lenders below their buffer pay their liabilities down from cash, pro rata
    over outside liabilities (to depositors and investors, who leave the market) and the loans they
    owe other lenders. Sale proceeds reach cash in the round they clear, so they repay debt here in
    the next round (as in Cont & Schaanning's and the INET stress test's sequence). Returns the value
    each still has to sell (decided with the payment, before it)."""
    led = state.ledger
    _, from_cash, to_sell = _deleveraging_plan(state)
    if not (from_cash > 0).any():
        return to_sell
    owed = led.external_liabilities + led.debt()
    pay = np.minimum(from_cash, owed)
    to_outside = np.divide(pay * led.external_liabilities, owed, out=np.zeros_like(pay), where=owed > 0)
    led.external_liabilities -= to_outside
    led.cash -= to_outside
    led.cash_out += to_outside.sum()
    _prepay(state, pay - to_outside, led.loans.active)
    led.invalidate()
    return to_sell


def _deleveraging_sales(
    state: MarketState, share: np.ndarray, reserve_share: np.ndarray, to_sell: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The live leverage-targeting lenders' sale plans (``Lender.targeting_sale_plan``) in place of
    the share-of-stock rule's."""
    led, params = state.ledger, state.lender_params
    holdings = np.bincount(led.lots.holder, weights=state.lot_values_at_mark(), minlength=led.n_agents)
    target_share, target_reserve = Lender.targeting_sale_plan(to_sell, holdings, params)
    live = params["leverage_targeting"] & ~led.defaulted
    return np.where(live, target_share, share), np.where(live, target_reserve, reserve_share)


def lot_disposal(state: MarketState) -> tuple[np.ndarray, np.ndarray]:
    """Each repossessed lot's disposal this round (``Lender.disposal``; indices into
    ``agents.lender.DISPOSALS``) and, for a sale, its reserve as a share of the generation's value.

    A calm lender waits at ``waiting_cost_calm`` a month, a stressed one at ``waiting_cost_stressed``,
    less the share of its stock the last-resort facility has financed (the loan meets its need for
    cash). Operating is open to the lender kinds in ``operators`` while calm: the lot's margins (with
    the idling option) over its own remaining life, discounted at the calm waiting cost, less the
    host's fee. Settling is open for ``settle_window_months`` after the borrower's default, at
    ``settle_share`` of the lot's orderly value x (1 - the industry distress share): the owners need
    funding."""
    led, world = state.ledger, state.world
    lots, rules = led.lots, state.scenario.secondary
    stressed = Lender.stressed(
        led.kind, state.capital_ratio(), led.defaulted, state.redeeming, state.lender_params
    )
    financed = _financed_share(state)
    waiting = np.where(
        stressed,
        rules.waiting_cost_calm + (1.0 - financed) * (rules.waiting_cost_stressed - rules.waiting_cost_calm),
        rules.waiting_cost_calm,
    )[lots.holder]
    value = state.unit_values()[lots.source, lots.generation]
    operate_value = np.full(len(lots), -np.inf)
    operators = led.of_kind(*(KIND_BY_NAME[name] for name in rules.operators))
    can_operate = operators[lots.holder] & (waiting <= rules.waiting_cost_calm)
    if can_operate.any():
        annual = (1.0 + rules.waiting_cost_calm) ** 12 - 1.0
        table = world.market_values_by_life(annual)
        life = np.clip(
            np.round(led.end_of_life[lots.source, lots.generation] - world.month), 0, table.shape[0] - 1
        )
        own = table[life.astype(np.int64), lots.generation]
        operate_value = np.where(can_operate, (1.0 - rules.operator_fee) * own, -np.inf)
    appraised = state.appraised_ratio[lots.generation]
    settle_value = np.full(len(lots), -np.inf)
    if rules.settle_share > 0:
        open_ = world.month - led.default_month[lots.source] <= rules.settle_window_months
        share = rules.settle_share * (1.0 - state.industry_distress())
        settle_value = np.where(open_, share * appraised * value, -np.inf)
    return Lender.disposal(
        value,
        appraised,
        operate_value,
        settle_value,
        waiting,
        led.defaulted[lots.holder],
        rules,
        state.scenario.cascade.mark_recovery_half_life_months,
    )


def lend_against_stock(state: MarketState) -> None:
    """Lend mode of the policy of last resort: the facility tops up its loan to each live stressed
    lender to ``buyer_of_last_resort_price`` x its repossessed stock at the generations' values (pro
    rata if this month's budget falls short), booked as the lender's cash and outside liability, money
    from outside the market."""
    led = state.ledger
    if state.facility_loan is None or state.facility_budget <= 0:
        return
    stressed = Lender.stressed(
        led.kind, state.capital_ratio(), led.defaulted, state.redeeming, state.lender_params
    )
    advance = state.scenario.policy.buyer_of_last_resort_price
    need = np.where(
        stressed & ~led.defaulted, np.maximum(advance * _stock_value(state) - state.facility_loan, 0.0), 0.0
    )
    total = need.sum()
    if total <= 0:
        return
    grant = need * min(1.0, state.facility_budget / total)
    state.facility_loan += grant
    state.facility_budget -= grant.sum()
    led.cash += grant
    led.external_liabilities += grant
    led.cash_in += grant.sum()
    led.invalidate()


def _stock_value(state: MarketState) -> np.ndarray:
    """Each agent's repossessed stock at the generations' fundamental values."""
    lots = state.ledger.lots
    weights = lots.units * state.fundamental()[lots.generation]
    return np.bincount(lots.holder, weights=weights, minlength=state.ledger.n_agents)


def _financed_share(state: MarketState) -> np.ndarray:
    """The share of each agent's repossessed stock that the lending facility has financed (0 to 1)."""
    led = state.ledger
    if state.facility_loan is None:
        return np.zeros(led.n_agents)
    advanced = state.scenario.policy.buyer_of_last_resort_price * _stock_value(state)
    return np.divide(state.facility_loan, advanced, out=np.zeros(led.n_agents), where=advanced > 0).clip(
        0.0, 1.0
    )


def chosen_offers(state: MarketState) -> Offers:
    """Lenders dispose of their lots as ``lot_disposal`` decides: settled lots leave the market to
    the borrower's owners now (proceeds credited to the loan up to its unrecovered claim, as a sale's
    are); lots to sell are offered in full at their channel's reserve (a failed lender's at the scrap
    floor); operated lots stay with the lender and earn in operations (``operate_repossessed``)."""
    led = state.ledger
    lots = led.lots
    if len(lots) == 0:
        return _NO_OFFERS
    lend_against_stock(state)
    choice, reserve_share = lot_disposal(state)
    fundamental = state.fundamental()
    settled = choice == SETTLE
    if settled.any():
        share = state.scenario.secondary.settle_share * (1.0 - state.industry_distress())
        value = state.unit_values()[lots.source[settled], lots.generation[settled]]
        proceeds = share * lots.units[settled] * value * state.appraised_ratio[lots.generation[settled]]
        kept = _credit_recoveries(led.loans, lots.loan[settled], proceeds, state.world.month)
        led.cash += np.bincount(lots.holder[settled], weights=kept, minlength=led.n_agents)
        led.cash_in += proceeds.sum()
        led.cash_out += proceeds.sum() - kept.sum()
        led.gpus_settled += np.bincount(
            lots.generation[settled], weights=lots.units[settled], minlength=led.n_generations
        )
        lots.units[settled] = 0.0
        keep = lots.units > 1e-9
        choice, reserve_share = choice[keep], reserve_share[keep]
        lots.drop_empty()
        led.invalidate()
    selling = choice >= ORDERLY
    floor = state.scenario.cascade.scrap_value_share
    liquidating = led.defaulted[lots.holder]
    reserve = np.where(
        liquidating, floor, np.maximum(reserve_share * state.appraised_ratio[lots.generation], floor)
    )
    gen = lots.generation[selling]
    return Offers(
        generation=gen,
        units=lots.units[selling],
        reserve=reserve[selling] * fundamental[gen],
        seller=lots.holder[selling],
        lot=np.flatnonzero(selling),
        source=lots.source[selling],
    )


def _credit_recoveries(loans, loan_ids: np.ndarray, amounts: np.ndarray, month: int) -> np.ndarray:
    """Credit sale proceeds to their loans, each up to its unrecovered claim; returns what was kept."""
    order = np.argsort(loan_ids, kind="stable")
    ids, amt = loan_ids[order], np.maximum(amounts[order], 0.0)  # a fill's rounding can dip below 0
    cum = np.cumsum(amt)
    starts = run_starts(ids)
    group = np.cumsum(starts) - 1
    before = cum - amt - (cum - amt)[starts][group]
    room = np.maximum(loans.exposure_at_default[ids] - loans.recovered[ids], 0.0)
    kept_sorted = np.clip(room - before, 0.0, amt)
    loans.recover(ids, kept_sorted, month)
    kept = np.empty_like(kept_sorted)
    kept[order] = kept_sorted
    return kept


def _age_installations(
    led, buyer_index: np.ndarray, offers: Offers, filled: np.ndarray, bought: np.ndarray
) -> None:
    """Buyers' installed units of a generation end their life at the units-weighted mean end of life of
    what they hold and what they buy (a sold unit keeps the age of the fleet it came from)."""
    if not bought.any():
        return
    sold_end = led.end_of_life[offers.source, offers.generation]
    n_gen = led.n_generations
    sold = np.bincount(offers.generation, weights=filled, minlength=n_gen)
    mean_sold = np.divide(
        np.bincount(offers.generation, weights=filled * sold_end, minlength=n_gen),
        sold,
        out=np.zeros(n_gen),
        where=sold > 0,
    )
    held = led.gpus[buyer_index]
    end = led.end_of_life[buyer_index]
    total = held + bought
    weighted = np.where(held > 0, held * np.where(held > 0, end, 0.0), 0.0) + bought * mean_sold[None, :]
    led.end_of_life[buyer_index] = np.where(bought > 0, weighted / np.where(total > 0, total, 1.0), end)


def sell(
    state: MarketState, offers: Offers, book: BuyerBook, buyer_index: np.ndarray, report: CascadeReport
) -> bool:
    """Clear the market, settle cash and GPUs, re-mark. Returns whether any mark fell. With an impact
    price and ``cascade.execution_price = 'midpoint'``, every unit sold changes hands at the mid-point of
    the mark before the sale and the post-impact price (Cont & Schaanning 2017); the new mark is the
    post-impact price either way."""
    led = state.ledger
    rules = state.scenario.cascade
    if rules.price_impact == "buyers":
        result = clear(offers, book, led.n_generations)
        price = np.nan_to_num(result.price)
    else:
        coefficient = rules.impact_alpha if rules.price_impact == "exponential" else rules.impact_slope
        before_sale = state.mark_price()
        result = clear_impact(
            offers, book, led.n_generations, before_sale, led.total_gpus(), coefficient, rules.price_impact
        )
        price = np.nan_to_num(result.price)
        if rules.execution_price == "midpoint":
            price = np.where(np.isnan(result.price), 0.0, 0.5 * (before_sale + price))
    proceeds = result.filled * price[offers.generation]
    from_lot = offers.lot >= 0
    lots = led.lots
    lot_ids = offers.lot[from_lot]
    lots.units[lot_ids] -= result.filled[from_lot]
    # a lender keeps proceeds up to its claim; a surplus belongs to the defaulted borrower's owners
    kept = _credit_recoveries(led.loans, lots.loan[lot_ids], proceeds[from_lot], state.world.month)
    led.cash_out += proceeds[from_lot].sum() - kept.sum()
    led.cash += np.bincount(offers.seller[from_lot], weights=kept, minlength=led.n_agents)
    # curing borrowers: units leave the fleet, proceeds repay their GPU-secured loans
    cure = ~from_lot
    np.subtract.at(led.gpus, (offers.seller[cure], offers.generation[cure]), result.filled[cure])
    cure_cash = np.bincount(offers.seller[cure], weights=proceeds[cure], minlength=led.n_agents)
    led.cash += cure_cash
    led.cash_in += proceeds.sum()  # buyers' money comes from outside the market
    loans = led.loans
    _prepay(state, cure_cash, loans.active & led.static("gpu_secured", lambda: loans.collateral == GPU))
    # buyers install what they bought and spend their budgets
    _age_installations(led, buyer_index, offers, result.filled, result.bought)
    led.gpus[buyer_index] += result.bought
    book.budget -= result.bought @ price
    book.capacity -= result.bought.sum(axis=1)
    lots.drop_empty()

    before = state.marks.ratio.copy()
    state.marks.after_clearing(result, state.fundamental())
    fell = state.marks.ratio < before - 1e-9
    state.last_driver = np.where(fell & (result.driver >= 0), result.driver, state.last_driver)
    report.forced_units += result.filled[from_lot].sum()
    report.forced_value += proceeds[from_lot].sum()
    report.cure_units += result.filled[cure].sum()
    return bool(fell.any())
