"""Covenants as credit agreements write them (issue 16 part 3), on hand-computed cases:

- a waiver is granted when continuing (trailing cash flow over the remaining tenor, plus the fee) is
  worth at least what enforcing recovers (collateral at the mark and cash, less the workout cost), and
  refused just below that line;
- an equity cure injects only the DSCR shortfall and prevents a default the prepayment rule cannot, and
  the limit of two cures in any twelve months stops the third;
- a contracted-cash-flow borrowing base counts the contracted revenue, and an appraised orderly-liquidation
  value does not move with the mark within the month.
"""

from __future__ import annotations

import numpy as np
import pytest
from scenario_builders import explicit_market

from core.config import ConfigError, load_scenario, read_scenario_data
from core.ledger import FLOW_WINDOW, Cause, Kind
from core.world import HOURS_PER_MONTH
from experiments.validation.common import without_issue16_mechanisms
from model.cascade import test_and_cure as covenant_tests
from model.model import GPUCreditModel

DEBT = 3e6
SPREAD = 0.08
TENOR = 60


def one_borrower(agent: dict, overrides: dict, loan: dict | None = None) -> GPUCreditModel:
    """A neo-cloud ``nc`` owing one bank loan of DEBT, on the baseline's world (calm, deterministic)."""
    agents = [
        {"id": "nc", "type": "neocloud", **agent},
        {"id": "bank", "type": "bank", "cash": 1e6, "external_assets": 1e7, "external_liabilities": 9e6},
    ]
    terms = {"creditor": "bank", "debtor": "nc", "principal": DEBT, "spread": SPREAD, "tenor_months": TENOR}
    data = explicit_market(agents, [{**terms, **(loan or {})}], overrides=overrides)
    return GPUCreditModel(data, seed=1)


def set_flows(model: GPUCreditModel, cash_flow: float, service: float) -> None:
    """The month's operating cash flow and debt service the DSCR test reads (one-month window)."""
    led = model.ledger
    led.operating_cash_flow[0] = cash_flow
    led.debt_service_due[0] = service


# --- waivers ------------------------------------------------------------------------------------


def waiver_case(cash_flow_factor: float) -> tuple[GPUCreditModel, object, float]:
    """A DSCR breach the borrower cannot cure (no cash, no equity), with a cash flow of
    ``cash_flow_factor`` x the one at which the lenders are indifferent."""
    model = one_borrower(
        {"fleet": {"H100": 100}},
        {
            "covenants.waivers": True,
            "cascade.dscr_trailing_months": 1,
            "cascade.workout_cost_share": 0.02,
        },
        {"dscr_min": 1.25},
    )
    state = model.state
    # by hand: enforce R = min(D, V + cash) - 0.02 D; continue C = min(D, f x a(60, r)); fee 0.25 % of D
    value = state.collateral_value()[0]
    enforce = min(DEBT, value + 0.0) - 0.02 * DEBT
    r = (state.world.base_rate + SPREAD) / 12.0
    annuity = (1.0 - (1.0 + r) ** -TENOR) / r
    indifferent = (enforce - 0.0025 * DEBT) / annuity
    service = 100_000.0
    assert 0 < indifferent < 1.25 * service  # a breach either way
    set_flows(model, cash_flow_factor * indifferent, service)
    failures, _ = covenant_tests(state, test_dscr=True)
    return model, failures, value


def test_a_waiver_is_granted_when_continuing_is_worth_what_enforcing_recovers() -> None:
    model, failures, _ = waiver_case(1.01)
    led, loans = model.ledger, model.ledger.loans
    assert failures.agents.size == 0
    assert loans.principal[0] == pytest.approx(DEBT * 1.0025, rel=1e-12)  # the fee, paid in kind
    assert loans.original_principal[0] == pytest.approx(DEBT * 1.0025, rel=1e-12)
    assert loans.spread[0] == pytest.approx(SPREAD + 0.01, rel=1e-12)  # the margin step-up
    assert led.waiver_until[0] == 12 and led.waivers[0] == 1
    assert model.state.in_breach[0]  # the cash trap holds through the holiday
    # the covenant holiday: the same shortfall is not tested for 12 months, then it is again
    set_flows(model, 0.0, 100_000.0)
    failures, _ = covenant_tests(model.state, test_dscr=True)
    assert failures.agents.size == 0 and led.waivers[0] == 1
    model.state.world.month = 12
    failures, _ = covenant_tests(model.state, test_dscr=True)
    assert failures.agents.tolist() == [0]  # no cash flow: nothing to wait for, and it defaults


def test_a_waiver_is_refused_when_enforcing_recovers_more() -> None:
    model, failures, value = waiver_case(0.99)
    assert value > 0.5 * DEBT  # the collateral is what the lender gives up by waiting
    assert failures.agents.tolist() == [0]
    assert failures.cause.tolist() == [Cause.COVENANT_DSCR]
    assert model.ledger.loans.principal[0] == DEBT and model.ledger.waivers[0] == 0


def test_waivers_off_leave_the_breach_to_default() -> None:
    model = one_borrower({"fleet": {"H100": 100}}, {"cascade.dscr_trailing_months": 1}, {"dscr_min": 1.25})
    set_flows(model, 90_000.0, 100_000.0)
    failures, _ = covenant_tests(model.state, test_dscr=True)
    assert failures.agents.tolist() == [0]


# --- equity cures -------------------------------------------------------------------------------


def cure_model(rule: str, total: int = 5) -> GPUCreditModel:
    """OCF 30k against 40k of debt service under a 1.25x covenant: the test lacks 1.25 x 40k - 30k = 20k
    of cash flow, or a prepayment of (1 - 30/50) x 3M = 1.2M; the sponsor has 100k of equity."""
    model = one_borrower(
        {"equity_capacity": 100_000.0},
        {
            "covenants.equity_cure": rule,
            "covenants.equity_cures_total": total,
            "cascade.dscr_trailing_months": 1,
        },
        {"dscr_min": 1.25},
    )
    set_flows(model, 30_000.0, 40_000.0)
    return model


def defaults_at_month(model: GPUCreditModel, month: int) -> list[int]:
    model.state.world.month = month
    failures, _ = covenant_tests(model.state, test_dscr=True)
    return failures.agents.tolist()


def test_an_equity_cure_of_the_shortfall_prevents_a_default_and_the_limit_stops_the_third() -> None:
    model = cure_model("agreement")
    led = model.ledger
    assert defaults_at_month(model, 3) == []
    assert led.equity_capacity[0] == pytest.approx(80_000.0) and led.cash[0] == pytest.approx(20_000.0)
    assert led.cash_flow_history[3 % FLOW_WINDOW, 0] == pytest.approx(20_000.0)  # counted as cash flow
    assert led.loans.principal[0] == DEBT  # a DSCR cure adds cash flow, it prepays nothing
    assert defaults_at_month(model, 6) == [] and led.equity_cures[0] == 2
    assert led.equity_capacity[0] == pytest.approx(60_000.0)
    # a third cure within twelve months of the first is not allowed: the 1.2M prepayment is out of reach
    assert defaults_at_month(model, 9) == [0]
    assert led.equity_capacity[0] == pytest.approx(60_000.0) and led.equity_cures[0] == 2
    # twelve months after the first cure one is allowed again (one cure, month 6, in the window)
    assert defaults_at_month(model, 15) == [] and led.equity_cures[0] == 3


def test_the_lifetime_limit_stops_a_cure() -> None:
    model = cure_model("agreement", total=1)
    assert defaults_at_month(model, 3) == []
    assert defaults_at_month(model, 18) == [0]


def test_without_equity_cures_as_written_the_same_breach_defaults() -> None:
    model = cure_model("prepay")  # today's rule: equity prepays the 1.2M need, and 100k is not enough
    assert defaults_at_month(model, 3) == [0]


# --- what the LTV test values -------------------------------------------------------------------


def ltv_model(basis: str, principal: float = DEBT) -> GPUCreditModel:
    agent = {
        "fleet": {"H100": 100},
        "contract_share": 0.5,
        "contract_rent_per_hour": 3.0,
        "contract_months": 48,
        "ltv_basis": basis,
    }
    return one_borrower(agent, {}, {"ltv_max": 0.9, "principal": principal})


def test_the_borrowing_base_counts_the_contracted_revenue() -> None:
    model = ltv_model("borrowing_base")
    state = model.state
    world = state.world
    monthly = (1.0 + model.config.world.valuation_discount_rate) ** (1.0 / 12.0) - 1.0
    annuity = (1.0 - (1.0 + monthly) ** -48) / monthly
    performance = world.generations.performance[world.generations.names.index("H100")]
    revenue = 100 * 3.0 * performance * HOURS_PER_MONTH * model.config.world.rent.utilisation
    at_mark = state.collateral_value()[0]
    base = 0.5 * annuity * revenue + 0.5 * at_mark
    assert state.ltv_collateral()[0] == pytest.approx(base, rel=1e-12)
    mark_basis = at_mark + state.contract_value()[0]
    assert base > 1.1 * mark_basis  # four years of contracted rent are worth more than the GPUs
    # a loan between the two limits breaches at the mark but not against the borrowing base
    principal = 0.9 * (mark_basis + base) / 2
    for basis, breached in (("mark", True), ("borrowing_base", False)):
        model = ltv_model(basis, principal)
        covenant_tests(model.state, test_dscr=False)
        assert bool(model.state.in_breach[0]) is breached, basis


def test_the_appraised_orderly_liquidation_value_holds_for_the_month() -> None:
    model = ltv_model("olv")
    state = model.state
    appraised = state.collateral_value()[0]
    assert state.ltv_collateral()[0] == pytest.approx(0.85 * appraised, rel=1e-12)
    state.marks.ratio[:] = 0.5  # a fire sale within the month lowers the mark, not the appraisal
    assert state.ltv_collateral()[0] == pytest.approx(0.85 * appraised, rel=1e-12)
    state.appraise()  # next month's appraisal sees it
    assert state.ltv_collateral()[0] == pytest.approx(0.85 * state.collateral_value()[0], rel=1e-12)
    assert state.collateral_value()[0] == pytest.approx(0.5 * appraised, rel=1e-12)


def test_the_basis_is_chosen_per_borrower_class() -> None:
    model = GPUCreditModel(
        "baseline",
        months=1,
        overrides={"generated.miners.ltv_basis": "mark", "generated.neoclouds.ltv_basis": "olv"},
    )
    led = model.ledger
    miners, neoclouds = led.of_kind(Kind.MINER), led.of_kind(Kind.NEOCLOUD)
    assert (led.ltv_basis[miners] == 0).all() and (led.ltv_basis[neoclouds] == 1).all()
    baseline = GPUCreditModel("baseline", months=1).ledger  # since session 11: OLV and borrowing base
    assert (baseline.ltv_basis[miners] == 1).all() and (baseline.ltv_basis[neoclouds] == 2).all()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("covenants.equity_cures_per_year", 9, "covenants.equity_cures_per_year"),
        ("covenants.equity_cure", "always", "covenants.equity_cure"),
        ("covenants.waiver_fee", 1.5, "covenants.waiver_fee"),
        ("generated.neoclouds.ltv_basis", "book", "generated.neoclouds.ltv_basis"),
    ],
)
def test_bad_covenant_settings_are_refused_by_name(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_scenario("baseline", {path: value})


def test_defaults_test_nothing_new() -> None:
    """Left out, the fields are the plain rules (the baseline sets the terms as written explicitly)."""
    data = without_issue16_mechanisms(read_scenario_data("baseline"))
    scenario = load_scenario(data)
    assert scenario.covenants.equity_cure == "prepay" and not scenario.covenants.waivers
    assert scenario.generated.miners.ltv_basis == scenario.generated.neoclouds.ltv_basis == "mark"
    assert np.all(GPUCreditModel(data, months=1).ledger.ltv_basis == 0)
