"""The explicit network's structures beyond plain loans (issue 18, part 1's schema gaps), each against a
hand calculation: a tenant hosted at several miners, a guarantee of a borrower's loans and one of a
tenant's hosting fees (a hyperscaler's backstop), and a lease SPV's fixed rent."""

from __future__ import annotations

import numpy as np
import pytest
from scenario_builders import explicit_market
from test_invariants import Books
from test_mechanisms import PINNED

from model.cascade import repossess
from model.model import GPUCreditModel
from model.operations import earn

HOSTING_FEE = 1000 * 1.05 * 150.0  # 1,000 H100 at 1.05 kW and the pinned 150 USD per kW-month
TENANT = {"id": "nc", "type": "neocloud", "fleet": {"H100": 1000}}


def market(agents, loans=None, hosting=None, guarantees=None, overrides=None) -> GPUCreditModel:
    data = explicit_market(
        agents, loans, hosting, overrides={**PINNED, **(overrides or {})}, guarantees=guarantees
    )
    return GPUCreditModel(data, seed=1)


def test_a_tenant_hosted_at_two_miners_pays_each_its_share() -> None:
    """Shares 0.6 and 0.3 (the last 0.1 at a third party): the miners, with no fleet and no hashrate,
    earn 0.6 and 0.3 of the fee, and the fees paid between borrowers leave the market's cash unchanged."""
    hosting = [{"host": "m1", "tenant": "nc", "share": 0.6}, {"host": "m2", "tenant": "nc", "share": 0.3}]
    model = market([TENANT, {"id": "m1", "type": "miner"}, {"id": "m2", "type": "miner"}], hosting=hosting)
    books = Books(model)
    cash_out = model.ledger.cash_out
    ocf = earn(model.state)
    assert ocf[1] == pytest.approx(0.6 * HOSTING_FEE, rel=1e-12)
    assert ocf[2] == pytest.approx(0.3 * HOSTING_FEE, rel=1e-12)
    opex = 1000 * model.state.world.opex_per_gpu[1]
    assert model.ledger.cash_out - cash_out == pytest.approx(opex - 0.9 * HOSTING_FEE, rel=1e-12)
    books.check("after earning")


def estate_with_guarantee(cap_of_value: float) -> tuple[GPUCreditModel, float]:
    """nc (1,000 H100 worth V at the mark, $1,000 cash) owes the bank 1.5 V, secured; a hyperscaler
    guarantees its loans up to cap_of_value x V."""
    probe = market([{**TENANT, "cash": 1000.0}, {"id": "bank", "type": "bank"}])
    v = float(probe.state.value_at_mark()[0])
    loans = [{"creditor": "bank", "debtor": "nc", "tenor_months": 60, "spread": 0.05, "principal": 1.5 * v}]
    guarantees = [{"guarantor": "hyperscaler", "obligor": "nc", "covers": "loans", "cap": cap_of_value * v}]
    agents = [{**TENANT, "cash": 1000.0}, {"id": "bank", "type": "bank", "cash": 1e6}]
    return market(agents, loans, guarantees=guarantees), v


def test_a_loan_guarantee_pays_the_shortfall_up_to_its_cap() -> None:
    """Shortfall at default: claim 1.5 V - fleet V - cash 1,000 = 0.5 V - 1,000. A cap of 0.3 V is used
    up: the bank recovers 1,000 + 0.3 V at once and the guarantor's loss is 0.3 V (outside money)."""
    model, v = estate_with_guarantee(0.3)
    led = model.ledger
    books = Books(model)
    cash_in, bank_cash = led.cash_in, led.cash[1]
    repossess(model.state, np.array([0]))
    assert led.guarantees.paid.tolist() == pytest.approx([0.3 * v], rel=1e-12)
    assert led.guarantees.cap_left.tolist() == pytest.approx([0.0], abs=1e-6)
    assert led.loans.recovered.tolist() == pytest.approx([1000.0 + 0.3 * v], rel=1e-12)
    assert led.cash[1] - bank_cash == pytest.approx(1000.0 + 0.3 * v, rel=1e-12)
    assert led.cash_in - cash_in == pytest.approx(0.3 * v, rel=1e-12)
    books.check("after the guaranteed default")


def test_a_loan_guarantee_above_the_shortfall_leaves_the_lender_whole_at_the_mark() -> None:
    """A cap of 10 V pays the whole shortfall 0.5 V - 1,000 and keeps 9.5 V + 1,000; the bank holds the
    fleet (V at the mark) and 0.5 V of cash for its 1.5 V claim, so its equity does not move."""
    model, v = estate_with_guarantee(10.0)
    led = model.ledger
    before = model.state.lender_equity()[1]
    repossess(model.state, np.array([0]))
    assert led.guarantees.paid.tolist() == pytest.approx([0.5 * v - 1000.0], rel=1e-12)
    assert led.guarantees.cap_left.tolist() == pytest.approx([9.5 * v + 1000.0], rel=1e-12)
    assert model.state.lender_equity()[1] == pytest.approx(before, rel=1e-9)


def test_a_hosting_guarantee_pays_the_host_after_the_tenant_fails_until_its_cap() -> None:
    """The tenant pays its host the fee F in month 1, then fails. The guarantor (cap 2.5 F) pays the
    host F in months 2 and 3, 0.5 F in month 4, nothing after; its total loss is 2.5 F."""
    guarantees = [
        {"guarantor": "hyperscaler", "obligor": "nc", "covers": "hosting", "cap": 2.5 * HOSTING_FEE}
    ]
    model = market(
        [{**TENANT, "cash": 1e9}, {"id": "host", "type": "miner"}],
        hosting=[{"host": "host", "tenant": "nc"}],
        guarantees=guarantees,
    )
    books = Books(model)
    paid = []
    for month in range(5):
        if month == 1:
            model.default_agent(0)
        ocf = earn(model.state)
        paid.append(float(model.ledger.guarantees.paid[0]))
        expected = [1.0, 1.0, 1.0, 0.5, 0.0][month] * HOSTING_FEE
        assert ocf[1] == pytest.approx(expected, rel=1e-12), month
        books.check(f"month {month}")
    assert paid == pytest.approx([0.0, 1.0, 2.0, 2.5, 2.5] * np.array(HOSTING_FEE), rel=1e-12)


@pytest.mark.parametrize(("hazard", "rent"), [(0.0, 2e6), (1.0, 0.0)])
def test_a_lease_spv_earns_its_rent_while_its_tenant_survives(hazard: float, rent: float) -> None:
    """A borrower with no GPUs and a 2 M/month lease for 3 months: its cash flow is the rent while the
    lease runs and the (investment-grade) tenant survives; nothing after the term or the tenant's default."""
    spv = {"id": "spv", "type": "neocloud", "lease_rent_per_month": 2e6, "contract_months": 3}
    model = market([spv], overrides={"tenants.ig_default_per_month": hazard})
    for _ in range(3):
        assert earn(model.state)[0] == pytest.approx(rent, rel=1e-12)
        model.state.world.advance()
    assert earn(model.state)[0] == 0.0
